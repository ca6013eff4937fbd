"""The six training stages: what trains, what is frozen, and the loss (spec §1.6, §4.2, §4.3).

  0. tokenizer    trains the whole VQVAE (+ PatchGAN): L1 + perceptual + VQ (+ GAN after `gan_start`);
                  dead codes are re-initialised from encoder outputs every `dead_code_every` steps.
                  A `linear_path` tokenizer starts at the PCA of PCA_IMAGES training crops.
                  `continuous_share` > 0 (ours, off by default) decodes that share of each batch from
                  the continuous latent f instead of f̂, since the restoration path decodes
                  continuous latents (the refiner's).
  1. transformer  VQVAE frozen. Teacher-forced CE over all scales, uniform over tokens (the paper).
  2. refiner      VQVAE + transformer frozen *in eval mode* (the paper left drop path on); greedy rollout
                  under no_grad; L1 (or, ours, log MSE per image) to the clean continuous latent. The refiner
                  is called through its DDP wrapper so gradients are all-reduced (the paper bypassed it).
                  `best/` = lowest val value of that loss.
  3. decoder      encoder, quant_conv, quantizer frozen; post_quant_conv + decoder (+ PatchGAN) learn to
                  decode continuous latents (refiner outputs, or noisy clean latents): L1 + SSIM +
                  perceptual + GAN. The paper released no code for this stage.
                  `refit_decoder` (ours) first replaces the decoder by the least-squares linear decoder of
                  PCA_IMAGES crops' latents (`fit_linear_decoder`), conv branch at zero.
  4. blur_expert  (ours) all of the model frozen; the refiner's blur expert (blur_expert.py) learns a
                  degradation detector (CE over every kind) and a deblurring CNN (log MSE to the clean latent,
                  blurred crops only), both on the degraded latent, from pools of encoded crops.
  5. mixer        (ours) all of the model frozen; the blur expert's mixer learns per-position weights of the
                  refined, degraded and deblurred latents (log MSE of the mix to the clean latent), from a
                  pool of the finished pipeline's latents.

Each stage's output folder is a RestoreVAR model folder; components a stage does not train are copied
from its input folder (`init`). Images enter as [0, 1] and are mapped to [-1, 1] here.

Shapes: B batch, C latent channels, h×w latent, N = h·w, L tokens over all scales, V vocabulary.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from restorevar.models import checkpoint
from restorevar.models.config import ConfigError
from restorevar.models.extensions.config import ExtendedRestoreVARConfig
from restorevar.models.migration import split_legacy_refiner
from restorevar.models.presets import get_preset
from restorevar.models.registry import build_model as build_model_of, config_from_dict, load_config
from restorevar.models.restorevar.config import RestoreVARConfig
from restorevar.training.losses import (PatchDiscriminator, adaptive_gan_weight, codebook_usage, hinge_d_loss,
                     hinge_g_loss, l1_loss, multiscale_vq, ssim)
from restorevar.training.perceptual import PerceptualLoss
from restorevar.models.restorevar.model import RestoreVAR, as_tokens
from restorevar.training.trainer import Dist, TrainConfig, ValResult, mix_seed, weight_decay_groups
from restorevar.models.restorevar.vqvae import fit_linear_decoder, fit_linear_path, to_unit

log = logging.getLogger(__name__)

# Documented defaults (docs/training.md). Decoder weights: chosen by the measurement in that document.
LOSS_DEFAULTS = {
    "tokenizer": dict(l1_weight=1.0, ssim_weight=0.0, perceptual_weight=1.0, gan_weight=0.1, gan_start=0.5),
    "decoder": dict(l1_weight=1.0, ssim_weight=0.5, perceptual_weight=0.1, gan_weight=0.05, gan_start=0.25),
}
LOADED = {"tokenizer": ("vqvae",), "transformer": ("vqvae",), "refiner": ("vqvae", "transformer"),
          "decoder": ("vqvae", "transformer", "refiner"), "blur_expert": ("vqvae", "transformer", "refiner"),
          "mixer": ("vqvae", "transformer", "refiner")}
NEW_PARTS = {"blur_expert": "", "mixer": "mixer."}  # blur-expert keys a stage may add (all of them, or the mixer's)
PCA_IMAGES = 64  # 64 crops of 256² give 16k patches of 16×16: plenty for a 768-dim covariance
BASE_LR_AT_48 = 1e-4  # the paper's peak lr at global batch 48, scaled linearly


def psnr(a_B3HW: torch.Tensor, b_B3HW: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [0, 1]."""
    mse = (a_B3HW.clamp(0, 1) - b_B3HW.clamp(0, 1)).square().flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def clean_crops(dataset, device: torch.device) -> torch.Tensor:
    """PCA_IMAGES clean crops spread over the dataset, in [-1, 1]: the data of the linear fits."""
    picks = torch.linspace(0, len(dataset) - 1, min(len(dataset), PCA_IMAGES)).long().tolist()
    return torch.stack([dataset[i]["clean"] for i in picks]).float().to(device) * 2 - 1


