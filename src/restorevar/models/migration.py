"""Model folders written before model families existed, read as today's.

Old `config.json` files have no `model_type`, and their refiner section carries our add-ons' flags
(`refine_degraded`, `add_input_detail`, `blur_expert_*`); old `refiner.safetensors` files hold the blur expert's
weights under `blur_expert.`. Both are migrated on read; nothing is rewritten on disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from restorevar.models.extensions.config import BLUR_EXPERT_CLASSES

_OLD_REFINER_FLAGS = (
    "refine_degraded",
    "add_input_detail",
    "blur_expert_width",
    "blur_expert_blocks",
    "blur_expert_mixer_width",
)
LEGACY_EXPERT_PREFIX = "blur_expert."


def migrate_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict in today's layout (a copy); today's configs are returned unchanged."""
    if "model_type" in data:
        return data
    data = {**data, "refiner": dict(data.get("refiner", {}))}
    old = {k: data["refiner"].pop(k) for k in _OLD_REFINER_FLAGS if k in data["refiner"]}
    expert_width = old.get("blur_expert_width", 0)
    extensions = {
        "refine_degraded": old.get("refine_degraded", False),
        "input_detail": old.get("add_input_detail", False),
        "blur_expert": None
        if not expert_width
        else {
            "width": expert_width,
            "blocks": old.get("blur_expert_blocks", 4),
            "mixer_width": old.get("blur_expert_mixer_width", 0),
            "classes": list(BLUR_EXPERT_CLASSES),
        },
    }
    if not any(extensions.values()):
        return {"model_type": "restorevar", **data}
    return {"model_type": "restorevar-extended", **data, "extensions": extensions}


def split_legacy_refiner(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An old refiner state → (the refiner's own keys, the blur expert's keys without their prefix)."""
    refiner = {k: v for k, v in state.items() if not k.startswith(LEGACY_EXPERT_PREFIX)}
    expert = {k[len(LEGACY_EXPERT_PREFIX) :]: v for k, v in state.items() if k.startswith(LEGACY_EXPERT_PREFIX)}
    return refiner, expert
