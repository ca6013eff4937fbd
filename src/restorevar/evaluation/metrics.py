"""Image quality metrics: PSNR, SSIM, NIQE, BRISQUE and a registry of the optional ones.

Inputs (every function): numpy ``(H, W, 3)`` / ``(H, W)``, float in [0, 1] or uint8 / uint16;
or a torch tensor ``(3, H, W)`` / ``(1, H, W)`` / ``(H, W)`` in [0, 1]. :func:`to_float_image`
is the one place that converts; all maths runs on float64 in [0, 1].

Two conventions for the full-reference metrics (spec §5):

* ``PAPER``: what the paper's tables used (``skimage.metrics`` on RGB floats): no rounding, no
  border crop, SSIM with a 7×7 uniform window and sample covariance.
* ``BASICSR``: the super-resolution convention: 8-bit rounding, optional Y channel of BT.601,
  border crop, SSIM with an 11×11 Gaussian window (σ = 1.5), population covariance.

Both SSIM variants average the SSIM map over pixels whose window lies fully inside the image
('valid' filtering), then over channels; this equals skimage's crop of ``(win_size - 1) // 2``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from restorevar.evaluation.niqe import filter_valid, gaussian_kernel_1d, niqe_score

logger = logging.getLogger(__name__)

# ITU-R BT.601 "studio swing" luma, as MATLAB's rgb2ycbcr: Y in [16, 235] for RGB in [0, 255].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255
_Y_OFFSET = 16 / 255
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
# Out-of-range floats beyond this are a wrong value range (e.g. [-1, 1]), not rounding noise.
_RANGE_SLACK = 1e-2


class MetricInputError(ValueError):
    """An image given to a metric has the wrong shape, dtype or value range."""


class MetricUnavailable(RuntimeError):
    """A metric needs a package or weight file that is not installed."""


@dataclasses.dataclass(frozen=True)
class MetricConvention:
    """How PSNR/SSIM are computed; fields match the keywords of :func:`psnr` and :func:`ssim`."""

    name: str
    crop_border: int = 0
    y_channel: bool = False
    quantize_8bit: bool = False
    window: str = "uniform7"

    def psnr_kwargs(self) -> dict:
        return {"crop_border": self.crop_border, "y_channel": self.y_channel, "quantize_8bit": self.quantize_8bit}

    def ssim_kwargs(self) -> dict:
        return {**self.psnr_kwargs(), "window": self.window}


PAPER = MetricConvention("paper")
# Super-resolution papers usually also set crop_border = scale and y_channel=True.
BASICSR = MetricConvention("basicsr", quantize_8bit=True, window="gaussian11")


# ---------------------------------------------------------------- input conversion


def to_float_image(image) -> np.ndarray:
    """Any supported input (see module docstring) -> float64 ``(H, W, C)`` in [0, 1], C in {1, 3}."""
    if isinstance(image, torch.Tensor):
        array = image.detach().to("cpu", torch.float64).numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise MetricInputError(f"expected a numpy array or torch tensor, got {type(image).__name__}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise MetricInputError(f"expected (H, W), (H, W, 1|3) or a (1|3, H, W) tensor, got shape {image.shape}")

    if array.dtype == np.uint8:
        return array / 255.0
    if array.dtype == np.uint16:
        return array / 65535.0
    if not np.issubdtype(array.dtype, np.floating):
        raise MetricInputError(f"expected float in [0, 1], uint8 or uint16, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise MetricInputError("image contains NaN or inf values")
    low, high = float(array.min()), float(array.max())
    if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise MetricInputError(f"float image values span [{low:.3g}, {high:.3g}]; expected [0, 1]")
    if low < 0 or high > 1:
        logger.debug("clipping float image from [%.4g, %.4g] to [0, 1]", low, high)
    return np.clip(array, 0.0, 1.0)  # as the paper clamps the model output


def rgb_to_y(image_HW3: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB ``(H, W, 3)`` in [0, 1] -> ``(H, W, 1)`` in [16/255, 235/255]."""
    return (image_HW3 @ _Y_WEIGHTS + _Y_OFFSET)[:, :, None]


