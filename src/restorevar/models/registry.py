"""From names and folders to models: `model_type` → family, named models, the bundled default.

A model folder is `config.json` (with its `model_type`) plus the family's safetensors files. A name is a
folder's name in the bundled weights (`restorevar-small`) or in the model home ($RESTOREVAR_HOME or
~/.cache/restorevar, where `restorevar convert` puts the paper's weights). Torch is imported only when a model
is built.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from restorevar.models.config import ConfigError, read_json
from restorevar.models.extensions.config import ExtendedRestoreVARConfig
from restorevar.models.migration import migrate_config
from restorevar.models.presets import _PRESETS, canonical_name
from restorevar.models.restorevar.config import RestoreVARConfig
from restorevar.models.varformer.config import VarFormerConfig

# model_type → (config class, "module:ModelClass"); the model classes are imported on first use
MODEL_TYPES: dict[str, tuple[type, str]] = {
    "restorevar": (RestoreVARConfig, "restorevar.models.restorevar.model:RestoreVAR"),
    "restorevar-extended": (ExtendedRestoreVARConfig, "restorevar.models.extensions.model:ExtendedRestoreVAR"),
    "varformer": (VarFormerConfig, "restorevar.models.varformer.model:VarFormer"),
}
CONFIG_FILE = "config.json"
BUNDLED_WEIGHTS = Path(__file__).parents[1] / "weights"  # models shipped inside the package
DEFAULT_MODEL = "restorevar-small"


def _family(model_type: str) -> tuple[type, str]:
    try:
        return MODEL_TYPES[model_type]
    except KeyError:
        raise ConfigError(f"unknown model_type {model_type!r}; known: {', '.join(MODEL_TYPES)}") from None


def config_from_dict(data: dict[str, Any]):
    """A config of the right family from a `config.json` dict (older layouts migrated)."""
    data = dict(migrate_config(data))
    config_class, _ = _family(data.get("model_type"))
    return config_class.from_dict(data)


def load_config(directory: str | Path):
    return config_from_dict(read_json(Path(directory) / CONFIG_FILE))


def model_class(model_type: str) -> type:
    module, name = _family(model_type)[1].split(":")
    return getattr(importlib.import_module(module), name)


def build_model(config):
    """A model of `config`'s family with fresh weights."""
    return model_class(config.model_type)(config)


def load_model(name_or_dir: str | Path | None = None, *, device=None, dtype="fp32"):
    """A model folder or named model (None = the bundled default), ready for inference."""
    directory = resolve_model(name_or_dir)
    model = build_model(load_config(directory))
    model.load_weights(directory)
    return model.prepare_for_inference(device=device, dtype=dtype)


def model_home() -> Path:
    """Where named models (e.g. converted paper weights) live: $RESTOREVAR_HOME or ~/.cache/restorevar."""
    return Path(os.environ.get("RESTOREVAR_HOME", Path.home() / ".cache" / "restorevar"))


def list_models() -> dict[str, Path]:
    """Named models available offline: name → folder (the bundled ones, then the model home's)."""
    found = {}
    for root in (BUNDLED_WEIGHTS, model_home()):
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder / CONFIG_FILE).is_file():
                    found.setdefault(folder.name, folder)
    return found


def resolve_model(name_or_dir: str | Path | None) -> Path:
    """A model folder, or a model name: the bundled default, or a preset converted into the model home."""
    spec = DEFAULT_MODEL if name_or_dir is None else str(name_or_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(f"{path} has no {CONFIG_FILE}; expected a model folder")
        return path
    name = canonical_name(spec)
    for candidate in dict.fromkeys((name, spec)):
        for root in (BUNDLED_WEIGHTS, model_home()):
            if (root / candidate / CONFIG_FILE).is_file():
                return root / candidate
    if name == DEFAULT_MODEL:
        raise ConfigError(
            f"the default model is missing (expected {BUNDLED_WEIGHTS / name}); reinstall the package, or pass "
            "--model DIR: a folder from `restorevar train` or `restorevar convert` (the paper's weights)"
        )
    if name in _PRESETS:
        raise ConfigError(
            f"no weights for '{name}' in {model_home() / name}; for the paper's model, download restorevar.pth and "
            f"vae_restorevar.ckpt and run `restorevar convert DOWNLOAD_DIR {model_home() / name}`"
        )
    known = ", ".join(list_models()) or "none"
    raise ConfigError(f"no model folder or named model '{spec}'; models available offline: {known}")
