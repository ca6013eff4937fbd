"""RestoreVAR end to end: degraded image → latent → clean tokens → refined latent → image (Fig. 3).

Shapes: B batch, H×W image at the model's native size, h×w latent, L tokens over all scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from restorevar.models import checkpoint
from restorevar.models.restorevar.config import RestoreVARConfig
from restorevar.models.restorevar.refiner import LatentRefiner
from restorevar.models.restorevar.transformer import RestoreVARTransformer
from restorevar.models.restorevar.vqvae import VQVAE, to_unit

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Restoration:
    image_B3HW: torch.Tensor  # restored image in [0, 1]
    indices: list[torch.Tensor] | None = None  # clean tokens per scale, (B, pn²)
    f_hat_BChw: torch.Tensor | None = None  # quantized latent of those tokens
    latent_BChw: torch.Tensor | None = None  # refined continuous latent (what the decoder sees)
    degraded_latent_BChw: torch.Tensor | None = None  # the input's continuous latent (after quant_conv)


class RestoreVAR(nn.Module):
    def __init__(self, config: RestoreVARConfig):
        super().__init__()
        self.config = config.validate()
        self.vqvae = VQVAE(config.tokenizer)
        self.transformer = RestoreVARTransformer(config.transformer, config.tokenizer)
        self.refiner = LatentRefiner(config.refiner, config.tokenizer, config.transformer)
        self.compute_dtype = torch.float32  # bf16/fp16 run under autocast; weights stay fp32

    @property
    def image_size(self) -> int:
        return self.config.tokenizer.image_size

    @property
    def device(self) -> torch.device:
        return self.transformer.head.weight.device

    @torch.no_grad()
    def restore_batch(self, degraded_B3HW: torch.Tensor, *, return_intermediates: bool = False) -> Restoration:
        """Restore a batch at the native size. Input and output in [0, 1]."""
        size = self.image_size
        if degraded_B3HW.shape[-2:] != (size, size):
            raise ValueError(
                f"restore_batch() takes {size}×{size} images, got {tuple(degraded_B3HW.shape[-2:])}; "
                "use restore() for any size (tiling)"
            )
        # channels-last suits oneDNN and cuDNN convolutions (the VQVAE is ~70% of the work)
        image = (degraded_B3HW.to(self.device, torch.float32) * 2 - 1).contiguous(memory_format=torch.channels_last)
        is_mixed = self.compute_dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=is_mixed):
            # 1. the degraded image's continuous latent (before quant_conv) conditions every block
            cond_BChw = self.vqvae.encode_continuous(image)
            cond_BNC = cond_BChw.flatten(2).transpose(1, 2)

            # 2. greedy next-scale generation of the clean image's tokens
            generation = self.transformer.generate(cond_BNC, self.vqvae.quantizer)

            # 3. the refiner turns the discrete latent into a continuous one
            refiner = self.config.refiner
            degraded = self.vqvae.quant_conv(cond_BChw)
            latent = self.refiner.refine_latent(generation.f_hat_BChw, generation.hidden_BLC,
                                                degraded if refiner.refine_degraded else None)
            if self.refiner.blur_expert is not None:  # ours: where the input looks blurred, a deblurring CNN's latent
                latent = self.refiner.blur_expert(latent, degraded)

            # 4. the fine-tuned decoder maps it back to pixels
            decoded = self.vqvae.decode_latent(latent)
            if refiner.add_input_detail:  # the input's detail that no latent holds, unchanged
                decoded = decoded + image - self.vqvae.decode_latent(degraded)
        restored = to_unit(decoded)
        if not return_intermediates:
            return Restoration(restored)
        return Restoration(restored, generation.indices, generation.f_hat_BChw, latent.float(), degraded.float())

    def restore(self, image, *, tile: int | None = None, overlap: int | None = None, resize: bool = False,
                batch_size: int = 4):
        """Any photo (path, PIL image or array), any size → restored PIL image of the same size and mode."""
        from restorevar.inference.restorer import RestoreOptions, restore_image

        return restore_image(self, image, RestoreOptions(tile, overlap, resize, batch_size))

    def restore_paths(self, inputs, out_dir=None, **kwargs):
        """Restore files, folders or globs into `out_dir`; see `folders.restore_paths`."""
        from restorevar.inference.folders import restore_paths

        return restore_paths(self, inputs, out_dir, **kwargs)

    # ------------------------------------------------------------------------------- checkpoints

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        checkpoint.save_json(self.config.to_dict(), directory / checkpoint.CONFIG_FILE)
        for name, file in checkpoint.COMPONENT_FILES.items():
            checkpoint.save_state_dict(getattr(self, name).state_dict(), directory / file)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path | None = None, *, device: str | torch.device | None = None,
                        dtype: str | torch.dtype = "fp32") -> RestoreVAR:
        """Load a model folder, or a named model (None = the bundled default); see `presets.resolve_model`."""
        from restorevar.models.registry import resolve_model

        directory = resolve_model(name_or_dir)
        model = cls(RestoreVARConfig.load(directory / checkpoint.CONFIG_FILE))
        for name, file in checkpoint.COMPONENT_FILES.items():
            state = checkpoint.read_safetensors(directory / file)
            checkpoint.load_strict(getattr(model, name), {k: v.float() for k, v in state.items()}, directory / file)
        return model.prepare_for_inference(device=device, dtype=dtype)

    def prepare_for_inference(self, *, device: str | torch.device | None = None,
                              dtype: str | torch.dtype = "fp32") -> RestoreVAR:
        """Device, compute dtype (autocast; weights stay fp32), channels-last convolutions, eval mode."""
        self.compute_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        self.vqvae.to(memory_format=torch.channels_last)
        return self.to(pick_device(device)).eval()


def pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but this PyTorch build sees no CUDA GPU; use --device cpu")
    return device
