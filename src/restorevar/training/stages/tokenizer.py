"""Stage 0, tokenizer: trains the whole VQVAE (+ PatchGAN): L1 + perceptual + VQ (+ GAN after `gan_start`).

Dead codes are re-initialised from encoder outputs every `tokenizer.dead_code_every` steps. A `linear_path`
tokenizer starts at the PCA of PCA_IMAGES training crops. `tokenizer.continuous_share` > 0 (ours, off by default)
decodes that share of each batch from the continuous latent f instead of f̂, since the restoration path decodes
continuous latents (the refiner's).
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn

from restorevar.models.restorevar.vqvae import fit_linear_path, to_unit
from restorevar.training.losses import codebook_usage, l1_loss, multiscale_vq
from restorevar.training.sampling import mix_seed
from restorevar.training.stages.base import GANMixin, Stage, ValResult, clean_crops, psnr

log = logging.getLogger(__name__)


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
    reads = ("vqvae",)
    starts_fresh = True
    loss_defaults = dict(l1_weight=1.0, ssim_weight=0.0, perceptual_weight=1.0, gan_weight=0.1, gan_start=0.5)

    def __init__(self, config, env, model):
        super().__init__(config, env, model)
        model.vqvae.requires_grad_(True)
        settings = config.tokenizer
        self.forward_module = TokenizerForward(model.vqvae, settings.vq_beta, settings.continuous_share)
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
        return self.with_discriminator({"tokenizer": self.forward_module})

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
        every = self.config.tokenizer.dead_code_every
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
            log.info(
                "codebook usage per scale %s; re-initialised %d dead codes",
                [round(float(u), 3) for u in used_per_scale],
                len(dead),
            )
        self.usage.zero_()

    def validate(self, batch):
        _, clean = self.images(batch)
        rec, q, _ = self.forward_module(clean)
        continuous = to_unit(self.model.vqvae.decode_latent(self.model.vqvae.encode_latent(clean)))
        return ValResult(
            {
                "psnr": psnr(to_unit(rec), batch["clean"]),
                "l1": float(l1_loss(rec, clean)),
                "psnr_continuous": psnr(continuous, batch["clean"]),
            },
            [batch["clean"], to_unit(rec)],
        )
