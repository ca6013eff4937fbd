"""AFT, Adaptive Feature Transformation (§3.3): the prior-enhanced feature enters the degraded one through a
low-dimensional bridge, not directly (fusing a clean prior straight into degraded features makes artefacts).

The bridge M is a few tokens pooled from a projection of [F ‖ F_g]. Q comes from the degraded feature F, K and V
from the enhanced F_g; A_qm = softmax(Q Mᵀ/√d), A_mk = softmax(M Kᵀ/√d), out = F + proj(A_qm · (A_mk · V)).
With m bridge tokens the cost is O(H·W·m): linear in pixels. The output projection starts at zero, so an untrained
AFT passes F through.

Shapes: B batch, C channels, H×W the level's size, P = H·W pixels, m bridge tokens, n heads, d = C/n.
"""

from __future__ import annotations

import torch
from torch import nn


class AdaptiveFeatureTransformation(nn.Module):
    def __init__(self, channels: int, bridge_tokens: int = 16, num_heads: int = 1):
        super().__init__()
        self.num_heads, self.grid = num_heads, int(bridge_tokens**0.5)
        self.norm_f, self.norm_g = nn.GroupNorm(1, channels), nn.GroupNorm(1, channels)
        self.bridge = nn.Conv2d(2 * channels, channels, 1)
        self.q, self.kv = nn.Conv2d(channels, channels, 1), nn.Conv2d(channels, 2 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def heads(self, x_BCP: torch.Tensor) -> torch.Tensor:
        B, C, P = x_BCP.shape
        return x_BCP.view(B, self.num_heads, C // self.num_heads, P).transpose(2, 3)  # (B, n, P, d)

    def forward(self, feature_BCHW: torch.Tensor, enhanced_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = feature_BCHW.shape
        f, g = self.norm_f(feature_BCHW), self.norm_g(enhanced_BCHW)
        bridge = nn.functional.adaptive_avg_pool2d(self.bridge(torch.cat([f, g], 1)), self.grid)
        m_BnMd = self.heads(bridge.flatten(2))
        q_BnPd = self.heads(self.q(f).flatten(2))
        k, v = (self.heads(t.flatten(2)) for t in self.kv(g).chunk(2, dim=1))
        scale = q_BnPd.shape[-1] ** -0.5
        a_mk = (m_BnMd @ k.transpose(2, 3) * scale).softmax(-1)  # (B, n, m, P): bridge tokens gather the prior
        a_qm = (q_BnPd @ m_BnMd.transpose(2, 3) * scale).softmax(-1)  # (B, n, P, m): pixels read the bridge
        out_BnPd = a_qm @ (a_mk @ v)
        out = out_BnPd.transpose(2, 3).reshape(B, C, H, W)
        return feature_BCHW + self.proj(out)
