"""Blur expert (ours, not in the paper): where the input looks blurred, a deblurring CNN's latent replaces the
refiner's.

The small refiner corrects tone (haze, low light, casts) but has not learned to deblur, and on pale blurred photos
it applies a haze correction (docs/design-notes.md). Two small convolutional nets on the degraded
latent d fix that: a detector gives p = P(blur | d) (a softmax over the five kinds and "none"), and a residual
CNN deblurs, e = d + cnn(d). The latent that is decoded is d + a·(r − d) + b·(e − d). By default a = 1 − p and
b = p: the expected latent under the detector's belief, r + p·(e − r). Trained on their own by the `blur_expert`
stage, after the other stages; the rest of the model is frozen.

The optional mixer (the `mixer` stage, last) corrects a and b per latent position, from r, d and e themselves:
the detector is unsure of blur (p ≈ 0.3 on blurred crops), and how far to trust the refiner differs by kind and
by region (it under-corrects dark and hazy regions). It starts at zero, i.e. at the detector's rule.

Shapes: B batch, C latent channels, h×w latent, W the expert's width, M the mixer's.
"""

from __future__ import annotations

import torch
from torch import nn

from restorevar.models.extensions.config import BlurExpertConfig
from restorevar.models.restorevar.vqvae import ResnetBlock, group_norm

GROUPS = 8


class Mixer(nn.Module):
    """Corrections (Δa, Δb) to the detector's weights: a global part from each map's per-channel mean and spread
    and the detector's log-probabilities, plus a local part from a small CNN on the maps."""

    def __init__(self, latent_channels: int, width: int, num_classes: int):
        super().__init__()
        C, M = latent_channels, width
        self.global_net = nn.Sequential(
            nn.Linear(6 * C + num_classes, M), nn.SiLU(), nn.Linear(M, M), nn.SiLU(), nn.Linear(M, 2)
        )
        self.local_net = nn.Sequential(
            nn.Conv2d(3 * C, M, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(M, M, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(M, 2, 3, padding=1),
        )
        for last in (self.global_net[-1], self.local_net[-1]):  # starts at the detector's rule
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, maps_B3Chw: torch.Tensor, kind_probs_BK: torch.Tensor) -> torch.Tensor:
        """(B, 2, h, w): Δa and Δb, from [d, r − d, e − d] stacked on channels and the detector's belief."""
        stats = torch.cat([maps_B3Chw.mean((2, 3)), maps_B3Chw.std((2, 3)), kind_probs_BK.clamp_min(1e-6).log()], 1)
        return self.global_net(stats)[:, :, None, None] + self.local_net(maps_B3Chw)


class BlurExpert(nn.Module):
    def __init__(self, latent_channels: int, config: BlurExpertConfig):
        super().__init__()
        config.validate()
        self.config = config
        # the detector tells all the classes apart, which teaches it more than blur-or-not
        self.blur_class = config.classes.index("blur")
        C, W, blocks, mixer_width = latent_channels, config.width, config.blocks, config.mixer_width
        # the detector: two stride-2 convolutions, then the mean and spread of each feature over the map
        self.detector = nn.Sequential(
            nn.Conv2d(C, W, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(W, W, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(W, W, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.detector_head = nn.Linear(2 * W, len(config.classes))
        with torch.no_grad():  # untrained, p(blur) ≈ 0.004: nearly a no-op; random weights, so that it learns
            self.detector_head.bias.zero_()
            self.detector_head.bias[self.blur_class] = -4.0
        self.deblur = nn.Sequential(
            nn.Conv2d(C, W, 3, padding=1),
            *(ResnetBlock(W, W, GROUPS) for _ in range(blocks)),
            group_norm(W, GROUPS),
            nn.SiLU(),
            nn.Conv2d(W, C, 3, padding=1),
        )
        nn.init.zeros_(self.deblur[-1].weight)  # starts as the identity on d
        nn.init.zeros_(self.deblur[-1].bias)
        self.mixer = Mixer(C, mixer_width, len(config.classes)) if mixer_width else None

    def kind_logits(self, degraded_BChw: torch.Tensor) -> torch.Tensor:
        """(B, len(classes)) logits of the degradation, from the degraded latent."""
        h_BWhw = self.detector(degraded_BChw)
        return self.detector_head(torch.cat([h_BWhw.mean((2, 3)), h_BWhw.std((2, 3))], 1))

    def p_blur(self, degraded_BChw: torch.Tensor) -> torch.Tensor:
        return self.kind_logits(degraded_BChw).softmax(1)[:, self.blur_class]

    def deblurred(self, degraded_BChw: torch.Tensor) -> torch.Tensor:
        return degraded_BChw + self.deblur(degraded_BChw)

    def forward(self, refined_BChw: torch.Tensor, degraded_BChw: torch.Tensor) -> torch.Tensor:
        d = degraded_BChw
        return self.mix(refined_BChw, d, self.deblurred(d), self.kind_logits(d).softmax(1))

    def mix(
        self,
        refined_BChw: torch.Tensor,
        degraded_BChw: torch.Tensor,
        deblurred_BChw: torch.Tensor,
        kind_probs_BK: torch.Tensor,
    ) -> torch.Tensor:
        """d + a·(r − d) + b·(e − d), given the deblurred latent e and the detector's belief."""
        d = degraded_BChw
        to_refined, to_deblurred = refined_BChw - d, deblurred_BChw - d
        p_blur = kind_probs_BK[:, self.blur_class].view(-1, 1, 1, 1)
        a_B1hw, b_B1hw = 1 - p_blur, p_blur
        if self.mixer is not None:
            delta_B2hw = self.mixer(torch.cat([d, to_refined, to_deblurred], 1), kind_probs_BK)
            a_B1hw, b_B1hw = a_B1hw + delta_B2hw[:, :1], b_B1hw + delta_B2hw[:, 1:]
        return d + a_B1hw * to_refined + b_B1hw * to_deblurred