def build_model(config: TrainConfig) -> RestoreVAR:
    """Components the stage reads come from `init` with its config; new ones from `model`/`preset`."""
    wanted = config_from_dict(config.model) if config.model else (get_preset(config.preset) if config.preset else None)
    loaded = LOADED[config.stage]
    if config.init is None:
        if config.stage != "tokenizer":
            from restorevar.cli.train import INPUT_FLAGS  # torch-free; the flag each stage's input folder comes with

            flag = INPUT_FLAGS[config.stage][0]
            raise ConfigError(f"the {config.stage} stage needs the previous stage's output folder: {flag} DIR")
        if wanted is None:
            raise ConfigError("no architecture: pass --preset NAME, a `model:` section, or --init DIR")
        return build_model_of(wanted)
    base = load_config(config.init)
    if config.stage in NEW_PARTS:  # everything from `init`, but the new part's size from the preset
        add_part = with_mixer if config.stage == "mixer" else with_blur_expert
        final = base if wanted is None else add_part(base, wanted)
    else:
        final = base if wanted is None else replace(
            wanted,
            **{"tokenizer": base.tokenizer, **({"transformer": base.transformer} if "transformer" in loaded else {})})
    model = build_model_of(final.validate())
    states = read_init_states(model, Path(config.init))
    for name, file in model.weight_files().items():
        module = getattr(model, name)
        state = states.get(name, {})
        new = NEW_PARTS.get(config.stage)
        if name == "blur_expert" and new is not None and not any(k.startswith(new) for k in state):  # a new part
            state |= {k: v for k, v in module.state_dict().items() if k.startswith(new)}
        fits = all(k in state and state[k].shape == v.shape for k, v in module.state_dict().items())
        if name in loaded or fits:  # components this stage does not train: copied when they fit
            checkpoint.load_strict(module, state, Path(config.init) / file)
        else:
            log.info("%s: the architecture differs from %s, initialised at random", name, config.init)
    return model


