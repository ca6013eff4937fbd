"""NIQE, the "completely blind" image quality score (Mittal, Soundararajan, Bovik 2013).

Follows the conventions of the authors' MATLAB release (``niqe_release.zip``), which BasicSR also
follows: the image is split into 96×96 blocks (no overlap, remainder cropped), and 18 natural-scene
statistics per block are measured at two scales, the second made by MATLAB's antialiased bicubic
``imresize(·, 0.5)``. The score is the distance between the multivariate Gaussian fitted to the
block features and the pristine model from ``niqe_pris_params.npz`` (beside this module). Lower is better.

Public entry point for images is :func:`restorevar.evaluation.metrics.niqe`; this module works on one grey
plane ``image_HW``, float in [0, 255].
"""

from __future__ import annotations

import functools
import math
import warnings
from importlib import resources

import numpy as np

BLOCK_SIZE = 96
MSCN_WINDOW_SIZE = 7
MSCN_SIGMA = 7 / 6

_GAMMA = np.frompyfunc(math.gamma, 1, 1)


def _gamma(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(_GAMMA(x), dtype=np.float64)


@functools.lru_cache(maxsize=1)
def load_pristine_params() -> tuple[np.ndarray, np.ndarray]:
    """Pristine model: mean ``(36,)`` and covariance ``(36, 36)`` of the natural-image features."""
    path = resources.files("restorevar.evaluation") / "niqe_pris_params.npz"
    with resources.as_file(path) as local_path, np.load(local_path) as params:
        return params["mu_pris_param"].reshape(-1), params["cov_pris_param"]


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian ``(size,)``; its outer product is MATLAB's ``fspecial('gaussian')``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def filter_valid(image_HW: np.ndarray, kernel_h: np.ndarray, kernel_w: np.ndarray) -> np.ndarray:
    """Separable correlation without padding: ``(H, W) -> (H - kh + 1, W - kw + 1)``."""
    rows = np.lib.stride_tricks.sliding_window_view(image_HW, kernel_h.size, axis=0) @ kernel_h
    return np.lib.stride_tricks.sliding_window_view(rows, kernel_w.size, axis=1) @ kernel_w


# ---------------------------------------------------------------- MATLAB-style bicubic resize


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as in MATLAB's ``imresize``."""
    ax = np.abs(x)
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _resize_matrix(in_length: int, scale: float) -> np.ndarray:
    """Matrix ``(out_length, in_length)`` that resizes one axis like MATLAB's antialiased bicubic.

    Output pixel centres map back by ``u = x / scale + 0.5 (1 - 1/scale)`` (1-based); when
    shrinking, the kernel is stretched by ``1/scale`` to antialias. Taps that fall outside the
    image are mirrored (MATLAB's 'symmetric' padding), which in matrix form just adds their
    weight to the mirrored pixel.
    """
    out_length = math.ceil(in_length * scale)
    kernel_scale = min(scale, 1.0)
    kernel_width = 4 / kernel_scale
    u = np.arange(1, out_length + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    num_taps = math.ceil(kernel_width) + 2
    taps = left[:, None] + np.arange(num_taps)[None, :]  # 1-based input indices
    weights = kernel_scale * _cubic(kernel_scale * (u[:, None] - taps))
    weights /= weights.sum(axis=1, keepdims=True)

    # Symmetric mirror: ... 2 1 | 1 2 ... n | n n-1 ...
    period = 2 * in_length
    mirrored = np.mod(taps.astype(np.int64) - 1, period)
    mirrored = np.where(mirrored < in_length, mirrored, period - 1 - mirrored)
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.repeat(np.arange(out_length), num_taps), mirrored.ravel()), weights.ravel())
    return matrix


