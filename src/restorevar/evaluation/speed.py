"""Optional inference accelerations whose results must match the plain path: torch.compile of the
per-scale blocks, refiner and VQVAE, and a check of mixed-precision outputs against fp32."""

from __future__ import annotations

import copy
import logging
import math

import torch

log = logging.getLogger(__name__)


def compile_model(model, *, mode: str = "default") -> None:
    """torch.compile each stage in place, with static shapes: one graph per scale size.

    mode "reduce-overhead" adds CUDA graphs on GPU. Compiling takes minutes on a small CPU; it pays off
    for long batch jobs and servers, not for one photo.
    """
    import torch._dynamo

    num_scales = len(model.transformer.patch_nums)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4 * num_scales)
    blocks = model.transformer.blocks
    for i, block in enumerate(blocks):
        blocks[i] = torch.compile(block, dynamic=False, mode=mode)
    model.refiner.forward = torch.compile(model.refiner.forward, dynamic=False, mode=mode)
    for part in (model.vqvae.encoder, model.vqvae.decoder):
        part.forward = torch.compile(part.forward, dynamic=False, mode=mode)
    log.info("compiled %d blocks, the refiner and the VQVAE (mode=%s)", len(blocks), mode)


def dtype_agreement(model, images_B3HW: torch.Tensor, dtype: torch.dtype) -> dict:
    """Run fp32 and `dtype` on the same images: identical-token fraction per scale and output PSNR (dB)."""
    reference = copy.copy(model)
    reference.compute_dtype = torch.float32
    fast = copy.copy(model)
    fast.compute_dtype = dtype
    ref = reference.restore_batch(images_B3HW, return_intermediates=True)
    out = fast.restore_batch(images_B3HW, return_intermediates=True)
    same = [(a == b).float().mean().item() for a, b in zip(ref.intermediates.indices, out.intermediates.indices)]
    mse = (ref.image_B3HW - out.image_B3HW).square().mean().item()
    return {"identical_tokens_per_scale": same, "psnr_vs_fp32_db": math.inf if mse == 0 else -10 * math.log10(mse)}
