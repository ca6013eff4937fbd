"""What every stage shares: the `Stage` interface the trainer drives, the model a stage starts from, the PatchGAN
image losses of the tokenizer and decoder stages, and the latent pools of the blur expert and mixer stages.

A stage's output folder is a model folder; components it does not train are copied from its input folder
(`init`). Images enter as [0, 1] and are mapped to [-1, 1] here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from restorevar.models import checkpoint
from restorevar.models.config import ConfigError
from restorevar.models.migration import split_legacy_refiner
from restorevar.models.presets import get_preset
from restorevar.models.registry import build_model as build_model_of
from restorevar.models.registry import config_from_dict, load_config, resolve_model
from restorevar.models.restorevar.config import RestoreVARConfig
from restorevar.models.restorevar.model import RestoreVAR
from restorevar.training.config import STAGE_INPUTS, TrainConfig
from restorevar.training.distributed import Dist
from restorevar.training.losses import (
    PatchDiscriminator,
    adaptive_gan_weight,
    hinge_d_loss,
    hinge_g_loss,
    l1_loss,
    ssim,
)
from restorevar.training.optim import weight_decay_groups
from restorevar.training.perceptual import PerceptualLoss

log = logging.getLogger(__name__)

PCA_IMAGES = 64  # 64 crops of 256² give 16k patches of 16×16: plenty for a 768-dim covariance
BASE_LR_AT_48 = 1e-4  # the paper's peak lr at global batch 48, scaled linearly


@dataclass
class ValResult:
    metrics: dict[str, float]
    columns: list[torch.Tensor]  # (B, 3, H, W) in [0, 1] each: degraded | outputs... | clean


class Stage:
    """One stage: which components it reads from `init`, what it trains, its loss and its validation."""

    reads: tuple[str, ...] = ()  # components copied from `init` even where the wanted architecture differs
    adds: str | None = None  # blur-expert keys this stage may add to the input's ("": all of them)
    starts_fresh = False  # may run without `init` (then every component is new)
    native_size_only = False  # its crops must be the model's image size
    selection_metric: str | None = None  # lower is better; `best/` keeps the model with the lowest value

    def __init__(self, config: TrainConfig, env: Dist, model: RestoreVAR):
        self.config, self.env = config, env
        self.model = model.to(env.device)
        self.model.requires_grad_(False)
        self.crop_size = config.data.crop_size or model.image_size
        if self.crop_size != model.image_size and self.native_size_only:
            raise ConfigError(f"data.crop_size {self.crop_size} must equal the model's image size {model.image_size}")
        self.best = float("inf")

    @classmethod
    def model_config(cls, base: RestoreVARConfig, wanted: RestoreVARConfig) -> RestoreVARConfig:
        """The trained model's architecture: `wanted`'s, but for the tokenizer (and what the stage reads) of `init`."""
        kept = {"tokenizer": base.tokenizer}
        if "transformer" in cls.reads:
            kept["transformer"] = base.transformer
        return replace(wanted, **kept)

    # ---- what trains
    def trainables(self) -> dict[str, nn.Module]:
        """The modules the optimizers update, by checkpoint name; each runs in one DDP wrapper, whose forward must
        use every parameter it holds that requires grad."""
        raise NotImplementedError

    @property
    def optimizer_names(self) -> tuple[str, ...]:
        return ("model", "discriminator") if "discriminator" in self.trainables() else ("model",)

    def peak_lr(self, config: TrainConfig) -> float:
        optim = config.optim
        return optim.lr if optim.lr is not None else BASE_LR_AT_48 * optim.batch_size / 48

    def optimizers(self, config: TrainConfig) -> list[torch.optim.Optimizer]:
        mods, optim = self.trainables(), config.optim
        groups = [
            g for name, m in mods.items() if name != "discriminator" for g in weight_decay_groups(m, optim.weight_decay)
        ]
        opts = [torch.optim.AdamW(groups, lr=self.peak_lr(config), betas=optim.betas, eps=1e-8)]
        if "discriminator" in mods:  # the usual GAN betas; no weight decay
            opts.append(
                torch.optim.AdamW(
                    mods["discriminator"].parameters(), lr=self.peak_lr(config), betas=(0.5, 0.9), weight_decay=0.0
                )
            )
        return opts

    def set_train_modes(self) -> None:
        self.model.eval()  # frozen parts: no drop path, no dropout
        for m in self.trainables().values():
            m.train()

    def set_eval_modes(self) -> None:
        self.model.eval()
        for m in self.trainables().values():
            m.eval()

    # ---- hooks
    def initialise(self, dataset) -> None:
        """Data-dependent initialisation on a fresh start (not on resume)."""

    def compute_loss(self, batch: dict, step: int, wrapped: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def validate(self, batch: dict) -> ValResult:
        raise NotImplementedError

    def after_step(self, step: int, batch: dict, losses: dict) -> None:
        pass

    def is_better(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.selection_metric, float("inf")) if self.selection_metric else float("inf")
        if value < self.best:
            self.best = value
            return True
        return False

    def extra_state(self) -> dict:
        return {"best": torch.tensor(self.best, dtype=torch.float64)}

    def load_extra_state(self, state: dict) -> None:
        self.best = float(state.get("best", float("inf")))

    # ---- shared pieces
    def clean_tokens(self, clean_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A clean image's tokens as the transformer's teacher-forced input (B, L, C) and target (B, L), and its
        quantised latent f̂ (B, C, h, w)."""
        quantizer = self.model.vqvae.quantizer
        indices, f_hats = quantizer.encode(self.model.vqvae.encode_latent(clean_B3HW))
        teacher = quantizer.teacher_forcing_input(indices, self.model.config.tokenizer.latent_size)
        return teacher, torch.cat(indices, dim=1), f_hats[-1]

    def images(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["degraded"].float() * 2 - 1, batch["clean"].float() * 2 - 1


def build_model(config: TrainConfig, stage: type[Stage]) -> RestoreVAR:
    """Components the stage reads come from `init` with its config; new ones from `model`/`preset`."""
    wanted = config_from_dict(config.model) if config.model else (get_preset(config.preset) if config.preset else None)
    if config.init is None:
        if not stage.starts_fresh:
            raise ConfigError(
                f"the {config.stage} stage needs the previous stage's output folder: {STAGE_INPUTS[config.stage]} DIR"
            )
        if wanted is None:
            raise ConfigError("no architecture: pass --preset NAME, a `model:` section, or --init DIR")
        return build_model_of(wanted)
    init = resolve_model(config.init)  # a folder, or a named model such as the bundled restorevar-small
    base = load_config(init)
    model = build_model_of((base if wanted is None else stage.model_config(base, wanted)).validate())
    states = read_init_states(model, init)
    for name, file in model.weight_files().items():
        module = getattr(model, name)
        state = states.get(name, {})
        if name == "blur_expert" and stage.adds is not None and not any(k.startswith(stage.adds) for k in state):
            state |= {k: v for k, v in module.state_dict().items() if k.startswith(stage.adds)}  # the new part
        fits = all(k in state and state[k].shape == v.shape for k, v in module.state_dict().items())
        if name in stage.reads or fits:  # components this stage does not train: copied when they fit
            checkpoint.load_strict(module, state, init / file)
        else:
            log.info("%s: the architecture differs from %s, initialised at random", name, config.init)
    return model


def read_init_states(model: RestoreVAR, init: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The weights of the input folder that exist (a new part has none yet), older layouts split."""
    states = {
        name: {k: v.float() for k, v in checkpoint.read_safetensors(init / file).items()}
        for name, file in model.weight_files().items()
        if (init / file).is_file()
    }
    if "refiner" in states and "blur_expert" not in states:
        states["refiner"], legacy_expert = split_legacy_refiner(states["refiner"])
        if legacy_expert:
            states["blur_expert"] = legacy_expert
    return states


def psnr(a_B3HW: torch.Tensor, b_B3HW: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [0, 1]."""
    mse = (a_B3HW.clamp(0, 1) - b_B3HW.clamp(0, 1)).square().flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def clean_crops(dataset, device: torch.device) -> torch.Tensor:
    """PCA_IMAGES clean crops spread over the dataset, in [-1, 1]: the data of the linear fits."""
    picks = torch.linspace(0, len(dataset) - 1, min(len(dataset), PCA_IMAGES)).long().tolist()
    return torch.stack([dataset[i]["clean"] for i in picks]).float().to(device) * 2 - 1


# ------------------------------------------------------------------------------------------------ image losses


class GANMixin:
    """L1 (+ SSIM, perceptual) and PatchGAN with hinge loss. The generator term runs the bare discriminator with
    frozen weights; the discriminator term runs its DDP wrapper once on real‖fake, so one backward of their sum is
    correct. `loss_defaults` are the weights of `image_loss` settings left at None."""

    loss_defaults: dict[str, float] = {}

    def init_gan(self) -> None:
        given = {k: getattr(self.config.image_loss, k) for k in self.loss_defaults}
        self.weights = {**self.loss_defaults, **{k: v for k, v in given.items() if v is not None}}
        self.perceptual = PerceptualLoss().to(self.env.device) if self.weights["perceptual_weight"] > 0 else None
        self.discriminator = PatchDiscriminator().to(self.env.device) if self.weights["gan_weight"] > 0 else None
        start = self.weights["gan_start"]
        self.gan_start = int(start * self.config.optim.steps) if start < 1 else int(start)

    def with_discriminator(self, mods: dict[str, nn.Module]) -> dict[str, nn.Module]:
        return {**mods, "discriminator": self.discriminator} if self.discriminator is not None else mods

    def image_losses(self, out: dict, rec: torch.Tensor, clean: torch.Tensor, step: int, wrapped, last_layer):
        w = self.weights
        rec_loss = w["l1_weight"] * l1_loss(rec, clean)
        out["l1"] = l1_loss(rec, clean).detach()
        if w.get("ssim_weight", 0) > 0:
            s = ssim(rec, clean)
            rec_loss = rec_loss + w["ssim_weight"] * (1 - s)
            out["ssim"] = s.detach()
        if self.perceptual is not None:
            p = self.perceptual(rec, clean)
            rec_loss = rec_loss + w["perceptual_weight"] * p
            out["perceptual"] = p.detach()
        out["loss"] = out.get("loss", 0) + rec_loss
        if self.discriminator is None or step < self.gan_start:
            return
        self.discriminator.requires_grad_(False)
        g_loss = hinge_g_loss(self.discriminator(rec))
        self.discriminator.requires_grad_(True)
        weight = w["gan_weight"] * (
            adaptive_gan_weight(rec_loss, g_loss, last_layer) if self.config.image_loss.adaptive_gan_weight else 1.0
        )
        logits_real, logits_fake = wrapped["discriminator"](torch.cat([clean, rec.detach()])).chunk(2)
        out["loss"] = out["loss"] + weight * g_loss
        out["disc_loss"] = hinge_d_loss(logits_real, logits_fake)
        out["g_loss"] = g_loss.detach()


# ------------------------------------------------------------------------------------------------ latent pools


class LatentPool:
    """Fresh latents replace the oldest; training draws from all of them. Encoding a crop costs ~50× a step of
    the expert's small nets, so each encoded crop is used many times. Not checkpointed: a resumed run refills it."""

    def __init__(self, capacity: int):
        self.capacity, self.size, self.next = capacity, 0, 0
        self.tensors: list[torch.Tensor] = []

    def add(self, *tensors: torch.Tensor) -> None:
        n = len(tensors[0])
        have = len(self.tensors[0]) if self.tensors else 0
        if have < min(self.capacity, self.size + n):  # the storage grows as the pool fills (slots < size + n)
            rows = min(self.capacity, max(self.size + n, 2 * have))
            grown = [t.new_zeros((rows, *t.shape[1:])) for t in tensors]
            for new, old in zip(grown, self.tensors):
                new[:have] = old
            self.tensors = grown
        slots = (self.next + torch.arange(n, device=tensors[0].device)) % self.capacity
        for pool, t in zip(self.tensors, tensors):
            pool[slots] = t
        self.next = (self.next + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int) -> list[torch.Tensor]:
        picks = torch.randint(self.size, (n,), device=self.tensors[0].device)
        return [pool[picks] for pool in self.tensors]
