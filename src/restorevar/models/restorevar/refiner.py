"""Latent refiner transformer, LRT (§3.3): discrete latent + transformer states → continuous latent.

The quantized f̂ loses detail to the codebook. The LRT reads f̂'s tokens, cross-attends to the
transformer's last-block hidden states of every scale, and predicts a residual on f̂; the result is
decoded by the VQVAE decoder fine-tuned for continuous latents. Plain pre-norm ViT layers with learned
absolute positions (no RoPE), exact GELU and 1/√d attention.

Shapes: B batch, N latent tokens (h·w), L transformer tokens, D width, Cv latent channels, Ct
transformer width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.layers import MLP
from restorevar.models.restorevar.config import RefinerConfig, TokenizerConfig, TransformerConfig


def split_heads(x_BLD: torch.Tensor, num_heads: int) -> torch.Tensor:
    return x_BLD.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x_BHLd: torch.Tensor) -> torch.Tensor:
    return x_BHLd.transpose(1, 2).flatten(2)


class RefinerSelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x_BND: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(self.norm(x_BND)).chunk(3, dim=-1))
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class RefinerCrossAttention(nn.Module):
    """No gate here, unlike the transformer's cross-attention."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.q = nn.Linear(width, width, bias=False)
        self.kv = nn.Linear(width, 2 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x_BND: torch.Tensor, cond_BLD: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q(self.norm_q(x_BND)), self.num_heads)
        k, v = (split_heads(t, self.num_heads) for t in self.kv(self.norm_kv(cond_BLD)).chunk(2, dim=-1))
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class PreNormMLP(MLP):
    def __init__(self, width: int, hidden: int):
        super().__init__(width, hidden, approximate="none")  # exact GELU, unlike the transformer's tanh
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.norm(x))


class RefinerLayer(nn.Module):
    def __init__(self, config: RefinerConfig):
        super().__init__()
        self.self_attn = RefinerSelfAttention(config.width, config.num_heads)
        self.mlp = PreNormMLP(config.width, config.mlp_dim)
        self.cross_attn = RefinerCrossAttention(config.width, config.num_heads)

    def forward(self, x_BND: torch.Tensor, cond_BLD: torch.Tensor) -> torch.Tensor:
        x_BND = x_BND + self.self_attn(x_BND)
        x_BND = x_BND + self.mlp(x_BND)
        return x_BND + self.cross_attn(x_BND, cond_BLD)


class LatentRefiner(nn.Module):
    def __init__(self, config: RefinerConfig, tokenizer: TokenizerConfig, transformer: TransformerConfig):
        super().__init__()
        config.validate()
        self.config = config
        D, Cv, Ct = config.width, tokenizer.latent_channels, transformer.width
        self.norm_in = nn.LayerNorm(Cv)
        self.proj_in = nn.Linear(Cv, D, bias=False)
        self.pos_embed = nn.Parameter(torch.randn(1, tokenizer.latent_size**2, D) * 0.02)
        self.cond_norm_in = nn.LayerNorm(Ct)
        self.cond_proj_in = nn.Linear(Ct, D, bias=False)
        self.cond_pos_embed = nn.Parameter(torch.randn(1, tokenizer.num_tokens, D) * 0.02)
        self.layers = nn.ModuleList(RefinerLayer(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(D)
        self.proj_out = nn.Linear(D, Cv, bias=False)

    def embed(self, f_hat_BNCv: torch.Tensor) -> torch.Tensor:
        return self.proj_in(self.norm_in(f_hat_BNCv)) + self.pos_embed

    def run_layers(self, x_BND: torch.Tensor, hidden_BLCt: torch.Tensor) -> torch.Tensor:
        """The layers, cross-attending to the transformer's states, then the output projection (B, N, Cv)."""
        cond = self.cond_proj_in(self.cond_norm_in(hidden_BLCt)) + self.cond_pos_embed
        for layer in self.layers:
            x_BND = layer(x_BND, cond)
        return self.proj_out(self.norm_out(x_BND))

    def forward(self, f_hat_BNCv: torch.Tensor, hidden_BLCt: torch.Tensor) -> torch.Tensor:
        """Quantized latent tokens + last-block states → continuous latent tokens: a residual on f̂."""
        return self.run_layers(self.embed(f_hat_BNCv), hidden_BLCt) + f_hat_BNCv

    def refine_latent(self, f_hat_BChw: torch.Tensor, hidden_BLCt: torch.Tensor) -> torch.Tensor:
        """Map-shaped wrapper: (B, Cv, h, w) → (B, Cv, h, w)."""
        B, C, h, w = f_hat_BChw.shape
        tokens = self(f_hat_BChw.flatten(2).transpose(1, 2), hidden_BLCt)
        return tokens.transpose(1, 2).reshape(B, C, h, w)
