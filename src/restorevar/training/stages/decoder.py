"""Stage 3, decoder: encoder, quant_conv and quantizer frozen; post_quant_conv + decoder (+ PatchGAN) learn to
decode continuous latents (the pipeline's, or noisy clean latents): L1 + SSIM + perceptual + GAN. The paper
released no code for this stage. `decoder.refit` (ours) first replaces the decoder by the least-squares linear
decoder of PCA_IMAGES crops' latents (`fit_linear_decoder`), conv branch at zero.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from restorevar.models.restorevar.vqvae import fit_linear_decoder, to_unit
from restorevar.training.losses import l1_loss, ssim
from restorevar.training.stages.base import GANMixin, Stage, ValResult, clean_crops, psnr

log = logging.getLogger(__name__)


class DecoderForward(nn.Module):
    def __init__(self, vqvae: nn.Module):
        super().__init__()
        self.post_quant_conv, self.decoder = vqvae.post_quant_conv, vqvae.decoder

    def forward(self, latent_BChw: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latent_BChw))


class DecoderStage(GANMixin, Stage):
    reads = ("vqvae", "transformer", "refiner")
    selection_metric = "l1"
    # chosen by the measurement in docs/training.md
    loss_defaults = dict(l1_weight=1.0, ssim_weight=0.5, perceptual_weight=0.1, gan_weight=0.05, gan_start=0.25)

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        self.forward_module = DecoderForward(model.vqvae).requires_grad_(True)
        self.init_gan()

    def initialise(self, dataset):
        if not self.config.decoder.refit:
            return
        clean = clean_crops(dataset, self.env.device)
        fit_linear_decoder(self.model.vqvae, clean)
        log.info("decoder refitted: least squares on the latents of %d crops, conv branch at zero", len(clean))

    def trainables(self):
        return self.with_discriminator({"decoder": self.forward_module})

    @torch.no_grad()
    def latents(self, batch):
        """'refiner': what the decoder sees at inference. 'noisy-clean': f̂ + a·(f − f̂) + σ·std(f)·noise,
        a ~ U(0, 1) per image, a cheap stand-in that needs no transformer."""
        degraded, clean = self.images(batch)
        settings, vqvae = self.config.decoder, self.model.vqvae
        if settings.latent_source == "refiner":
            return self.model.forward_latents(degraded).latent_BChw
        f = vqvae.encode_latent(clean)
        f_hat = vqvae.quantizer.encode(f)[1][-1]
        a = torch.rand(len(f), 1, 1, 1, device=f.device)
        return f_hat + a * (f - f_hat) + settings.latent_noise * f.std() * torch.randn_like(f)

    def compute_loss(self, batch, step, wrapped):
        _, clean = self.images(batch)
        rec = wrapped["decoder"](self.latents(batch))
        out: dict[str, torch.Tensor] = {}
        self.image_losses(out, rec, clean, step, wrapped, self.model.vqvae.decoder.conv_out.weight)
        return out

    def validate(self, batch):
        _, clean = self.images(batch)
        image = to_unit(self.forward_module(self.latents(batch)))
        return ValResult(
            {
                "psnr": psnr(image, batch["clean"]),
                "ssim": float(ssim(image * 2 - 1, clean)),
                "l1": float(l1_loss(image * 2 - 1, clean)),
            },
            [batch["degraded"], image, batch["clean"]],
        )
