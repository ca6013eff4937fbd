"""Snow (Snow100K-like and beyond): 1-4 layers of flakes over the veil of falling snow.

A layer is one depth: far layers hold small, dense, sharp flakes; near ones large, sparse flakes
that are out of focus (soft discs). Flakes are smeared along the fall direction by the exposure
(from round dots to short streaks), alpha-composited with a near-white colour, over a veil
(transmission 0.6-1) that lowers contrast and brightens the scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from restorevar.data.degradations.common import as_tensor, capsule_kernel, log_uniform, render_particles, veil


@dataclass(frozen=True)
class FlakeLayer:
    radius: float  # px
    softness: float  # edge blur (defocus), px
    streak: float  # smear length along the fall, px
    density: float  # flakes per pixel
    opacity: tuple[float, float]


@dataclass(frozen=True)
class SnowParams:
    angle: float  # fall direction, degrees from vertical
    layers: tuple[FlakeLayer, ...]
    colour: tuple[float, float, float]
    transmission: float  # veil
    airlight: float


def sample_snow(rng: np.random.Generator, height: int, width: int) -> SnowParams:
    scale = min(height, width) / 256
    angle = float(np.clip(rng.normal(0.0, 20.0), -50.0, 50.0))
    amount = rng.uniform(0.2, 1.0)
    motion = log_uniform(rng, 0.05, 3.0)  # smear / radius: slow shutter or fast fall gives streaks
    count = int(rng.integers(1, 5))
    radii = np.sort(np.exp(rng.uniform(math.log(0.5), math.log(4.5), size=count)))  # far (small) to near
    layers = []
    for depth, radius in zip(np.linspace(0.0, 1.0, count), radii):
        radius = radius * scale
        softness = (0.5 + radius * rng.uniform(0.1, 0.7) * (0.3 + depth)) * max(1.0, scale**0.5)
        streak = motion * radius * rng.uniform(0.7, 1.3)
        coverage = amount * log_uniform(rng, 0.004, 0.04)  # share of the frame this layer covers
        density = coverage / (math.pi * radius**2 + 2 * radius * streak + 1.0)
        low = rng.uniform(0.5, 0.9)
        layers.append(FlakeLayer(radius=radius, softness=softness, streak=streak, density=density, opacity=(low, 1.0)))
    blue = rng.uniform(0.0, 0.07)
    white = rng.uniform(0.88, 1.0)
    return SnowParams(
        angle=angle,
        layers=tuple(layers),
        colour=(white * (1 - blue), white * (1 - blue / 2), white),
        transmission=1.0 - amount * rng.uniform(0.0, 0.4),
        airlight=rng.uniform(0.7, 0.97),
    )


def flake_map(rng: np.random.Generator, height: int, width: int, params: SnowParams) -> np.ndarray:
    """Opacity of all flakes in [0, 1], shape (H, W)."""
    angle = math.radians(params.angle)
    kernels = [capsule_kernel(l.streak, angle, l.radius, l.softness) for l in params.layers]
    maps = render_particles(
        rng, height, width, kernels, [l.density for l in params.layers], [l.opacity for l in params.layers]
    )
    return 1.0 - np.prod(1.0 - maps, axis=0)


def apply_snow(image_3HW: torch.Tensor, params: SnowParams, rng: np.random.Generator) -> torch.Tensor:
    _, height, width = image_3HW.shape
    alpha = as_tensor(flake_map(rng, height, width, params), image_3HW)
    colour = as_tensor(np.array(params.colour, dtype=np.float32), image_3HW)[:, None, None]
    out = veil(image_3HW, params.transmission, params.airlight)
    return (out * (1.0 - alpha) + colour * alpha).clamp(0.0, 1.0)


def snow(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Snowfall of random flake sizes, defocus, smear, density and layers, with its veil."""
    _, height, width = image_3HW.shape
    return apply_snow(image_3HW, sample_snow(rng, height, width), rng)
