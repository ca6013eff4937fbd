"""Checkpoint files: our format (a directory of config.json + one safetensors file per component),
atomic writes, and strict loading with errors that name the file and the mismatched keys."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A weights file that is missing, unreadable or does not fit the model."""


def atomic_write(path: str | Path, write) -> None:
    """Run `write(tmp_path)` and move the result into place, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; model files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_json(data, path: str | Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


def read_torch_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Official `.pth`/`.ckpt` files, loaded with weights_only=True: never unpickle arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe pickles
        raise CheckpointError(f"cannot read {path} as a weights-only PyTorch file: {str(e).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if isinstance(data, dict) and isinstance(data.get("trainer"), dict) and "var_wo_ddp" in data["trainer"]:
        data = data["trainer"]["var_wo_ddp"]  # the paper's training checkpoint layout
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    return data


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """load_state_dict(strict=True), but the error lists every missing, unexpected and mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {_short(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_short(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _short(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit} more)" if len(items) > limit else "")
