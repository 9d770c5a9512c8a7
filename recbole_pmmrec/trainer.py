"""Trainers: what the plugin adds to every model's trainer, and ``PMMRecTrainer``.

:class:`PluginTrainerMixin` is mixed into the trainer of every model run through the plugin
(RecBole's baselines included, see :func:`recbole_pmmrec.registry.get_trainer`).

:class:`PMMRecTrainer` adds PMMRec's self-supervised objectives to the next-item loss, each
with its weight (0 turns it off and skips its computation):

- NICL, next-item enhanced cross-modal contrastive learning (needs text and image),
- NID, noised item detection on a corrupted copy of each history,
- RCL, robustness-aware contrastive learning between original and corrupted histories.

Each step corrupts the batch's histories (ids only), has the model encode the batch once
(:meth:`PMMRec.encode_batch`), and computes every term from that encoding. Every term is
logged per epoch by name and written to TensorBoard.
"""

import math
import os
import time
import uuid
from functools import lru_cache, partial
from pathlib import Path

import torch
import torch.nn.functional as F
from recbole.trainer import Trainer
from recbole.trainer.trainer import AbstractTrainer
from recbole.utils import set_color
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR

from recbole_pmmrec.checkpoint import (
    CheckpointError, load_checkpoint, plain, restore_rng_states, rng_states, run_settings, save_checkpoint,
)
from recbole_pmmrec.data.dataset import training_history
from recbole_pmmrec.distributed import barrier, from_rank_zero, gather_rows, share_of_mean
from recbole_pmmrec.model.losses import corrupt_sequences, nicl_loss, rcl_loss

OBJECTIVES = ("nicl", "nid", "rcl")
# the learning rate after warm-up as a share of learning_rate, by the share of the decay done
DECAYS = {
    "none": lambda done: 1.0,
    "linear": lambda done: 1.0 - done,
    "cosine": lambda done: 0.5 * (1.0 + math.cos(math.pi * done)),
}


def lr_factor(step, warmup_steps, total_steps, decay):
    """The learning rate of optimiser step ``step`` (from 1) as a share of ``learning_rate``:
    ``step / warmup_steps`` up to ``warmup_steps``, then ``DECAYS[decay]``, reaching 0 (for a
    decay) at step ``total_steps`` and staying there."""
    if step <= warmup_steps:
        return step / warmup_steps
    return DECAYS[decay](min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1)))


