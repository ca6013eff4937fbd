"""Tests for restorevar.evaluation.metrics and restorevar.evaluation.niqe: closed forms, skimage and BasicSR
references."""

import math
from importlib import resources

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from restorevar.evaluation import metrics
from restorevar.evaluation.metrics import (
    BASICSR,
    PAPER,
    MetricInputError,
    MetricUnavailable,
    brisque,
    compute_metric,
    niqe,
    psnr,
    ssim,
    unavailable_metric_reason,
)
from restorevar.evaluation.niqe import gaussian_kernel_1d, imresize_bicubic

# Fixed crops of skimage's sample images, shared with the BasicSR reference script below.
ASTRONAUT_CROP = (slice(0, 384), slice(64, 448))  # 384×384 RGB
CAMERA_CROP = (slice(100, 388), slice(50, 434))  # 288×384 grey


def _ripple(image_u8: np.ndarray) -> np.ndarray:
    """Deterministic distortion: add a fixed integer ripple ±15, clip to uint8."""
    rows, cols = np.mgrid[: image_u8.shape[0], : image_u8.shape[1]]
    ripple = ((rows * 7 + cols * 13) % 11 - 5) * 3
    return np.clip(image_u8.astype(np.int64) + ripple[..., None], 0, 255).astype(np.uint8)


