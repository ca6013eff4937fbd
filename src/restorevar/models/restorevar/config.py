"""Typed configs for the three RestoreVAR components (the paper's model), with a strict JSON round trip.

Shared quantities (vocabulary, latent channels, patch schedule, native image size) live in
`TokenizerConfig` only; the transformer and the refiner read them from there, so they can never
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from restorevar.models.config import ConfigError, ModelConfig


@dataclass(frozen=True)
class TokenizerConfig:
    """Multi-scale residual VQVAE (VAR's tokenizer); defaults are `vae_ch160v4096z32` at 512 px."""

    image_size: int = 512
    vocab_size: int = 4096
    latent_channels: int = 32
    base_channels: int = 160
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    norm_groups: int = 32
    use_attention: bool = True  # attention at the lowest level and in the middle
    num_phi: int = 4  # VAR's share_quant_resi: 4 partially shared φ convs
    phi_ratio: float = 0.5  # φ(h) = (1 - r)·h + r·conv(h)
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
    # ours, 1 in the paper: p > 1 folds p×p pixel patches into channels before the first conv (and
    # unfolds after the last), so no conv runs at full resolution — the CPU model's cheap, fast-to-train stem
    patch_size: int = 1
    # ours, off in the paper: a 1×1 linear map from the folded patches to the latent and back, beside the
    # conv stack. `fit_linear_path` sets it to the patches' PCA, so training starts at the linear ceiling
    linear_path: bool = False

    @property
    def downsample_factor(self) -> int:
        return self.patch_size * 2 ** (len(self.channel_mult) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsample_factor

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def num_tokens(self) -> int:
        """L: tokens over all scales."""
        return sum(pn * pn for pn in self.patch_nums)

    def validate(self) -> None:
        if self.linear_path and (len(self.channel_mult) > 1 or 3 * self.patch_size**2 < self.latent_channels):
            raise ConfigError(
                "linear_path needs one level (channel_mult of length 1) and 3·patch_size² ≥ "
                f"latent_channels ({self.latent_channels})"
            )
        if self.patch_size < 1:
            raise ConfigError(f"patch_size must be at least 1, got {self.patch_size}")
        if self.num_res_blocks < 1:
            raise ConfigError(f"num_res_blocks must be at least 1, got {self.num_res_blocks}")
        if self.image_size % self.downsample_factor:
            raise ConfigError(
                f"image_size {self.image_size} is not a multiple of the downsampling factor "
                f"{self.downsample_factor} (patch_size {self.patch_size}, channel_mult {self.channel_mult})"
            )
        check_patch_nums(self.patch_nums, self.latent_size)
        for mult in self.channel_mult:
            if (self.base_channels * mult) % self.norm_groups:
                raise ConfigError(
                    f"channels {self.base_channels * mult} are not divisible by norm_groups "
                    f"{self.norm_groups}; pick base_channels as a multiple of {self.norm_groups}"
                )


@dataclass(frozen=True)
class TransformerConfig:
    """Next-scale prediction transformer with cross-attention to the degraded latent (VAR-d16 sized)."""

    depth: int = 16
    width: int = 1024
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000  # VAR's class table; only the last ('null') row is used, as the start token
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    drop_path_rate: float = 0.1 * 16 / 24  # VAR's 0.1·depth/24; active only in training

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    def validate(self) -> None:
        if self.width % self.num_heads:
            raise ConfigError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ConfigError(f"head_dim {self.head_dim} must be a multiple of 4 for 2D RoPE")


@dataclass(frozen=True)
class RefinerConfig:
    """Latent refiner transformer (LRT); defaults are the paper's 12 × 384."""

    depth: int = 12
    width: int = 384
    num_heads: int = 6
    mlp_dim: int = 768

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    def validate(self) -> None:
        if self.width % self.num_heads:
            raise ConfigError(f"refiner width {self.width} is not divisible by num_heads {self.num_heads}")


@dataclass(frozen=True)
class RestoreVARConfig(ModelConfig):
    """The paper's model. `config.json` = `to_dict()`: the model type, then one section per component."""

    model_type: ClassVar[str] = "restorevar"

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)

    def validate(self) -> RestoreVARConfig:
        self.tokenizer.validate()
        self.transformer.validate()
        self.refiner.validate()
        return self


def check_patch_nums(patch_nums: tuple[int, ...], latent_size: int) -> None:
    """A schedule must grow strictly and end at the latent side (the last scale is never resampled)."""
    if not patch_nums or any(b <= a for a, b in zip(patch_nums, patch_nums[1:])) or patch_nums[0] < 1:
        raise ConfigError(f"patch_nums {tuple(patch_nums)} must be positive and strictly increasing")
    if patch_nums[-1] != latent_size:
        raise ConfigError(
            f"patch_nums {tuple(patch_nums)} ends at {patch_nums[-1]}, but the latent is "
            f"{latent_size}×{latent_size}; the last entry must equal the latent side"
        )
