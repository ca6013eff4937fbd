"""Multi-scale residual quantizer (VAR, Tian et al. 2024, Alg. 1 and 2; RestoreVAR §3.1).

A latent f (B, C, h, w) becomes K token maps of growing side pn_k. At scale k the residual is
area-downsampled to pn_k, snapped to the nearest codebook entry, bicubic-upsampled back, passed
through a φ conv, and added to f̂ / removed from the residual. Coarse scales carry global content
(where the degradation lives); fine scales carry detail.

Shapes: B batch, C latent channels, h=w latent side, V vocabulary, pn side of scale k.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.restorevar.config import TokenizerConfig, check_patch_nums


class Phi(nn.Conv2d):
    """φ(h) = (1 - r)·h + r·conv3×3(h): a light residual correction after each upsampled scale."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, kernel_size=3, padding=1)
        self.ratio = ratio

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


def phi_index_table(num_scales: int, num_phi: int) -> list[int]:
    """Which of the shared φ convs scale k uses: the tick nearest to k/(K-1).

    VAR places 4 ticks at linspace(1/12, 11/12) (else linspace(1/(2n), 1 - 1/(2n))). Computed in
    float64 like the reference, whose rounding breaks the exact ties at k = 2 and 7 upward:
    [0,0,1,1,1,2,2,3,3,3] for 10 scales.
    """
    if num_phi == 1:
        return [0] * num_scales
    margin = 1 / (3 * num_phi) if num_phi == 4 else 1 / (2 * num_phi)
    ticks = np.linspace(margin, 1 - margin, num_phi)
    return [int(np.argmin(np.abs(ticks - k / max(num_scales - 1, 1)))) for k in range(num_scales)]


class MultiScaleQuantizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.patch_nums = tuple(config.patch_nums)
        self.codebook = nn.Embedding(config.vocab_size, config.latent_channels)
        self.phis = nn.ModuleList(Phi(config.latent_channels, config.phi_ratio) for _ in range(config.num_phi))
        self.phi_index = phi_index_table(len(self.patch_nums), config.num_phi)

    def extra_repr(self) -> str:
        return f"patch_nums={self.patch_nums}, phi_index={self.phi_index}"

    def _check_latent(self, side: int) -> None:
        check_patch_nums(self.patch_nums, side)

    def lookup(self, z_BCpp: torch.Tensor) -> torch.Tensor:
        """Nearest codebook index by L2 distance. (B, C, pn, pn) → (B, pn²)."""
        B, C, pn, _ = z_BCpp.shape
        z_NC = z_BCpp.permute(0, 2, 3, 1).reshape(-1, C).float()
        codes_VC = self.codebook.weight.float()
        # ‖z‖² + ‖e‖² − 2 z·e, as in VAR; ties go to the first index
        dist_NV = torch.addmm(
            z_NC.square().sum(1, keepdim=True) + codes_VC.square().sum(1), z_NC, codes_VC.T, beta=1, alpha=-2
        )
        return dist_NV.argmin(dim=1).view(B, pn * pn)

    def embed(self, idx_Bl: torch.Tensor, side: int) -> torch.Tensor:
        """Codebook vectors of one scale as a map. (B, pn²) → (B, C, pn, pn)."""
        B, length = idx_Bl.shape
        pn = math.isqrt(length)
        return self.codebook(idx_Bl).transpose(1, 2).reshape(B, -1, pn, pn)

    def upsample_and_phi(self, h_BCpp: torch.Tensor, scale: int, side: int) -> torch.Tensor:
        """Scale k's contribution to f̂: bicubic up to the latent side (not at the last scale), then φ_k."""
        if h_BCpp.shape[-1] != side:
            h_BCpp = F.interpolate(h_BCpp, size=(side, side), mode="bicubic")
        return self.phis[self.phi_index[scale]](h_BCpp)

    @torch.no_grad()
    def encode(self, f_BChw: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Tokenise a continuous latent. Returns per-scale indices [(B, pn²)] and f̂ after each scale."""
        side = f_BChw.shape[-1]
        self._check_latent(side)
        f_rest = f_BChw.float().clone()
        f_hat = torch.zeros_like(f_rest)
        indices, f_hats = [], []
        for k, pn in enumerate(self.patch_nums):
            z = F.interpolate(f_rest, size=(pn, pn), mode="area") if pn != side else f_rest
            idx_Bl = self.lookup(z)
            h = self.upsample_and_phi(self.embed(idx_Bl, side), k, side)
            f_hat = f_hat + h
            f_rest = f_rest - h
            indices.append(idx_Bl)
            f_hats.append(f_hat)
        return indices, f_hats

    def indices_to_fhat(self, indices: list[torch.Tensor], side: int) -> torch.Tensor:
        """Sum of all scales' contributions. → (B, C, side, side)."""
        self._check_latent(side)
        f_hat = 0
        for k, idx_Bl in enumerate(indices):
            f_hat = f_hat + self.upsample_and_phi(self.embed(idx_Bl, side), k, side)
        return f_hat

    def teacher_forcing_input(self, indices: list[torch.Tensor], side: int) -> torch.Tensor:
        """Transformer input for scales 1..K-1: f̂ of the earlier scales, area-downsampled to the next side.

        (B, L - 1, C); token order is scale by scale, row-major within a scale.
        """
        self._check_latent(side)
        f_hat = 0
        inputs = []
        for k in range(len(self.patch_nums) - 1):
            f_hat = f_hat + self.upsample_and_phi(self.embed(indices[k], side), k, side)
            inputs.append(self.downsample_flat(f_hat, self.patch_nums[k + 1]))
        return torch.cat(inputs, dim=1)

    @staticmethod
    def downsample_flat(f_hat_BChw: torch.Tensor, pn: int) -> torch.Tensor:
        """(B, C, h, w) → (B, pn², C) by area averaging."""
        if f_hat_BChw.shape[-1] != pn:
            f_hat_BChw = F.interpolate(f_hat_BChw, size=(pn, pn), mode="area")
        return f_hat_BChw.flatten(2).transpose(1, 2)
