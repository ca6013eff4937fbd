"""Synthetic degradations: determinism, ranges, and that each one degrades the way its physics says.

The clean image is scikit-image's astronaut (a unit-test fixture only, never training data).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restorevar.data.degradations import DEGRADATIONS, degrade, motion_kernel, random_degradation

skimage_data = pytest.importorskip("skimage.data")

SEEDS = range(4)
# PSNR (dB) against the clean image; measured on 93 draws over the photo set at 256 px:
# haze 7.9-33.3, rain 14.0-32.5, snow 15.4-32.3, low_light 4.4-15.5, blur 15.6-33.0
PSNR_RANGE = {"haze": (6, 35), "rain": (12, 34), "snow": (12, 34), "low_light": (3, 17), "blur": (13, 35)}


@pytest.fixture(scope="module")
def clean_3HW() -> torch.Tensor:
    image = torch.from_numpy(skimage_data.astronaut().copy()).permute(2, 0, 1).float() / 255
    return F.interpolate(image[None], size=(192, 192), mode="area")[0]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * np.log10(1.0 / ((a - b) ** 2).mean().item())


def gradient_energy(image_3HW: torch.Tensor) -> tuple[float, float]:
    """(horizontal, vertical) finite-difference energy of the grey image."""
    grey = image_3HW.mean(0)
    return (grey.diff(dim=1) ** 2).mean().item(), (grey.diff(dim=0) ** 2).mean().item()


def dark_channel(image_3HW: torch.Tensor, patch: int = 15) -> torch.Tensor:
    return -F.max_pool2d(-image_3HW.min(0, keepdim=True).values[None], patch, stride=1)[0, 0]


@pytest.mark.parametrize("kind", DEGRADATIONS + ("mixed",))
def test_deterministic_per_seed_and_varies_across_seeds(clean_3HW, kind):
    first = degrade(clean_3HW, kind, 7)
    assert torch.equal(first, degrade(clean_3HW, kind, 7))
    assert torch.equal(first, degrade(clean_3HW, kind, np.random.default_rng(7)))
    from_torch = [degrade(clean_3HW, kind, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*from_torch)
    assert not torch.equal(first, degrade(clean_3HW, kind, 8))


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_shape_range_and_psnr(clean_3HW, kind):
    low, high = PSNR_RANGE[kind]
    for seed in SEEDS:
        out = degrade(clean_3HW, kind, seed)
        assert out.shape == clean_3HW.shape and out.dtype == clean_3HW.dtype
        assert out.min() >= 0 and out.max() <= 1
        assert low <= psnr(out, clean_3HW) <= high, (kind, seed, psnr(out, clean_3HW))


def test_non_square_and_small_images():
    image = torch.rand(3, 40, 72)
    for kind in DEGRADATIONS:
        assert degrade(image, kind, 0).shape == (3, 40, 72)


def test_haze_raises_dark_channel(clean_3HW):
    for seed in SEEDS:
        out = degrade(clean_3HW, "haze", seed)
        assert dark_channel(out).mean() > dark_channel(clean_3HW).mean() + 0.05


def test_low_light_darkens(clean_3HW):
    for seed in SEEDS:
        assert degrade(clean_3HW, "low_light", seed).mean() < 0.6 * clean_3HW.mean()


def test_blur_removes_high_frequencies(clean_3HW):
    clean = sum(gradient_energy(clean_3HW))
    for seed in SEEDS:
        assert sum(gradient_energy(degrade(clean_3HW, "blur", seed))) < 0.6 * clean


def test_motion_kernel_is_normalised_and_spans_extent():
    for seed in SEEDS:
        kernel = motion_kernel(np.random.default_rng(seed), 21.0)
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
        assert abs(kernel.sum() - 1) < 1e-5 and (kernel >= 0).all()
        ys, xs = np.nonzero(kernel > 1e-6)
        assert 20 <= max(np.ptp(ys), np.ptp(xs)) <= 23


def test_rain_adds_bright_near_vertical_streaks(clean_3HW):
    for seed in SEEDS:
        out = degrade(clean_3HW, "rain", seed)
        residual = out - clean_3HW
        # screen blend only brightens, up to the veil's small shift
        assert (residual > 0.1).float().mean() > 0.01
        # streaks within ±30° of vertical: horizontal gradients of the residual dominate
        horizontal, vertical = gradient_energy(residual)
        assert horizontal > 1.5 * vertical, (seed, horizontal, vertical)


def test_snow_adds_bright_isotropic_particles(clean_3HW):
    for seed in SEEDS:
        residual = degrade(clean_3HW, "snow", seed) - clean_3HW
        bright = (residual > 0.15).float().mean().item()
        assert 0.002 < bright < 0.6, (seed, bright)
        horizontal, vertical = gradient_energy(residual)
        assert 0.2 < horizontal / vertical < 5.0


def test_random_degradation_reports_its_kind(clean_3HW):
    kinds = set()
    for seed in range(12):
        out, kind = random_degradation(clean_3HW, seed)
        again, kind_again = random_degradation(clean_3HW, seed)
        assert kind == kind_again and torch.equal(out, again)
        kinds.add(kind)
    assert kinds <= set(DEGRADATIONS) and len(kinds) >= 3
    assert random_degradation(clean_3HW, 0, kinds=("haze",))[1] == "haze"


def test_none_returns_the_clean_image_as_a_copy(clean_3HW):
    out = degrade(clean_3HW, "none", 0)
    assert torch.equal(out, clean_3HW) and out.data_ptr() != clean_3HW.data_ptr()


def test_bad_inputs_raise_clear_errors(clean_3HW):
    with pytest.raises(ValueError, match="valid: haze, rain, snow, low_light, blur"):
        degrade(clean_3HW, "fog", 0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        degrade(clean_3HW[None], "haze", 0)
    with pytest.raises(TypeError, match="generator"):
        degrade(clean_3HW, "haze", "seed")
