"""Multi-scale residual VQVAE: VAR's tokenizer (RestoreVAR §3.1), and the decoder of §3.3.

Conv layout of LDM's vq-f16 as used by VAR: `base_channels × channel_mult` per level, `num_res_blocks`
residual blocks per encoder level (one more per decoder level), single-head attention at the lowest
level and in the middle, GroupNorm(32, eps 1e-6) + SiLU. Images are in [-1, 1].

Ours, off in the paper's presets: `patch_size` folds pixel patches into channels first, and
`linear_path` adds a 1×1 linear map beside the conv stack, started at the patches' PCA.

The restoration transformer is conditioned on `encode_continuous` (the encoder output *before*
`quant_conv`), and the decoder turns the refiner's continuous latent back into an image.

Shapes: B batch, C channels, H×W image, h×w latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.restorevar.config import TokenizerConfig
from restorevar.models.restorevar.quantizer import MultiScaleQuantizer


def to_unit(image_B3HW: torch.Tensor) -> torch.Tensor:
    """A decoded image ([-1, 1], unclamped, any dtype) as float32 in [0, 1]."""
    return (image_B3HW.float().clamp(-1, 1) + 1) / 2


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention; one 1×1 conv makes q|k|v."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, 1, C, H * W).transpose(-1, -2).unbind(1)  # (B, 1, HW, C)
        h = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(h.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    """Stride-2 3×3 conv after padding only right and bottom (VAR/LDM convention)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level; the `block`/`attn`/`downsample`/`upsample` names match the official keys."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module], resample: tuple[str, nn.Module] | None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        self.resample_name = resample[0] if resample else None
        if resample:
            self.add_module(*resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        return getattr(self, self.resample_name)(x) if self.resample_name else x


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int, use_attention: bool):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups) if use_attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        ch, mult, groups = config.base_channels, config.channel_mult, config.norm_groups
        last = len(mult) - 1
        self.unfold = nn.PixelUnshuffle(config.patch_size) if config.patch_size > 1 else nn.Identity()
        self.conv_in = nn.Conv2d(3 * config.patch_size**2, ch, 3, padding=1)
        self.down = nn.ModuleList()
        in_ch = ch
        for level, m in enumerate(mult):
            out_ch = ch * m
            blocks = [ResnetBlock(in_ch if i == 0 else out_ch, out_ch, groups) for i in range(config.num_res_blocks)]
            use_attn = config.use_attention and level == last
            attns = [AttnBlock(out_ch, groups) for _ in blocks] if use_attn else []
            resample = ("downsample", Downsample(out_ch)) if level != last else None
            self.down.append(Level(blocks, attns, resample))
            in_ch = out_ch
        self.mid = MidBlock(in_ch, groups, config.use_attention)
        self.norm_out = group_norm(in_ch, groups)
        self.conv_out = nn.Conv2d(in_ch, config.latent_channels, 3, padding=1)
        self.linear = nn.Conv2d(3 * config.patch_size**2, config.latent_channels, 1) if config.linear_path else None

    def forward(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        patches = self.unfold(image_B3HW)
        h = self.conv_in(patches)
        for level in self.down:
            h = level(h)
        latent = self.conv_out(F.silu(self.norm_out(self.mid(h))))
        return latent + self.linear(patches) if self.linear is not None else latent


class Decoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        ch, mult, groups = config.base_channels, config.channel_mult, config.norm_groups
        last = len(mult) - 1
        in_ch = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.latent_channels, in_ch, 3, padding=1)
        self.mid = MidBlock(in_ch, groups, config.use_attention)
        levels = {}
        for level in reversed(range(len(mult))):  # built and run from the lowest resolution up
            out_ch = ch * mult[level]
            blocks = [
                ResnetBlock(in_ch if i == 0 else out_ch, out_ch, groups) for i in range(config.num_res_blocks + 1)
            ]
            use_attn = config.use_attention and level == last
            attns = [AttnBlock(out_ch, groups) for _ in blocks] if use_attn else []
            resample = ("upsample", Upsample(out_ch)) if level != 0 else None
            levels[level] = Level(blocks, attns, resample)
            in_ch = out_ch
        self.up = nn.ModuleList(levels[level] for level in range(len(mult)))  # indexed by level, as in VAR
        self.norm_out = group_norm(in_ch, groups)
        self.conv_out = nn.Conv2d(in_ch, 3 * config.patch_size**2, 3, padding=1)
        self.linear = nn.Conv2d(config.latent_channels, 3 * config.patch_size**2, 1) if config.linear_path else None
        self.fold = nn.PixelShuffle(config.patch_size) if config.patch_size > 1 else nn.Identity()

    def forward(self, latent_BChw: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(latent_BChw))
        for level in reversed(self.up):
            h = level(h)
        patches = self.conv_out(F.silu(self.norm_out(h)))
        return self.fold(patches + self.linear(latent_BChw) if self.linear is not None else patches)


