"""Typed config of VarFormer: the frozen VAR that gives the prior, the stage-1 adapter, and the backbone.

Torch-free. The prior is a RestoreVAR tokenizer and transformer (`restorevar-small`'s for the CPU default, the
paper-size one with official weights on a GPU); the backbone's switches follow the paper's ablation: backbone alone
→ + VAR prior with fixed weights → + DAE → + AFT → + adaptive mix-up skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from restorevar.models.config import ConfigError, ModelConfig
from restorevar.models.restorevar.config import TokenizerConfig, TransformerConfig

PRIOR_MODES = ("none", "fixed", "dae")  # no prior | an equal-weight sum of the scale priors, added | DAE


@dataclass(frozen=True)
class AdapterConfig:
    """Self-attention blocks on the VAR encoder's latent tokens, trained in stage 1 (VAR frozen)."""

    depth: int = 2
    width: int = 64
    num_heads: int = 2

    def validate(self) -> None:
        if self.depth < 0 or self.width % self.num_heads:
            raise ConfigError(
                f"adapter: depth ≥ 0 and width divisible by num_heads; got {self.depth}, {self.width}, {self.num_heads}"
            )


@dataclass(frozen=True)
class BackboneConfig:
    """A NAFNet-style U-Net on the full-resolution image; DAE and AFT at every encoder and decoder level."""

    width: int = 16  # channels of the first level; each level below doubles them
    encoder_blocks: tuple[int, ...] = (1, 1, 2)
    middle_blocks: int = 2
    decoder_blocks: tuple[int, ...] = (1, 1, 1)
    prior: str = "dae"  # see PRIOR_MODES
    use_aft: bool = True
    bridge_tokens: int = 16  # AFT's bridge feature M: a 4×4 grid of tokens
    use_mixup_skip: bool = True  # a learned blend of skip and decoder features, instead of their sum

    def validate(self) -> None:
        if len(self.encoder_blocks) != len(self.decoder_blocks) or not self.encoder_blocks:
            raise ConfigError(
                f"backbone: one decoder level per encoder level; got {self.encoder_blocks} and {self.decoder_blocks}"
            )
        if self.prior not in PRIOR_MODES:
            raise ConfigError(f"backbone.prior must be one of {', '.join(PRIOR_MODES)}, got {self.prior!r}")
        if self.use_aft and self.prior == "none":
            raise ConfigError("backbone.use_aft needs a prior (AFT attends from degraded to prior-enhanced features)")
        if int(self.bridge_tokens**0.5) ** 2 != self.bridge_tokens:
            raise ConfigError(f"backbone.bridge_tokens must be a square (a grid), got {self.bridge_tokens}")

    @property
    def num_levels(self) -> int:
        return len(self.encoder_blocks)


@dataclass(frozen=True)
class VarFormerConfig(ModelConfig):
    model_type: ClassVar[str] = "varformer"

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # the frozen VAR's
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def validate(self) -> VarFormerConfig:
        self.tokenizer.validate()
        self.transformer.validate()
        self.adapter.validate()
        self.backbone.validate()
        if self.tokenizer.downsample_factor % 2**self.backbone.num_levels:
            raise ConfigError(
                f"the backbone's {self.backbone.num_levels} levels must divide the tokenizer's "
                f"stride {self.tokenizer.downsample_factor}"
            )
        return self
