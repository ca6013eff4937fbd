"""Haze: Koschmieder's atmospheric scattering, I = J t + A (1 - t), t_c = exp(-beta_c d).

Homogeneous (one transmission for the frame) or depth-varying, with several depth proxies d, since
a photo has no depth map: a vertical gradient (the top is far), a tilted plane, a smooth fractal
field, blurred luminance and a blurred dark channel (bright, colourless regions such as sky and
distant walls tend to be far, as in the dark channel prior). A second proxy is sometimes blended
in. Densities run from light mist to dense fog; the airlight is neutral, bluish (clear-sky scatter)
or warm (smog, dust, low sun), and the model is applied either in sRGB (as RESIDE does) or in
linear light (as the physics does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from restorevar.data.degradations.common import (
    as_tensor,
    linear_to_srgb,
    log_uniform,
    smooth_field,
    srgb_to_linear,
)

DEPTH_PROXIES: tuple[str, ...] = ("homogeneous", "vertical", "plane", "field", "luminance", "dark_channel")
PROXY_WEIGHTS = (0.15, 0.25, 0.15, 0.15, 0.15, 0.15)
AIRLIGHT_TINTS: tuple[str, ...] = ("neutral", "bluish", "warm")
TINT_WEIGHTS = (0.45, 0.3, 0.25)
PROXY_GRID = 64  # proxies are smooth: computed on a grid of this short side, upsampled once


@dataclass(frozen=True)
class HazeParams:
    proxy: str  # one of DEPTH_PROXIES
    secondary: str | None  # a second proxy blended in (None: the first alone)
    blend: float  # weight of the secondary proxy
    sharpness: float  # d <- d ** sharpness: how quickly it gets far
    d_near: float  # depth of the nearest point; the farthest is 1
    beta: float  # extinction per unit depth; far-field transmission exp(-beta)
    spectral: float  # beta_c = beta (1 + spectral (-1, 0, 1)): blue scatters a little more
    tint: str  # one of AIRLIGHT_TINTS
    airlight: tuple[float, float, float]  # A in sRGB
    linear: bool  # apply in linear light (else in sRGB, as RESIDE)


def _airlight(rng: np.random.Generator, tint: str) -> tuple[float, float, float]:
    level = rng.uniform(0.65, 1.0)
    if tint == "bluish":
        b = rng.uniform(0.03, 0.12)
        rgb = (1 - 2 * b, 1 - b, 1.0)
    elif tint == "warm":
        w = rng.uniform(0.03, 0.12)
        rgb = (1.0, 1 - w, 1 - 2.2 * w)
    else:
        rgb = tuple(1.0 + rng.uniform(-0.015, 0.015, size=3))
    return tuple(float(np.clip(level * c, 0.0, 1.0)) for c in rgb)


def sample_haze(rng: np.random.Generator) -> HazeParams:
    """Draw haze parameters (independent of the image)."""
    proxy = DEPTH_PROXIES[rng.choice(len(DEPTH_PROXIES), p=PROXY_WEIGHTS)]
    secondary, blend = None, 0.0
    if proxy != "homogeneous" and rng.random() < 0.5:
        others = [p for p in DEPTH_PROXIES[1:] if p != proxy]
        secondary, blend = others[rng.integers(len(others))], rng.uniform(0.15, 0.5)
    if proxy == "homogeneous":  # transmission 0.3-0.9 over the whole frame
        beta, d_near = rng.uniform(0.1, 1.2), 1.0
    else:  # far-field transmission 0.08-0.78: light mist to dense fog
        beta, d_near = log_uniform(rng, 0.25, 2.5), rng.uniform(0.0, 0.4)
    tint = AIRLIGHT_TINTS[rng.choice(len(AIRLIGHT_TINTS), p=TINT_WEIGHTS)]
    return HazeParams(
        proxy=proxy,
        secondary=secondary,
        blend=blend,
        sharpness=log_uniform(rng, 0.6, 1.8),
        d_near=d_near,
        beta=beta,
        spectral=rng.uniform(0.0, 0.15),
        tint=tint,
        airlight=_airlight(rng, tint),
        linear=bool(rng.random() < 0.4),
    )


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min() + 1e-8)


def depth_proxy(name: str, small_3hw: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One depth proxy in [0, 1] (1 = far) on the small grid of ``small_3hw``; shape (h, w)."""
    _, height, width = small_3hw.shape
    y = torch.linspace(1.0, 0.0, height)[:, None].expand(height, width)  # 1 at the top
    x = torch.linspace(-1.0, 1.0, width)[None, :].expand(height, width)
    if name == "vertical":  # the horizon somewhere around the middle, flat above it
        horizon = rng.uniform(0.5, 1.3)
        return (y / horizon).clamp(max=1.0)
    if name == "plane":  # a tilted ground plane or wall, receding in any direction
        angle = rng.uniform(-math.pi, math.pi)
        return _normalise(math.cos(angle) * y + 0.5 * math.sin(angle) * x)
    if name == "field":
        return torch.from_numpy(smooth_field(rng, height, width, octaves=int(rng.integers(2, 5))))
    if name == "luminance":  # bright, flat regions (sky, distant walls) tend to be far
        luminance = small_3hw.mean(0, keepdim=True)[None]
        return _normalise(F.avg_pool2d(luminance, 5, stride=1, padding=2, count_include_pad=False)[0, 0])
    if name == "dark_channel":  # dark channel prior: near objects have a dark channel near 0
        dark = -F.max_pool2d(-small_3hw.min(0, keepdim=True).values[None], 5, stride=1, padding=2)
        return _normalise(F.avg_pool2d(dark, 7, stride=1, padding=3, count_include_pad=False)[0, 0])
    raise ValueError(f"unknown depth proxy {name!r}; valid: {', '.join(DEPTH_PROXIES)}")


