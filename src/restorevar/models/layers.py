"""Shared transformer parts: 2D RoPE, L2-normalised self-attention with a KV cache, cross-attention
with a once-per-image K/V, MLP and drop path.

Shapes: B batch, L tokens, N condition tokens, C width, H heads, d head_dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOG_SCALE = math.log(100.0)  # VAR clamps the learned attention temperature at 100


def rope_angles(patch_nums: tuple[int, ...], final_side: int, head_dim: int, base: float) -> torch.Tensor:
    """Rotation angles of 2D RoPE for all tokens of the given scales, concatenated. → (L, d/2).

    A token (i, j) of a pn×pn map sits at (i·S/pn, j·S/pn) on the final S×S grid, so every scale
    shares one coordinate frame. The first d/4 pairs rotate with the row, the last d/4 with the column;
    frequencies are base^(−4m/d). Computed in float32 exactly as the reference tables.
    """
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    tables = []
    for pn in patch_nums:
        pos = torch.arange(pn, dtype=torch.float32) / pn * final_side
        axis = torch.outer(pos, freqs)  # (pn, d/4)
        rows = axis[:, None, :].expand(pn, pn, -1)
        cols = axis[None, :, :].expand(pn, pn, -1)
        tables.append(torch.cat([rows, cols], dim=-1).reshape(pn * pn, -1))
    return torch.cat(tables)


def apply_rope(x_BHLd: torch.Tensor, cos_Lp: torch.Tensor, sin_Lp: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent (even, odd) pairs of the head vector (GPT-J / LLaMA interleaving), in float32."""
    x0, x1 = x_BHLd.float().unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([x0 * cos_Lp - x1 * sin_Lp, x0 * sin_Lp + x1 * cos_Lp], dim=-1)
    return rotated.flatten(-2).type_as(x_BHLd)


def l2_attention_scale(log_scale_1H11: torch.Tensor) -> torch.Tensor:
    return log_scale_1H11.clamp_max(MAX_LOG_SCALE).exp()


class KVCache:
    """Preallocated keys/values of all earlier scales for one block (no torch.cat in the loop)."""

    def __init__(self, batch: int, num_heads: int, max_len: int, head_dim: int, *, device, dtype):
        self.k = torch.empty(batch, num_heads, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.length = 0

    def append(self, k_BHld: torch.Tensor, v_BHld: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k_BHld.shape[2]
        self.k[:, :, self.length : end] = k_BHld
        self.v[:, :, self.length : end] = v_BHld
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class SelfAttention(nn.Module):
    """VAR's attention: q/k L2-normalised, learned per-head temperature, then RoPE; no k bias."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width), persistent=False)
        self.log_scale = nn.Parameter(torch.full((1, num_heads, 1, 1), math.log(4.0)))
        self.proj = nn.Linear(width, width)

    def forward(self, x_BLC, cos_Lp, sin_Lp, *, mask_LL=None, cache: KVCache | None = None) -> torch.Tensor:
        B, L, C = x_BLC.shape
        bias = torch.cat([self.q_bias, self.zero_k_bias, self.v_bias])
        qkv = F.linear(x_BLC, self.qkv.weight, bias).view(B, L, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × (B, H, L, d)
        q = F.normalize(q, dim=-1) * l2_attention_scale(self.log_scale)
        k = F.normalize(k, dim=-1)
        q, k = apply_rope(q, cos_Lp, sin_Lp), apply_rope(k, cos_Lp, sin_Lp)
        if cache is not None:
            k, v = cache.append(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_LL, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class CrossAttention(nn.Module):
    """Attention from the tokens to the degraded image's latent, scaled by a scalar gain (0 at init).

    The condition is constant over scales, so `condition_kv` runs once per image and block.
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.q_proj = nn.Linear(width, width, bias=False)
        self.kv_proj = nn.Linear(width, 2 * width, bias=False)
        self.log_scale = nn.Parameter(torch.full((1, num_heads, 1, 1), math.log(4.0)))
        self.out_proj = nn.Linear(width, width)
        self.gain = nn.Parameter(torch.tensor(0.0))  # 0 at init: training starts from plain VAR-d16

    def condition_kv(self, cond_BNC, cos_Np, sin_Np) -> tuple[torch.Tensor, torch.Tensor]:
        B, N, C = cond_BNC.shape
        k, v = self.kv_proj(self.norm_kv(cond_BNC)).chunk(2, dim=-1)  # first half is K
        k = k.view(B, N, self.num_heads, -1).transpose(1, 2)
        v = v.view(B, N, self.num_heads, -1).transpose(1, 2)
        return apply_rope(F.normalize(k, dim=-1), cos_Np, sin_Np), v

    def forward(self, x_BLC, cond_kv, cos_Lp, sin_Lp) -> torch.Tensor:
        B, L, C = x_BLC.shape
        q = self.q_proj(self.norm_q(x_BLC)).view(B, L, self.num_heads, -1).transpose(1, 2)
        q = apply_rope(F.normalize(q, dim=-1) * l2_attention_scale(self.log_scale), cos_Lp, sin_Lp)
        out = F.scaled_dot_product_attention(q, *cond_kv, scale=1.0)
        return self.gain * self.out_proj(out.transpose(1, 2).reshape(B, L, C))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, approximate: str):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (training only)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)
