"""Haze, rain and snow of the cross generator; each takes a (3, H, W) float image in [0, 1] and a numpy rng."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from restorevar.data.cross_generator.kernels import (
    convolve,
    linear_to_srgb,
    low_frequency_field,
    segment_points,
    size_scale,
    splat_kernel,
    srgb_to_linear,
)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min()).clamp(min=1e-6)


def _smooth(x_HW: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-downsample by ``factor`` and bilinearly upsample back: a cheap wide low-pass."""
    height, width = x_HW.shape
    small = F.adaptive_avg_pool2d(x_HW[None, None], (max(1, height // factor), max(1, width // factor)))
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[0, 0]


def pseudo_depth(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A (H, W) depth proxy in [0, 1] (1 = far): a random convex mix of four cues.

    Cues: height in the frame (the sky is far), the colour-attenuation cue (bright and unsaturated is far),
    the dark channel over a window (a bright dark channel is far), and a random tilted plane.
    """
    _, height, width = image_3HW.shape
    rows = torch.linspace(1.0, 0.0, height)[:, None].expand(height, width)
    value, low = image_3HW.max(0).values, image_3HW.min(0).values
    saturation = (value - low) / value.clamp(min=1e-3)
    attenuation = 0.12 + 0.96 * value - 0.78 * saturation  # the shape of Zhu et al.'s linear model
    window = max(3, int(round(15 * size_scale(height, width))) | 1)
    dark = -F.max_pool2d(-low[None, None], window, stride=1, padding=window // 2)[0, 0]
    angle = rng.uniform(0, 2 * math.pi)
    xs, ys = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    plane = math.cos(angle) * xs + math.sin(angle) * ys
    factor = max(2, min(height, width) // 24)
    cues = [rows, _smooth(attenuation, factor), _smooth(dark, factor), plane]
    weights = rng.dirichlet([1.2, 1.0, 1.0, 0.6])
    return _normalise(sum(w * _normalise(c) for w, c in zip(weights, cues)))


def haze(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """I = J t + A (1 - t), t = exp(-β d), in linear light or in sRGB values (half each)."""
    _, height, width = image_3HW.shape
    depth = 0.1 + 0.9 * pseudo_depth(image_3HW, rng)
    beta = torch.full((height, width), rng.uniform(0.5, 2.8))
    if rng.random() < 0.4:  # patchy fog: density varies smoothly over the frame
        beta = beta * (0.45 + 1.1 * low_frequency_field(rng, height, width, int(rng.integers(3, 7))))
    transmission = torch.exp(-beta * depth)[None]
    tint = np.array([-1.0, 0.0, 1.0]) if rng.random() < 0.5 else np.array([1.0, 0.6, -1.0])  # bluish / yellowish
    airlight = np.clip(rng.uniform(0.72, 1.0) * (1 + rng.uniform(0.0, 0.07) * tint), 0, 1)
    airlight_3 = torch.tensor(airlight, dtype=torch.float32)[:, None, None]
    if rng.random() < 0.5:
        linear = srgb_to_linear(image_3HW) * transmission + srgb_to_linear(airlight_3) * (1 - transmission)
        return linear_to_srgb(linear)
    return image_3HW * transmission + airlight_3 * (1 - transmission)


def _rain_layer(rng: np.random.Generator, height: int, width: int, angle: float, scale: float) -> torch.Tensor:
    """One depth layer of streaks: sparse thresholded noise dragged along a line (peak-normalised), (H, W)."""
    density = rng.uniform(0.0008, 0.006)
    noise = rng.random((height, width))
    seeds = np.where(noise < density, rng.uniform(0.35, 1.0, (height, width)), 0.0)
    length = rng.uniform(8.0, 48.0) * scale
    width_sigma = rng.uniform(0.35, 1.1) * math.sqrt(scale)
    kernel = splat_kernel(segment_points(length, angle), width_sigma)
    kernel = kernel / kernel.max()
    layer = convolve(torch.from_numpy(seeds.astype(np.float32))[None], kernel, wrap=True)[0]
    return layer.clamp(0.0, 1.0) * rng.uniform(0.3, 0.85)


def rain(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A veil (contrast loss toward a grey-white), then 1-3 streak layers screened on top."""
    _, height, width = image_3HW.shape
    scale = size_scale(height, width)
    veil = rng.uniform(0.03, 0.28)
    veil_level = float(np.clip(image_3HW.mean().item() + rng.uniform(0.1, 0.35), 0.5, 0.95))
    out = image_3HW * (1 - veil) + veil_level * veil
    if rng.random() < 0.3:  # water on the lens or a soft background
        kernel = splat_kernel(np.zeros((1, 2)), rng.uniform(0.5, 1.2) * scale)
        out = convolve(out, kernel / kernel.sum())
    base = math.pi / 2 + rng.uniform(-0.55, 0.55)  # near vertical, up to ~30 degrees of wind
    streaks = torch.zeros(height, width)
    for _ in range(int(rng.integers(1, 4))):
        layer = _rain_layer(rng, height, width, base + rng.normal(scale=0.06), scale)
        streaks = 1 - (1 - streaks) * (1 - layer)
    colour = torch.tensor(rng.uniform([0.85, 0.9, 0.95], [0.95, 1.0, 1.0]), dtype=torch.float32)[:, None, None]
    return 1 - (1 - out) * (1 - streaks[None] * colour)


def _flake_layer(rng: np.random.Generator, height: int, width: int, radius: float, count: int) -> torch.Tensor:
    """``count`` flakes of about ``radius`` px at sub-pixel positions, Gaussian falloff, some streaked: (H, W)."""
    impulses = np.zeros((height + 1, width + 1))
    xs, ys = rng.uniform(0, width - 1, count), rng.uniform(0, height - 1, count)
    x0, y0 = xs.astype(int), ys.astype(int)
    fx, fy = xs - x0, ys - y0
    amplitude = rng.uniform(0.4, 1.0, count)
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(impulses, (y0 + dy, x0 + dx), amplitude * w)  # bilinear splat
    sigma = max(radius / 2.0, 0.4)
    if rng.random() < 0.4:  # falling fast or close: a short streak
        points = segment_points(rng.uniform(2.0, 5.0) * radius, math.pi / 2 + rng.uniform(-0.6, 0.6))
        kernel = splat_kernel(points, sigma)
    else:
        kernel = splat_kernel(np.zeros((1, 2)), sigma, aspect=rng.uniform(1.0, 1.6), theta=rng.uniform(0, math.pi))
    layer = convolve(
        torch.from_numpy(impulses[:height, :width].astype(np.float32))[None], kernel / kernel.max(), wrap=True
    )[0]
    return layer.clamp(0.0, 1.0)


def snow(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A brightening veil, then 2-3 flake layers (small and many to large and few) alpha-blended in white."""
    _, height, width = image_3HW.shape
    scale = size_scale(height, width)
    veil = rng.uniform(0.04, 0.3)
    grey = image_3HW.mean(0, keepdim=True)
    out = grey + rng.uniform(0.75, 1.0) * (image_3HW - grey)  # snowy light is desaturated
    out = out + veil * (1 - out)
    white = torch.tensor(rng.uniform([0.88, 0.9, 0.93], [0.97, 0.98, 1.0]), dtype=torch.float32)[:, None, None]
    area = height * width / (512.0 * 512.0)
    radii = ((0.5, 1.2), (1.2, 2.6), (2.6, 5.5))
    counts = ((1500, 6000), (250, 1200), (20, 160))
    for index in sorted(rng.choice(3, size=int(rng.integers(2, 4)), replace=False)):
        radius = rng.uniform(*radii[index]) * scale
        count = max(1, int(rng.uniform(*counts[index]) * area / max(scale, 0.25) ** 0.5))
        alpha = _flake_layer(rng, height, width, radius, count)[None] * rng.uniform(0.6, 1.0)
        out = out * (1 - alpha) + white * alpha
    return out
