"""RestoreVAR end to end: degraded image → latent → clean tokens → refined latent → image (Fig. 3).

The data flow is written once, in `forward_latents`; inference (`restore_batch`) and every training stage call
it. `refine` and `decode` are the two points where `ExtendedRestoreVAR` (models/extensions/) composes our
add-ons; this class is the paper's model and has none.

Shapes: B batch, H×W image at the model's native size, C latent channels, h×w latent, L tokens over all scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from restorevar.models.interface import Restoration, RestorationModel
from restorevar.models.restorevar.config import RestoreVARConfig
from restorevar.models.restorevar.refiner import LatentRefiner
from restorevar.models.restorevar.transformer import RestoreVARTransformer
from restorevar.models.restorevar.vqvae import VQVAE, to_unit


@dataclass
class RestoreVARIntermediates:
    degraded_latent_BChw: torch.Tensor  # the input's continuous latent, after quant_conv
    indices: list[torch.Tensor]  # the clean image's tokens per scale, (B, pn²)
    f_hat_BChw: torch.Tensor  # quantized latent of those tokens
    hidden_BLC: torch.Tensor  # the transformer's last-block states of all scales
    latent_BChw: torch.Tensor | None = None  # refined continuous latent (what the decoder sees)


class RestoreVAR(RestorationModel):
    model_type = "restorevar"
    config_class = RestoreVARConfig

    def __init__(self, config: RestoreVARConfig):
        super().__init__(config)
        self.vqvae = VQVAE(config.tokenizer)
        self.transformer = RestoreVARTransformer(config.transformer, config.tokenizer)
        self.refiner = self.build_refiner(config)

    def build_refiner(self, config: RestoreVARConfig) -> LatentRefiner:
        return LatentRefiner(config.refiner, config.tokenizer, config.transformer)

    @property
    def image_size(self) -> int:
        return self.config.tokenizer.image_size

    def weight_files(self) -> dict[str, str]:
        return {
            "vqvae": "tokenizer.safetensors",
            "transformer": "transformer.safetensors",
            "refiner": "refiner.safetensors",
        }

    # ------------------------------------------------------------------------------- the data flow

    def forward_latents(self, image_B3HW: torch.Tensor, *, refine: bool = True) -> RestoreVARIntermediates:
        """Image in [-1, 1] → every latent of the pipeline; `refine=False` stops before the refiner."""
        # 1. the degraded image's continuous latent (before quant_conv) conditions every block
        cond_BChw = self.vqvae.encode_continuous(image_B3HW)
        cond_BNC = as_tokens(cond_BChw)
        # 2. greedy next-scale generation of the clean image's tokens
        generation = self.transformer.generate(cond_BNC, self.vqvae.quantizer)
        intermediates = RestoreVARIntermediates(
            self.vqvae.quant_conv(cond_BChw), generation.indices, generation.f_hat_BChw, generation.hidden_BLC
        )
        # 3. the refiner turns the discrete latent into a continuous one
        if refine:
            intermediates.latent_BChw = self.refine(intermediates)
        return intermediates

    def refiner_inputs(self, intermediates: RestoreVARIntermediates) -> tuple[torch.Tensor, ...]:
        """The refiner's arguments: f̂ as tokens (B, N, C) and the transformer's states (B, L, C')."""
        return as_tokens(intermediates.f_hat_BChw), intermediates.hidden_BLC

    def refine_latent(self, intermediates: RestoreVARIntermediates) -> torch.Tensor:
        """The refiner alone → continuous latent (B, C, h, w)."""
        return as_map(self.refiner(*self.refiner_inputs(intermediates)), intermediates.f_hat_BChw.shape)

    def refine(self, intermediates: RestoreVARIntermediates) -> torch.Tensor:
        """Everything between generation and the decoder; in the paper, the refiner."""
        return self.refine_latent(intermediates)

    def decode(self, intermediates: RestoreVARIntermediates, image_B3HW: torch.Tensor) -> torch.Tensor:
        """4. the fine-tuned decoder maps the refined latent back to pixels, in [-1, 1] (roughly)."""
        return self.vqvae.decode_latent(intermediates.latent_BChw)

    @torch.no_grad()
    def restore_batch(self, degraded_B3HW: torch.Tensor, *, return_intermediates: bool = False) -> Restoration:
        """Restore a batch at the native size. Input and output in [0, 1]."""
        self.check_native_size(degraded_B3HW)
        # channels-last suits oneDNN and cuDNN convolutions (the VQVAE is ~70% of the work)
        image = (degraded_B3HW.to(self.device, torch.float32) * 2 - 1).contiguous(memory_format=torch.channels_last)
        with self.autocast():
            intermediates = self.forward_latents(image)
            restored = to_unit(self.decode(intermediates, image))
        if not return_intermediates:
            return Restoration(restored)
        intermediates.degraded_latent_BChw = intermediates.degraded_latent_BChw.float()
        intermediates.latent_BChw = intermediates.latent_BChw.float()
        return Restoration(restored, intermediates)

    def prepare_for_inference(self, *, device=None, dtype="fp32") -> RestoreVAR:
        self.vqvae.to(memory_format=torch.channels_last)
        return super().prepare_for_inference(device=device, dtype=dtype)


def as_tokens(latent_BChw: torch.Tensor) -> torch.Tensor:
    return latent_BChw.flatten(2).transpose(1, 2)


def as_map(tokens_BNC: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return tokens_BNC.transpose(1, 2).reshape(shape)
