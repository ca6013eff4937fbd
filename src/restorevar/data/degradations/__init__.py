"""Synthetic degradations for training on clean photos: haze, rain, snow, low light, motion blur.

Each kind is a small physical model in its own module (haze, rain, snow, low_light, blur), with
parameter ranges wide enough to cover the standard benchmarks (RESIDE haze, Rain13K/Rain100
streaks, Snow100K, LOL low light, GoPro blur) and the ways other people's code makes them; on top,
the camera (camera.py) sometimes adds mild noise and JPEG compression. Images are ``image_3HW``
float tensors in sRGB [0, 1]; every function returns the same shape and range. All randomness
comes from one ``numpy.random.Generator``, so the same seed gives bit-identical output on the same
machine and thread count.

    >>> noisy_3HW = degrade(clean_3HW, "rain", generator=1234)
    >>> noisy_3HW, kind = random_degradation(clean_3HW, generator=1234)

Each module also offers ``sample_<kind>(rng, ...) -> <Kind>Params`` and ``apply_<kind>(image, params,
rng)``, to draw or inspect parameters apart from rendering.
"""

from __future__ import annotations

import torch

from restorevar.data.degradations.blur import blur, motion_kernel
from restorevar.data.degradations.camera import camera, jpeg_round_trip
from restorevar.data.degradations.common import (
    GeneratorLike,
    as_numpy_rng,
    capsule_kernel,
    check_image,
    fft_convolve,
    linear_to_srgb,
    smooth_field,
    srgb_to_linear,
)
from restorevar.data.degradations.haze import haze
from restorevar.data.degradations.low_light import low_light
from restorevar.data.degradations.rain import rain
from restorevar.data.degradations.snow import snow

__all__ = [
    "DEGRADATIONS",
    "EXTRA_KINDS",
    "GeneratorLike",
    "as_numpy_rng",
    "blur",
    "camera",
    "capsule_kernel",
    "degrade",
    "fft_convolve",
    "haze",
    "jpeg_round_trip",
    "linear_to_srgb",
    "low_light",
    "motion_kernel",
    "rain",
    "random_degradation",
    "smooth_field",
    "snow",
    "srgb_to_linear",
]

DEGRADATIONS: tuple[str, ...] = ("haze", "rain", "snow", "low_light", "blur")
# beside them: "mixed" (two or three composed) and "none" (the clean crop itself: pairs that teach a restorer to
# leave a clean photo alone)
EXTRA_KINDS: tuple[str, ...] = ("mixed", "none")
# physical order when kinds are composed: scene (haze, rain, snow) -> camera motion -> sensor
_MIXED_ORDER = ("haze", "rain", "snow", "blur", "low_light")
_GENERATORS = {"haze": haze, "rain": rain, "snow": snow, "low_light": low_light, "blur": blur}
THIRD_KIND_PROBABILITY = 0.15  # "mixed" composes three kinds instead of two this often


@torch.no_grad()
def degrade(clean_3HW: torch.Tensor, kind: str, generator: GeneratorLike) -> torch.Tensor:
    """Apply one degradation ``kind`` (or "mixed": two or three composed in physical order; "none": the input),
    then, sometimes, the camera's noise and JPEG compression (never for "none").

    clean_3HW: float (3, H, W) sRGB in [0, 1], H, W ≥ 16. Returns the same shape and dtype in [0, 1].
    """
    if kind not in _GENERATORS and kind not in EXTRA_KINDS:
        raise ValueError(f"unknown degradation {kind!r}; valid: {', '.join(DEGRADATIONS + EXTRA_KINDS)}")
    check_image(clean_3HW)
    rng = as_numpy_rng(generator)
    image = clean_3HW.clamp(0.0, 1.0)
    if kind == "none":
        return image.clone()
    if kind == "mixed":
        count = 3 if rng.random() < THIRD_KIND_PROBABILITY else 2
        chosen = [DEGRADATIONS[i] for i in rng.choice(len(DEGRADATIONS), size=count, replace=False)]
        for name in sorted(chosen, key=_MIXED_ORDER.index):
            image = _GENERATORS[name](image, rng)
    else:
        image = _GENERATORS[kind](image, rng)
    return camera(image, rng)


def random_degradation(
    clean_3HW: torch.Tensor, generator: GeneratorLike, kinds: tuple[str, ...] = DEGRADATIONS
) -> tuple[torch.Tensor, str]:
    """Pick one of ``kinds`` uniformly and apply it; returns (degraded_3HW, kind)."""
    if not kinds:
        raise ValueError("kinds is empty; pass at least one of " + ", ".join(DEGRADATIONS))
    rng = as_numpy_rng(generator)
    kind = kinds[int(rng.integers(len(kinds)))]
    return degrade(clean_3HW, kind, rng), kind
