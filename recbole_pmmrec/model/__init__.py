"""PMMRec's model, one file per part: the modality encoders (text, vision), the item encoder
(encoders + frozen-feature cache + fusion), the fusion, the user encoder, the losses, and
:class:`~recbole_pmmrec.model.pmmrec.PMMRec` itself (the RecBole model contract)."""
