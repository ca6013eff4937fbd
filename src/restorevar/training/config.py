"""`TrainConfig`: every setting of a training run, one section per concern, read from YAML/JSON with unknown keys
rejected.

    stage: refiner                 # which stage; out/init/preset/model/device/amp/seed/resume sit at the top too
    data: {train: [data/photos], kinds: [haze, rain, snow, low_light, blur, none], tone_jitter: 0.5}
    optim: {steps: 500, batch_size: 4, lr: 1.0e-3, warmup_steps: 25}
    logging: {every: 10, val_every: 100}
    checkpoints: {every: 50}
    refiner: {loss: log_mse}       # the section of the stage being trained; image_loss: tokenizer and decoder

Torch-free, so that `restorevar train --help` stays fast. Fields that are None take the stage's documented default
(training/stages/, docs/training.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restorevar.models.config import ConfigError, build_dataclass

# the previous stage's output folder each stage reads (TrainConfig.init), as the flag `restorevar train` names it
STAGE_INPUTS = {
    "tokenizer": "--init",
    "transformer": "--tokenizer",
    "refiner": "--transformer",
    "decoder": "--refiner",
    "blur_expert": "--decoder",
    "mixer": "--expert",
    "varformer_adapter": "--prior",
    "varformer": "--adapter",
}
STAGES = tuple(STAGE_INPUTS)
REFINER_LOSSES = ("l1", "log_mse")
# degradations.DEGRADATIONS + EXTRA_KINDS, spelled out so that this module stays torch-free (a test keeps them equal)
KINDS = ("haze", "rain", "snow", "low_light", "blur", "mixed", "none")
# about the error the small tokenizer leaves anyway: its 28.6 dB ceiling is a pixel MSE of 1.4e-3, and with the
# PCA-scaled linear path latent MSE tracks pixel MSE about 1:1 (losses.log_mse)
LOG_MSE_FLOOR = 1e-3


@dataclass
class DataConfig:
    train: tuple[str, ...] = ()  # photo folders, benchmark folders or paper .json lists
    val: tuple[str, ...] = ()  # default: the training specs with split="val"
    crop_size: int | None = None  # default: the model's image size
    kinds: tuple[str, ...] | None = None  # photo folders: the degradations to synthesise (default: all five)
    tone_jitter: float = 0.0  # photo folders: share of clean crops given a random tone (datasets.jitter_tone)
    tone_jitter_kinds: tuple[str, ...] | None = None  # only crops of these degradations are jittered (default: all)
    balance_degradations: bool = True  # inverse-frequency sampling over degradation labels, as the paper
    num_workers: int = 0


@dataclass
class OptimConfig:
    """AdamW and the paper's `lin0` schedule (trainer.lin0_lr)."""

    steps: int = 1000
    batch_size: int = 8  # global, split evenly across ranks
    lr: float | None = None  # default: the stage's peak lr, scaled linearly from batch 48
    warmup_steps: int = 0
    flat_fraction: float = 0.05  # lr stays at peak for this share of the post-warm-up steps
    final_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 2.0


@dataclass
class LoggingConfig:
    every: int = 10  # a metrics.jsonl line every N steps
    val_every: int = 500
    val_images: int = 4  # 0: no validation


@dataclass
class CheckpointConfig:
    every: int = 500
    keep: int = 2


@dataclass
class ImageLossConfig:
    """The tokenizer's and the decoder's image losses; None = the stage's documented default."""

    l1_weight: float | None = None
    ssim_weight: float | None = None
    perceptual_weight: float | None = None
    gan_weight: float | None = None
    gan_start: float | None = None  # step at which the PatchGAN loss starts; a value < 1 is a share of `steps`
    adaptive_gan_weight: bool = True


@dataclass
class TokenizerSettings:
    vq_beta: float = 0.25
    dead_code_every: int = 200  # re-initialise unused codes every N steps (0 = never)
    continuous_share: float = 0.0  # share of each batch decoded from f instead of f̂ (stages/tokenizer.py)


@dataclass
class TransformerSettings:
    var_d16: str | None = None  # the official var_d16.pth to start from


