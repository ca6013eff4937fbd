"""DAE, Degradation-Aware Enhancement (§3.3): each backbone level picks its own mix of the K scale priors.

Coarse scales carry global degradations (haze, low light), fine scales local ones (rain, noise), so one fixed mix
cannot serve every input. From the VAR encoder's latent of the degraded image, the level computes weights over the
K scales; the weighted prior is mapped to the level's channels and size; then a per-pixel two-way softmax gate
blends the level's feature F with it: F_g = F·g₁ + Ŝ·g₂.

Ours: the paper computes the weights with Swin blocks and the gate with an RSTB; small convolutions stand in for
both on CPU budgets. `mode="fixed"` is the ablation's "VAR prior with fixed weights": equal weights, the prior added.

Shapes: B batch, K scales, Cp prior channels, h×w the prior's grid, C and H×W the level's channels and size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScaleWeights(nn.Module):
    """(B, Cp, h, w) degraded latent → (B, K) softmax weights over the scales, per image."""

    def __init__(self, prior_channels: int, num_scales: int, hidden: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(prior_channels, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.head = nn.Linear(2 * hidden, num_scales)
        nn.init.zeros_(self.head.weight)  # starts at equal weights
        nn.init.zeros_(self.head.bias)

    def forward(self, latent_BChw: torch.Tensor) -> torch.Tensor:
        h = self.features(latent_BChw)
        return self.head(torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)).softmax(1)


class DegradationAwareEnhancement(nn.Module):
    def __init__(self, channels: int, prior_channels: int, num_scales: int, mode: str = "dae"):
        super().__init__()
        self.mode = mode
        self.scale_weights = ScaleWeights(prior_channels, num_scales) if mode == "dae" else None
        self.project = nn.Conv2d(prior_channels, channels, 1)  # M: the prior in the level's channels
        self.gate = nn.Conv2d(2 * channels, 2, 3, padding=1) if mode == "dae" else None

    def forward(self, feature_BCHW: torch.Tensor, priors_BKChw: torch.Tensor, latent_BChw: torch.Tensor):
        if self.scale_weights is None:
            mixed = priors_BKChw.mean(1)
        else:
            mixed = (self.scale_weights(latent_BChw)[:, :, None, None, None] * priors_BKChw).sum(1)
        prior_BCHW = F.interpolate(
            self.project(mixed), size=feature_BCHW.shape[-2:], mode="bilinear", align_corners=False
        )
        if self.gate is None:
            return feature_BCHW + prior_BCHW
        g_B2HW = self.gate(torch.cat([feature_BCHW, prior_BCHW], 1)).softmax(1)
        return feature_BCHW * g_B2HW[:, :1] + prior_BCHW * g_B2HW[:, 1:]