def read_init_states(model: RestoreVAR, init: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The weights of the input folder that exist (a new part has none yet), older layouts split."""
    states = {name: {k: v.float() for k, v in checkpoint.read_safetensors(init / file).items()}
              for name, file in model.weight_files().items() if (init / file).is_file()}
    if "refiner" in states and "blur_expert" not in states:
        states["refiner"], legacy_expert = split_legacy_refiner(states["refiner"])
        if legacy_expert:
            states["blur_expert"] = legacy_expert
    return states


def extensions_of(config: RestoreVARConfig):
    return config.extensions if isinstance(config, ExtendedRestoreVARConfig) else None


def with_mixer(base: RestoreVARConfig, wanted: RestoreVARConfig) -> RestoreVARConfig:
    """`base` (with its trained blur expert) plus the mixer's size from `wanted`."""
    have, want = extensions_of(base), extensions_of(wanted)
    if not (have and have.blur_expert and want and want.blur_expert and want.blur_expert.mixer_width):
        raise ConfigError("the mixer stage needs a model with a trained blur expert (the blur_expert stage's "
                          "output) and a preset or `model:` with a blur expert's mixer_width > 0 (e.g. --preset small)")
    expert = replace(have.blur_expert, mixer_width=want.blur_expert.mixer_width)
    return replace(base, extensions=replace(have, blur_expert=expert))


def with_blur_expert(base: RestoreVARConfig, wanted: RestoreVARConfig) -> RestoreVARConfig:
    """`base` with the blur expert's size from `wanted`."""
    want = extensions_of(wanted)
    if not (want and want.blur_expert):
        raise ConfigError("the blur_expert stage needs a preset or `model:` with extensions.blur_expert "
                          "(e.g. --preset small)")
    have = extensions_of(base)
    if have is None:
        base, have = ExtendedRestoreVARConfig.extending(base), ExtendedRestoreVARConfig().extensions
    mixer_width = have.blur_expert.mixer_width if have.blur_expert else 0
    return replace(base, extensions=replace(have, blur_expert=replace(want.blur_expert, mixer_width=mixer_width)))


class Stage:
    trained: tuple[str, ...] = ()

    def __init__(self, config: TrainConfig, env: Dist, model: RestoreVAR):
        self.config, self.env = config, env
        self.model = model.to(env.device)
        self.model.requires_grad_(False)
        self.crop_size = config.crop_size or model.image_size
        if self.crop_size != model.image_size and config.stage in ("transformer", "refiner"):
            raise ConfigError(f"crop_size {self.crop_size} must equal the model's image size {model.image_size}")
        self.weights = {**LOSS_DEFAULTS.get(config.stage, {}),
                        **{k: getattr(config, k) for k in LOSS_DEFAULTS.get(config.stage, {})
                           if getattr(config, k) is not None}}
        self.best = float("inf")

    # ---- what trains
    def trainables(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def optimizer_names(self) -> tuple[str, ...]:
        return ("model", "discriminator") if "discriminator" in self.trainables() else ("model",)

    def peak_lr(self, config: TrainConfig) -> float:
        return config.lr if config.lr is not None else BASE_LR_AT_48 * config.batch_size / 48

    def optimizers(self, config: TrainConfig) -> list[torch.optim.Optimizer]:
        mods = self.trainables()
        groups = [g for name, m in mods.items() if name != "discriminator"
                  for g in weight_decay_groups(m, config.weight_decay)]
        opts = [torch.optim.AdamW(groups, lr=self.peak_lr(config), betas=config.betas, eps=1e-8)]
        if "discriminator" in mods:  # the usual GAN betas; no weight decay
            opts.append(torch.optim.AdamW(mods["discriminator"].parameters(), lr=self.peak_lr(config),
                                          betas=(0.5, 0.9), weight_decay=0.0))
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

    selection_metric: str | None = None  # lower is better; `best/` keeps the model with the lowest value

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
    def images(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["degraded"].float() * 2 - 1, batch["clean"].float() * 2 - 1

    def condition(self, degraded: torch.Tensor) -> torch.Tensor:
        return self.model.vqvae.encode_continuous(degraded).flatten(2).transpose(1, 2)  # (B, N, C)

    @torch.no_grad()
    def generate(self, degraded: torch.Tensor):
        """The pipeline's latents up to the refiner: greedy rollout of the frozen transformer."""
        return self.model.forward_latents(degraded, refine=False)


class GANMixin:
    """PatchGAN with hinge loss. The generator term runs the bare discriminator with frozen weights; the
    discriminator term runs its DDP wrapper once on real‖fake, so one backward of their sum is correct."""

    def init_gan(self) -> None:
        self.perceptual = PerceptualLoss().to(self.env.device) if self.weights["perceptual_weight"] > 0 else None
        self.discriminator = PatchDiscriminator().to(self.env.device) if self.weights["gan_weight"] > 0 else None
        start = self.weights["gan_start"]
        self.gan_start = int(start * self.config.steps) if start < 1 else int(start)

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
        weight = w["gan_weight"] * (adaptive_gan_weight(rec_loss, g_loss, last_layer)
                                    if self.config.adaptive_gan_weight else 1.0)
        logits_real, logits_fake = wrapped["discriminator"](torch.cat([clean, rec.detach()])).chunk(2)
        out["loss"] = out["loss"] + weight * g_loss
        out["disc_loss"] = hinge_d_loss(logits_real, logits_fake)
        out["g_loss"] = g_loss.detach()


# ------------------------------------------------------------------------------------------------ 0. tokenizer

class TokenizerForward(nn.Module):
    def __init__(self, vqvae: nn.Module, beta: float, continuous_share: float = 0.0):
        super().__init__()
        self.vqvae, self.beta, self.continuous_share = vqvae, beta, continuous_share

    def forward(self, image_B3HW: torch.Tensor):
        f = self.vqvae.encode_latent(image_B3HW)
        q = multiscale_vq(self.vqvae.quantizer, f, beta=self.beta)
        k = round(self.continuous_share * len(f)) if self.training else 0  # batches are shuffled: first k
        latent = torch.cat([f[:k], q.f_hat_BChw[k:]]) if k else q.f_hat_BChw
        return self.vqvae.decode_latent(latent), q, f.detach()


class TokenizerStage(GANMixin, Stage):
    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        model.vqvae.requires_grad_(True)
        self.forward_module = TokenizerForward(model.vqvae, config.vq_beta, config.continuous_share)
        self.init_gan()
        vocab = model.config.tokenizer.vocab_size
        self.usage = torch.zeros(model.config.tokenizer.num_scales, vocab, dtype=torch.long, device=env.device)

    def initialise(self, dataset):
        if not self.model.config.tokenizer.linear_path or self.config.init is not None:
            return
        clean = clean_crops(dataset, self.env.device)
        fit_linear_path(self.model.vqvae, clean)
        log.info("linear path set to the PCA of %d crops", len(clean))

    def trainables(self):
        mods = {"tokenizer": self.forward_module}
        return {**mods, "discriminator": self.discriminator} if self.discriminator is not None else mods

    def compute_loss(self, batch, step, wrapped):
        _, clean = self.images(batch)
        rec, q, self.last_f = wrapped["tokenizer"](clean)
        out = {"loss": q.vq_loss, "vq": q.vq_loss.detach()}
        self.image_losses(out, rec, clean, step, wrapped, self.model.vqvae.decoder.conv_out.weight)
        counts = codebook_usage(q.indices, self.usage.shape[1])
        self.usage += counts
        out["codes_used"] = (counts.sum(0) > 0).float().mean()
        return out

    def after_step(self, step, batch, losses):
        every = self.config.dead_code_every
        if not every or (step + 1) % every:
            return
        if self.env.world > 1:
            dist.all_reduce(self.usage)
        used_per_scale = (self.usage > 0).float().mean(1)
        dead = (self.usage.sum(0) == 0).nonzero().flatten()
        if len(dead):
            g = torch.Generator(device="cpu").manual_seed(mix_seed(self.config.seed, step))
            f_NC = self.last_f.permute(0, 2, 3, 1).reshape(-1, self.last_f.shape[1])
            pick = torch.randint(len(f_NC), (len(dead),), generator=g).to(f_NC.device)
            codebook = self.model.vqvae.quantizer.codebook.weight
            codebook.data[dead] = f_NC[pick].to(codebook.dtype)
            if self.env.world > 1:
                dist.broadcast(codebook.data, src=0)  # rank 0's encoder outputs win
        if self.env.is_main:
            log.info("codebook usage per scale %s; re-initialised %d dead codes",
                     [round(float(u), 3) for u in used_per_scale], len(dead))
        self.usage.zero_()

    def validate(self, batch):
        _, clean = self.images(batch)
        rec, q, _ = self.forward_module(clean)
        continuous = to_unit(self.model.vqvae.decode_latent(self.model.vqvae.encode_latent(clean)))
        return ValResult({"psnr": psnr(to_unit(rec), batch["clean"]), "l1": float(l1_loss(rec, clean)),
                          "psnr_continuous": psnr(continuous, batch["clean"])},
                         [batch["clean"], to_unit(rec)])


# ------------------------------------------------------------------------------------------------ 1. transformer

class TransformerStage(Stage):
    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        if config.var_d16:
            from restorevar.models.restorevar.convert import load_var_backbone

            report = load_var_backbone(model.transformer, config.var_d16)
            if env.is_main:
                log.info(report.summary())
        model.transformer.requires_grad_(True)

    def trainables(self):
        return {"transformer": self.model.transformer}

    def set_train_modes(self):
        self.model.eval()
        self.model.transformer.train()  # drop path on, as in the paper

    @torch.no_grad()
    def inputs(self, batch):
        degraded, clean = self.images(batch)
        q = self.model.vqvae.quantizer
        indices, _ = q.encode(self.model.vqvae.encode_latent(clean))
        x_in = q.teacher_forcing_input(indices, self.model.config.tokenizer.latent_size)
        return x_in, self.condition(degraded), torch.cat(indices, dim=1)

    def compute_loss(self, batch, step, wrapped):
        x_in, cond, target_BL = self.inputs(batch)
        logits_BLV = wrapped["transformer"](x_in, cond)
        loss = F.cross_entropy(logits_BLV.flatten(0, 1).float(), target_BL.flatten())
        out = {"loss": loss}
        correct = (logits_BLV.detach().argmax(-1) == target_BL).float()
        bounds = self.model.transformer.scale_bounds
        for k in range(len(bounds) - 1):
            out[f"acc_s{k}"] = correct[:, bounds[k]:bounds[k + 1]].mean()
        return out

    def validate(self, batch):
        x_in, cond, target = self.inputs(batch)
        acc = float((self.model.transformer(x_in, cond).argmax(-1) == target).float().mean())
        gen = self.model.transformer.generate(cond, self.model.vqvae.quantizer)
        image = to_unit(self.model.vqvae.decode_latent(gen.f_hat_BChw))
        return ValResult({"acc": acc, "psnr": psnr(image, batch["clean"])}, [batch["degraded"], image, batch["clean"]])


# ------------------------------------------------------------------------------------------------ 2. refiner

# about the error the small tokenizer leaves anyway: its 28.6 dB ceiling is a pixel MSE of 1.4e-3, and with the
# PCA-scaled linear path latent MSE tracks pixel MSE about 1:1
LOG_MSE_FLOOR = 1e-3


def log_mse(input_BX: torch.Tensor, target_BX: torch.Tensor, floor: float = LOG_MSE_FLOOR,
            weights_B: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over images (or weighted mean) of log(MSE + floor): minus the mean PSNR (in nepers), so each image
    counts by its relative error. The floor keeps a clean → clean pair, whose error starts at zero, from
    outweighing the rest."""
    per_image = ((input_BX.float() - target_BX.float()).square().flatten(1).mean(1) + floor).log()
    return per_image.mean() if weights_B is None else (weights_B * per_image).sum() / weights_B.sum()


class RefinerStage(Stage):
    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        model.refiner.requires_grad_(True)
        # best/ = the lowest val value of the training loss (the paper selected by a CE that cannot change)
        self.selection_metric = config.refiner_loss
        self.loss_fn = partial(log_mse, floor=config.log_mse_floor) if config.refiner_loss == "log_mse" else l1_loss

    def trainables(self):
        return {"refiner": self.model.refiner}

    @torch.no_grad()
    def rollout(self, batch):
        """Greedy generation of the frozen transformer (eval mode) and the clean target latent."""
        degraded, clean = self.images(batch)
        return self.generate(degraded), self.model.vqvae.encode_latent(clean)

    def compute_loss(self, batch, step, wrapped):
        intermediates, target = self.rollout(batch)
        tokens = wrapped["refiner"](*self.model.refiner_inputs(intermediates))  # through the DDP wrapper
        return {"loss": self.loss_fn(tokens, as_tokens(target))}

    def validate(self, batch):
        intermediates, target = self.rollout(batch)
        refined = self.model.refine_latent(intermediates)
        f_hat, degraded_latent = intermediates.f_hat_BChw, intermediates.degraded_latent_BChw
        decode = self.model.vqvae.decode_latent
        metrics = {"l1": float(l1_loss(refined, target)), "l1_unrefined": float(l1_loss(f_hat, target)),
                   "log_mse": float(log_mse(refined, target)), "l1_degraded": float(l1_loss(degraded_latent, target)),
                   "log_mse_degraded": float(log_mse(degraded_latent, target))}
        return ValResult(metrics, [batch["degraded"], to_unit(decode(f_hat)), to_unit(decode(refined)), batch["clean"]])



# ------------------------------------------------------------------------------------------------ 3. decoder

class DecoderForward(nn.Module):
    def __init__(self, vqvae: nn.Module):
        super().__init__()
        self.post_quant_conv, self.decoder = vqvae.post_quant_conv, vqvae.decoder

    def forward(self, latent_BChw: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latent_BChw))


class DecoderStage(GANMixin, Stage):
    selection_metric = "l1"

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        self.forward_module = DecoderForward(model.vqvae).requires_grad_(True)
        self.init_gan()

    def initialise(self, dataset):
        if not self.config.refit_decoder:
            return
        clean = clean_crops(dataset, self.env.device)
        fit_linear_decoder(self.model.vqvae, clean)
        log.info("decoder refitted: least squares on the latents of %d crops, conv branch at zero", len(clean))

    def trainables(self):
        mods = {"decoder": self.forward_module}
        return {**mods, "discriminator": self.discriminator} if self.discriminator is not None else mods

    @torch.no_grad()
    def latents(self, batch):
        """'refiner': what the decoder sees at inference. 'noisy-clean': f̂ + a·(f − f̂) + σ·std(f)·noise,
        a ~ U(0, 1) per image, a cheap stand-in that needs no transformer."""
        degraded, clean = self.images(batch)
        vqvae = self.model.vqvae
        if self.config.latent_source == "refiner":
            return self.model.forward_latents(degraded).latent_BChw
        f = vqvae.encode_latent(clean)
        f_hat = vqvae.quantizer.encode(f)[1][-1]
        a = torch.rand(len(f), 1, 1, 1, device=f.device)
        return f_hat + a * (f - f_hat) + self.config.latent_noise * f.std() * torch.randn_like(f)

    def compute_loss(self, batch, step, wrapped):
        _, clean = self.images(batch)
        rec = wrapped["decoder"](self.latents(batch))
        out: dict[str, torch.Tensor] = {}
        self.image_losses(out, rec, clean, step, wrapped, self.model.vqvae.decoder.conv_out.weight)
        return out

    def validate(self, batch):
        _, clean = self.images(batch)
        image = to_unit(self.forward_module(self.latents(batch)))
        return ValResult({"psnr": psnr(image, batch["clean"]), "ssim": float(ssim(image * 2 - 1, clean)),
                          "l1": float(l1_loss(image * 2 - 1, clean))}, [batch["degraded"], image, batch["clean"]])


# ------------------------------------------------------------------------------------------------ 4. blur expert

class BlurExpertForward(nn.Module):
    """Both heads in one forward, so that DDP sees every parameter used on every step."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.expert = expert

    def forward(self, detect_BChw: torch.Tensor, deblur_BChw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.expert.kind_logits(detect_BChw), self.expert.deblurred(deblur_BChw)


class LatentPool:
    """Fresh latents replace the oldest; training draws from all of them. Encoding a crop costs ~50× a step of
    the expert's small nets, so each encoded crop is used many times. Not checkpointed: a resumed run refills it."""

    def __init__(self, capacity: int):
        self.capacity, self.size, self.next = capacity, 0, 0
        self.tensors: list[torch.Tensor] = []

    def add(self, *tensors: torch.Tensor) -> None:
        if not self.tensors:
            self.tensors = [t.new_zeros((self.capacity, *t.shape[1:])) for t in tensors]
        slots = (self.next + torch.arange(len(tensors[0]), device=tensors[0].device)) % self.capacity
        for pool, t in zip(self.tensors, tensors):
            pool[slots] = t
        self.next = (self.next + len(tensors[0])) % self.capacity
        self.size = min(self.capacity, self.size + len(tensors[0]))

    def sample(self, n: int) -> list[torch.Tensor]:
        picks = torch.randint(self.size, (n,), device=self.tensors[0].device)
        return [pool[picks] for pool in self.tensors]


class BlurExpertStage(Stage):
    """Ours. All else frozen. The detector learns the degradation of the degraded latent (CE over its classes, all
    crops); the deblurring CNN learns the clean latent of blurred crops (log MSE). Both draw from pools of
    encoded crops that each step's batch refreshes."""

    POOL, BLUR_POOL = 2048, 512  # latents (labelled) for the detector; (blurred, clean) latent pairs for the CNN
    DETECT_BATCH, DEBLUR_BATCH = 64, 16

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        if getattr(model, "blur_expert", None) is None:
            raise ConfigError("this model has no blur expert (extensions.blur_expert); pass --preset small")
        self.forward_module = BlurExpertForward(model.blur_expert).requires_grad_(True)
        self.pool, self.blur_pool = LatentPool(self.POOL), LatentPool(self.BLUR_POOL)

    def trainables(self):
        return {"blur_expert": self.forward_module}

    @torch.no_grad()
    def latents(self, batch):
        """The degraded latent of every crop, its label (index in the expert's classes, −1 if not one of them),
        whether it is blurred, and the clean latent of the blurred ones."""
        degraded, clean = self.images(batch)
        vqvae, classes = self.model.vqvae, self.model.blur_expert.config.classes
        kinds = batch["degradation"]
        labels = torch.tensor([classes.index(k) if k in classes else -1 for k in kinds], device=degraded.device)
        is_blur = labels == self.model.blur_expert.blur_class
        target = vqvae.encode_latent(clean[is_blur]) if is_blur.any() else None  # the encoder takes no empty batch
        return vqvae.quant_conv(vqvae.encode_continuous(degraded)), labels, is_blur, target

    def compute_loss(self, batch, step, wrapped):
        degraded_latent, labels, is_blur, target = self.latents(batch)
        self.pool.add(degraded_latent, labels)
        if target is not None:
            self.blur_pool.add(degraded_latent[is_blur], target)
        detect_in, detect_labels = self.pool.sample(self.DETECT_BATCH)
        blurred, clean = self.blur_pool.sample(self.DEBLUR_BATCH) if self.blur_pool.size else (degraded_latent, None)
        logits, deblurred = wrapped["blur_expert"](detect_in, blurred)
        losses = {"detect": F.cross_entropy(logits, detect_labels, ignore_index=-1, label_smoothing=0.05)}
        # before the first blurred crop the CNN still runs (DDP wants every parameter used), at zero weight
        floor = self.config.log_mse_floor
        losses["deblur"] = 0 * deblurred.sum() if clean is None else log_mse(deblurred, clean, floor)
        return {"loss": losses["detect"] + losses["deblur"], **losses}

    def validate(self, batch):
        expert = self.model.blur_expert
        degraded_latent, labels, is_blur, target = self.latents(batch)
        logits = expert.kind_logits(degraded_latent)
        p_blur = logits.softmax(1)[:, expert.blur_class]
        metrics = {"detect_accuracy": float((logits.argmax(1) == labels).float().mean()),
                   "blur_accuracy": float(((p_blur > 0.5) == is_blur).float().mean())}
        if is_blur.any():  # latent PSNR gain of the deblurred over the degraded latent, blurred crops only
            blurred = degraded_latent[is_blur]
            gain = log_mse(blurred, target, 1e-10) - log_mse(expert.deblurred(blurred), target, 1e-10)
            metrics |= {"p_blur_on_blur": float(p_blur[is_blur].mean()),
                        "deblur_gain_db": float(gain) * 10 / math.log(10)}
        if not is_blur.all():
            metrics["p_blur_on_others"] = float(p_blur[~is_blur].mean())
        gated = expert(degraded_latent, degraded_latent)  # the expert's latent where it believes blur, else the input's
        return ValResult(metrics, [batch["degraded"], to_unit(self.model.vqvae.decode_latent(gated)), batch["clean"]])


# ------------------------------------------------------------------------------------------------ 5. mixer

class MixerForward(nn.Module):
    def __init__(self, expert: nn.Module):
        super().__init__()
        self.expert = expert

    def forward(self, *latents: torch.Tensor) -> torch.Tensor:
        return self.expert.mix(*latents)


class MixerStage(Stage):
    """Ours, last. All else frozen. The mixer learns from what the finished pipeline makes of fresh crops: each
    step rolls out the transformer and refiner on its batch, adds their latents to a pool, and trains on a larger
    draw from it (a rollout costs far more than a step of the mixer)."""

    POOL, MIX_BATCH = 4096, 64
    selection_metric = "log_mse"

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        expert = getattr(model, "blur_expert", None)
        if expert is None or expert.mixer is None:
            raise ConfigError("this model has no mixer (extensions.blur_expert.mixer_width = 0); pass --preset small")
        expert.mixer.requires_grad_(True)
        self.forward_module = MixerForward(expert)  # only the mixer's parameters require grad
        self.pool = LatentPool(self.POOL)

    def trainables(self):
        return {"mixer": self.forward_module}

    @torch.no_grad()
    def latents(self, batch):
        """What the mixer reads (the refined, degraded and deblurred latents, the detector's belief), as the
        pipeline computes it, and the clean latent."""
        degraded, clean = self.images(batch)
        intermediates = self.generate(degraded)
        refined, degraded_latent = self.model.refine_latent(intermediates), intermediates.degraded_latent_BChw
        vqvae, expert = self.model.vqvae, self.model.blur_expert
        kind_probs = expert.kind_logits(degraded_latent).softmax(1)
        return refined, degraded_latent, expert.deblurred(degraded_latent), kind_probs, vqvae.encode_latent(clean)

    def kind_weights(self, batch) -> torch.Tensor:
        weights = self.config.kind_loss_weights or {}
        return torch.tensor([weights.get(kind, 1.0) for kind in batch["degradation"]], device=self.env.device)

    def compute_loss(self, batch, step, wrapped):
        self.pool.add(*self.latents(batch), self.kind_weights(batch))
        *inputs, clean, weights_B = self.pool.sample(self.MIX_BATCH)
        return {"loss": log_mse(wrapped["mixer"](*inputs), clean, self.config.log_mse_floor, weights_B)}

    def validate(self, batch):
        refined, degraded_latent, deblurred, kind_probs, clean = self.latents(batch)
        mixed = self.forward_module(refined, degraded_latent, deblurred, kind_probs)
        rule = refined + kind_probs[:, self.model.blur_expert.blur_class].view(-1, 1, 1, 1) * (deblurred - refined)
        mse = lambda latent: (latent - clean).square().flatten(1).mean(1)  # noqa: E731
        degraded = mse(degraded_latent) > 0  # an undegraded crop's latent is the clean one: no gain to measure
        gain = lambda latent: float(10 * torch.log10(mse(degraded_latent) / mse(latent))[degraded].mean())  # noqa: E731
        metrics = {"log_mse": float(log_mse(mixed, clean, self.config.log_mse_floor, self.kind_weights(batch))),
                   "gain_db": gain(mixed), "gain_db_detector_rule": gain(rule)}
        is_blur = torch.tensor([k == "blur" for k in batch["degradation"]], device=clean.device)
        if is_blur.any():
            blur_mse = lambda latent: float(mse(latent)[is_blur].mean())  # noqa: E731
            metrics["gain_db_blur"] = 10 * math.log10(blur_mse(degraded_latent) / blur_mse(mixed))
        return ValResult(metrics, [batch["degraded"], to_unit(self.model.vqvae.decode_latent(mixed)), batch["clean"]])


STAGE_CLASSES = {"tokenizer": TokenizerStage, "transformer": TransformerStage, "refiner": RefinerStage,
                 "decoder": DecoderStage, "blur_expert": BlurExpertStage, "mixer": MixerStage}


def build_stage(config: TrainConfig, env: Dist) -> Stage:
    return STAGE_CLASSES[config.stage](config, env, build_model(config))
