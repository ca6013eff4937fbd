"""Named model presets: `paper-512` (the released model), `paper-256`, `small` (CPU default), `tiny` (tests)."""

from __future__ import annotations

import os
from pathlib import Path

from restorevar.models.restorevar.config import ConfigError, RefinerConfig, RestoreVARConfig, TokenizerConfig, TransformerConfig

_PRESETS: dict[str, RestoreVARConfig] = {
    # The paper's model: VAR-d16 backbone at 512² with 10 scales, L = 2240.
    "paper-512": RestoreVARConfig(),
    # VAR's own 256² schedule (L = 680), same sizes otherwise.
    "paper-256": RestoreVARConfig(
        tokenizer=TokenizerConfig(image_size=256, patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)),
    ),
    # The bundled CPU default (`make train-default`; weights in weights/small, docs/default-model.md): 512² in
    # one pass, stride 16 and the paper's 10 scales, but a space-to-depth tokenizer (16×16 patches folded
    # into channels, every conv on the 32×32 latent grid) with a linear path started at PCA, and a refiner
    # that also reads the degraded latent; the input's detail that the tokenizer cannot hold is added back, and a
    # blur expert takes over where the input looks blurred, weighed against the refiner by a learned mixer.
    "small": RestoreVARConfig(
        tokenizer=TokenizerConfig(
            vocab_size=1024, base_channels=128, channel_mult=(1,), num_res_blocks=1, norm_groups=8, patch_size=16,
            linear_path=True,
        ),
        transformer=TransformerConfig(depth=3, width=128, num_heads=2, num_classes=0, drop_path_rate=0.0),
        refiner=RefinerConfig(depth=2, width=128, num_heads=2, mlp_dim=256, refine_degraded=True,
                              add_input_detail=True, blur_expert_width=64, blur_expert_mixer_width=32),
    ),
    # The golden test models: 128² images, 8×8 latent, 6 scales.
    "tiny": RestoreVARConfig(
        tokenizer=TokenizerConfig(image_size=128, vocab_size=64, base_channels=32, patch_nums=(1, 2, 3, 4, 6, 8)),
        transformer=TransformerConfig(depth=2, width=128, num_heads=2, num_classes=10, drop_path_rate=0.1 * 2 / 24),
        refiner=RefinerConfig(depth=2, width=64, num_heads=2, mlp_dim=128),
    ),
}


def list_presets() -> list[str]:
    return list(_PRESETS)


def get_preset(name: str) -> RestoreVARConfig:
    try:
        return _PRESETS[name].validate()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(_PRESETS)}") from None


BUNDLED_WEIGHTS = Path(__file__).parents[1] / "weights"  # models shipped inside the package
DEFAULT_MODEL = "small"


def model_home() -> Path:
    """Where named models (e.g. converted paper weights) live: $RESTOREVAR_HOME or ~/.cache/restorevar."""
    return Path(os.environ.get("RESTOREVAR_HOME", Path.home() / ".cache" / "restorevar"))


def resolve_model(name_or_dir: str | Path | None) -> Path:
    """A model folder, or a model name: the bundled default, or a preset converted into the model home."""
    spec = DEFAULT_MODEL if name_or_dir is None else str(name_or_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} has no config.json; expected a RestoreVAR model folder")
        return path
    for candidate in (BUNDLED_WEIGHTS / spec, model_home() / spec):
        if (candidate / "config.json").is_file():
            return candidate
    if spec == DEFAULT_MODEL:
        raise ConfigError(
            f"no default model is bundled yet (expected {BUNDLED_WEIGHTS / spec}); pass --model DIR: a folder "
            "from `restorevar train` or `restorevar convert` (the paper's weights); `make demo` shows a smoke model"
        )
    if spec in _PRESETS:
        raise ConfigError(
            f"no weights for '{spec}' in {model_home() / spec}; for the paper's model, download restorevar.pth and "
            f"vae_restorevar.ckpt and run `restorevar convert DOWNLOAD_DIR {model_home() / spec}`"
        )
    raise ConfigError(f"no model folder or named model '{spec}'; known names: {DEFAULT_MODEL}, {', '.join(_PRESETS)}")
