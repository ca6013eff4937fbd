"""Stage 1, transformer: the VQVAE frozen; teacher-forced cross-entropy over all scales, uniform over tokens (the
paper). Drop path stays on while it trains, as in the paper."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from restorevar.models.restorevar.model import as_tokens
from restorevar.models.restorevar.vqvae import to_unit
from restorevar.training.stages.base import Stage, ValResult, psnr

log = logging.getLogger(__name__)


class TransformerStage(Stage):
    reads = ("vqvae",)
    native_size_only = True

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        if config.transformer.var_d16:
            from restorevar.models.restorevar.convert import load_var_backbone

            report = load_var_backbone(model.transformer, config.transformer.var_d16)
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
        """The clean tokens as teacher-forced input and target, and the degraded image's condition (B, N, C)."""
        degraded, clean = self.images(batch)
        x_in, target_BL, _ = self.clean_tokens(clean)
        return x_in, as_tokens(self.model.vqvae.encode_continuous(degraded)), target_BL

    def compute_loss(self, batch, step, wrapped):
        x_in, cond, target_BL = self.inputs(batch)
        logits_BLV = wrapped["transformer"](x_in, cond)
        loss = F.cross_entropy(logits_BLV.flatten(0, 1).float(), target_BL.flatten())
        out = {"loss": loss}
        correct = (logits_BLV.detach().argmax(-1) == target_BL).float()
        bounds = self.model.transformer.scale_bounds
        for k in range(len(bounds) - 1):
            out[f"acc_s{k}"] = correct[:, bounds[k] : bounds[k + 1]].mean()
        return out

    def validate(self, batch):
        x_in, cond, target = self.inputs(batch)
        acc = float((self.model.transformer(x_in, cond).argmax(-1) == target).float().mean())
        intermediates = self.model.forward_latents(self.images(batch)[0], refine=False)  # greedy generation
        image = to_unit(self.model.vqvae.decode_latent(intermediates.f_hat_BChw))
        return ValResult({"acc": acc, "psnr": psnr(image, batch["clean"])}, [batch["degraded"], image, batch["clean"]])
