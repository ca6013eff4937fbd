"""Synthetic degradations: determinism, ranges, that each kind degrades the way its physics says, and that the
generator draws the variety it claims (depth proxies, airlight colours, kernel shapes, casts, streak angles).

The clean image is scikit-image's astronaut (a unit-test fixture only, never training data).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restorevar.data.degradations import DEGRADATIONS, degrade, motion_kernel, random_degradation
from restorevar.data.degradations.blur import BlurParams, blur_kernel, sample_blur
from restorevar.data.degradations.camera import jpeg_round_trip, sample_camera
from restorevar.data.degradations.haze import apply_haze, sample_haze
from restorevar.data.degradations.low_light import apply_low_light, sample_low_light
from restorevar.data.degradations.rain import apply_rain, sample_rain

skimage_data = pytest.importorskip("skimage.data")

SEEDS = range(4)
MANY = range(20)  # draws for the variety checks
# PSNR (dB) against the clean image; measured on 40 draws of the 192 px astronaut:
# haze 7.1-27.5, rain 13.6-34.6, snow 15.9-28.0, low_light 5.9-11.3, blur 14.6-24.6
PSNR_RANGE = {"haze": (5, 35), "rain": (10, 38), "snow": (12, 34), "low_light": (3, 17), "blur": (11, 35)}


@pytest.fixture(scope="module")
def clean_3HW() -> torch.Tensor:
    image = torch.from_numpy(skimage_data.astronaut().copy()).permute(2, 0, 1).float() / 255
    return F.interpolate(image[None], size=(192, 192), mode="area")[0]


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * np.log10(1.0 / ((a - b) ** 2).mean().item())


def gradient_energy(image_3HW: torch.Tensor) -> tuple[float, float]:
    """(horizontal, vertical) finite-difference energy of the grey image."""
    grey = image_3HW.mean(0)
    return (grey.diff(dim=1) ** 2).mean().item(), (grey.diff(dim=0) ** 2).mean().item()


def dark_channel(image_3HW: torch.Tensor, patch: int = 15) -> torch.Tensor:
    return -F.max_pool2d(-image_3HW.min(0, keepdim=True).values[None], patch, stride=1)[0, 0]


def local_excess(image_3HW: torch.Tensor, clean_3HW: torch.Tensor) -> torch.Tensor:
    """Brightening against the clean image, minus its 9x9 local mean: thin bright structures, without the veil."""
    residual = (image_3HW - clean_3HW).mean(0)[None, None]
    return (residual - F.avg_pool2d(residual, 9, stride=1, padding=4, count_include_pad=False))[0, 0]


# ---- every kind ---------------------------------------------------------------------------------


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
    for size in ((40, 72), (16, 16), (17, 31)):
        image = torch.rand(3, *size)
        for kind in DEGRADATIONS + ("mixed",):
            for seed in range(3):
                out = degrade(image, kind, seed)
                assert out.shape == (3, *size) and out.min() >= 0 and out.max() <= 1, (kind, size)


# ---- haze ---------------------------------------------------------------------------------------


def test_haze_raises_dark_channel_and_lowers_contrast(clean_3HW):
    for seed in SEEDS:
        out = degrade(clean_3HW, "haze", seed)
        assert dark_channel(out).mean() > dark_channel(clean_3HW).mean() + 0.03, seed
        assert out.mean(0).std() < 0.95 * clean_3HW.mean(0).std(), seed


def test_haze_draws_several_depth_proxies_densities_and_airlight_colours(clean_3HW):
    params = [sample_haze(rng(seed)) for seed in MANY]
    assert len({p.proxy for p in params}) >= 4 and {p.linear for p in params} == {True, False}
    assert {p.tint for p in params} == {"neutral", "bluish", "warm"}
    far_transmission = [np.exp(-p.beta) for p in params]
    assert min(far_transmission) < 0.3 and max(far_transmission) > 0.6  # dense and light
    # seen in the output: a flat grey card takes the airlight's colour, uniformly only when homogeneous
    grey = torch.full((3, 48, 48), 0.5)
    warmth, spread = [], []
    for seed, p in zip(MANY, params):
        out = apply_haze(grey, p, rng(seed))
        warmth.append((out[0] - out[2]).mean().item())
        spread.append(out.mean(0).std().item())
    assert min(warmth) < -0.02 and max(warmth) > 0.02, warmth  # bluish and warm veils
    homogeneous = [s for s, p in zip(spread, params) if p.proxy == "homogeneous"]
    assert max(homogeneous, default=0.0) < 1e-4 and max(spread) > 0.02


# ---- rain and snow ------------------------------------------------------------------------------


def test_rain_adds_thin_bright_streaks_along_its_angle(clean_3HW):
    _, height, width = clean_3HW.shape
    for seed in SEEDS:
        params = sample_rain(rng(seed), height, width)
        excess = local_excess(apply_rain(clean_3HW, params, rng(seed + 100)), clean_3HW)
        assert 0.003 < (excess > 0.05).float().mean() < 0.5, seed
        # gradients of the streaks run across them: energy across the angle dominates energy along it
        gy, gx = excess.diff(dim=0)[:, :-1], excess.diff(dim=1)[:-1, :]
        angle = np.radians(params.angle)  # from vertical; streak direction (dy, dx) = (cos, sin)
        along = ((np.cos(angle) * gy + np.sin(angle) * gx) ** 2).mean()
        across = ((-np.sin(angle) * gy + np.cos(angle) * gx) ** 2).mean()
        assert across > 1.5 * along, (seed, params.angle, across.item(), along.item())


def test_rain_varies_angle_length_width_layers_and_blend():
    params = [sample_rain(rng(seed), 256, 256) for seed in MANY]
    angles = [p.angle for p in params]
    assert min(angles) < -10 and max(angles) > 10
    lengths = [layer.length for p in params for layer in p.layers]
    widths = [layer.radius for p in params for layer in p.layers]
    assert max(lengths) > 3 * min(lengths) and max(widths) > 2.5 * min(widths)
    assert len({len(p.layers) for p in params}) >= 3 and len({p.blend for p in params}) == 3
    assert min(p.transmission for p in params) < 0.85  # the veil of heavy rain


def test_snow_adds_bright_particles(clean_3HW):
    for seed in SEEDS:
        out = degrade(clean_3HW, "snow", seed)
        bright = (local_excess(out, clean_3HW) > 0.08).float().mean().item()
        assert 0.002 < bright < 0.5, (seed, bright)
        assert out.mean() > clean_3HW.mean(), seed  # flakes and veil only brighten


# ---- low light ----------------------------------------------------------------------------------


def test_low_light_darkens(clean_3HW):
    for seed in SEEDS:
        assert degrade(clean_3HW, "low_light", seed).mean() < 0.6 * clean_3HW.mean()


def test_low_light_draws_casts_gamma_spaces_and_sometimes_8_bits():
    params = [sample_low_light(rng(seed)) for seed in MANY]
    assert {p.gamma_space for p in params} == {"linear", "srgb"} and {p.quantise for p in params} == {True, False}
    grey = torch.full((3, 64, 64), 0.6)
    balance = []
    for seed, p in zip(MANY, params):
        out = apply_low_light(grey, p, rng(seed))
        means = out.mean((1, 2))
        balance.append(((means.max() - means.min()) / means.mean()).item())
        on_grid = torch.equal(out, torch.round(out * 255) / 255)
        assert on_grid == p.quantise, seed
    with_cast = [b for b, p in zip(balance, params) if p.cast is not None]
    neutral = [b for b, p in zip(balance, params) if p.cast is None]
    assert with_cast and neutral and max(with_cast) > 0.15 and max(neutral) < 0.12, (with_cast, neutral)


# ---- blur ---------------------------------------------------------------------------------------


def test_blur_removes_high_frequencies(clean_3HW):
    clean = sum(gradient_energy(clean_3HW))
    for seed in SEEDS:
        assert sum(gradient_energy(degrade(clean_3HW, "blur", seed))) < 0.6 * clean


@pytest.mark.parametrize("kernel_type, size", [("shake", 7.0), ("linear", 7.0), ("defocus", 2.0), ("gaussian", 1.2)])
def test_each_kernel_type_blurs(clean_3HW, kernel_type, size):
    kernel = blur_kernel(BlurParams(kernel_type=kernel_type, size=size, linear_light=True, noise=0.0), rng(0))
    assert abs(kernel.sum() - 1) < 1e-5 and (kernel >= 0).all() and kernel.shape[0] % 2 == 1
    from restorevar.data.degradations.blur import apply_blur

    out = apply_blur(clean_3HW, BlurParams(kernel_type, size, True, 0.0), rng(0))
    assert sum(gradient_energy(out)) < 0.6 * sum(gradient_energy(clean_3HW)), kernel_type


def straightness(kernel: np.ndarray) -> float:
    """Minor over major standard deviation of the kernel's mass: 0 for a straight line."""
    ys, xs = np.indices(kernel.shape)
    mass = kernel / kernel.sum()
    cy, cx = (mass * ys).sum(), (mass * xs).sum()
    cov = np.array(
        [
            [(mass * (ys - cy) ** 2).sum(), (mass * (ys - cy) * (xs - cx)).sum()],
            [(mass * (ys - cy) * (xs - cx)).sum(), (mass * (xs - cx) ** 2).sum()],
        ]
    )
    low, high = np.linalg.eigvalsh(cov)
    return float(np.sqrt(max(low, 0.0) / high))


