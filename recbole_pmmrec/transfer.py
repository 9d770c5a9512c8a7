"""Transfer: what a PMMRec checkpoint holds, and loading any subset of its components.

A checkpoint's ``transfer_manifest`` (saved with the model by RecBole's trainer) records
the source dataset, the item modalities, the architecture settings and every component's
parameter shapes. A target model built with ``transfer_from: <checkpoint>`` loads the
components named by ``transfer`` and keeps the others freshly initialised; architecture
settings the target does not set explicitly default to the checkpoint's
(:func:`inherited_settings`).
"""

from logging import getLogger
from pathlib import Path

from recbole_pmmrec.compat import load_checkpoint

# component name -> prefix of its parameters in PMMRec's state_dict
COMPONENTS = {
    "text_encoder": "item_encoder.text_encoder.",
    "image_encoder": "item_encoder.image_encoder.",
    "fusion": "item_encoder.fusion.",
    "user_encoder": "user_encoder.",
}
# settings that fix the components' shapes or meaning; a target inherits them by default
ARCHITECTURE_KEYS = (
    "text_encoder",
    "text_max_length",
    "text_trainable_layers",
    "image_encoder",
    "image_pretrained",
    "image_trainable_layers",
    "hidden_size",
    "inner_size",
    "n_layers",
    "n_heads",
    "hidden_act",
    "layer_norm_eps",
    "fusion",
    "fusion_n_heads",
    "modality_type_embedding",
    "fusion_norm_first",
    "MAX_ITEM_LIST_LENGTH",
)
# the settings worth naming when a component's shapes differ
_SHAPE_KEYS = {
    "text_encoder": ("text_encoder", "hidden_size"),
    "image_encoder": ("image_encoder", "hidden_size"),
    "fusion": ("fusion", "hidden_size", "modality_type_embedding"),
    "user_encoder": ("hidden_size", "inner_size", "n_layers", "MAX_ITEM_LIST_LENGTH"),
}
# the encoder setting whose value must agree for an encoder to be transferred
_ENCODER_KEYS = {"text_encoder": "text_encoder", "image_encoder": "image_encoder"}


class TransferError(ValueError):
    """A checkpoint cannot be transferred into the target model as configured."""


def build_manifest(model, config):
    """What ``model`` holds, for the checkpoint: dataset, modalities, architecture settings
    and each component's parameter shapes (absent components are left out)."""
    state = model.state_dict()
    components = {}
    for name, prefix in COMPONENTS.items():
        if _module_of(model, name) is None:
            continue
        components[name] = {k[len(prefix):]: list(v.shape) for k, v in state.items() if k.startswith(prefix)}
    return {
        "format": 1,
        "dataset": config["dataset"],
        "source_datasets": list(config["source_datasets"] or [config["dataset"]]),
        "item_modalities": list(model.item_encoder.modalities),
        "architecture": {key: config[key] for key in ARCHITECTURE_KEYS},
        "components": components,
    }


def read_checkpoint(path):
    """The checkpoint at ``path`` (memory-mapped) and its manifest."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(f"transfer_from: checkpoint not found: {path}")
    checkpoint = load_checkpoint(path, map_location="cpu", mmap=True)
    manifest = (checkpoint.get("other_parameter") or {}).get("transfer_manifest")
    if manifest is None:
        model = getattr(checkpoint.get("config"), "final_config_dict", {}).get("model", "unknown")
        raise TransferError(f"transfer_from: {path} is not a PMMRec checkpoint (model {model}, no transfer_manifest)")
    return checkpoint, manifest


def inherited_settings(path):
    """The architecture settings of the checkpoint at ``path`` (defaults for a target)."""
    return dict(read_checkpoint(path)[1]["architecture"])


def name_list(value):
    """A list of names from a list, or from the command line's ``"a,b"`` / ``"[a, 'b']"``."""
    if not isinstance(value, str):
        return list(value)
    return [n.strip(" '\"") for n in value.strip("[] ").split(",") if n.strip(" '\"")]


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
            f"{k}={saved_arch.get(k)!r} vs {config[k]!r}" for k in _SHAPE_KEYS[name] if saved_arch.get(k) != config[k]
        )
        hint = f"; settings that differ: {settings}" if settings else ""
        raise TransferError(
            f"transfer_from {path}: component {name} does not match the target's shapes: {details}{more}{hint}"
        )


def load_components(model, config, path, components=None):
    """Load ``components`` (names, or ``None`` = all) of the checkpoint at ``path`` into ``model``.

    With ``None``, every component that both the checkpoint and the target have is loaded
    (a text-only target takes the text encoder of a text+image checkpoint). A component
    named explicitly must exist on both sides. Shapes and encoders are checked before any
    tensor is copied. Returns the names of the loaded components.
    """
    checkpoint, manifest = read_checkpoint(path)
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
                    f"target modalities {model.item_encoder.modalities})"
                )
            continue
        _check_component(name, module, manifest, config, path)
        plan.append((name, module))
    state = checkpoint["state_dict"]
    for name, module in plan:
        prefix = COMPONENTS[name]
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    loaded = [name for name, _ in plan]
    fresh = [name for name in COMPONENTS if name not in loaded and _module_of(model, name) is not None]
    getLogger().info(
        f"transfer from {path} (pre-trained on {manifest['source_datasets']}): loaded {loaded}; "
        f"freshly initialised: {fresh or 'none'}"
    )
    return loaded