def transmission_map(image_3HW: torch.Tensor, params: HazeParams, rng: np.random.Generator) -> torch.Tensor:
    """Per-channel transmission t_c = exp(-beta_c d), shape (3, H, W) (or (3, 1, 1) when homogeneous)."""
    spectral = torch.tensor([1 - params.spectral, 1.0, 1 + params.spectral], dtype=image_3HW.dtype)
    beta_3 = (params.beta * spectral).to(image_3HW.device)[:, None, None]
    if params.proxy == "homogeneous":
        return torch.exp(-beta_3)
    _, height, width = image_3HW.shape
    scale = PROXY_GRID / min(height, width)
    small_size = (max(8, round(height * scale)), max(8, round(width * scale)))
    small = F.interpolate(image_3HW[None].float().cpu(), size=small_size, mode="area")[0]
    depth = depth_proxy(params.proxy, small, rng)
    if params.secondary is not None:
        depth = (1 - params.blend) * depth + params.blend * depth_proxy(params.secondary, small, rng)
    depth = params.d_near + (1 - params.d_near) * _normalise(depth) ** params.sharpness
    depth = F.interpolate(depth[None, None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return torch.exp(-beta_3 * depth.to(image_3HW))


def apply_haze(image_3HW: torch.Tensor, params: HazeParams, rng: np.random.Generator) -> torch.Tensor:
    transmission = transmission_map(image_3HW, params, rng)
    airlight = as_tensor(np.array(params.airlight, dtype=np.float32), image_3HW)[:, None, None]
    if params.linear:
        hazy = srgb_to_linear(image_3HW) * transmission + srgb_to_linear(airlight) * (1 - transmission)
        return linear_to_srgb(hazy).clamp(0.0, 1.0)
    return (image_3HW * transmission + airlight * (1 - transmission)).clamp(0.0, 1.0)


def haze(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Haze of random density, depth proxy and airlight colour; see the module docstring."""
    return apply_haze(image_3HW, sample_haze(rng), rng)
