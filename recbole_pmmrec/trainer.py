"""``PMMRecTrainer``: RecBole's Trainer with PMMRec's optimiser groups."""

from recbole.trainer import Trainer
from recbole.utils import set_color


class PMMRecTrainer(Trainer):
    """Trains only parameters that require gradients; ``weight_decay`` applies to the
    modules trained from scratch, none to the pre-trained backbones (as the authors do)."""

    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs:
            fresh = {id(p) for module in self.model.new_modules() for p in module.parameters()}
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            groups = [
                {"params": [p for p in trainable if id(p) in fresh], "weight_decay": self.weight_decay},
                {"params": [p for p in trainable if id(p) not in fresh], "weight_decay": 0.0},
            ]
            kwargs["params"] = [g for g in groups if g["params"]]
            n_fresh = sum(p.numel() for p in groups[0]["params"])
            n_backbone = sum(p.numel() for p in groups[1]["params"])
            self.logger.info(
                set_color("trainable parameters", "blue")
                + f": {n_fresh} new (weight decay {self.weight_decay}), {n_backbone} in pre-trained encoders"
            )
        return super()._build_optimizer(**kwargs)
