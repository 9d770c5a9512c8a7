"""Typed settings of the model's components, read from the config once.

Each component declares the config keys that fix its shapes and meaning as a frozen
dataclass whose field names are the keys themselves (see ``properties/model/PMMRec.yaml``);
the union of these keys is what a transfer checkpoint records and a target inherits.
"""

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ComponentSettings:
    """Base of the components' settings: field names are config keys."""

    @classmethod
    def keys(cls):
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_config(cls, config):
        return cls(**{key: config[key] for key in cls.keys()})