def _prepare(image, *, crop_border: int, y_channel: bool, quantize_8bit: bool) -> np.ndarray:
    """Convert, then round to 8 bits, crop, take Y, in BasicSR's order. ``(H, W, C)`` in [0, 1]."""
    array = to_float_image(image)
    if quantize_8bit:
        array = np.round(array * 255) / 255
    if crop_border < 0 or 2 * crop_border >= min(array.shape[:2]):
        raise MetricInputError(f"crop_border={crop_border} does not fit an image of {array.shape[:2]}")
    if crop_border:
        array = array[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and array.shape[2] == 3:
        array = rgb_to_y(array)
    return array


def _prepare_pair(pred, target, **options) -> tuple[np.ndarray, np.ndarray]:
    pred_HWC, target_HWC = _prepare(pred, **options), _prepare(target, **options)
    if pred_HWC.shape != target_HWC.shape:
        raise MetricInputError(f"pred and target differ in shape: {pred_HWC.shape} vs {target_HWC.shape}")
    return pred_HWC, target_HWC


# ---------------------------------------------------------------- full-reference metrics


def psnr(pred, target, *, crop_border: int = 0, y_channel: bool = False, quantize_8bit: bool = False) -> float:
    """Peak signal-to-noise ratio in dB with peak 1 (= 255 for 8-bit). Higher is better.

    ``inf`` for identical images; callers that average must decide how to treat it.
    """
    pred_HWC, target_HWC = _prepare_pair(
        pred, target, crop_border=crop_border, y_channel=y_channel, quantize_8bit=quantize_8bit
    )
    mse = float(np.mean((pred_HWC - target_HWC) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _ssim_plane(pred_HW: np.ndarray, target_HW: np.ndarray, kernel: np.ndarray, use_sample_cov: bool) -> float:
    """Mean SSIM (Wang et al. 2004, eq. 13) of one plane in [0, 1] over the valid region."""
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # data range is 1
    blur = functools.partial(filter_valid, kernel_h=kernel, kernel_w=kernel)
    mean_p, mean_t = blur(pred_HW), blur(target_HW)
    var_p = blur(pred_HW * pred_HW) - mean_p**2
    var_t = blur(target_HW * target_HW) - mean_t**2
    cov = blur(pred_HW * target_HW) - mean_p * mean_t
    if use_sample_cov:
        # Unbiased estimate over the N window pixels, as skimage's default.
        num_pixels = kernel.size**2
        var_p, var_t, cov = (x * num_pixels / (num_pixels - 1) for x in (var_p, var_t, cov))
    ssim_map = ((2 * mean_p * mean_t + c1) * (2 * cov + c2)) / ((mean_p**2 + mean_t**2 + c1) * (var_p + var_t + c2))
    return float(ssim_map.mean())


_SSIM_WINDOWS = {
    # name: (1-D kernel, use sample covariance)
    "uniform7": (np.full(7, 1 / 7), True),
    "gaussian11": (gaussian_kernel_1d(11, 1.5), False),
}


def ssim(
    pred,
    target,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    quantize_8bit: bool = False,
    window: str = "uniform7",
) -> float:
    """Structural similarity averaged over pixels and channels, in [-1, 1]. Higher is better.

    ``window="uniform7"``: 7×7 mean filter with sample covariance (skimage's default, PAPER).
    ``window="gaussian11"``: 11×11 Gaussian, σ = 1.5, population covariance (Wang et al., BasicSR).
    K = (0.01, 0.03) with data range 1; the value is the same on a [0, 255] scale.
    """
    if window not in _SSIM_WINDOWS:
        raise MetricInputError(f"unknown SSIM window {window!r}; use one of {sorted(_SSIM_WINDOWS)}")
    kernel, use_sample_cov = _SSIM_WINDOWS[window]
    pred_HWC, target_HWC = _prepare_pair(
        pred, target, crop_border=crop_border, y_channel=y_channel, quantize_8bit=quantize_8bit
    )
    size = kernel.size
    if min(pred_HWC.shape[:2]) < size:
        raise MetricInputError(f"SSIM {window} needs at least {size}×{size} pixels, got {pred_HWC.shape[:2]}")
    per_channel = [
        _ssim_plane(pred_HWC[..., c], target_HWC[..., c], kernel, use_sample_cov) for c in range(pred_HWC.shape[2])
    ]
    return float(np.mean(per_channel))


# ---------------------------------------------------------------- no-reference metrics


def niqe(image, *, crop_border: int = 0) -> float:
    """NIQE (Mittal et al. 2013) on the BT.601 Y channel, or on the grey image. Lower is better.

    As BasicSR/MATLAB: Y in [0, 255] is rounded to integers; at least 96×96 pixels after the
    crop (the remainder beyond whole 96×96 blocks is ignored). See :mod:`restorevar.evaluation.niqe`.
    """
    plane_HW1 = _prepare(image, crop_border=crop_border, y_channel=True, quantize_8bit=False)
    plane_HW = np.round(plane_HW1[:, :, 0] * 255)
    if min(plane_HW.shape) < 96:
        raise MetricInputError(f"NIQE needs at least 96×96 pixels, got {plane_HW.shape}")
    return niqe_score(plane_HW)


BRISQUE_FILES = ("brisque_model_live.yml", "brisque_range_live.yml")
_BRISQUE_DIRS = ("/usr/share/doc/opencv-doc/examples/quality",)
_BRISQUE_HELP = (
    "BRISQUE needs opencv-contrib-python-headless (cv2.quality) and brisque_model_live.yml + "
    "brisque_range_live.yml (Debian package opencv-doc, /usr/share/doc/opencv-doc/examples/quality/, "
    "or a folder named by RESTOREVAR_BRISQUE_DIR)"
)


def _find_brisque_dir() -> Path | None:
    candidates = [os.environ.get("RESTOREVAR_BRISQUE_DIR", ""), *_BRISQUE_DIRS]
    for folder in filter(None, candidates):
        if all((Path(folder) / name).is_file() for name in BRISQUE_FILES):
            return Path(folder)
    return None


def _brisque_unavailable() -> str | None:
    try:
        import cv2
    except ImportError:
        return f"{_BRISQUE_HELP}; cv2 is not installed"
    if not hasattr(cv2, "quality"):
        return f"{_BRISQUE_HELP}; this cv2 has no 'quality' module"
    if _find_brisque_dir() is None:
        return f"{_BRISQUE_HELP}; model files not found"
    return None


def brisque(image) -> float:
    """BRISQUE (Mittal et al. 2012) via OpenCV-contrib with the LIVE model, about 0–100, lower is better.

    The image is rounded to 8 bits first, as OpenCV's model expects.
    """
    reason = _brisque_unavailable()
    if reason:
        raise MetricUnavailable(reason)
    import cv2

    folder = _find_brisque_dir()
    image_HWC = np.round(to_float_image(image) * 255).astype(np.uint8)
    bgr = np.ascontiguousarray(image_HWC[:, :, ::-1])  # OpenCV reads colour as BGR
    model, range_file = (str(folder / name) for name in BRISQUE_FILES)
    return float(cv2.quality.QualityBRISQUE_compute(bgr, model, range_file)[0])


# ---------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """A metric the evaluator can ask for by name."""

    name: str
    is_full_reference: bool
    higher_is_better: bool
    compute: Callable[..., float]
    requirement: str | None = None  # what an optional metric needs, for listings
    check: Callable[[], str | None] | None = None  # reason it is unavailable here, or None


_LPIPS_NEEDS = (
    "LPIPS needs the 'lpips' package and the torchvision AlexNet weights alexnet-owt-7be5be79.pth "
    "in the torch hub cache (downloaded on first use; not possible offline)"
)
_PYIQA_NEEDS = "{} needs the optional 'pyiqa' extra (non-commercial licence) and its weights (downloaded on first use)"


def _missing_module(module: str, requirement: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if importlib.util.find_spec(module) else f"{requirement}; '{module}' is not installed"

    return check


_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _lpips_unavailable() -> str | None:
    if importlib.util.find_spec("lpips") is None:
        return f"{_LPIPS_NEEDS}; 'lpips' is not installed"
    weights = Path(torch.hub.get_dir()) / "checkpoints" / _ALEXNET_FILE
    return None if weights.is_file() else f"{_LPIPS_NEEDS}; {weights} is missing"


def _to_batch(image) -> torch.Tensor:
    """``(1, C, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(to_float_image(image).transpose(2, 0, 1).copy()).float()[None]


@functools.lru_cache(maxsize=4)
def _load_external(name: str):
    if name == "lpips":
        import lpips

        return lpips.LPIPS(net="alex", verbose=False).eval()
    import pyiqa

    return pyiqa.create_metric(name, device="cpu")


@torch.no_grad()
def _lpips(pred, target) -> float:
    """LPIPS-Alex as the paper (torchmetrics, inputs mapped to [-1, 1]). Lower is better."""
    return float(_load_external("lpips")(_to_batch(pred) * 2 - 1, _to_batch(target) * 2 - 1).mean())


def _pyiqa_metric(name: str) -> Callable[[object], float]:
    @torch.no_grad()
    def compute(image) -> float:
        return float(_load_external(name)(_to_batch(image)).mean())

    return compute


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("psnr", True, True, psnr),
        MetricSpec("ssim", True, True, ssim),
        MetricSpec("niqe", False, False, niqe),
        MetricSpec("brisque", False, False, brisque, _BRISQUE_HELP, _brisque_unavailable),
        MetricSpec("lpips", True, False, _lpips, _LPIPS_NEEDS, _lpips_unavailable),
        MetricSpec(
            "musiq",
            False,
            True,
            _pyiqa_metric("musiq"),
            _PYIQA_NEEDS.format("MUSIQ"),
            _missing_module("pyiqa", _PYIQA_NEEDS.format("MUSIQ")),
        ),
        MetricSpec(
            "clipiqa",
            False,
            True,
            _pyiqa_metric("clipiqa"),
            _PYIQA_NEEDS.format("CLIP-IQA"),
            _missing_module("pyiqa", _PYIQA_NEEDS.format("CLIP-IQA")),
        ),
    )
}


def unavailable_metric_reason(name: str) -> str | None:
    """None if ``name`` can be computed here, else one line saying what it needs."""
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    spec = METRICS[name]
    return spec.check() if spec.check else None


def available_metrics() -> list[str]:
    """Names of the metrics that :func:`compute_metric` can compute on this machine."""
    return [name for name in METRICS if unavailable_metric_reason(name) is None]


def compute_metric(name: str, pred, target=None) -> float:
    """Compute metric ``name`` with its default (PAPER) settings; ``target`` only for full-reference ones."""
    reason = unavailable_metric_reason(name)
    if reason:
        raise MetricUnavailable(reason)
    spec = METRICS[name]
    if spec.is_full_reference:
        if target is None:
            raise MetricInputError(f"{name} is full-reference; pass a target image")
        return spec.compute(pred, target)
    return spec.compute(pred)
