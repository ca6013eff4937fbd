"""The restoration backbone (§3.3): a NAFNet-style U-Net on the full-resolution image, with the VAR prior fused at
every encoder and decoder level (DAE, then AFT) and an adaptive mix-up skip between them.

NAFNet's blocks (layer norm, pointwise and depthwise convolutions, a simple gate instead of activations,
simplified channel attention) are cheap per pixel, which is what a CPU budget at full resolution needs. The output
is the input plus a residual, and every block starts as the identity (NAFNet's residual scales at zero).

Shapes: B batch, C channels, H×W the image; K scales, Cp prior channels, h×w the prior's grid (H/16 × W/16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.varformer.aft import AdaptiveFeatureTransformation
from restorevar.models.varformer.config import BackboneConfig
from restorevar.models.varformer.dae import DegradationAwareEnhancement


class ChannelNorm(nn.Module):
    """Layer norm over the channels of each pixel."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x_BCHW.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias).permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        C = channels
        self.mix = nn.Sequential(
            ChannelNorm(C), nn.Conv2d(C, 2 * C, 1), nn.Conv2d(2 * C, 2 * C, 3, padding=1, groups=2 * C), SimpleGate()
        )
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(C, C, 1))
        self.mix_out = nn.Conv2d(C, C, 1)
        self.ffn = nn.Sequential(ChannelNorm(C), nn.Conv2d(C, 2 * C, 1), SimpleGate(), nn.Conv2d(C, C, 1))
        # residual scales start at zero: every block starts as the identity
        self.beta, self.gamma = nn.Parameter(torch.zeros(1, C, 1, 1)), nn.Parameter(torch.zeros(1, C, 1, 1))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        y = self.mix(x_BCHW)
        x_BCHW = x_BCHW + self.beta * self.mix_out(y * self.attention(y))
        return x_BCHW + self.gamma * self.ffn(x_BCHW)


class PriorFusion(nn.Module):
    """DAE, then AFT, at one level; the identity when the backbone runs without a prior."""

    def __init__(self, channels: int, config: BackboneConfig, prior_channels: int, num_scales: int):
        super().__init__()
        has_prior = config.prior != "none"
        self.dae = (
            DegradationAwareEnhancement(channels, prior_channels, num_scales, config.prior) if has_prior else None
        )
        self.aft = AdaptiveFeatureTransformation(channels, config.bridge_tokens) if config.use_aft else None

    def forward(self, x_BCHW: torch.Tensor, priors_BKChw: torch.Tensor | None, latent_BChw: torch.Tensor | None):
        if self.dae is None:
            return x_BCHW
        enhanced = self.dae(x_BCHW, priors_BKChw, latent_BChw)
        return enhanced if self.aft is None else self.aft(x_BCHW, enhanced)


class MixupSkip(nn.Module):
    """σ(θ)·skip + (1 − σ(θ))·x per channel, θ learned (starts at an even blend); or the plain sum."""

    def __init__(self, channels: int, adaptive: bool):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(1, channels, 1, 1)) if adaptive else None

    def forward(self, x_BCHW: torch.Tensor, skip_BCHW: torch.Tensor) -> torch.Tensor:
        if self.theta is None:
            return x_BCHW + skip_BCHW
        w = torch.sigmoid(self.theta)
        return w * skip_BCHW + (1 - w) * x_BCHW


class Backbone(nn.Module):
    def __init__(self, config: BackboneConfig, prior_channels: int, num_scales: int):
        super().__init__()
        widths = [config.width * 2**level for level in range(config.num_levels + 1)]
        fusion = lambda c: PriorFusion(c, config, prior_channels, num_scales)  # noqa: E731
        self.intro = nn.Conv2d(3, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(*(NAFBlock(c) for _ in range(n))) for c, n in zip(widths, config.encoder_blocks)
        )
        self.encoder_fusions = nn.ModuleList(fusion(c) for c in widths[:-1])
        self.downs = nn.ModuleList(nn.Conv2d(c, 2 * c, 2, stride=2) for c in widths[:-1])
        self.middle = nn.Sequential(*(NAFBlock(widths[-1]) for _ in range(config.middle_blocks)))
        self.ups = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * c, 4 * c, 1), nn.PixelShuffle(2)) for c in widths[:-1])
        self.skips = nn.ModuleList(MixupSkip(c, config.use_mixup_skip) for c in widths[:-1])
        self.decoders = nn.ModuleList(
            nn.Sequential(*(NAFBlock(c) for _ in range(n))) for c, n in zip(widths, config.decoder_blocks)
        )
        self.decoder_fusions = nn.ModuleList(fusion(c) for c in widths[:-1])
        # not zero-initialised: with every block's residual scale at zero too, gradients could not reach the
        # blocks until the ending had grown (an identity start measured 0.0 dB after 200 steps)
        self.ending = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(
        self,
        image_B3HW: torch.Tensor,
        priors_BKChw: torch.Tensor | None = None,
        latent_BChw: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Degraded image in [-1, 1] (+ the VAR prior) → restored image in [-1, 1] (not clamped)."""
        x = self.intro(image_B3HW)
        skips = []
        for encoder, fuse, down in zip(self.encoders, self.encoder_fusions, self.downs):
            x = fuse(encoder(x), priors_BKChw, latent_BChw)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, skip, decoder, fuse, saved in zip(
            self.ups[::-1], self.skips[::-1], self.decoders[::-1], self.decoder_fusions[::-1], skips[::-1]
        ):
            x = fuse(decoder(skip(up(x), saved)), priors_BKChw, latent_BChw)
        return image_B3HW + self.ending(x)