@dataclass
class RefinerSettings:
    # 'l1' (the paper) or 'log_mse' (ours): the mean over images of log(MSE + floor), about minus the mean latent
    # PSNR, so an image that needs little change (blur) weighs as much as one that needs much (low light)
    loss: str = "l1"
    log_mse_floor: float = LOG_MSE_FLOOR  # latent errors far below the floor barely count (losses.log_mse)


@dataclass
class DecoderSettings:
    latent_source: str = "refiner"  # 'refiner' outputs, or 'noisy-clean' = f + noise / f̂ mixtures
    latent_noise: float = 0.1
    refit: bool = False  # start from a fresh decoder, fitted by least squares to the encoder (vqvae.py)


@dataclass
class BlurExpertSettings:
    log_mse_floor: float = LOG_MSE_FLOOR


@dataclass
class MixerSettings:
    log_mse_floor: float = LOG_MSE_FLOOR
    # weight of each degradation's crops in the loss (default 1), to trade a little mean gain for not hurting the
    # kind with the least to gain (blur, see configs/default/mixer.yaml)
    kind_loss_weights: dict[str, float] | None = None


@dataclass
class VarFormerSettings:
    feature_weight: float = 1.0  # varformer_adapter: weight of ‖F_a − sg(f̂_clean)‖² beside the token CE
    window: int = 128  # varformer: side of the training windows, a multiple of the prior's 16-pixel grid
    windows_per_step: int = 16  # varformer: windows drawn from the pool per step (the batch of the backbone)
    pool: int = 256  # varformer: crops (with their priors) kept to draw windows from
    perceptual_weight: float = 0.05  # varformer: λ of the perceptual term beside −PSNR


@dataclass
class TrainConfig:
    """Everything a run needs; `--config FILE` (YAML/JSON) fills it, command-line flags override it."""

    stage: str = "transformer"
    out: str = "runs/restorevar"
    init: str | None = None  # input model folder: the previous stage's --out
    preset: str | None = None  # architecture of newly initialised components
    model: dict | None = None  # or an explicit model config dict (wins over preset)
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CUDA if supported, else fp16) | bf16 | fp16 | off; always off on CPU
    seed: int = 0
    resume: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    image_loss: ImageLossConfig = field(default_factory=ImageLossConfig)
    tokenizer: TokenizerSettings = field(default_factory=TokenizerSettings)
    transformer: TransformerSettings = field(default_factory=TransformerSettings)
    refiner: RefinerSettings = field(default_factory=RefinerSettings)
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    blur_expert: BlurExpertSettings = field(default_factory=BlurExpertSettings)
    mixer: MixerSettings = field(default_factory=MixerSettings)
    varformer: VarFormerSettings = field(default_factory=VarFormerSettings)

    def validate(self) -> TrainConfig:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        _check_data(self.data)
        _check_positive(
            self.optim.batch_size,
            "optim.batch_size",
            self.logging.every,
            "logging.every",
            self.logging.val_every,
            "logging.val_every",
            self.checkpoints.every,
            "checkpoints.every",
        )
        if self.optim.steps < 0:
            raise ConfigError(f"optim.steps must be ≥ 0 (0: the stage's initialisation only), got {self.optim.steps}")
        if self.decoder.latent_source not in ("refiner", "noisy-clean"):
            raise ConfigError(
                f"decoder.latent_source must be 'refiner' or 'noisy-clean', got {self.decoder.latent_source!r}"
            )
        if self.refiner.loss not in REFINER_LOSSES:
            raise ConfigError(f"refiner.loss must be one of {', '.join(REFINER_LOSSES)}, got {self.refiner.loss!r}")
        for section in ("refiner", "blur_expert", "mixer"):
            if getattr(self, section).log_mse_floor <= 0:
                raise ConfigError(f"{section}.log_mse_floor must be > 0, got {getattr(self, section).log_mse_floor}")
        weights = self.mixer.kind_loss_weights or {}
        if set(weights) - set(KINDS) or any(not w > 0 for w in weights.values()):
            raise ConfigError(f"mixer.kind_loss_weights {weights} invalid: kinds from {', '.join(KINDS)}, weights > 0")
        if not 0 <= self.tokenizer.continuous_share <= 1:
            raise ConfigError(f"tokenizer.continuous_share must be in [0, 1], got {self.tokenizer.continuous_share}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if isinstance(data, dict):
            _reject_flat_keys(data)
            if isinstance(data.get("data"), dict):  # one path may stand for a list of one
                data = {
                    **data,
                    "data": {
                        k: [v] if k in ("train", "val") and isinstance(v, str) else v for k, v in data["data"].items()
                    },
                }
        return build_dataclass(cls, data, "TrainConfig")  # lists become tuples

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}  # YAML is a superset of JSON
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
        if isinstance(data, dict) and data.get("stage") in STAGES:
            others = sorted(set(data) & set(STAGES) - {data["stage"]})
            if others:
                raise ConfigError(
                    f"{path} trains the {data['stage']} stage but sets the section(s) of "
                    f"{', '.join(others)}, which only that stage reads"
                )
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_data(data: DataConfig) -> None:
    if data.kinds is not None and (not data.kinds or set(data.kinds) - set(KINDS)):
        raise ConfigError(f"data.kinds {list(data.kinds)} invalid; choose from {', '.join(KINDS)}")
    if data.tone_jitter_kinds is not None and set(data.tone_jitter_kinds) - set(KINDS):
        raise ConfigError(
            f"data.tone_jitter_kinds {list(data.tone_jitter_kinds)} invalid; choose from {', '.join(KINDS)}"
        )
    if not 0 <= data.tone_jitter <= 1:
        raise ConfigError(f"data.tone_jitter must be in [0, 1], got {data.tone_jitter}")


