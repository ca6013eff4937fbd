"""Blur: camera shake (random trajectories), straight motion, defocus discs and Gaussian blur.

Shake follows Boracchi & Foi (2012): a random walk with momentum, jerks and a varying speed,
sampled uniformly in time, so that the camera's slow moments leave brighter parts of the kernel.
Straight motion may accelerate. Defocus is an anti-aliased disc, sometimes with the brighter rim
of real lenses. The kernel is convolved in linear light (where light adds up) or, sometimes, in
sRGB (as many datasets do), and a little Gaussian noise follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from restorevar.data.degradations.common import (
    capsule_kernel,
    convolve_image,
    gaussian_kernel,
    linear_to_srgb,
    normal_like,
    srgb_to_linear,
)

KERNEL_TYPES: tuple[str, ...] = ("shake", "linear", "defocus", "gaussian")
KERNEL_WEIGHTS = (0.5, 0.15, 0.2, 0.15)


@dataclass(frozen=True)
class BlurParams:
    kernel_type: str  # one of KERNEL_TYPES
    size: float  # shake / linear: largest extent (px); defocus: disc radius; gaussian: sigma
    linear_light: bool  # convolve in linear light (else in sRGB)
    noise: float  # Gaussian noise std after the blur (sRGB)


def sample_blur(rng: np.random.Generator, height: int, width: int) -> BlurParams:
    short = min(height, width)
    kernel_type = KERNEL_TYPES[rng.choice(len(KERNEL_TYPES), p=KERNEL_WEIGHTS)]
    if kernel_type in ("shake", "linear"):  # 5-15 px at 256, 5-36 at 512
        size = rng.uniform(5.0, max(9.0, 0.07 * short))
    elif kernel_type == "defocus":  # radius 1.5-4 px at 256, 1.5-6.4 at 512
        size = rng.uniform(1.5, max(4.0, 0.0125 * short))
    else:  # sigma 1-2.5 at 256, 1-4 at 512
        size = rng.uniform(1.0, max(2.5, 0.008 * short))
    return BlurParams(
        kernel_type=kernel_type, size=size, linear_light=bool(rng.random() < 0.7), noise=rng.uniform(0.0, 0.01)
    )


def splat(points_N2: np.ndarray) -> np.ndarray:
    """Bilinear splat of trajectory points (centred on 0, (y, x) px) to a (K, K) kernel summing to 1."""
    size = 2 * math.ceil(np.abs(points_N2).max() + 1) + 1
    kernel = np.zeros((size, size), dtype=np.float64)
    coords = points_N2 + size // 2
    base = np.floor(coords).astype(int)
    frac = coords - base
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            np.add.at(kernel, (base[:, 0] + dy, base[:, 1] + dx), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def _resample_in_time(points_T2: np.ndarray, step: float = 0.25) -> np.ndarray:
    """Linear interpolation at equal time steps, dense enough that no gap exceeds ``step`` px."""
    longest = np.linalg.norm(np.diff(points_T2, axis=0), axis=1).max()
    count = max(2, int(math.ceil(longest / step)) * (len(points_T2) - 1) + 1)
    t, dense_t = np.arange(len(points_T2)), np.linspace(0.0, len(points_T2) - 1, count)
    return np.stack([np.interp(dense_t, t, points_T2[:, 0]), np.interp(dense_t, t, points_T2[:, 1])], axis=1)


def _fit(points_T2: np.ndarray, extent: float) -> np.ndarray:
    points = points_T2 - (points_T2.min(0) + points_T2.max(0)) / 2
    return points * extent / (np.ptp(points, axis=0).max() + 1e-8)


def motion_kernel(rng: np.random.Generator, extent: float) -> np.ndarray:
    """Camera-shake kernel: a random walk with momentum, jerks and varying speed, splatted in time.

    Rescaled so its largest extent is ``extent`` px. Returns a (K, K) float32 kernel, K odd, summing to 1.
    """
    steps = 64
    velocity = rng.normal(size=2)
    velocity /= np.linalg.norm(velocity) + 1e-8
    position, points = np.zeros(2), []
    jitter, inertia, jerks = rng.uniform(0.02, 0.4), rng.uniform(0.0, 0.5), rng.uniform(0.0, 0.06)
    # speed: a smooth random curve, from steady (0) to stop-and-go (1.2)
    speed = np.exp(rng.uniform(0.0, 1.2) * np.interp(np.arange(steps), np.linspace(0, steps, 6), rng.normal(size=6)))
    for step in range(steps):
        points.append(position.copy())
        # smooth turns plus occasional jerks, pulled back towards the start (a hand holding still)
        velocity += jitter * rng.normal(size=2) - inertia * position / steps
        if rng.random() < jerks:
            velocity += rng.normal(size=2)
        velocity /= np.linalg.norm(velocity) + 1e-8
        position = position + speed[step] * velocity
    return splat(_resample_in_time(_fit(np.array(points), extent)))


def linear_kernel(rng: np.random.Generator, length: float) -> np.ndarray:
    """Straight motion of ``length`` px in a random direction, at constant speed or accelerating."""
    angle = rng.uniform(0.0, math.pi)
    t = np.linspace(0.0, 1.0, 32) ** _acceleration(rng)
    points = np.stack([t * math.cos(angle), t * math.sin(angle)], axis=1)
    return splat(_resample_in_time(_fit(points, length)))


def _acceleration(rng: np.random.Generator) -> float:
    """Exponent of position over time: 1 is constant speed, above 1 speeding up, below slowing down."""
    return 1.0 if rng.random() < 0.5 else math.exp(rng.uniform(-0.7, 0.7))


def defocus_kernel(rng: np.random.Generator, radius: float) -> np.ndarray:
    """Anti-aliased disc of ``radius`` px, sometimes brighter towards the rim; sums to 1."""
    disc = capsule_kernel(0.0, 0.0, radius, rng.uniform(0.4, 1.0)).astype(np.float64)
    if rng.random() < 0.3:
        coords = np.arange(disc.shape[0]) - disc.shape[0] // 2
        disc *= 1.0 + rng.uniform(0.2, 0.8) * (coords[:, None] ** 2 + coords[None, :] ** 2) / radius**2
    return (disc / disc.sum()).astype(np.float32)


def blur_kernel(params: BlurParams, rng: np.random.Generator) -> np.ndarray:
    """The (K, K) kernel of ``params``, K odd, summing to 1."""
    if params.kernel_type == "shake":
        return motion_kernel(rng, params.size)
    if params.kernel_type == "linear":
        return linear_kernel(rng, params.size)
    if params.kernel_type == "defocus":
        return defocus_kernel(rng, params.size)
    return gaussian_kernel(params.size)


def apply_blur(image_3HW: torch.Tensor, params: BlurParams, rng: np.random.Generator) -> torch.Tensor:
    kernel = blur_kernel(params, rng)
    if params.linear_light:
        out = linear_to_srgb(convolve_image(srgb_to_linear(image_3HW), kernel))
    else:
        out = convolve_image(image_3HW, kernel)
    out = out + params.noise * normal_like(rng, image_3HW)
    return out.clamp(0.0, 1.0)


def blur(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Camera shake, straight motion, defocus or Gaussian blur; see the module docstring."""
    _, height, width = image_3HW.shape
    return apply_blur(image_3HW, sample_blur(rng, height, width), rng)
