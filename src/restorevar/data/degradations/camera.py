"""What the camera adds on top of any degradation, sometimes: mild sensor noise, then JPEG compression.

Noise is signal-dependent Gaussian (std grows with brightness, as shot noise does) with std 0.002-0.02
in sRGB; JPEG is a real encode-decode round trip through PIL, in memory, at quality 30-95, with 4:2:0
or 4:4:4 chroma subsampling.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from restorevar.data.degradations.common import log_uniform, normal_like

NOISE_PROBABILITY, JPEG_PROBABILITY = 0.25, 0.35


@dataclass(frozen=True)
class CameraParams:
    noise: float  # std at mid-grey, sRGB (0: none)
    jpeg_quality: int | None  # None: no compression
    subsampling: int  # PIL's code: 0 = 4:4:4, 2 = 4:2:0


def sample_camera(rng: np.random.Generator) -> CameraParams:
    noise = log_uniform(rng, 0.002, 0.02) if rng.random() < NOISE_PROBABILITY else 0.0
    quality = int(rng.integers(30, 96)) if rng.random() < JPEG_PROBABILITY else None
    return CameraParams(noise=noise, jpeg_quality=quality, subsampling=2 if rng.random() < 0.7 else 0)


def jpeg_round_trip(image_3HW: torch.Tensor, quality: int, subsampling: int = 2) -> torch.Tensor:
    """Encode to JPEG and decode again, in memory (8-bit, as a camera or a website stores it)."""
    pixels = (image_3HW.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(decoded).permute(2, 0, 1).to(device=image_3HW.device, dtype=image_3HW.dtype)


def apply_camera(image_3HW: torch.Tensor, params: CameraParams, rng: np.random.Generator) -> torch.Tensor:
    out = image_3HW
    if params.noise > 0:
        std = params.noise * torch.sqrt(0.3 + 1.4 * out)  # 0.55x in black, 1x at mid-grey, 1.3x at white
        out = (out + std * normal_like(rng, out)).clamp(0.0, 1.0)
    if params.jpeg_quality is not None:
        out = jpeg_round_trip(out, params.jpeg_quality, params.subsampling)
    return out


def camera(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Sometimes mild noise, sometimes JPEG, sometimes both, often neither."""
    return apply_camera(image_3HW, sample_camera(rng), rng)