def test_blur_kernels_are_varied_and_not_all_straight_lines():
    params = [sample_blur(rng(seed), 256, 256) for seed in MANY]
    assert len({p.kernel_type for p in params}) >= 3 and {p.linear_light for p in params} == {True, False}
    shake = [straightness(motion_kernel(rng(seed), 15.0)) for seed in MANY]
    line = straightness(blur_kernel(BlurParams("linear", 15.0, True, 0.0), rng(0)))
    assert line < 0.12 and sum(s > 0.2 for s in shake) >= 5, (line, shake)  # a splatted line is ~1 px wide


def test_motion_kernel_is_normalised_and_spans_extent():
    for seed in SEEDS:
        kernel = motion_kernel(rng(seed), 21.0)
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
        assert abs(kernel.sum() - 1) < 1e-5 and (kernel >= 0).all()
        ys, xs = np.nonzero(kernel > 1e-6)
        assert 20 <= max(np.ptp(ys), np.ptp(xs)) <= 23


# ---- camera on top, mixtures, entry points ------------------------------------------------------


def test_camera_sometimes_adds_noise_and_jpeg(clean_3HW):
    params = [sample_camera(rng(seed)) for seed in range(40)]
    assert any(p.noise > 0 for p in params) and any(p.jpeg_quality is not None for p in params)
    assert any(p.noise == 0 and p.jpeg_quality is None for p in params)
    compressed = jpeg_round_trip(clean_3HW, 30)
    assert 24 < psnr(compressed, clean_3HW) < 40 and not torch.equal(compressed, clean_3HW)
    assert psnr(jpeg_round_trip(clean_3HW, 95), clean_3HW) > psnr(compressed, clean_3HW) + 3


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