class VQVAE(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 3, padding=1)
        self.quantizer = MultiScaleQuantizer(config)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 3, padding=1)
        self.decoder = Decoder(config)

    def encode_continuous(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        """Encoder output before `quant_conv`: the transformer's condition. [-1,1] → (B, C, h, w)."""
        return self.encoder(image_B3HW)

    def encode_latent(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        """Continuous latent f = quant_conv(encoder(x)): what the quantizer tokenises, and the refiner's target."""
        return self.quant_conv(self.encoder(image_B3HW))

    def tokenize(self, image_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Per-scale token indices [(B, pn_k²)], coarse to fine."""
        indices, _ = self.quantizer.encode(self.encode_latent(image_B3HW))
        return indices

    def decode_latent(self, latent_BChw: torch.Tensor) -> torch.Tensor:
        """Decode a (quantized or continuous) latent to an image, unclamped. → (B, 3, H, W)."""
        return self.decoder(self.post_quant_conv(latent_BChw))

    def decode_indices(self, indices: list[torch.Tensor]) -> torch.Tensor:
        return self.decode_latent(self.quantizer.indices_to_fhat(indices, self.config.latent_size))


@torch.no_grad()
def fit_linear_path(vqvae: VQVAE, images_B3HW: torch.Tensor) -> None:
    """Start a `linear_path` tokenizer at the PCA of its patches: the linear maps project onto the top
    principal components and back, the conv branches output zero and quant_conv/post_quant_conv pass the
    latent through. One scale for all components keeps latent L2 distances proportional to pixel L2
    distances; it makes the first component's std 1, so latents are O(1) like a trained encoder's."""
    encoder, decoder = vqvae.encoder, vqvae.decoder
    if encoder.linear is None:
        raise ValueError("fit_linear_path needs a tokenizer built with linear_path=True")
    patches_NP = encoder.unfold(images_B3HW.float()).permute(0, 2, 3, 1).flatten(0, 2).double()
    mean_P = patches_NP.mean(0)
    _, singular_P, basis_PP = torch.linalg.svd(patches_NP - mean_P, full_matrices=False)
    scale = len(patches_NP) ** 0.5 / singular_P[0]
    basis_CP = basis_PP[: vqvae.config.latent_channels]
    encoder.linear.weight.copy_(scale * basis_CP[:, :, None, None])
    encoder.linear.bias.copy_(-scale * basis_CP @ mean_P)
    decoder.linear.weight.copy_(basis_CP.T[:, :, None, None] / scale)
    decoder.linear.bias.copy_(mean_P)
    for conv in (encoder.conv_out, decoder.conv_out):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    for conv in (vqvae.quant_conv, vqvae.post_quant_conv):
        nn.init.dirac_(conv.weight)
        nn.init.zeros_(conv.bias)


@torch.no_grad()
def fit_linear_decoder(vqvae: VQVAE, images_B3HW: torch.Tensor, chunk: int = 8) -> None:
    """Start a fresh decoder for a trained encoder: its conv branch re-initialised with zero output,
    post_quant_conv the identity, and the linear path the least-squares map from the continuous latent f
    to the image patches. For a `linear_path` tokenizer this is the best decoder that is linear in f,
    so training starts at that ceiling, as `fit_linear_path` does for a new tokenizer."""
    decoder = vqvae.decoder
    if decoder.linear is None:
        raise ValueError("fit_linear_decoder needs a tokenizer built with linear_path=True")
    C = vqvae.config.latent_channels
    gram, cross = 0.0, 0.0
    for images in images_B3HW.split(chunk):  # normal equations, one chunk at a time
        latent_NC = vqvae.encode_latent(images.float()).permute(0, 2, 3, 1).flatten(0, 2).double()
        latent_NC1 = torch.cat([latent_NC, torch.ones_like(latent_NC[:, :1])], 1)
        patches_NP = vqvae.encoder.unfold(images.float()).permute(0, 2, 3, 1).flatten(0, 2).double()
        gram, cross = gram + latent_NC1.T @ latent_NC1, cross + latent_NC1.T @ patches_NP
    ridge = 1e-6 * torch.eye(C + 1, dtype=torch.float64, device=images_B3HW.device)
    map_C1P = torch.linalg.solve(gram + ridge, cross)
    for module in decoder.modules():
        if module is not decoder and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    decoder.linear.weight.copy_(map_C1P[:C].T[:, :, None, None])
    decoder.linear.bias.copy_(map_C1P[C])
    nn.init.zeros_(decoder.conv_out.weight)
    nn.init.zeros_(decoder.conv_out.bias)
    nn.init.dirac_(vqvae.post_quant_conv.weight)
    nn.init.zeros_(vqvae.post_quant_conv.bias)
