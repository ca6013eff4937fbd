"""VarFormer stage 2, backbone: the VAR and the adapter frozen; the U-Net with DAE and AFT learns
L_rec = −PSNR(restored, clean) + λ·perceptual (§3.4; EfficientNet-Lite0 features stand in for the paper's VGG19,
whose weights cannot be had offline).

Ours, for CPU budgets: the prior costs a greedy generation per 512² crop, but the backbone learns as well from
small windows. So each step computes the prior of the batch's few fresh crops into a pool (as the blur expert's
stage does with latents), and trains on many windows drawn from the pool, each with the matching window of the
prior maps (windows align with the prior's 16-pixel grid). The pool is not checkpointed: a resumed run refills it.
A backbone without a prior (the ablation's first row) skips the VAR.

Shapes: B batch, K scales, C latent channels, S the window side, s = S/16 its prior side.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from restorevar.models.config import ConfigError
from restorevar.models.varformer.config import VarFormerConfig
from restorevar.training.perceptual import PerceptualLoss
from restorevar.training.stages.base import LatentPool, Stage, ValResult, psnr


def neg_psnr(restored_B3HW: torch.Tensor, clean_B3HW: torch.Tensor) -> torch.Tensor:
    """−PSNR in dB of images in [-1, 1] (data range 2), the mean over images."""
    mse = (restored_B3HW - clean_B3HW).square().flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(mse / 4)).mean()


class BackboneForward(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, image_B3HW, priors_BKChw=None, latent_BChw=None):
        return self.backbone(image_B3HW, priors_BKChw, latent_BChw)


class VarFormerStage(Stage):
    reads = ("vqvae", "transformer", "adapter")
    native_size_only = True
    selection_metric = "neg_psnr"

    @classmethod
    def model_config(cls, base, wanted):
        """`wanted`'s backbone on `init`'s frozen VAR and trained adapter."""
        if not isinstance(wanted, VarFormerConfig):
            raise ConfigError(
                f"the varformer stage trains a VarFormer backbone; the preset or `model:` given is a "
                f"{wanted.model_type!r} model (pass none to keep the input's, or --preset varformer-small)"
            )
        return replace(wanted, tokenizer=base.tokenizer, transformer=base.transformer, adapter=base.adapter)

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        settings = config.varformer
        model.backbone.requires_grad_(True)
        self.forward_module = BackboneForward(model.backbone)
        self.window, self.windows_per_step = settings.window, settings.windows_per_step
        self.grid = model.config.tokenizer.downsample_factor
        if self.window % self.grid:
            raise ValueError(f"varformer.window {self.window} must be a multiple of the prior's grid {self.grid}")
        self.pool = LatentPool(settings.pool)
        self.perceptual_weight = settings.perceptual_weight
        self.perceptual = PerceptualLoss().to(env.device).eval() if self.perceptual_weight else None

    def trainables(self):
        return {"backbone": self.forward_module}

    @torch.no_grad()
    def crops_with_prior(self, batch) -> list[torch.Tensor]:
        """Degraded and clean crops in [-1, 1], and their prior maps and latent (empty without a prior)."""
        degraded, clean = self.images(batch)
        if not self.model.uses_prior:
            return [degraded, clean]
        prior = self.model.prior(degraded)
        return [degraded, clean, prior.priors_BKChw.half(), prior.latent_BChw.half()]

    def windows(self, tensors: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """One random window per item, aligned to the prior's grid: images (B, 3, S, S), priors (B, K, C, s, s)."""
        side, cells = tensors[0].shape[-1], self.window // self.grid
        top, left = (int(v) * self.grid for v in torch.randint(0, (side - self.window) // self.grid + 1, (2,)))
        images = [t[..., top : top + self.window, left : left + self.window] for t in tensors[:2]]
        t0, l0 = top // self.grid, left // self.grid
        priors = [t[..., t0 : t0 + cells, l0 : l0 + cells].float() for t in tensors[2:]]
        return images + (priors or [None, None])

    def compute_loss(self, batch, step, wrapped):
        self.pool.add(*self.crops_with_prior(batch))
        draws = self.pool.sample(self.windows_per_step)
        degraded, clean, priors, latent = self.windows(draws)
        restored = wrapped["backbone"](degraded, priors, latent)
        losses = {"neg_psnr": neg_psnr(restored, clean)}
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(restored, clean).mean()
        losses["loss"] = losses["neg_psnr"] + self.perceptual_weight * losses.get("perceptual", 0.0)
        return losses

    def validate(self, batch):
        tensors = self.crops_with_prior(batch)
        priors, latent = (t.float() for t in tensors[2:]) if len(tensors) > 2 else (None, None)
        restored = self.forward_module(tensors[0], priors, latent)
        image = (restored.clamp(-1, 1) + 1) / 2
        metrics = {
            "neg_psnr": float(neg_psnr(restored.clamp(-1, 1), tensors[1])),
            "psnr": psnr(image, batch["clean"]),
            "psnr_input": psnr(batch["degraded"], batch["clean"]),
        }
        return ValResult(metrics, [batch["degraded"], image, batch["clean"]])
