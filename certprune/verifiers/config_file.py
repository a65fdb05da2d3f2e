"""``VerifyConfig`` read from and written to a TOML file (stdlib ``tomllib``; pyyaml is not a
dependency). The file holds top-level ``key = value`` lines, one per VerifyConfig field, e.g.::

    strategy = "input"
    cert_margin = 1e-6
    attack_restarts = 8

Unknown keys and values of the wrong type are rejected with one ConfigError naming them. The
effective configuration (every field, defaults included) is written back in the same format, so
a written file can be passed to ``--config`` again and reproduces the run.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping

from certprune.errors import ConfigError

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The VerifyConfig fields set in a TOML file, validated (unknown keys, types, ranges)."""
    import tomllib

    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # tomllib decodes the bytes as UTF-8 before parsing
        raise ConfigError(f"config file {path} is not UTF-8 text: {e}") from None
    check_config(data, source=str(path))
    return data


def check_config(data: Mapping[str, Any], source: str = "config") -> None:
    """Raise ConfigError for unknown keys, wrongly typed values or values VerifyConfig refuses."""
    from certprune.verifiers.verify import VerifyConfig

    fields = {f.name: f for f in dataclasses.fields(VerifyConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    for key, value in data.items():
        want = _TYPES[str(fields[key].type)]
        if not isinstance(value, want) or (bool not in want and isinstance(value, bool)):
            raise ConfigError(f"{source}: {key} must be of type {fields[key].type}, got {value!r}")
    try:
        VerifyConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def effective_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every VerifyConfig field with its value after ``overrides`` (validated)."""
    from certprune.verifiers.verify import VerifyConfig

    check_config(dict(overrides or {}))
    return dataclasses.asdict(VerifyConfig.from_dict(overrides))


def format_config(config: Mapping[str, Any]) -> str:
    """TOML text of a flat mapping of str / int / float / bool values (readable by tomllib)."""
    lines = ["# certprune verify configuration (all VerifyConfig fields); pass back with --config"]
    for key, value in config.items():
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(path: str | Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` as TOML (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_config(config))
    return path