def _check_positive(*values_and_names) -> None:
    for value, name in zip(values_and_names[::2], values_and_names[1::2]):
        if value < 1:
            raise ConfigError(f"{name} must be ≥ 1, got {value}")


# where each key of the flat layout (before the sections) went; {stage}: the section of the stage trained
MOVED = {
    **{
        k: f"data.{k}"
        for k in ("crop_size", "kinds", "tone_jitter", "tone_jitter_kinds", "balance_degradations", "num_workers")
    },
    "val_data": "data.val",
    **{
        k: f"optim.{k}"
        for k in (
            "steps",
            "batch_size",
            "lr",
            "warmup_steps",
            "flat_fraction",
            "final_lr_ratio",
            "weight_decay",
            "betas",
            "grad_clip",
        )
    },
    "log_every": "logging.every",
    "val_every": "logging.val_every",
    "val_images": "logging.val_images",
    "checkpoint_every": "checkpoints.every",
    "keep_checkpoints": "checkpoints.keep",
    **{
        k: f"image_loss.{k}"
        for k in ("l1_weight", "ssim_weight", "perceptual_weight", "gan_weight", "gan_start", "adaptive_gan_weight")
    },
    **{k: f"tokenizer.{k}" for k in ("vq_beta", "dead_code_every", "continuous_share")},
    "var_d16": "transformer.var_d16",
    "refiner_loss": "refiner.loss",
    "log_mse_floor": "{stage}.log_mse_floor",  # the refiner's, the blur expert's or the mixer's
    "latent_source": "decoder.latent_source",
    "latent_noise": "decoder.latent_noise",
    "refit_decoder": "decoder.refit",
    "kind_loss_weights": "mixer.kind_loss_weights",
}


def _reject_flat_keys(data: dict[str, Any]) -> None:
    stage = data.get("stage") if data.get("stage") in ("blur_expert", "mixer") else "refiner"
    moved = [f"{key} → {MOVED[key].format(stage=stage)}" for key in data if key in MOVED]
    if moved or isinstance(data.get("data"), (str, list)):
        moved += ["data → data.train"] if isinstance(data.get("data"), (str, list)) else []
        raise ConfigError(f"TrainConfig: keys of the old flat layout; they moved into sections: {'; '.join(moved)}")
