"""Low light and blur of the cross generator: what a camera does, in linear light where physics happens there."""

from __future__ import annotations

import math

import numpy as np
import torch

from restorevar.data.cross_generator.kernels import (
    convolve,
    disc_kernel,
    linear_to_srgb,
    quantize_8bit,
    shake_trajectory,
    size_scale,
    splat_kernel,
    srgb_to_linear,
)

# white-balance errors as per-channel gain directions: warm, cool, green, magenta
CASTS = np.array([[1.0, 0.1, -0.9], [-0.8, 0.0, 1.0], [-0.5, 1.0, -0.5], [0.6, -1.0, 0.6]])


def low_light(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Underexposure in linear light with a random tone gamma, Poisson-Gaussian noise, a cast, 8 bits.

    Exposure ×[0.02, 0.25] (log-uniform); the camera's tone curve is then either the sRGB encoding or a
    plain power law 1/γ with γ in [1.8, 2.6], after a scene gamma in [0.9, 1.25].
    """
    linear = srgb_to_linear(image_3HW) * math.exp(rng.uniform(math.log(0.02), math.log(0.25)))
    linear = linear.clamp(min=0) ** rng.uniform(0.9, 1.25)
    gains = 1.0 + rng.uniform(0.0, 0.15) * CASTS[rng.integers(len(CASTS))]
    linear = linear * torch.tensor(gains, dtype=torch.float32)[:, None, None]
    # sensor: shot noise of variance a·x (a = 1 / full-well photons) plus read noise σ²
    photon_step = math.exp(rng.uniform(math.log(2e-4), math.log(4e-3)))
    read_sigma = math.exp(rng.uniform(math.log(5e-4), math.log(6e-3)))
    electrons = rng.poisson(linear.clamp(0, 1).numpy().astype(np.float64) / photon_step)
    noisy = electrons * photon_step + rng.normal(scale=read_sigma, size=electrons.shape)
    noisy = torch.from_numpy(noisy.astype(np.float32)).clamp(0.0, 1.0)
    if rng.random() < 0.5:
        encoded = linear_to_srgb(noisy)
    else:
        encoded = noisy ** (1.0 / rng.uniform(1.8, 2.6))
    return quantize_8bit(encoded)


def blur_kernel(rng: np.random.Generator, scale: float) -> tuple[str, np.ndarray]:
    """A normalised kernel: camera shake (60%), defocus disc (20%) or anisotropic Gaussian (20%)."""
    draw = rng.random()
    if draw < 0.6:
        extent = rng.uniform(5.0, 30.0) * scale
        kernel = splat_kernel(shake_trajectory(rng, extent), 0.5)
        name = "shake"
    elif draw < 0.8:
        kernel, name = disc_kernel(rng.uniform(1.5, 7.0) * scale), "defocus"
    else:
        sigma = rng.uniform(0.8, 3.5) * scale
        kernel = splat_kernel(np.zeros((1, 2)), sigma, aspect=rng.uniform(1.0, 2.0), theta=rng.uniform(0, math.pi))
        name = "gaussian"
    return name, kernel / kernel.sum()


def blur(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Convolve (in linear light half the time, as a lens does), then mild sensor noise and 8 bits."""
    _, height, width = image_3HW.shape
    _, kernel = blur_kernel(rng, size_scale(height, width))
    if rng.random() < 0.5:
        out = linear_to_srgb(convolve(srgb_to_linear(image_3HW), kernel))
    else:
        out = convolve(image_3HW, kernel)
    noise = torch.from_numpy(rng.normal(scale=rng.uniform(0.002, 0.01), size=out.shape).astype(np.float32))
    return quantize_8bit(out + noise)
