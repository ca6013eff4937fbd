"""Strict config plumbing shared by every model family: dataclasses to and from JSON, unknown keys rejected.

Torch-free, so that configs (and `restorevar --help`) load without importing torch.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A config that cannot describe a working model (or run)."""


def reject_unknown_keys(data: dict[str, Any], cls: type, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    """`cls(**data)` with unknown keys rejected, lists made tuples and nested dataclasses (or None) built."""
    reject_unknown_keys(data, cls, where)
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        nested = _dataclass_in(hints[f.name])
        if nested is not None and value is not None:
            value = build_dataclass(nested, value, f"{where}.{f.name}")
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass in a field's type (`X` or `X | None`), if any."""
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def read_json(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


class ModelConfig:
    """What every family's top-level (frozen dataclass) config shares: `config.json` is `to_dict()`, the model
    type first, then one section per component; loading is strict."""

    model_type: ClassVar[str]

    def validate(self):
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        data = dict(data)
        model_type = data.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ConfigError(f"config is for model type {model_type!r}, not {cls.model_type!r}")
        return build_dataclass(cls, data, "config").validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path):
        return cls.from_dict(read_json(path))
