"""`TrainConfig`: every setting of a training run, read from YAML/JSON with unknown keys rejected.

Torch-free, so that `restorevar train --help` stays fast. Fields that are None take the stage's documented
default (stages.py, docs/training.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restorevar.models.config import ConfigError, reject_unknown_keys

STAGES = ("tokenizer", "transformer", "refiner", "decoder", "blur_expert", "mixer")
REFINER_LOSSES = ("l1", "log_mse")
# degradations.DEGRADATIONS + EXTRA_KINDS, spelled out so that this module stays torch-free (a test keeps them equal)
KINDS = ("haze", "rain", "snow", "low_light", "blur", "mixed", "none")


@dataclass
class TrainConfig:
    """Everything a run needs; `--config FILE` (YAML/JSON) fills it, command-line flags override it."""

    stage: str = "transformer"
    data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)  # default: the training specs with split="val"
    out: str = "runs/restorevar"
    preset: str | None = None  # architecture of newly initialised components
    model: dict | None = None  # or an explicit RestoreVARConfig dict (wins over preset)
    init: str | None = None  # input model folder: the previous stage's --out
    var_d16: str | None = None  # transformer stage: official var_d16.pth to start from
    steps: int = 1000
    batch_size: int = 8  # global, split evenly across ranks
    lr: float | None = None  # default: the stage's peak lr, scaled linearly from batch 48
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 0
    flat_fraction: float = 0.05  # lin0: lr stays at peak for this share of the post-warm-up steps
    final_lr_ratio: float = 0.01
    grad_clip: float = 2.0
    amp: str = "auto"  # auto (bf16 on CUDA if supported, else fp16) | bf16 | fp16 | off; always off on CPU
    device: str = "auto"
    seed: int = 0
    crop_size: int | None = None  # default: the model's image size
    kinds: list[str] | None = None  # photo folders: the degradations to synthesise (default: all five)
    tone_jitter: float = 0.0  # photo folders: share of clean crops given a random tone (datasets.jitter_tone)
    tone_jitter_kinds: list[str] | None = None  # only crops of these degradations are jittered (default: all)
    balance_degradations: bool = True  # inverse-frequency sampling over degradation labels, as the paper
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    val_every: int = 500
    val_images: int = 4
    resume: bool = False
    # loss settings (None = the stage's documented default, see stages.py)
    l1_weight: float | None = None
    ssim_weight: float | None = None
    perceptual_weight: float | None = None
    gan_weight: float | None = None
    gan_start: float | None = None  # step at which the PatchGAN loss starts; a value < 1 is a share of `steps`
    adaptive_gan_weight: bool = True
    vq_beta: float = 0.25
    dead_code_every: int = 200  # tokenizer: re-initialise unused codes every N steps (0 = never)
    continuous_share: float = 0.0  # tokenizer: share of each batch decoded from f instead of f̂ (see stages)
    latent_source: str = "refiner"  # decoder: 'refiner' outputs, or 'noisy-clean' = f + noise / f̂ mixtures
    latent_noise: float = 0.1
    refit_decoder: bool = False  # decoder: start from a fresh decoder, fitted by least squares to the encoder (vqvae.py)
    # refiner: 'l1' (the paper) or 'log_mse' (ours): the mean over images of log(MSE + 1e-3), about minus the
    # mean latent PSNR, so an image that needs little change (blur) weighs as much as one that needs much (low light)
    refiner_loss: str = "l1"
    # refiner (log_mse) and blur_expert stages: latent errors far below the floor barely count (stages.log_mse)
    log_mse_floor: float = 1e-3
    # mixer: weight of each degradation's crops in the loss (default 1), to trade a little mean gain for not
    # hurting the kind with the least to gain (blur, see configs/default/mixer.yaml)
    kind_loss_weights: dict[str, float] | None = None

    def validate(self) -> TrainConfig:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if self.latent_source not in ("refiner", "noisy-clean"):
            raise ConfigError(f"latent_source must be 'refiner' or 'noisy-clean', got {self.latent_source!r}")
        if self.kinds is not None and (not self.kinds or set(self.kinds) - set(KINDS)):
            raise ConfigError(f"kinds {self.kinds} invalid; choose from {', '.join(KINDS)}")
        if self.refiner_loss not in REFINER_LOSSES:
            raise ConfigError(f"refiner_loss must be one of {', '.join(REFINER_LOSSES)}, got {self.refiner_loss!r}")
        if self.log_mse_floor <= 0:
            raise ConfigError(f"log_mse_floor must be > 0, got {self.log_mse_floor}")
        if self.tone_jitter_kinds is not None and set(self.tone_jitter_kinds) - set(KINDS):
            raise ConfigError(f"tone_jitter_kinds {self.tone_jitter_kinds} invalid; choose from {', '.join(KINDS)}")
        weights = self.kind_loss_weights or {}
        if set(weights) - set(KINDS) or any(not w > 0 for w in weights.values()):
            raise ConfigError(f"kind_loss_weights {weights} invalid: kinds from {', '.join(KINDS)}, weights > 0")
        if not 0 <= self.tone_jitter <= 1:
            raise ConfigError(f"tone_jitter must be in [0, 1], got {self.tone_jitter}")
        if not 0 <= self.continuous_share <= 1:
            raise ConfigError(f"continuous_share must be in [0, 1], got {self.continuous_share}")
        if self.steps < 0:
            raise ConfigError(f"steps must be ≥ 0 (0: the stage's initialisation only), got {self.steps}")
        for name in ("batch_size", "log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        reject_unknown_keys(data, cls, "the training config")
        values = {k: tuple(v) if k == "betas" else v for k, v in data.items()}
        for k in ("data", "val_data"):
            if isinstance(values.get(k), str):
                values[k] = [values[k]]
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}  # YAML is a superset of JSON
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
