"""Stage 4, blur_expert (ours): all of the model frozen; the blur expert (models/extensions/blur_expert.py)
learns a degradation detector (CE over its classes, all crops) and a deblurring CNN (log MSE to the clean latent,
blurred crops only), both on the degraded latent, from pools of encoded crops. Its mixer, if any, is the next
stage's.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.config import ConfigError
from restorevar.models.extensions.config import ExtendedRestoreVARConfig, ExtensionsConfig
from restorevar.models.restorevar.config import RestoreVARConfig
from restorevar.models.restorevar.vqvae import to_unit
from restorevar.training.losses import log_mse
from restorevar.training.stages.base import LatentPool, Stage, ValResult


def extensions_of(config: RestoreVARConfig) -> ExtensionsConfig | None:
    return config.extensions if isinstance(config, ExtendedRestoreVARConfig) else None


class BlurExpertForward(nn.Module):
    """The detector and the deblurring CNN in one forward, so that DDP sees every parameter it holds used on every
    step. The expert's mixer, which neither uses, is not part of it."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.detector, self.detector_head, self.deblur = expert.detector, expert.detector_head, expert.deblur
        self.kind_logits, self.deblurred = expert.kind_logits, expert.deblurred  # methods on these same modules

    def forward(self, detect_BChw: torch.Tensor, deblur_BChw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.kind_logits(detect_BChw), self.deblurred(deblur_BChw)


class BlurExpertStage(Stage):
    """All else frozen. The detector learns the degradation of the degraded latent (all crops); the deblurring CNN
    learns the clean latent of blurred crops. Both draw from pools of encoded crops that each step's batch
    refreshes."""

    reads = ("vqvae", "transformer", "refiner")
    adds = ""  # the whole expert, when the input has none
    POOL, BLUR_POOL = 2048, 512  # latents (labelled) for the detector; (blurred, clean) latent pairs for the CNN
    DETECT_BATCH, DEBLUR_BATCH = 64, 16

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        if getattr(model, "blur_expert", None) is None:
            raise ConfigError("this model has no blur expert (extensions.blur_expert); pass --preset small")
        self.forward_module = BlurExpertForward(model.blur_expert).requires_grad_(True)
        self.pool, self.blur_pool = LatentPool(self.POOL), LatentPool(self.BLUR_POOL)

    @classmethod
    def model_config(cls, base, wanted):
        """`base` with the blur expert's size from `wanted` (and the mixer of `base`, if any)."""
        want = extensions_of(wanted)
        if not (want and want.blur_expert):
            raise ConfigError(
                "the blur_expert stage needs a preset or `model:` with extensions.blur_expert (e.g. --preset small)"
            )
        have = extensions_of(base)
        if have is None:
            base, have = ExtendedRestoreVARConfig.extending(base), ExtendedRestoreVARConfig().extensions
        mixer_width = have.blur_expert.mixer_width if have.blur_expert else 0
        return replace(base, extensions=replace(have, blur_expert=replace(want.blur_expert, mixer_width=mixer_width)))

    def trainables(self):
        return {"blur_expert": self.forward_module}

    @torch.no_grad()
    def latents(self, batch):
        """The degraded latent of every crop, its label (index in the expert's classes, −1 if not one of them),
        whether it is blurred, and the clean latent of the blurred ones."""
        degraded, clean = self.images(batch)
        vqvae, expert = self.model.vqvae, self.model.blur_expert
        labels = torch.tensor(
            [expert.config.classes.index(k) if k in expert.config.classes else -1 for k in batch["degradation"]],
            device=degraded.device,
        )
        is_blur = labels == expert.blur_class
        target = vqvae.encode_latent(clean[is_blur]) if is_blur.any() else None  # the encoder takes no empty batch
        # forward_latents' first step alone: the expert reads no generated tokens, and generating costs ~50× a step
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
        floor = self.config.blur_expert.log_mse_floor
        losses["deblur"] = 0 * deblurred.sum() if clean is None else log_mse(deblurred, clean, floor)
        return {"loss": losses["detect"] + losses["deblur"], **losses}

    def validate(self, batch):
        expert = self.model.blur_expert
        degraded_latent, labels, is_blur, target = self.latents(batch)
        logits = expert.kind_logits(degraded_latent)
        p_blur = logits.softmax(1)[:, expert.blur_class]
        metrics = {
            "detect_accuracy": float((logits.argmax(1) == labels).float().mean()),
            "blur_accuracy": float(((p_blur > 0.5) == is_blur).float().mean()),
        }
        if is_blur.any():  # latent PSNR gain of the deblurred over the degraded latent, blurred crops only
            blurred = degraded_latent[is_blur]
            gain = log_mse(blurred, target, 1e-10) - log_mse(expert.deblurred(blurred), target, 1e-10)
            metrics |= {
                "p_blur_on_blur": float(p_blur[is_blur].mean()),
                "deblur_gain_db": float(gain) * 10 / math.log(10),
            }
        if not is_blur.all():
            metrics["p_blur_on_others"] = float(p_blur[~is_blur].mean())
        gated = expert(degraded_latent, degraded_latent)  # the expert's latent where it believes blur, else the input's
        return ValResult(metrics, [batch["degraded"], to_unit(self.model.vqvae.decode_latent(gated)), batch["clean"]])
