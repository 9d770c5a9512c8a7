"""``PMMRecTrainer``: RecBole's Trainer plus PMMRec's self-supervised objectives.

Each training step encodes the batch once (:meth:`PMMRec.encode_batch`) and adds to the
next-item loss, each with its weight (0 turns it off and skips its computation):

- NICL, next-item enhanced cross-modal contrastive learning (needs text and image),
- NID, noised item detection on a corrupted copy of each history,
- RCL, robustness-aware contrastive learning between original and corrupted histories.

Every term is logged per epoch by name and written to TensorBoard.
"""

from functools import partial

import torch
import torch.nn.functional as F
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_pmmrec.losses import corrupt_sequences, nicl_loss, rcl_loss

OBJECTIVES = ("nicl", "nid", "rcl")


class PMMRecTrainer(Trainer):
    """Trains only parameters that require gradients; ``weight_decay`` applies to the
    modules trained from scratch, none to the pre-trained backbones (as the authors do)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.weights = {name: float(config[f"{name}_weight"] or 0.0) for name in OBJECTIVES}
        if self.weights["nicl"] and len(model.item_encoder.modalities) < 2:
            self.logger.info(
                f"NICL needs text and image; item_modalities={model.item_encoder.modalities}: NICL is skipped"
            )
            self.weights["nicl"] = 0.0
        self.loss_names = ["rec"] + [name for name in OBJECTIVES if self.weights[name]]
        self.corrupt = None
        if self.weights["nid"] or self.weights["rcl"]:
            self.corrupt = partial(
                corrupt_sequences,
                replacements=model.train_items,
                shuffle_ratio=config["nid_shuffle_ratio"],
                replace_ratio=config["nid_replace_ratio"],
                binary=config["nid_classes"] == 2,
            )

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

    def training_losses(self, interaction):
        """The weighted loss terms of one batch, in the order of ``loss_names``."""
        model = self.model
        batch = model.encode_batch(interaction, self.corrupt)
        losses = [model.recommendation_loss(batch)]
        if self.weights["nicl"]:
            losses.append(self.weights["nicl"] * self._nicl(batch))
        if self.weights["nid"]:
            real = batch.noise_labels >= 0
            logits = model.nid_head(batch.noisy_states[real])
            losses.append(self.weights["nid"] * F.cross_entropy(logits, batch.noise_labels[real]))
        if self.weights["rcl"]:
            original = batch.last_states(batch.states)
            corrupted = batch.last_states(batch.noisy_states)
            losses.append(self.weights["rcl"] * rcl_loss(original, corrupted, self.config["rcl_temperature"]))
        return tuple(losses) if len(losses) > 1 else losses[0]

    def _nicl(self, batch):
        anchors = (batch.targets > 0) & (batch.seq_index >= 0)
        same_user = batch.user_items()[batch.row_of_position()[anchors]]
        return nicl_loss(
            batch.vectors.text,
            batch.vectors.image,
            batch.seq_index[anchors],
            batch.target_index[anchors],
            same_user,
            self.config["nicl_temperature"],
        )

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func or self.training_losses, show_progress=show_progress
        )

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        if not isinstance(losses, tuple):
            return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        places = self.config["loss_decimal_place"] or 4
        terms = ", ".join(
            set_color(f"{name} loss", "blue") + f": {value:.{places}f}" for name, value in zip(self.loss_names, losses)
        )
        total = set_color("train loss", "blue") + f": {sum(losses):.{places}f}"
        return (
            set_color(f"epoch {epoch_idx} training", "green")
            + " ["
            + set_color("time", "blue")
            + f": {e_time - s_time:.2f}s, {total}, {terms}]"
        )

    def _add_train_loss_to_tensorboard(self, epoch_idx, losses, tag="Loss/Train"):
        if not isinstance(losses, tuple):
            return super()._add_train_loss_to_tensorboard(epoch_idx, losses, tag)
        for name, value in zip(self.loss_names, losses):
            self.tensorboard.add_scalar(f"{tag}/{name}", value, epoch_idx)
        self.tensorboard.add_scalar(tag, sum(losses), epoch_idx)
