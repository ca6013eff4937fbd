"""Stage 5, mixer (ours, last): all of the model frozen; the blur expert's mixer learns per-position weights of the
refined, degraded and deblurred latents (log MSE of the mix to the clean latent), from a pool of the finished
pipeline's latents.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from restorevar.models.config import ConfigError
from restorevar.models.restorevar.vqvae import to_unit
from restorevar.training.losses import log_mse
from restorevar.training.stages.base import LatentPool, Stage, ValResult
from restorevar.training.stages.blur_expert import extensions_of


class MixerForward(nn.Module):
    """The expert's `mix` of precomputed latents; it holds the mixer only, the one part that trains."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.mixer, self.mix = expert.mixer, expert.mix

    def forward(self, *latents: torch.Tensor) -> torch.Tensor:
        return self.mix(*latents)


class MixerStage(Stage):
    """All else frozen. The mixer learns from what the finished pipeline makes of fresh crops: each step rolls out
    the transformer and refiner on its batch, adds their latents to a pool, and trains on a larger draw from it
    (a rollout costs far more than a step of the mixer)."""

    reads = ("vqvae", "transformer", "refiner")
    adds = "mixer."
    POOL, MIX_BATCH = 4096, 64
    selection_metric = "log_mse"

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        expert = getattr(model, "blur_expert", None)
        if expert is None or expert.mixer is None:
            raise ConfigError("this model has no mixer (extensions.blur_expert.mixer_width = 0); pass --preset small")
        self.forward_module = MixerForward(expert).requires_grad_(True)
        self.pool = LatentPool(self.POOL)

    @classmethod
    def model_config(cls, base, wanted):
        """`base` (with its trained blur expert) plus the mixer's size from `wanted`."""
        have, want = extensions_of(base), extensions_of(wanted)
        if not (have and have.blur_expert and want and want.blur_expert and want.blur_expert.mixer_width):
            raise ConfigError(
                "the mixer stage needs a model with a trained blur expert (the blur_expert stage's "
                "output) and a preset or `model:` with a blur expert's mixer_width > 0 "
                "(e.g. --preset small)"
            )
        expert = replace(have.blur_expert, mixer_width=want.blur_expert.mixer_width)
        return replace(base, extensions=replace(have, blur_expert=expert))

    def trainables(self):
        return {"mixer": self.forward_module}

    @torch.no_grad()
    def latents(self, batch):
        """What the mixer reads (the refined, degraded and deblurred latents, the detector's belief), as the
        pipeline computes it, and the clean latent."""
        degraded, clean = self.images(batch)
        intermediates = self.model.forward_latents(degraded, refine=False)
        refined, degraded_latent = self.model.refine_latent(intermediates), intermediates.degraded_latent_BChw
        expert = self.model.blur_expert
        kind_probs = expert.kind_logits(degraded_latent).softmax(1)
        return (
            refined,
            degraded_latent,
            expert.deblurred(degraded_latent),
            kind_probs,
            self.model.vqvae.encode_latent(clean),
        )

    def kind_weights(self, batch) -> torch.Tensor:
        weights = self.config.mixer.kind_loss_weights or {}
        return torch.tensor([weights.get(kind, 1.0) for kind in batch["degradation"]], device=self.env.device)

    def compute_loss(self, batch, step, wrapped):
        self.pool.add(*self.latents(batch), self.kind_weights(batch))
        *inputs, clean, weights_B = self.pool.sample(self.MIX_BATCH)
        return {"loss": log_mse(wrapped["mixer"](*inputs), clean, self.config.mixer.log_mse_floor, weights_B)}

    def validate(self, batch):
        refined, degraded_latent, deblurred, kind_probs, clean = self.latents(batch)
        mixed = self.forward_module(refined, degraded_latent, deblurred, kind_probs)
        rule = refined + kind_probs[:, self.model.blur_expert.blur_class].view(-1, 1, 1, 1) * (deblurred - refined)
        mse = lambda latent: (latent - clean).square().flatten(1).mean(1)  # noqa: E731
        degraded = mse(degraded_latent) > 0  # an undegraded crop's latent is the clean one: no gain to measure
        gain = lambda latent: float(10 * torch.log10(mse(degraded_latent) / mse(latent))[degraded].mean())  # noqa: E731
        floor = self.config.mixer.log_mse_floor
        metrics = {
            "log_mse": float(log_mse(mixed, clean, floor, self.kind_weights(batch))),
            "gain_db": gain(mixed),
            "gain_db_detector_rule": gain(rule),
        }
        is_blur = torch.tensor([k == "blur" for k in batch["degradation"]], device=clean.device)
        if is_blur.any():
            blur_mse = lambda latent: float(mse(latent)[is_blur].mean())  # noqa: E731
            metrics["gain_db_blur"] = 10 * math.log10(blur_mse(degraded_latent) / blur_mse(mixed))
        return ValResult(metrics, [batch["degraded"], to_unit(self.model.vqvae.decode_latent(mixed)), batch["clean"]])
