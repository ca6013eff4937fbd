"""A second, independent degradation generator, for validation only (never for training).

    >>> degraded_3HW = cross_degrade(clean_3HW, "haze", seed=7)   # same seed, same image

The training data come from `restorevar.data.degradations`. A model can learn that code's quirks instead of
the degradations themselves, so its held-out score flatters it. This package was written apart from it,
without reading its formulas, the way another lab's code would differ; the benchmark's "cross-generator"
column (`benchmarks/heldout.py --generator cross`) scores the model on it. In ideas:

- haze: the scattering model with a depth proxy that is a random mix of four cues (height in the frame,
  the colour-attenuation cue, a windowed dark channel, a tilted plane), β in [0.5, 2.8] over depth in
  [0.1, 1], sometimes patchy (β modulated by a smooth random field), an airlight of level [0.72, 1] tinted
  slightly blue or yellow, composed in linear light or in sRGB values;
- rain: a veil first (contrast loss toward a grey-white), then 1-3 streak layers, each sparse thresholded
  noise dragged along an anti-aliased segment of its own length, width and angle (up to ~30° of wind),
  screen-blended in a bluish white; sometimes a soft lens blur;
- snow: a desaturating, brightening veil, then 2-3 layers of flakes (fine and many to large and few) as
  Gaussian blobs at sub-pixel positions, elliptical or streaked by motion, alpha-blended in white;
- low light: exposure ×[0.02, 0.25] in linear light with a scene gamma, a white-balance cast,
  Poisson-Gaussian sensor noise, the sRGB curve or a power law, 8-bit quantisation;
- blur: camera shake from a random-walk trajectory with inertia sampled in time (60%), a defocus disc
  (20%) or an anisotropic Gaussian (20%), half of them in linear light; mild noise and 8 bits after.

Every draw comes from ``numpy.random.default_rng([seed, kind, 0xC2055])``; pure numpy/torch on the CPU
(FFT convolutions), well under 0.3 s for a 512² crop.
"""

from __future__ import annotations

import numpy as np
import torch

from restorevar.data.cross_generator.camera import blur, low_light
from restorevar.data.cross_generator.weather import haze, rain, snow

__all__ = ["KINDS", "cross_degrade"]

KINDS: tuple[str, ...] = ("haze", "rain", "snow", "low_light", "blur")
_APPLY = {"haze": haze, "rain": rain, "snow": snow, "low_light": low_light, "blur": blur}
_STREAM = 0xC2055  # keeps these draws apart from any other generator seeded with the same number


def cross_degrade(clean_3HW: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """``clean_3HW`` (3, H, W) in [0, 1] degraded by ``kind``; the same seed gives the same image.

    Returns float32 (3, H, W) in [0, 1] on the input's device.
    """
    if kind not in _APPLY:
        raise ValueError(f"unknown degradation {kind!r}; the cross generator makes {', '.join(KINDS)}")
    if clean_3HW.ndim != 3 or clean_3HW.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(clean_3HW.shape)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([int(seed), KINDS.index(kind), _STREAM])
    image = clean_3HW.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    out = _APPLY[kind](image, rng)
    return out.clamp(0.0, 1.0).to(torch.float32).to(clean_3HW.device)
