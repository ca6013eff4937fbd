"""Shared parts of the cross generator: sRGB transfer, FFT convolution, kernels splatted from points.

Every kernel here is built by splatting Gaussian footprints at sub-pixel points (a segment, a random-walk
trajectory, a single point), so lines and paths come out anti-aliased at any length and angle.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """The sRGB EOTF (IEC 61966-2-1), [0, 1] → linear light."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def size_scale(height: int, width: int) -> float:
    """Lengths are given for a 512² crop; smaller or larger images get them scaled (never below a quarter)."""
    return max(min(height, width) / 512.0, 0.25)


def convolve(image_CHW: torch.Tensor, kernel_kk: np.ndarray, *, wrap: bool = False) -> torch.Tensor:
    """Each channel convolved with a kernel through the FFT (linear in kernel size).

    wrap: circular boundary (for noise layers, which have no edges); otherwise edge pixels are replicated.
    """
    kernel = torch.from_numpy(np.ascontiguousarray(kernel_kk, dtype=np.float32))
    pad_h, pad_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    x = image_CHW if wrap else F.pad(image_CHW[None], (pad_w, pad_w, pad_h, pad_h), mode="replicate")[0]
    height, width = x.shape[-2:]
    half_h, half_w = min(pad_h, (height - 1) // 2), min(pad_w, (width - 1) // 2)
    kernel = kernel[pad_h - half_h : pad_h + half_h + 1, pad_w - half_w : pad_w + half_w + 1]  # fits the image
    padded = torch.zeros(height, width, dtype=torch.float32)
    padded[: 2 * half_h + 1, : 2 * half_w + 1] = kernel
    padded = torch.roll(padded, shifts=(-half_h, -half_w), dims=(0, 1))  # kernel centre at the origin
    out = torch.fft.irfft2(torch.fft.rfft2(x.float()) * torch.fft.rfft2(padded), s=(height, width))
    if not wrap:
        out = out[..., pad_h : pad_h + image_CHW.shape[-2], pad_w : pad_w + image_CHW.shape[-1]]
    return out


def splat_kernel(
    points_P2: np.ndarray, sigma: float, *, aspect: float = 1.0, theta: float = 0.0, weights_P: np.ndarray | None = None
) -> np.ndarray:
    """Sum of Gaussian footprints (std ``sigma`` across, ``sigma * aspect`` along ``theta``) at (x, y) points.

    The grid is odd-sized and centred on the points' bounding box centre; the result is not normalised.
    """
    points = np.asarray(points_P2, dtype=np.float64)
    points = points - (points.max(0) + points.min(0)) / 2
    reach = np.abs(points).max() + 3.0 * sigma * max(aspect, 1.0) + 1.0
    half = int(math.ceil(reach))
    axis = np.arange(-half, half + 1, dtype=np.float64)
    gx, gy = np.meshgrid(axis, axis)  # (K, K)
    dx, dy = gx[None] - points[:, 0, None, None], gy[None] - points[:, 1, None, None]
    along = dx * math.cos(theta) + dy * math.sin(theta)
    across = -dx * math.sin(theta) + dy * math.cos(theta)
    footprint = np.exp(-0.5 * ((along / (sigma * aspect)) ** 2 + (across / sigma) ** 2))
    weights = np.ones(len(points)) if weights_P is None else np.asarray(weights_P, dtype=np.float64)
    return np.tensordot(weights, footprint, axes=1)


def segment_points(length: float, angle: float) -> np.ndarray:
    """Points every ~0.5 px along a centred segment of ``length`` pixels at ``angle`` (radians from +x)."""
    count = max(2, int(math.ceil(2 * length)) + 1)
    t = np.linspace(-length / 2, length / 2, count)
    return np.stack([t * math.cos(angle), t * math.sin(angle)], axis=1)


def shake_trajectory(rng: np.random.Generator, extent: float, samples: int = 96) -> np.ndarray:
    """A hand-shake path sampled at equal *time* steps (slow parts collect more light), ``extent`` px wide.

    Velocity is a random walk with inertia and a weak pull back to the start, plus rare jerks.
    """
    velocity = rng.normal(size=2)
    position = np.zeros(2)
    path = np.empty((samples, 2))
    for i in range(samples):
        jerk = rng.normal(scale=2.5, size=2) if rng.random() < 0.03 else 0.0
        velocity = 0.85 * velocity + rng.normal(scale=0.45, size=2) - 0.02 * position + jerk
        position = position + velocity
        path[i] = position
    span = np.ptp(path, axis=0).max()
    return path * (extent / max(span, 1e-6))


def disc_kernel(radius: float, supersample: int = 4) -> np.ndarray:
    """A uniform disc (defocus) with anti-aliased rim, sum 1."""
    half = int(math.ceil(radius)) + 1
    fine = (np.arange(-half * supersample, (half + 1) * supersample) + 0.5) / supersample - 0.5
    gx, gy = np.meshgrid(fine, fine)
    inside = (gx**2 + gy**2 <= radius**2).astype(np.float64)
    size = 2 * half + 1
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return kernel / kernel.sum()


def low_frequency_field(rng: np.random.Generator, height: int, width: int, cells: int) -> torch.Tensor:
    """A smooth random field in [0, 1]: a ``cells``-wide grid of uniform values, bicubically upsampled."""
    grid = torch.from_numpy(rng.random((1, 1, cells, cells)).astype(np.float32))
    field = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)[0, 0]
    return (field - field.min()) / (field.max() - field.min()).clamp(min=1e-6)


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0
