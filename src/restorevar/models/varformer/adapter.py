"""Stage-1 adapter (§3.2): self-attention blocks after the frozen VAR encoder, so that a degraded image's latent
moves towards what the frozen VAR expects of a clean one, without fine-tuning the VAR.

Trained with the feature matching loss (training/stages/varformer_adapter.py): cross-entropy of the frozen
transformer's next-scale predictions against the clean image's tokens, plus L2 from the adapted latent to the
clean image's quantised latent. The output layer starts at zero: an untrained adapter is the identity.

Shapes: B batch, C latent channels, h×w latent, N = h·w tokens, D the adapter's width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.varformer.config import AdapterConfig


class AdapterBlock(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x_BND: torch.Tensor) -> torch.Tensor:
        q, k, v = (
            t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in self.qkv(self.norm1(x_BND)).chunk(3, dim=-1)
        )
        x_BND = x_BND + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
        return x_BND + self.mlp(self.norm2(x_BND))


class LatentAdapter(nn.Module):
    def __init__(self, config: AdapterConfig, latent_channels: int, latent_size: int):
        super().__init__()
        C, D = latent_channels, config.width
        self.proj_in = nn.Linear(C, D)
        self.pos_embed = nn.Parameter(torch.randn(1, latent_size**2, D) * 0.02)
        self.blocks = nn.ModuleList(AdapterBlock(D, config.num_heads) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(D)
        self.proj_out = nn.Linear(D, C)
        nn.init.zeros_(self.proj_out.weight)  # starts as the identity: the VAR sees what it saw before
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, latent_BChw: torch.Tensor) -> torch.Tensor:
        """The encoder's continuous latent (B, C, h, w) → the adapted latent, same shape."""
        x_BNC = latent_BChw.flatten(2).transpose(1, 2)
        x_BND = self.proj_in(x_BNC) + self.pos_embed
        for block in self.blocks:
            x_BND = block(x_BND)
        return latent_BChw + self.proj_out(self.norm_out(x_BND)).transpose(1, 2).reshape(latent_BChw.shape)