def _distorted_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (pred, target), float [0, 1] pairs from real photos with noise or blur."""
    rng = np.random.default_rng(0)
    pairs = {}
    for name in ("astronaut", "chelsea", "coffee"):
        target = getattr(skdata, name)() / 255.0
        pairs[f"{name}-noise"] = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1), target
        pairs[f"{name}-blur"] = ndimage.gaussian_filter(target, sigma=(1.5, 1.5, 0)), target
    return pairs


PAIRS = _distorted_pairs()


# ---------------------------------------------------------------- PSNR


def test_psnr_closed_form():
    target = np.full((16, 16, 3), 0.5)
    assert psnr(target + 0.1, target) == pytest.approx(20.0)  # mse = 0.01
    # uint8 100 vs 110: 10 log10(255² / 100)
    assert psnr(np.full((8, 8), 110, np.uint8), np.full((8, 8), 100, np.uint8)) == pytest.approx(
        10 * math.log10(255**2 / 100)
    )
    assert psnr(target, target) == math.inf


def test_psnr_matches_skimage_on_random_images():
    rng = np.random.default_rng(1)
    pred, target = rng.random((40, 50, 3)), rng.random((40, 50, 3))
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1), abs=1e-10)


def test_psnr_quantize_8bit_and_crop_border():
    target = np.full((20, 20, 3), 100 / 255)
    # 0.3 of an 8-bit step disappears with rounding, not without.
    pred = target + 0.3 / 255
    assert psnr(pred, target) == pytest.approx(20 * math.log10(255 / 0.3))
    assert psnr(pred, target, quantize_8bit=True) == math.inf
    # A wrong 2-pixel frame: crop_border=2 removes it exactly.
    framed = target.copy()
    framed[:2] = framed[-2:] = framed[:, :2] = framed[:, -2:] = 0.0
    assert psnr(framed, target, crop_border=2) == math.inf
    wrong_fraction = 1 - 16 * 16 / 400
    assert psnr(framed, target) == pytest.approx(-10 * math.log10(wrong_fraction * (100 / 255) ** 2))


def test_psnr_y_channel_hand_computed():
    pred = np.zeros((8, 8, 3), np.uint8)
    target = pred.copy()
    target[..., 0] = 10  # red +10 changes Y (in 0–255 units) by 65.481·10/255
    delta_y = 65.481 * 10 / 255 / 255
    assert psnr(pred, target, y_channel=True) == pytest.approx(-20 * math.log10(delta_y))


def test_tensor_input_equals_numpy():
    pred, target = PAIRS["chelsea-noise"]
    as_tensor = [torch.from_numpy(x.transpose(2, 0, 1).copy()).float() for x in (pred, target)]
    as_float32 = [x.astype(np.float32) for x in (pred, target)]
    assert psnr(*as_tensor) == pytest.approx(psnr(*as_float32), abs=1e-9)
    assert ssim(*as_tensor) == pytest.approx(ssim(*as_float32), abs=1e-9)


# ---------------------------------------------------------------- SSIM


@pytest.mark.parametrize("name", PAIRS)
def test_ssim_paper_matches_skimage(name):
    pred, target = PAIRS[name]
    expected = structural_similarity(target, pred, data_range=1, channel_axis=2)
    assert ssim(pred, target, **PAPER.ssim_kwargs()) == pytest.approx(expected, abs=1e-6)


def test_ssim_gaussian_matches_skimage_on_0_255():
    # skimage filters with 'reflect' padding and then crops (win_size - 1) // 2 = 5 pixels, which
    # leaves exactly the windows that fit inside the image: the same as our 'valid' filtering.
    for pred, target in (PAIRS["astronaut-noise"], PAIRS["coffee-blur"]):
        pred_u8, target_u8 = (np.round(x * 255).astype(np.uint8) for x in (pred, target))
        expected = structural_similarity(
            target_u8.astype(np.float64),
            pred_u8.astype(np.float64),
            data_range=255,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ssim(pred_u8, target_u8, window="gaussian11") == pytest.approx(expected, abs=1e-7)


def test_basicsr_convention_matches_basicsr():
    # BasicSR 1.4.2 calculate_psnr / calculate_ssim (BGR uint8 inputs), produced by the scratch
    # script described in test_niqe_matches_basicsr.
    target = skdata.astronaut()[ASTRONAUT_CROP]
    pred = _ripple(target)
    assert psnr(pred, target, **BASICSR.psnr_kwargs()) == pytest.approx(28.845549717534148, abs=1e-8)
    assert ssim(pred, target, **BASICSR.ssim_kwargs()) == pytest.approx(0.6620672106925992, abs=1e-8)
    # BasicSR computes Y in float32; we use float64, hence the looser tolerance.
    y_options = {"crop_border": 4, "y_channel": True}
    assert psnr(pred, target, **BASICSR.psnr_kwargs() | y_options) == pytest.approx(30.152142074637748, abs=1e-6)
    assert ssim(pred, target, **BASICSR.ssim_kwargs() | y_options) == pytest.approx(0.7131413200563993, abs=1e-6)


def test_ssim_identical_is_one_and_conventions_differ():
    pred, target = PAIRS["chelsea-noise"]
    assert ssim(target, target) == pytest.approx(1.0)
    assert abs(ssim(pred, target, window="uniform7") - ssim(pred, target, window="gaussian11")) > 1e-3


# ---------------------------------------------------------------- NIQE

# Produced with BasicSR 1.4.2 (PyPI sdist), numpy 2.4.6, scipy 1.17.1, torch 2.13 CPU,
# opencv-contrib-python-headless 5.0.0.93, in a scratch folder (not part of this repo):
#   from basicsr.metrics.niqe import calculate_niqe
#   calculate_niqe(rgb[..., ::-1].copy(), crop_border=c, input_order='HWC', convert_to='y')  # colour
#   calculate_niqe(grey.astype(np.float64), crop_border=0, input_order='HW')                  # grey
# BasicSR does its resize and MSCN in float32; we resize in float64, which moves NIQE by ≤ 4e-4.
NIQE_REFERENCE = [
    ("astronaut_crop", 0, 3.2113399829680396),
    ("camera_crop", 0, 3.023916701864706),
    ("astronaut", 0, 3.0649476661847754),
    ("astronaut", 7, 2.9898151082549345),
]


def _niqe_image(name: str) -> np.ndarray:
    return {
        "astronaut_crop": lambda: skdata.astronaut()[ASTRONAUT_CROP],
        "camera_crop": lambda: skdata.camera()[CAMERA_CROP],
        "astronaut": skdata.astronaut,
    }[name]()


@pytest.mark.parametrize("name, crop_border, expected", NIQE_REFERENCE)
def test_niqe_matches_basicsr(name, crop_border, expected):
    assert niqe(_niqe_image(name), crop_border=crop_border) == pytest.approx(expected, abs=1e-3)


def test_niqe_tensor_and_worse_for_blur():
    image = skdata.astronaut()[ASTRONAUT_CROP]
    tensor = torch.from_numpy(image.transpose(2, 0, 1) / 255.0)
    assert niqe(tensor) == pytest.approx(niqe(image), abs=1e-9)
    blurred = ndimage.gaussian_filter(image / 255.0, sigma=(2, 2, 0))
    assert niqe(blurred) > niqe(image) + 1.0


def test_mscn_window_equals_stored_matlab_window():
    with np.load(resources.files("restorevar.evaluation") / "niqe_pris_params.npz") as params:
        stored = params["gaussian_window"]
    kernel = gaussian_kernel_1d(7, 7 / 6)
    np.testing.assert_allclose(np.outer(kernel, kernel), stored, atol=1e-15)


def test_imresize_half_keeps_ramp_and_constant():
    # Bicubic is exact on linear functions away from the border: output pixel i (1-based) sits at
    # input position 2i - 0.5.
    ramp = np.tile(np.arange(1, 33, dtype=np.float64), (32, 1))
    out = imresize_bicubic(ramp, 0.5)
    assert out.shape == (16, 16)
    np.testing.assert_allclose(out[:, 3:-3], np.tile(2 * np.arange(4, 14) - 0.5, (16, 1)), atol=1e-12)
    np.testing.assert_allclose(imresize_bicubic(np.full((10, 14), 7.0), 0.5), 7.0, atol=1e-12)


# ---------------------------------------------------------------- errors, optional metrics, registry


def test_input_errors():
    with pytest.raises(MetricInputError, match="expected \\[0, 1\\]"):
        psnr(np.full((8, 8, 3), 200.0), np.zeros((8, 8, 3)))
    with pytest.raises(MetricInputError, match="differ in shape"):
        ssim(np.zeros((16, 16, 3)), np.zeros((16, 17, 3)))
    with pytest.raises(MetricInputError, match="96×96"):
        niqe(np.zeros((64, 200)))


def test_unavailable_metrics_explain_what_they_need(monkeypatch, tmp_path):
    monkeypatch.setenv("RESTOREVAR_BRISQUE_DIR", str(tmp_path))
    monkeypatch.setattr(metrics, "_BRISQUE_DIRS", ())
    reason = unavailable_metric_reason("brisque")
    assert "opencv-contrib-python-headless" in reason and "brisque_model_live.yml" in reason
    with pytest.raises(MetricUnavailable, match="opencv-doc"):
        brisque(np.zeros((32, 32, 3)))

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert "alexnet-owt-7be5be79.pth" in unavailable_metric_reason("lpips")
    for name in ("musiq", "clipiqa"):
        if metrics.importlib.util.find_spec("pyiqa") is None:
            assert "pyiqa" in unavailable_metric_reason(name)
            with pytest.raises(MetricUnavailable, match="non-commercial"):
                compute_metric(name, np.zeros((32, 32, 3)))
    with pytest.raises(KeyError, match="known: psnr"):
        unavailable_metric_reason("fid")


def test_registry_computes_builtin_metrics():
    pred, target = PAIRS["chelsea-noise"]
    assert {"psnr", "ssim", "niqe"} <= set(metrics.available_metrics())
    assert compute_metric("psnr", pred, target) == psnr(pred, target)
    assert metrics.METRICS["ssim"].is_full_reference and not metrics.METRICS["niqe"].is_full_reference
    with pytest.raises(MetricInputError, match="full-reference"):
        compute_metric("ssim", pred)


@pytest.mark.skipif(unavailable_metric_reason("brisque") is not None, reason="BRISQUE not installed")
def test_brisque_reference_value():
    # opencv-contrib-python-headless 5.0.0.93 with the LIVE model from Debian opencv-doc 4.6.0.
    blurred = ndimage.gaussian_filter(skdata.astronaut()[ASTRONAUT_CROP] / 255.0, sigma=(2, 2, 0))
    assert brisque(blurred) == pytest.approx(53.4561882019043, rel=1e-3)