class PluginTrainerMixin:
    """Added to the trainer of every model run through the plugin:

    - ``epoch_seconds``: the wall time of each training epoch;
    - a unique checkpoint name per run: RecBole names it by model and start second only,
      so runs started in the same second would overwrite each other's file (and PMMRec,
      whose shapes do not depend on the dataset, would load the other run's weights);
    - checkpoints of tensors and plain data, written atomically, loaded with
      ``weights_only=True`` (:mod:`recbole_pmmrec.checkpoint`);
    - a resume state written at the start of every epoch (``<checkpoint>.resume.pth``, removed
      when training ends): :meth:`resume_checkpoint` continues a killed run from it, with the
      model, optimiser, counters and every RNG (the loader's shuffling too) restored;
    - a learning-rate schedule (``lr_warmup_steps``, ``lr_decay``), stepped with every optimiser
      step, its position (``lr_step``) kept in the resume state; each epoch's rates are logged;
    - ``evaluate(..., candidates=mask)``: full ranking among the ``candidates`` items only;
    - :meth:`exclude_training_items`: full ranking without the user's whole history.
    """

    def __init__(self, config, model):
        # RecBole's ensure_dir checks, then creates: processes starting together race on it
        os.makedirs(config["checkpoint_dir"], exist_ok=True)
        super().__init__(config, model)
        stem, ext = os.path.splitext(self.saved_model_file)
        self.saved_model_file = from_rank_zero(f"{stem}-{uuid.uuid4().hex[:6]}{ext}")
        self.epoch_seconds = []
        self.lr_warmup_steps = config["lr_warmup_steps"]
        self.lr_decay = config["lr_decay"]
        self.lr_step = 0  # optimiser steps taken under the schedule
        self._lr_hook = None
        self.resume_file = None
        self._candidates = None
        self._history = None

    def _checkpoint_state(self, epoch):
        return {
            "settings": run_settings(self.config),
            "config": plain(self.config.final_config_dict),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        save_checkpoint(self._checkpoint_state(epoch), path)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    def _save_resume_state(self, train_data, epoch_idx):
        """Everything needed to run epoch ``epoch_idx`` and the rest as this run would."""
        state = self._checkpoint_state(epoch_idx)
        state.update(
            best_valid_result=plain(self.best_valid_result),
            train_loss_dict={int(k): plain(v) for k, v in self.train_loss_dict.items()},
            epoch_seconds=list(self.epoch_seconds),
            lr_step=self.lr_step,
            saved_model_file=self.saved_model_file,
            rng=rng_states(),
            loader_rng=train_data.generator.get_state(),
        )
        save_checkpoint(state, self.resume_file)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if saved and self.resume_file is None:
            self.resume_file = os.path.splitext(self.saved_model_file)[0] + ".resume.pth"
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        if self.resume_file:  # the run is complete: nothing to resume
            Path(self.resume_file).unlink(missing_ok=True)
        return result

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        scheduled = self.lr_warmup_steps or self.lr_decay != "none"
        scheduler = self._schedule_learning_rate(len(train_data)) if scheduled else None
        first_step = self.lr_step + 1
        if self.resume_file and (self.config["single_spec"] or self.config["local_rank"] == 0):
            self._save_resume_state(train_data, epoch_idx)
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        self.epoch_seconds.append(time.perf_counter() - start)
        if scheduler:
            rates = [f"{_learning_rate(scheduler, step):.4g}" for step in (first_step, self.lr_step)]
            self.logger.info(set_color(f"epoch {epoch_idx} learning rate", "blue") + f": {' -> '.join(rates)}")
        return loss

    def _schedule_learning_rate(self, steps_per_epoch):
        """A LambdaLR on ``self.optimizer`` at step ``lr_step`` of the schedule, stepped by every
        optimiser step taken (one the AMP scaler skips is not taken). Attached anew each epoch,
        so an optimiser that was rebuilt or loaded (``initial_lr`` kept) continues the schedule."""
        if self._lr_hook is not None:
            self._lr_hook.remove()
        factor = partial(lr_factor, warmup_steps=self.lr_warmup_steps, total_steps=self.epochs * steps_per_epoch,
                         decay=self.lr_decay)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        scheduler = LambdaLR(self.optimizer, lambda taken: factor(taken + 1), last_epoch=self.lr_step - 1)

        def advance(*_):
            self.lr_step += 1
            scheduler.step()

        self._lr_hook = self.optimizer.register_step_post_hook(advance)
        return scheduler

    def load_weights(self, checkpoint_file):
        """Load the model's weights from a checkpoint file written by this trainer. From this
        run's own checkpoint only the tensors that training can change are read: its frozen
        parameters (a pre-trained encoder's) are those in memory, and the file is memory-mapped,
        so they are never read from disk."""
        checkpoint = load_checkpoint(checkpoint_file, map_location=self.device, mmap=True,
                                     trust=self.config["trust_checkpoint"])
        state = checkpoint["state_dict"]
        if os.path.abspath(checkpoint_file) != os.path.abspath(self.saved_model_file):
            self.model.load_state_dict(state)
        else:
            frozen = {name for name, parameter in self.model.named_parameters() if not parameter.requires_grad}
            loaded = self.model.load_state_dict({k: v for k, v in state.items() if k not in frozen}, strict=False)
            if loaded.unexpected_keys or not set(loaded.missing_keys) <= frozen:
                raise CheckpointError(f"{checkpoint_file} does not match the model: missing "
                                      f"{sorted(set(loaded.missing_keys) - frozen)}, unexpected {loaded.unexpected_keys}")
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return checkpoint

    def resume_checkpoint(self, resume_file, train_data=None):
        """Continue the run whose resume state is ``resume_file`` (written at the start of its
        last epoch): that epoch and the rest run as they would have without the interruption.
        The run's settings must be the same (``epochs`` may differ)."""
        state = load_checkpoint(resume_file, map_location=self.device, trust=self.config["trust_checkpoint"])
        if "rng" not in state:
            raise CheckpointError(f"{resume_file} is not a resume state (written as <checkpoint>.resume.pth)")
        differ = _differing_settings(state["settings"], run_settings(self.config), ignore=("resume_from", "epochs"))
        if differ:
            raise CheckpointError(f"resume_from {resume_file}: the run's settings differ: {'; '.join(differ)}")
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(state.get("other_parameter"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch, self.cur_step = state["epoch"], state["cur_step"]
        self.best_valid_score, self.best_valid_result = state["best_valid_score"], state["best_valid_result"]
        self.train_loss_dict = dict(state["train_loss_dict"])
        self.epoch_seconds = list(state["epoch_seconds"])
        self.lr_step = state.get("lr_step", 0)  # resume states written before the schedule existed
        self.saved_model_file, self.resume_file = state["saved_model_file"], str(resume_file)
        restore_rng_states(state["rng"])
        if train_data is not None:
            train_data.generator.set_state(state["loader_rng"])
        self.logger.info(f"resumed from {resume_file}: training continues at epoch {self.start_epoch}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False, candidates=None):
        """RecBole's evaluation; ``candidates`` (a bool tensor over item ids) restricts the
        full ranking to those items (every other item scores -inf)."""
        if load_best_model:
            barrier()  # in a distributed run, rank 0 has written it
            self.load_weights(model_file or self.saved_model_file)
        self._candidates = None if candidates is None else candidates.to(self.device)
        try:
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        finally:
            self._candidates = None

    def exclude_training_items(self, train_dataset):
        """From now on, full-ranking evaluation never ranks a user's training items nor the
        items of the evaluated row's history (the user's whole history before the target)."""
        users, items = getattr(train_dataset, "training_pairs", None) or training_history(train_dataset)
        order = torch.argsort(users * train_dataset.item_num + items)
        users, items = users[order], items[order]
        starts = torch.searchsorted(users, torch.arange(train_dataset.user_num + 1))
        self._history = (starts.to(self.device), items.to(self.device), self.config["USER_ID_FIELD"])

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self._history is not None:
            scores = self._without_history(interaction, scores)
        if self._candidates is not None:
            scores = scores.masked_fill(~self._candidates, float("-inf"))
        return interaction, scores, positive_u, positive_i

    def _without_history(self, interaction, scores):
        starts, items, user_field = self._history
        users = interaction[user_field].to(self.device)
        counts = starts[users + 1] - starts[users]
        rows = torch.repeat_interleave(torch.arange(len(users), device=self.device), counts)
        offsets = torch.arange(int(counts.sum()), device=self.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts)
        scores = scores.index_put((rows, items[starts[users].repeat_interleave(counts) + offsets]),
                                  torch.tensor(float("-inf"), device=self.device))
        item_seq = interaction[self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]].to(self.device)
        return scores.scatter(1, item_seq, float("-inf"))


def _learning_rate(scheduler, step):
    """The learning rate of the first parameter group at optimiser step ``step`` (from 1)."""
    return scheduler.base_lrs[0] * scheduler.lr_lambdas[0](step - 1)


def _differing_settings(saved, current, ignore=()):
    """``key: saved vs current`` for the settings that differ between two runs."""
    if saved["model"] != current["model"] or saved["dataset"] != current["dataset"]:
        return [f"model/dataset {saved['model']}/{saved['dataset']} vs {current['model']}/{current['dataset']}"]
    old, new = saved["config_dict"], current["config_dict"]
    keys = sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)!r} vs {new.get(k)!r}" for k in keys]


class ProcessGroupTrainer(AbstractTrainer):
    """The base of every plugin trainer, between RecBole's trainer and its
    ``AbstractTrainer``: in a distributed run the model is wrapped in DDP as its device
    allows (RecBole passes ``device_ids=[local_rank]``, which only CUDA modules accept, so
    its runs on CPU processes fail); RecBole's training loop then averages the gradients."""

    def __init__(self, config, model):
        self.config = config
        self.model = model
        if not config["single_spec"]:
            device_ids = [config["local_rank"]] if config["device"].type == "cuda" else None
            self.distributed_model = DistributedDataParallel(model, device_ids=device_ids)


@lru_cache(maxsize=None)
def with_plugin_features(trainer_class):
    """``trainer_class`` with :class:`PluginTrainerMixin` and :class:`ProcessGroupTrainer`
    in its bases (itself if it has them)."""
    if issubclass(trainer_class, PluginTrainerMixin):
        return trainer_class
    return type(trainer_class.__name__, (PluginTrainerMixin, trainer_class, ProcessGroupTrainer), {})


class PMMRecTrainer(PluginTrainerMixin, Trainer, ProcessGroupTrainer):
    """Trains only parameters that require gradients; ``weight_decay`` applies to the
    modules trained from scratch, none to the pre-trained backbones (as the authors do), whose
    trained blocks take ``encoder_learning_rate`` when it is set."""

    def __init__(self, config, model):
        self.encoder_learning_rate = config["encoder_learning_rate"]  # read by _build_optimizer
        super().__init__(config, model)
        self.weights = {name: float(config[f"{name}_weight"] or 0.0) for name in OBJECTIVES}
        if self.weights["nicl"] and len(model.modalities) < 2:
            self.logger.info(f"NICL needs text and image; item_modalities={model.modalities}: NICL is skipped")
            self.weights["nicl"] = 0.0
        self.loss_names = ["rec"] + [name for name in OBJECTIVES if self.weights[name]]
        self.corrupts = bool(self.weights["nid"] or self.weights["rcl"])
        self.shuffle_ratio = config["nid_shuffle_ratio"]
        self.replace_ratio = config["nid_replace_ratio"]
        self.binary_noise = config["nid_classes"] == 2

    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs:
            fresh = {id(p) for module in self.model.new_modules() for p in module.parameters()}
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            groups = [
                {"params": [p for p in trainable if id(p) in fresh], "weight_decay": self.weight_decay},
                {"params": [p for p in trainable if id(p) not in fresh], "weight_decay": 0.0},
            ]
            if self.encoder_learning_rate:
                groups[1]["lr"] = self.encoder_learning_rate
            kwargs["params"] = [g for g in groups if g["params"]]
            n_fresh = sum(p.numel() for p in groups[0]["params"])
            n_backbone = sum(p.numel() for p in groups[1]["params"])
            self.logger.info(
                set_color("trainable parameters", "blue")
                + f": {n_fresh} new (weight decay {self.weight_decay}, learning rate {self.learning_rate:g}), "
                f"{n_backbone} in pre-trained encoders (learning rate {groups[1].get('lr', self.learning_rate):g})"
            )
        return super()._build_optimizer(**kwargs)

    def corrupt(self, interaction):
        """A corrupted copy of the batch's histories and its per-position noise labels
        (:func:`~recbole_pmmrec.model.losses.corrupt_sequences`), replacement items drawn
        from the training items; ``(None, None)`` when neither NID nor RCL is on."""
        if not self.corrupts:
            return None, None
        return corrupt_sequences(
            interaction[self.model.ITEM_SEQ],
            interaction[self.model.ITEM_SEQ_LEN],
            self.model.train_items,
            self.shuffle_ratio,
            self.replace_ratio,
            binary=self.binary_noise,
        )

    def training_losses(self, interaction):
        """The weighted loss terms of one batch, in the order of ``loss_names``."""
        return self.objective_losses(interaction, *self.corrupt(interaction))

    def objective_losses(self, interaction, noisy_seq=None, noise_labels=None):
        """The weighted loss terms of a batch whose corrupted histories are given. Each term
        is a mean over this process's rows, scaled in a distributed run so that gradients
        averaged over processes are those of the mean over every process's rows."""
        model = self.model
        batch = model.encode_batch(interaction, noisy_seq)
        losses = [share_of_mean(model.recommendation_loss(batch), int((batch.targets > 0).sum()))]
        if self.weights["nicl"]:
            losses.append(self.weights["nicl"] * self._nicl(batch))
        if self.weights["nid"]:
            real = noise_labels >= 0
            logits = model.noise_logits(batch.noisy_states[real])
            nid = F.cross_entropy(logits, noise_labels[real])
            losses.append(self.weights["nid"] * share_of_mean(nid, int(real.sum())))
        if self.weights["rcl"]:
            original = batch.last_states(batch.states)
            corrupted = batch.last_states(batch.noisy_states)
            all_original, offset = gather_rows(original)
            rcl = rcl_loss(original, corrupted, self.config["rcl_temperature"],
                           others=(all_original, gather_rows(corrupted)[0], offset))
            losses.append(self.weights["rcl"] * share_of_mean(rcl, len(original)))
        return tuple(losses) if len(losses) > 1 else losses[0]

    def _nicl(self, batch):
        anchors = (batch.targets > 0) & (batch.seq_index >= 0)
        same_user = batch.user_items()[batch.row_of_position()[anchors]]
        return share_of_mean(nicl_loss(
            batch.vectors.text,
            batch.vectors.image,
            batch.seq_index[anchors],
            batch.target_index[anchors],
            same_user,
            self.config["nicl_temperature"],
        ), int(anchors.sum()))

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
