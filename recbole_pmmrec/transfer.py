"""Transfer: what a PMMRec checkpoint holds, and loading any subset of its components.

A checkpoint's ``transfer_manifest`` (saved with the model by RecBole's trainer) records
the source dataset, the item modalities, the architecture settings and every component's
parameter shapes. A target model built with ``transfer_from: <checkpoint>`` loads the
components named by ``transfer`` and keeps the others freshly initialised; architecture
settings the target does not set explicitly default to the checkpoint's (the plugin's
Config reads them from the manifest, and keeps the checkpoint for :func:`transfer_source`).
"""

from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

from recbole_pmmrec.checkpoint import read_pmmrec_checkpoint
from recbole_pmmrec.model.fusion import FusionSettings
from recbole_pmmrec.model.modality_encoders import ImageEncoderSettings, TextEncoderSettings
from recbole_pmmrec.model.settings import ComponentSettings
from recbole_pmmrec.model.user_encoder import UserEncoderSettings
from recbole_pmmrec.validation import name_list


@dataclass(frozen=True)
class Component:
    """A transferable part of PMMRec: its parameters' prefix in the state_dict and the
    settings that fix its shapes and meaning."""

    prefix: str
    settings: type[ComponentSettings]


COMPONENTS = {
    "text_encoder": Component("item_encoder.text_encoder.", TextEncoderSettings),
    "image_encoder": Component("item_encoder.image_encoder.", ImageEncoderSettings),
    "fusion": Component("item_encoder.fusion.", FusionSettings),
    "user_encoder": Component("user_encoder.", UserEncoderSettings),
}
# the settings a checkpoint records and a target inherits by default
ARCHITECTURE_KEYS = tuple(dict.fromkeys(key for c in COMPONENTS.values() for key in c.settings.keys()))
# the encoder setting whose value must agree for an encoder to be transferred
_ENCODER_KEYS = {"text_encoder": "text_encoder", "image_encoder": "image_encoder"}


class TransferError(ValueError):
    """A checkpoint cannot be transferred into the target model as configured."""


def build_manifest(model, config):
    """What ``model`` holds, for the checkpoint: dataset, modalities, architecture settings
    and each component's parameter shapes (absent components are left out)."""
    state = model.state_dict()
    components = {}
    for name, component in COMPONENTS.items():
        if _module_of(model, name) is None:
            continue
        prefix = component.prefix
        components[name] = {k[len(prefix):]: list(v.shape) for k, v in state.items() if k.startswith(prefix)}
    return {
        "format": 1,
        "dataset": config["dataset"],
        "source_datasets": list(config["source_datasets"] or [config["dataset"]]),
        "item_modalities": list(model.modalities),
        "architecture": {key: config[key] for key in ARCHITECTURE_KEYS},
        "components": components,
    }


def transfer_source(config):
    """The checkpoint named by ``config["transfer_from"]``: the one the Config already read
    for its inherited settings, else read now."""
    source = getattr(config, "transfer_checkpoint", None)
    if source is not None and str(source.path) == str(Path(config["transfer_from"])):
        return source
    return read_pmmrec_checkpoint(config["transfer_from"])


def parse_components(value):
    """``transfer`` as a list of component names (``all`` or ``None`` = every component)."""
    names = None if value is None else name_list(value)
    if names is None or names == ["all"]:
        return None
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise TransferError(f"transfer: unknown component(s) {unknown}; choose from {list(COMPONENTS)} or all")
    return names


def _module_of(model, name):
    """The module of component ``name``, or None when the model has no weights for it (an
    absent modality; the parameter-free fusion of single-modality or ``sum`` models)."""
    module = model.user_encoder if name == "user_encoder" else getattr(model.item_encoder, name)
    return module if module is not None and module.state_dict() else None


def _encoder_id(value):
    """An encoder setting compared by its last path part (a moved folder still matches)."""
    return Path(str(value)).name if value else None


def _check_component(name, module, manifest, config, path):
    """Raise :class:`TransferError` if component ``name`` of the checkpoint does not fit."""
    saved_arch = manifest["architecture"]
    key = _ENCODER_KEYS.get(name)
    if key and _encoder_id(saved_arch.get(key)) != _encoder_id(config[key]):
        raise TransferError(
            f"transfer_from {path}: component {name}: the checkpoint's {key} is {saved_arch.get(key)!r}, "
            f"the target's is {config[key]!r} (leave {key} unset to use the checkpoint's)"
        )
    saved = manifest["components"][name]
    target = {k: list(v.shape) for k, v in module.state_dict().items()}
    differ = sorted(k for k in set(saved) | set(target) if saved.get(k) != target.get(k))
    if differ:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)}, target {target.get(k)}" for k in differ[:3])
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        settings = ", ".join(
            f"{k}={saved_arch.get(k)!r} vs {config[k]!r}"
            for k in COMPONENTS[name].settings.keys()
            if saved_arch.get(k) != config[k]
        )
        hint = f"; settings that differ: {settings}" if settings else ""
        raise TransferError(
            f"transfer_from {path}: component {name} does not match the target's shapes: {details}{more}{hint}"
        )


def load_components(model, config, source, components=None):
    """Load ``components`` (names, or ``None`` = all) of the checkpoint ``source`` (a
    :class:`~recbole_pmmrec.checkpoint.PMMRecCheckpoint`) into ``model``.

    With ``None``, every component that both the checkpoint and the target have is loaded
    (a text-only target takes the text encoder of a text+image checkpoint). A component
    named explicitly must exist on both sides. Shapes and encoders are checked before any
    tensor is copied. Returns the names of the loaded components.
    """
    path, state, manifest = source
    explicit = components is not None
    wanted = components if explicit else list(COMPONENTS)
    plan = []
    for name in wanted:
        module = _module_of(model, name)
        in_checkpoint = name in manifest["components"]
        if module is None or not in_checkpoint:
            if explicit:
                side = "the target model" if module is None else "the checkpoint"
                raise TransferError(
                    f"transfer_from {path}: component {name} is not in {side} "
                    f"(checkpoint modalities {manifest['item_modalities']}, "
                    f"target modalities {model.modalities})"
                )
            continue
        _check_component(name, module, manifest, config, path)
        plan.append((name, module))
    for name, module in plan:
        prefix = COMPONENTS[name].prefix
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    loaded = [name for name, _ in plan]
    fresh = [name for name in COMPONENTS if name not in loaded and _module_of(model, name) is not None]
    getLogger().info(
        f"transfer from {path} (pre-trained on {manifest['source_datasets']}): loaded {loaded}; "
        f"freshly initialised: {fresh or 'none'}"
    )
    return loaded
