"""Settings files (JSON or YAML) for `ktune train`, `ktune data build` and `ktune eval`: defaults <- file <- flags.

A file holds one mapping of settings, either at the top level or under the command's section (`train:`,
`data:`, `eval:`), so one YAML file can carry all three.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ktune.errors import ConfigError

_NONE = type(None)


def load_config_file(path: str | Path, section: str) -> dict:
    """The settings in `path`: its `section` mapping when it has one, else the whole top-level mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one clear line
        raise ConfigError(f"cannot parse config file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(raw).__name__}")
    return raw.get(section, raw) if isinstance(raw.get(section), dict) else raw


def kinds_of(cls, skip: tuple[str, ...] = ()) -> dict[str, tuple[type, ...]]:
    """Setting name -> accepted value types, read from a config dataclass's field defaults."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out[f.name] = kind_of(default)
    return out


def kind_of(default) -> tuple[type, ...]:
    """The types a setting whose default is `default` accepts (None: a text setting left unset)."""
    if default is None:
        return (str, _NONE)
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return (type(default),)


def check_settings(settings: dict, kinds: dict[str, tuple[type, ...]], origin: str, command: str,
                   choices: dict[str, tuple] | None = None) -> dict:
    """`settings` itself, each key known to `kinds` and of an accepted type; else a ConfigError naming both."""
    for key, value in settings.items():
        if key not in kinds:
            raise ConfigError(f"unknown setting {key!r} in {origin}; `{command}` takes: {', '.join(sorted(kinds))}")
        accepted = kinds[key]
        if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
            names = " or ".join("null" if t is _NONE else t.__name__ for t in accepted)
            raise ConfigError(f"setting {key!r} in {origin} must be {names}, got {value!r}")
        allowed = (choices or {}).get(key)
        if allowed and value not in allowed:
            raise ConfigError(f"setting {key!r} in {origin} is {value!r}, not one of {', '.join(allowed)}")
    return settings


def file_settings(path: str | Path, section: str, kinds: dict[str, tuple[type, ...]], command: str,
                  choices: dict[str, tuple] | None = None) -> dict:
    """The checked settings of one config file (see `check_settings`)."""
    return check_settings(load_config_file(path, section), kinds, f"config file {path}", command, choices)
