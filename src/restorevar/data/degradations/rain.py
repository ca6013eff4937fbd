"""Rain: layers of streaks (drops smeared by the exposure) over the mist of the downpour.

Each layer stands for a depth: far layers are short, thin, dense and dim; near layers long, wide,
sparse and out of focus. Angle (wind), length (shutter time and drop speed), width, blur, density
and opacity vary from a light drizzle (Rain100L-like) to a downpour (Rain100H-like); streaks are
screen-blended, added, or alpha-composited towards a rain colour, and a veil (transmission 0.6-1)
adds the contrast loss and brightening of heavy rain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from restorevar.data.degradations.common import as_tensor, capsule_kernel, log_uniform, render_particles, veil

BLENDS: tuple[str, ...] = ("screen", "add", "alpha")


@dataclass(frozen=True)
class StreakLayer:
    length: float  # px
    radius: float  # half width, px
    softness: float  # edge blur, px (defocus of near drops)
    angle: float  # rad from vertical
    density: float  # streaks per pixel
    opacity: tuple[float, float]  # range of each streak's peak opacity


@dataclass(frozen=True)
class RainParams:
    angle: float  # degrees from vertical (wind)
    heaviness: float  # 0 drizzle .. 1 downpour
    layers: tuple[StreakLayer, ...]
    blend: str  # one of BLENDS
    strength: float  # overall streak opacity
    colour: tuple[float, float, float]
    transmission: float  # veil
    airlight: float


def sample_rain(rng: np.random.Generator, height: int, width: int) -> RainParams:
    scale = min(height, width) / 256
    angle = float(np.clip(rng.normal(0.0, 14.0), -40.0, 40.0))
    heaviness = rng.uniform(0.0, 1.0)
    base_length = log_uniform(rng, 4.0, 22.0)  # at 256 px, far layer
    layers = []
    for depth in np.linspace(0.0, 1.0, int(rng.integers(1, 5))):  # 0 = far, 1 = near
        length = scale * base_length * (1 + 1.2 * depth) * rng.uniform(0.8, 1.25) * (1 + 0.6 * heaviness)
        radius = log_uniform(rng, 0.25, 0.7) * (1 + 1.3 * depth) * max(1.0, scale**0.5)
        softness = log_uniform(rng, 0.5, 1.2) * (1 + 1.5 * depth * rng.random()) * max(1.0, scale**0.5)
        coverage = log_uniform(rng, 0.008, 0.05) * (1 + 1.5 * heaviness) * (1.3 - 0.6 * depth)  # share of the frame
        density = coverage / (2 * radius * length + math.pi * radius**2)
        low = rng.uniform(0.15, 0.5)
        layers.append(
            StreakLayer(
                length=length,
                radius=radius,
                softness=softness,
                angle=math.radians(angle + rng.normal(0, 2)),
                density=density,
                opacity=(low, min(1.0, low + rng.uniform(0.2, 0.5))),
            )
        )
    blend = BLENDS[rng.choice(len(BLENDS), p=(0.5, 0.25, 0.25))]
    blue = rng.uniform(0.0, 0.08)
    grey = rng.uniform(0.8, 1.0)
    return RainParams(
        angle=angle,
        heaviness=heaviness,
        layers=tuple(layers),
        blend=blend,
        strength=rng.uniform(0.35, 0.85),
        colour=(grey * (1 - blue), grey * (1 - blue / 2), grey),
        transmission=1.0 - heaviness * rng.uniform(0.0, 0.4),
        airlight=rng.uniform(0.6, 0.95),
    )


def streak_map(rng: np.random.Generator, height: int, width: int, layers: tuple[StreakLayer, ...]) -> np.ndarray:
    """Opacity of all layers' streaks in [0, 1], shape (H, W) (layers combined as independent covers)."""
    kernels = [capsule_kernel(l.length, l.angle, l.radius, l.softness, taper=0.7) for l in layers]
    maps = render_particles(rng, height, width, kernels, [l.density for l in layers], [l.opacity for l in layers])
    return 1.0 - np.prod(1.0 - maps, axis=0)


def apply_rain(image_3HW: torch.Tensor, params: RainParams, rng: np.random.Generator) -> torch.Tensor:
    _, height, width = image_3HW.shape
    streaks = as_tensor(streak_map(rng, height, width, params.layers) * params.strength, image_3HW)
    colour = as_tensor(np.array(params.colour, dtype=np.float32), image_3HW)[:, None, None]
    out = veil(image_3HW, params.transmission, params.airlight)
    if params.blend == "screen":
        out = 1.0 - (1.0 - out) * (1.0 - streaks * colour)
    elif params.blend == "add":
        out = out + streaks * colour
    else:
        out = out * (1.0 - streaks) + colour * streaks
    return out.clamp(0.0, 1.0)


def rain(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Rain streaks of random angle, length, width, blur, density and layers, with their veil."""
    _, height, width = image_3HW.shape
    return apply_rain(image_3HW, sample_rain(rng, height, width), rng)
