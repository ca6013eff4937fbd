"""Stage 2, refiner: the VQVAE and transformer frozen *in eval mode* (the paper left drop path on); a greedy rollout
under no_grad, then L1 (or, ours, log MSE per image) of the refined latent to the clean continuous latent.

The refiner is called through its DDP wrapper, so its gradients are all-reduced (the paper bypassed it); only the
refiner trains, and a blur expert of the model, if any, is not part of it. `best/` = the lowest validation value
of the training loss (the paper selected by a CE that cannot change).
"""

from __future__ import annotations

from functools import partial

import torch

from restorevar.models.restorevar.model import as_tokens
from restorevar.models.restorevar.vqvae import to_unit
from restorevar.training.losses import l1_loss, log_mse
from restorevar.training.stages.base import Stage, ValResult


class RefinerStage(Stage):
    reads = ("vqvae", "transformer")
    native_size_only = True

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        model.refiner.requires_grad_(True)
        settings = config.refiner
        self.selection_metric = settings.loss
        self.loss_fn = partial(log_mse, floor=settings.log_mse_floor) if settings.loss == "log_mse" else l1_loss

    def trainables(self):
        return {"refiner": self.model.refiner}

    @torch.no_grad()
    def rollout(self, batch):
        """The pipeline's latents up to the refiner (greedy generation) and the clean target latent."""
        degraded, clean = self.images(batch)
        return self.model.forward_latents(degraded, refine=False), self.model.vqvae.encode_latent(clean)

    def compute_loss(self, batch, step, wrapped):
        intermediates, target = self.rollout(batch)
        tokens = wrapped["refiner"](*self.model.refiner_inputs(intermediates))  # model.refine_latent, through DDP
        return {"loss": self.loss_fn(tokens, as_tokens(target))}

    def validate(self, batch):
        intermediates, target = self.rollout(batch)
        refined = self.model.refine_latent(intermediates)
        f_hat, degraded_latent = intermediates.f_hat_BChw, intermediates.degraded_latent_BChw
        decode = self.model.vqvae.decode_latent
        metrics = {
            "l1": float(l1_loss(refined, target)),
            "l1_unrefined": float(l1_loss(f_hat, target)),
            "log_mse": float(log_mse(refined, target)),
            "l1_degraded": float(l1_loss(degraded_latent, target)),
            "log_mse_degraded": float(log_mse(degraded_latent, target)),
        }
        return ValResult(metrics, [batch["degraded"], to_unit(decode(f_hat)), to_unit(decode(refined)), batch["clean"]])
