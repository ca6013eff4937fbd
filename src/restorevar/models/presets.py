"""Named architectures (presets), timm-style `family-size`: the paper's models, the CPU default and test sizes.

Torch-free. The short names of earlier releases (`paper-512`, `small`, ...) still work.
"""

from __future__ import annotations

from restorevar.models.config import ConfigError
from restorevar.models.extensions.config import BlurExpertConfig, ExtendedRestoreVARConfig
from restorevar.models.restorevar.config import RefinerConfig, RestoreVARConfig, TokenizerConfig, TransformerConfig
from restorevar.models.varformer.config import VarFormerConfig

_SMALL = RestoreVARConfig(
    tokenizer=TokenizerConfig(
        vocab_size=1024,
        base_channels=128,
        channel_mult=(1,),
        num_res_blocks=1,
        norm_groups=8,
        patch_size=16,
        linear_path=True,
    ),
    transformer=TransformerConfig(depth=3, width=128, num_heads=2, num_classes=0, drop_path_rate=0.0),
    refiner=RefinerConfig(depth=2, width=128, num_heads=2, mlp_dim=256),
)

_PRESETS: dict[str, RestoreVARConfig | VarFormerConfig] = {
    # The paper's model: VAR-d16 backbone at 512² with 10 scales, L = 2240.
    "restorevar-paper-512": RestoreVARConfig(),
    # VAR's own 256² schedule (L = 680), same sizes otherwise.
    "restorevar-paper-256": RestoreVARConfig(
        tokenizer=TokenizerConfig(image_size=256, patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)),
    ),
    # The bundled CPU default (`make train-default`, weights/restorevar-small): 512² in one pass, stride 16 and the
    # paper's 10 scales, but a space-to-depth tokenizer (16×16 patches folded into channels, every conv on the
    # 32×32 latent grid) with a linear path started at PCA; and our add-ons: a refiner that also reads the
    # degraded latent, the input's detail added back, a blur expert weighed against the refiner by a mixer.
    "restorevar-small": ExtendedRestoreVARConfig.extending(
        _SMALL, refine_degraded=True, input_detail=True, blur_expert=BlurExpertConfig(width=64, mixer_width=32)
    ),
    # VarFormer on restorevar-small's frozen VAR (its tokenizer and transformer): the CPU recipe's prior-guided
    # restorer (models/varformer/).
    "varformer-small": VarFormerConfig(tokenizer=_SMALL.tokenizer, transformer=_SMALL.transformer),
    # The golden test models: 128² images, 8×8 latent, 6 scales.
    "restorevar-tiny": RestoreVARConfig(
        tokenizer=TokenizerConfig(image_size=128, vocab_size=64, base_channels=32, patch_nums=(1, 2, 3, 4, 6, 8)),
        transformer=TransformerConfig(depth=2, width=128, num_heads=2, num_classes=10, drop_path_rate=0.1 * 2 / 24),
        refiner=RefinerConfig(depth=2, width=64, num_heads=2, mlp_dim=128),
    ),
}
_ALIASES = {
    "paper-512": "restorevar-paper-512",
    "paper-256": "restorevar-paper-256",
    "small": "restorevar-small",
    "tiny": "restorevar-tiny",
}


def list_presets() -> list[str]:
    return list(_PRESETS)


def canonical_name(name: str) -> str:
    return _ALIASES.get(name, name)


def get_preset(name: str) -> RestoreVARConfig | VarFormerConfig:
    try:
        return _PRESETS[canonical_name(name)].validate()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(_PRESETS)}") from None