def imresize_bicubic(image_HW: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(image, scale)`` (bicubic, antialiased): ``(H, W) -> (ceil(sH), ceil(sW))``.

    No rounding or clipping, so values may overshoot the input range slightly.
    """
    height, width = image_HW.shape
    return _resize_matrix(height, scale) @ image_HW @ _resize_matrix(width, scale).T


# ---------------------------------------------------------------- features (paper §3)


@functools.lru_cache(maxsize=1)
def _aggd_lookup() -> tuple[np.ndarray, np.ndarray]:
    """Shape grid 0.2:0.001:10 and its moment ratio Γ(2/α)² / (Γ(1/α) Γ(3/α)), as in MATLAB."""
    alphas = np.arange(0.2, 10.001, 0.001)
    ratios = _gamma(2 / alphas) ** 2 / (_gamma(1 / alphas) * _gamma(3 / alphas))
    return alphas, ratios


def fit_aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching fit of an asymmetric generalised Gaussian: ``(alpha, beta_left, beta_right)``.

    ``values`` is any array; the fit picks the grid shape whose moment ratio is nearest to the
    sample's (Lasmar et al. 2009). A block with no negative (or no positive) values gives NaN.
    """
    values = values.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt(np.mean(values[values < 0] ** 2)) if np.any(values < 0) else np.nan
        right_std = np.sqrt(np.mean(values[values > 0] ** 2)) if np.any(values > 0) else np.nan
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    if not np.isfinite(r_hat_norm):
        return math.nan, math.nan, math.nan
    alphas, ratios = _aggd_lookup()
    alpha = float(alphas[np.argmin((ratios - r_hat_norm) ** 2)])
    std_to_beta = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, float(left_std * std_to_beta), float(right_std * std_to_beta)


# Neighbour offsets (rows, cols) for the pairwise products: horizontal, vertical, two diagonals.
_PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def block_features(mscn_block: np.ndarray) -> list[float]:
    """18 NIQE features of one MSCN block: GGD (shape, scale), then 4 × AGGD of neighbour products."""
    alpha, beta_left, beta_right = fit_aggd(mscn_block)
    features = [alpha, (beta_left + beta_right) / 2]
    for shift in _PAIR_SHIFTS:
        # Circular shift, as MATLAB's circshift: the wrapped row/column is part of the reference.
        products = mscn_block * np.roll(mscn_block, shift, axis=(0, 1))
        alpha, beta_left, beta_right = fit_aggd(products)
        mean = (beta_right - beta_left) * math.gamma(2 / alpha) / math.gamma(1 / alpha)
        features += [alpha, mean, beta_left, beta_right]
    return features


def mscn(image_HW: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (paper eq. 1), ``(H, W)``, same size.

    Local mean and deviation use a 7×7 Gaussian (σ = 7/6) with replicated borders ('nearest');
    the +1 in the denominator assumes the [0, 255] range.
    """
    kernel = gaussian_kernel_1d(MSCN_WINDOW_SIZE, MSCN_SIGMA)
    pad = MSCN_WINDOW_SIZE // 2
    # Filter in float64 but keep the moments in float32 (as BasicSR does): in a flat window the
    # float64 variance is ±1e-12 noise whose sign would then decide the AGGD fit; float32 storage
    # rounds it to an exact 0, so flat regions give MSCN = 0, independent of summation order.
    image_HW = image_HW.astype(np.float32)
    mean = filter_valid(np.pad(image_HW, pad, mode="edge").astype(np.float64), kernel, kernel)
    mean_sq = filter_valid(np.pad(image_HW.astype(np.float64) ** 2, pad, mode="edge"), kernel, kernel)
    mean, mean_sq = mean.astype(np.float32), mean_sq.astype(np.float32)
    std = np.sqrt(np.abs(mean_sq - mean**2))
    return (image_HW - mean) / (std + 1)


def niqe_score(image_HW: np.ndarray) -> float:
    """NIQE of a grey/Y plane ``(H, W)``, float in [0, 255], at least 96×96. Lower is better.

    NaN when no block has texture (e.g. a constant image).
    """
    num_rows, num_cols = image_HW.shape[0] // BLOCK_SIZE, image_HW.shape[1] // BLOCK_SIZE
    assert num_rows > 0 and num_cols > 0, f"image {image_HW.shape} smaller than one block"
    image_HW = image_HW[: num_rows * BLOCK_SIZE, : num_cols * BLOCK_SIZE].astype(np.float64)

    per_scale = []
    for scale in (1, 2):
        coeffs = mscn(image_HW)
        size = BLOCK_SIZE // scale
        per_scale.append(
            [
                block_features(coeffs[r * size : (r + 1) * size, c * size : (c + 1) * size])
                for r in range(num_rows)
                for c in range(num_cols)
            ]
        )
        if scale == 1:
            image_HW = imresize_bicubic(image_HW, 0.5)
    features_N36 = np.concatenate([np.asarray(f) for f in per_scale], axis=1)

    # As MATLAB's nanmean / nancov: NaN features (flat blocks) drop out.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: the score is NaN anyway
        mean_dist = np.nanmean(features_N36, axis=0)
    complete = features_N36[~np.isnan(features_N36).any(axis=1)]
    # MATLAB's cov of a single observation is 0, numpy's is NaN.
    cov_dist = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros((36, 36))
    mean_pris, cov_pris = load_pristine_params()
    diff = mean_pris - mean_dist
    distance_sq = diff @ np.linalg.pinv((cov_pris + cov_dist) / 2) @ diff
    return float(np.sqrt(distance_sq))
