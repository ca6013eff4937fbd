"""Blur expert (ours, not in the paper): where the input looks blurred, a deblurring CNN's latent replaces the
refiner's.

The small refiner corrects tone (haze, low light, casts) but has not learned to deblur, and on pale blurred photos
it applies a haze correction (docs/default-model.md, sessions 4–9). Two small convolutional nets on the degraded
latent d fix that: a detector gives p = P(blur | d) (a softmax over the five kinds and "none"), and a residual
CNN deblurs, d + cnn(d). The latent that is decoded is r + p·(d + cnn(d) − r), the expected latent under the
detector's belief. Trained on their own by the `blur_expert` stage, after the other stages; the rest of the
model is frozen.

Shapes: B batch, C latent channels, h×w latent, W the expert's width.
"""

from __future__ import annotations

import torch
from torch import nn

from .degradations import DEGRADATIONS
from .vqvae import ResnetBlock, group_norm

GROUPS = 8
DETECTED = (*DEGRADATIONS, "none")  # the detector tells all of them apart, which teaches it more than blur-or-not
BLUR = DETECTED.index("blur")


class BlurExpert(nn.Module):
    def __init__(self, latent_channels: int, width: int, blocks: int):
        super().__init__()
        C, W = latent_channels, width
        # the detector: two stride-2 convolutions, then the mean and spread of each feature over the map
        self.detector = nn.Sequential(
            nn.Conv2d(C, W, 3, padding=1), nn.SiLU(),
            nn.Conv2d(W, W, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(W, W, 3, stride=2, padding=1), nn.SiLU(),
        )
        self.detector_head = nn.Linear(2 * W, len(DETECTED))
        with torch.no_grad():  # untrained, p(blur) ≈ 0.004: nearly a no-op; random weights, so that it learns
            self.detector_head.bias.zero_()
            self.detector_head.bias[BLUR] = -4.0
        self.deblur = nn.Sequential(
            nn.Conv2d(C, W, 3, padding=1),
            *(ResnetBlock(W, W, GROUPS) for _ in range(blocks)),
            group_norm(W, GROUPS), nn.SiLU(),
            nn.Conv2d(W, C, 3, padding=1),
        )
        nn.init.zeros_(self.deblur[-1].weight)  # starts as the identity on d
        nn.init.zeros_(self.deblur[-1].bias)

    def kind_logits(self, degraded_BChw: torch.Tensor) -> torch.Tensor:
        """(B, len(DETECTED)) logits of the degradation, from the degraded latent."""
        h_BWhw = self.detector(degraded_BChw)
        return self.detector_head(torch.cat([h_BWhw.mean((2, 3)), h_BWhw.std((2, 3))], 1))

    def p_blur(self, degraded_BChw: torch.Tensor) -> torch.Tensor:
        return self.kind_logits(degraded_BChw).softmax(1)[:, BLUR]

    def deblurred(self, degraded_BChw: torch.Tensor) -> torch.Tensor:
        return degraded_BChw + self.deblur(degraded_BChw)

    def forward(self, refined_BChw: torch.Tensor, degraded_BChw: torch.Tensor) -> torch.Tensor:
        p_blur = self.p_blur(degraded_BChw).view(-1, 1, 1, 1)
        return refined_BChw + p_blur * (self.deblurred(degraded_BChw) - refined_BChw)
