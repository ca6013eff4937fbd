"""Low light (LOL-like and beyond): under-exposure, a tone curve, a colour cast and sensor noise.

In linear light the scene is scaled by the exposure; a gamma then darkens the shadows further,
applied either to linear values ((k L)^gamma) or to sRGB values (k' S^gamma', the way many papers
synthesise low light). A cast (colour temperature and tint of street lamps, tungsten or shade)
is sometimes applied. Noise is Poisson-Gaussian in the sensor's raw space, before the camera's
white-balance gains (so red and blue are noisier), sometimes smeared by demosaicking; sRGB
encoding follows and, sometimes, rounding to 8 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from restorevar.data.degradations.common import as_tensor, linear_to_srgb, log_uniform, srgb_to_linear

GAMMA_SPACES: tuple[str, ...] = ("linear", "srgb")


@dataclass(frozen=True)
class LowLightParams:
    gamma_space: str  # one of GAMMA_SPACES
    exposure: float  # linear: k in (k L)^gamma; srgb: k' in k' S^gamma
    gamma: float
    cast: tuple[float, float, float] | None  # per-channel gain in linear light (None: neutral)
    white_balance: tuple[float, float, float]  # camera gains raw -> RGB (noise is added before them)
    photons: float  # photo-electrons at raw white: shot noise
    read: float  # read-noise std at raw white = 1
    correlated: bool  # noise smeared over 3x3 (demosaicking, in-camera denoising)
    quantise: bool  # round to 8 bits at the end


def sample_low_light(rng: np.random.Generator) -> LowLightParams:
    gamma_space = GAMMA_SPACES[int(rng.random() < 0.4)]
    if gamma_space == "linear":
        exposure, gamma = log_uniform(rng, 0.02, 0.3), rng.uniform(1.0, 1.35)
    else:  # in sRGB the same darkening needs a milder scale: 0.03 linear is about 0.23 sRGB
        exposure, gamma = log_uniform(rng, 0.15, 0.55), rng.uniform(1.0, 2.0)
    cast = None
    if rng.random() < 0.55:
        temperature, tint = rng.uniform(-0.35, 0.35), rng.uniform(-0.12, 0.12)
        cast = tuple(float(math.exp(temperature * a + tint * b)) for a, b in ((1, -0.5), (0, 1), (-1, -0.5)))
    white_balance = (rng.uniform(1.4, 2.4), 1.0, rng.uniform(1.2, 2.0))
    return LowLightParams(
        gamma_space=gamma_space,
        exposure=exposure,
        gamma=gamma,
        cast=cast,
        white_balance=white_balance,
        photons=log_uniform(rng, 80.0, 3000.0),
        read=log_uniform(rng, 0.0005, 0.006),
        correlated=bool(rng.random() < 0.3),
        quantise=bool(rng.random() < 0.6),
    )


def dim(image_3HW: torch.Tensor, params: LowLightParams) -> torch.Tensor:
    """The noiseless dark image in linear light."""
    if params.gamma_space == "linear":
        # (k * srgb^-1(x))^gamma with the sRGB power segment only (one pow; the toe below 0.04 differs
        # by < 0.001 before the exposure scale shrinks it further)
        dark = ((image_3HW + 0.055) / 1.055) ** (2.4 * params.gamma) * params.exposure**params.gamma
    else:
        dark = srgb_to_linear(params.exposure * image_3HW**params.gamma)
    if params.cast is not None:
        dark = dark * as_tensor(np.array(params.cast, dtype=np.float32), image_3HW)[:, None, None]
    return dark


def sensor_noise(linear_3HW: torch.Tensor, params: LowLightParams, rng: np.random.Generator) -> torch.Tensor:
    """Poisson (shot) plus Gaussian (read) noise in raw space, then the white-balance gains."""
    gains = as_tensor(np.array(params.white_balance, dtype=np.float32), linear_3HW)[:, None, None]
    raw = (linear_3HW / gains).clamp(min=0.0)
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    shot = torch.poisson(raw.cpu().float() * params.photons, generator=generator) / params.photons
    read = params.read * torch.randn(raw.shape, generator=generator)
    noise = (shot + read).to(linear_3HW) - raw
    if params.correlated:
        noise = 2.0 * F.avg_pool2d(noise[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    return (raw + noise) * gains


def apply_low_light(image_3HW: torch.Tensor, params: LowLightParams, rng: np.random.Generator) -> torch.Tensor:
    out = linear_to_srgb(sensor_noise(dim(image_3HW, params), params, rng)).clamp(0.0, 1.0)
    return torch.round(out * 255.0) / 255.0 if params.quantise else out


def low_light(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Dark, noisy, sometimes tinted and 8-bit; see the module docstring."""
    return apply_low_light(image_3HW, sample_low_light(rng), rng)
