"""The paper's optimisation: AdamW parameter groups and the `lin0` learning-rate schedule."""

from __future__ import annotations

from torch import nn


def lin0_lr(step: int, total: int, peak: float, *, warmup: int = 0, flat: float = 0.05, final: float = 0.01) -> float:
    """The paper's `lin0` (VAR's lr_wd_annealing), for step 0..total-1.

    Linear warm-up from 0, then flat for `flat` of the rest, then linear to final·peak at the last step.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - 1 - warmup, 1)
    if progress <= flat:
        return peak
    return peak * (final + (1 - final) * (1 - progress) / (1 - flat))


def weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """wd on ≥2-D weights and scalar gains; none on biases, norms, log_scale, scale/level/pos embeddings, codebook."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        exempt = any(s in name for s in ("scale_embed", "level_embed", "pos_embed", "log_scale", "codebook"))
        (decay if (p.ndim >= 2 or name.endswith("gain")) and not exempt else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
