"""VarFormer end to end: degraded image → frozen VAR prior (K scale feature maps) → prior-guided U-Net → image.

The VAR part is a RestoreVAR tokenizer and next-scale transformer, frozen: the adapter (stage 1) adjusts the
encoder's latent, the transformer generates the clean image's tokens scale by scale (greedy), and each scale's
contribution to the quantised latent, φ_k(upsample(codebook[tokens_k])), is one prior map. The backbone (stage 2)
restores the full-resolution image with them. Unlike RestoreVAR, the output is not decoded from tokens, so its
fidelity is not capped by the VQ tokenizer.

Shapes: B batch, H×W the native size, K scales, C latent channels, h×w the latent grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from restorevar.models.interface import Restoration, RestorationModel
from restorevar.models.restorevar.transformer import RestoreVARTransformer
from restorevar.models.restorevar.vqvae import VQVAE, to_unit
from restorevar.models.varformer.adapter import LatentAdapter
from restorevar.models.varformer.backbone import Backbone
from restorevar.models.varformer.config import VarFormerConfig


@dataclass
class VarPrior:
    latent_BChw: torch.Tensor  # the adapted latent of the degraded image (what the transformer reads)
    priors_BKChw: torch.Tensor  # one feature map per scale of the generated token pyramid
    indices: list[torch.Tensor] | None = None  # the generated tokens per scale, (B, pn²)


class VarFormer(RestorationModel):
    model_type = "varformer"
    config_class = VarFormerConfig

    def __init__(self, config: VarFormerConfig):
        super().__init__(config)
        tokenizer = config.tokenizer
        self.vqvae = VQVAE(tokenizer)
        self.transformer = RestoreVARTransformer(config.transformer, tokenizer)
        self.adapter = LatentAdapter(config.adapter, tokenizer.latent_channels, tokenizer.latent_size)
        self.backbone = Backbone(config.backbone, tokenizer.latent_channels, tokenizer.num_scales)

    @property
    def image_size(self) -> int:
        return self.config.tokenizer.image_size

    @property
    def uses_prior(self) -> bool:
        return self.config.backbone.prior != "none"

    def weight_files(self) -> dict[str, str]:
        return {
            "vqvae": "tokenizer.safetensors",
            "transformer": "transformer.safetensors",
            "adapter": "adapter.safetensors",
            "backbone": "backbone.safetensors",
        }

    def adapted_latent(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] → the encoder's continuous latent, adapted (B, C, h, w)."""
        return self.adapter(self.vqvae.encode_continuous(image_B3HW))

    def prior(self, image_B3HW: torch.Tensor) -> VarPrior:
        """The frozen VAR's K scale maps for images in [-1, 1] at the native size."""
        latent = self.adapted_latent(image_B3HW)
        quantizer, side = self.vqvae.quantizer, latent.shape[-1]
        generation = self.transformer.generate(latent.flatten(2).transpose(1, 2), quantizer)
        maps = [
            quantizer.upsample_and_phi(quantizer.embed(idx_Bl, side).to(latent.dtype), k, side)
            for k, idx_Bl in enumerate(generation.indices)
        ]
        return VarPrior(latent, torch.stack(maps, dim=1), generation.indices)

    def restore_with_prior(self, image_B3HW: torch.Tensor, prior: VarPrior | None) -> torch.Tensor:
        """The backbone: image in [-1, 1] and its prior (None without one) → restored image in [-1, 1]."""
        if prior is None:
            return self.backbone(image_B3HW)
        return self.backbone(image_B3HW, prior.priors_BKChw, prior.latent_BChw)

    @torch.no_grad()
    def restore_batch(self, degraded_B3HW: torch.Tensor, *, return_intermediates: bool = False) -> Restoration:
        self.check_native_size(degraded_B3HW)
        image = degraded_B3HW.to(self.device, torch.float32) * 2 - 1
        with self.autocast():
            prior = self.prior(image) if self.uses_prior else None
            restored = to_unit(self.restore_with_prior(image, prior).float())
        return Restoration(restored, prior if return_intermediates else None)
