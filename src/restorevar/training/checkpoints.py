"""Training checkpoints: OUT/checkpoints/step-NNNNNNNN/{trainable.safetensors, state.pt}, written under a temporary
name and renamed into place, so that a kill leaves either nothing or a complete checkpoint."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restorevar.models.checkpoint import CheckpointError, read_safetensors, save_state_dict


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a checkpoint is renamed into place only once fully written)."""
    root = out / "checkpoints"
    return sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "state.pt").is_file()) if root.is_dir() else []


def rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(out: Path, step: int, trainables: dict[str, nn.Module], state: dict[str, Any], keep: int) -> Path:
    final = out / "checkpoints" / f"step-{step:08d}"
    tmp = out / "checkpoints" / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"{name}.{k}": v for name, m in trainables.items() for k, v in m.state_dict().items()}
    save_state_dict(tensors, tmp / "trainable.safetensors")
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)  # a fresh name: atomic, so a kill leaves either nothing or a full checkpoint
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, trainables: dict[str, nn.Module]) -> dict[str, Any]:
    tensors = read_safetensors(path / "trainable.safetensors")
    for name, module in trainables.items():
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not part:
            raise CheckpointError(f"{path} has no weights for {name!r}; was it written by another stage?")
        module.load_state_dict(part, strict=True)
    return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
