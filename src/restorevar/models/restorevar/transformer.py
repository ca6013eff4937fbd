"""RestoreVAR transformer (§3.2): next-scale prediction of the clean image's tokens.

VAR-d16 without AdaLN or absolute positions. Each block is
    x += SA(LN(x))  (2D RoPE, L2-normalised q/k, KV cache at inference)
    x += FFN(LN(x))
    x += gain · CA(x, degraded latent)
The start token is VAR's null-class embedding plus a gated global context of the degraded latent.
Decoding is greedy at every scale.

Shapes: B batch, L tokens over all scales, l tokens of one scale, N condition tokens, C width,
Cv latent channels, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from restorevar.models.layers import MLP, CrossAttention, DropPath, KVCache, SelfAttention, rope_angles
from restorevar.models.restorevar.config import TokenizerConfig, TransformerConfig
from restorevar.models.restorevar.quantizer import MultiScaleQuantizer


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, drop_path: float):
        super().__init__()
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps, elementwise_affine=False)
        self.attn = SelfAttention(config.width, config.num_heads)
        self.ffn = MLP(config.width, round(config.width * config.mlp_ratio), approximate="tanh")
        self.cross_attn = CrossAttention(config.width, config.num_heads)
        self.drop_path = DropPath(drop_path)

    def forward(self, x_BlC, rope, cond_kv, *, mask_LL=None, cache=None) -> torch.Tensor:
        cos, sin = rope
        x_BlC = x_BlC + self.drop_path(self.attn(self.norm(x_BlC), cos, sin, mask_LL=mask_LL, cache=cache))
        x_BlC = x_BlC + self.drop_path(self.ffn(self.norm(x_BlC)))
        return x_BlC + self.drop_path(self.cross_attn(x_BlC, cond_kv, cos, sin))


@dataclass
class Condition:
    """What the blocks need from the degraded image, computed once per image."""

    start_BC: torch.Tensor  # start-token content (before the scale embedding)
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # cross-attention K/V per block


@dataclass
class Generation:
    indices: list[torch.Tensor]  # per scale (B, pn²)
    f_hat_BChw: torch.Tensor  # quantized latent after the last scale
    hidden_BLC: torch.Tensor  # last-block outputs of all scales (the refiner's second input)
    logits_BLV: torch.Tensor | None = None


class RestoreVARTransformer(nn.Module):
    def __init__(self, config: TransformerConfig, tokenizer: TokenizerConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.patch_nums = tuple(tokenizer.patch_nums)
        C, Cv = config.width, tokenizer.latent_channels

        # 1. token and condition embeddings
        self.token_embed = nn.Linear(Cv, C)
        self.class_embed = nn.Embedding(config.num_classes + 1, C)  # only the last (null) row is used
        self.scale_embed = nn.Embedding(len(self.patch_nums), C)
        self.cond_proj = nn.Linear(Cv, Cv)
        self.cond_embed = nn.Linear(Cv, C)
        self.cond_level_embed = nn.Embedding(1, C)
        self.global_proj = nn.Linear(Cv, C)
        self.global_gain = nn.Parameter(torch.tensor(0.0))  # 0 at init: the start token begins as VAR's

        # 2. blocks and head
        drop_rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(Block(config, p) for p in drop_rates)
        self.head_norm = nn.LayerNorm(C, eps=config.norm_eps, elementwise_affine=False)
        self.head = nn.Linear(C, tokenizer.vocab_size)

        # 3. fixed tables: RoPE for the tokens and the condition grid, scale ids, block-causal mask
        side = tokenizer.latent_size
        angles = rope_angles(self.patch_nums, side, config.head_dim, config.rope_base)
        cond_angles = rope_angles((side,), side, config.head_dim, config.rope_base)
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.register_buffer("cond_rope_cos", cond_angles.cos(), persistent=False)
        self.register_buffer("cond_rope_sin", cond_angles.sin(), persistent=False)
        scale_ids = torch.cat([torch.full((pn * pn,), k) for k, pn in enumerate(self.patch_nums)])
        self.register_buffer("scale_ids", scale_ids, persistent=False)
        self.scale_bounds = [0]
        for pn in self.patch_nums:
            self.scale_bounds.append(self.scale_bounds[-1] + pn * pn)

    def extra_repr(self) -> str:
        return f"patch_nums={self.patch_nums}, tokens={self.scale_bounds[-1]}"

    def block_causal_mask(self) -> torch.Tensor:
        """(L, L) bool: a token sees every token of its own and earlier scales."""
        return self.scale_ids[None, :] <= self.scale_ids[:, None]

    def prepare_condition(self, cond_BNCv: torch.Tensor) -> Condition:
        """Degraded latent (encoder output before quant_conv, flattened) → start token and per-block K/V."""
        c = self.cond_proj(cond_BNCv)
        start = self.class_embed.weight[-1] + self.global_gain * self.global_proj(c.mean(dim=1))
        tokens = self.cond_embed(c) + self.cond_level_embed.weight[0]
        rope = (self.cond_rope_cos, self.cond_rope_sin)
        return Condition(start, [block.cross_attn.condition_kv(tokens, *rope) for block in self.blocks])

    def logits(self, x_BlC: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_norm(x_BlC.float())).float()

    def forward(self, x_BLCv: torch.Tensor, cond_BNCv: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs of scales 1..K-1 (B, L-1, Cv) → logits of all scales (B, L, V)."""
        cond = self.prepare_condition(cond_BNCv)
        x = torch.cat([cond.start_BC[:, None], self.token_embed(x_BLCv)], dim=1) + self.scale_embed(self.scale_ids)
        mask = self.block_causal_mask()
        for block, kv in zip(self.blocks, cond.kv):
            x = block(x, (self.rope_cos, self.rope_sin), kv, mask_LL=mask)
        return self.logits(x)

    @torch.no_grad()
    def generate(
        self, cond_BNCv: torch.Tensor, quantizer: MultiScaleQuantizer, *, return_logits: bool = False
    ) -> Generation:
        """Greedy next-scale generation with a KV cache (equivalent to the block-causal mask)."""
        B, side = cond_BNCv.shape[0], self.patch_nums[-1]
        cond = self.prepare_condition(cond_BNCv)
        param = self.head.weight
        cache_shape = (B, self.config.num_heads, self.scale_bounds[-1], self.config.head_dim)
        caches = [KVCache(*cache_shape, device=param.device, dtype=cond.kv[0][0].dtype) for _ in self.blocks]
        x = (cond.start_BC + self.scale_embed.weight[0])[:, None]
        f_hat = torch.zeros(B, quantizer.codebook.embedding_dim, side, side, device=param.device)
        indices, hidden, all_logits = [], [], []
        for k in range(len(self.patch_nums)):
            begin, end = self.scale_bounds[k], self.scale_bounds[k + 1]
            rope = (self.rope_cos[begin:end], self.rope_sin[begin:end])
            for block, kv, cache in zip(self.blocks, cond.kv, caches):
                x = block(x, rope, kv, cache=cache)
            hidden.append(x)
            logits = self.logits(x)
            idx_Bl = logits.argmax(dim=-1)
            indices.append(idx_Bl)
            if return_logits:
                all_logits.append(logits)
            f_hat = f_hat + quantizer.upsample_and_phi(quantizer.embed(idx_Bl, side).to(f_hat.dtype), k, side)
            if k + 1 < len(self.patch_nums):
                next_in = quantizer.downsample_flat(f_hat, self.patch_nums[k + 1])
                x = self.token_embed(next_in.to(param.dtype)) + self.scale_embed.weight[k + 1]
        return Generation(indices, f_hat, torch.cat(hidden, dim=1), torch.cat(all_logits, 1) if return_logits else None)
