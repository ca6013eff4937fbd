"""Shared helpers of the degradation generators: seeding, sRGB <-> linear, random fields, kernels, FFT
convolution and particle rendering (rain, snow)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

GeneratorLike = torch.Generator | np.random.Generator | int


def as_numpy_rng(generator: GeneratorLike) -> np.random.Generator:
    """Turn an int seed, a torch.Generator or a numpy Generator into a numpy Generator."""
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be an int, torch.Generator or numpy Generator, got {type(generator).__name__}")


def check_image(image_3HW: torch.Tensor) -> None:
    if image_3HW.dim() != 3 or image_3HW.shape[0] != 3 or not image_3HW.is_floating_point():
        raise ValueError(f"expected a float (3, H, W) image in [0, 1], got {tuple(image_3HW.shape)} {image_3HW.dtype}")
    if min(image_3HW.shape[-2:]) < 16:
        raise ValueError(f"image too small to degrade: {tuple(image_3HW.shape)}; need at least 16x16")


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 decoding; [0, 1] -> [0, 1]."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 encoding; [0, 1] -> [0, 1] (input clamped at 0)."""
    x = x.clamp(min=0.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def as_tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A numpy array as a tensor on ``like``'s device and dtype."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=like.device, dtype=like.dtype)


def normal_like(rng: np.random.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, seeded from ``rng`` (torch's sampler is faster)."""
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def smooth_field(rng: np.random.Generator, height: int, width: int, *, octaves: int = 4, base: int = 3) -> np.ndarray:
    """Fractal (1/f-like) random field, shape (H, W), normalised to [0, 1].

    Octaves are summed on a small grid and upsampled once: the field is smooth, so this loses
    nothing and costs one interpolation at full size.
    """
    grid = base * 2 ** (octaves - 1) * 2
    field = torch.zeros(1, 1, grid, grid)
    for octave in range(octaves):
        cells = base * 2**octave
        noise = torch.from_numpy(rng.standard_normal((1, 1, cells, cells), dtype=np.float32))
        field += F.interpolate(noise, size=(grid, grid), mode="bicubic", align_corners=False) / 2**octave
    field = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
    return (field - field.min()) / (field.max() - field.min() + 1e-8)


# ---- kernels and convolution ----------------------------------------------------------------------


def capsule_kernel(length: float, angle: float, radius: float, softness: float, *, taper: float = 0.0) -> np.ndarray:
    """Anti-aliased stroke of ``length`` px at ``angle`` rad from vertical: a streak or a smeared disc.

    Returns a (K, K) float32 kernel with peak ≤ 1 (opacity); ``taper`` in [0, 1] fades the ends.
    """
    half = length / 2 + radius + 2 * softness + 1
    size = 2 * math.ceil(half) + 1
    coords = np.arange(size, dtype=np.float32) - size // 2
    y, x = np.meshgrid(coords, coords, indexing="ij")
    direction = np.array([math.cos(angle), math.sin(angle)], dtype=np.float32)  # (dy, dx)
    along = y * direction[0] + x * direction[1]
    across = -y * direction[1] + x * direction[0]
    u = np.clip(along, -length / 2, length / 2)
    distance = np.sqrt((along - u) ** 2 + across**2)
    alpha = np.clip((radius - distance) / softness + 0.5, 0.0, 1.0)
    if taper > 0 and length > 0:
        alpha *= 1.0 - taper * np.abs(2 * u / length) ** 2
    return alpha.astype(np.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Isotropic (K, K) Gaussian summing to 1, K = 2 * ceil(3 sigma) + 1."""
    half = max(1, math.ceil(3 * sigma))
    coords = np.arange(-half, half + 1, dtype=np.float32)
    g = np.exp(-(coords**2) / (2 * sigma**2))
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


def fft_convolve(image_CHW: torch.Tensor, kernels_CKK: torch.Tensor) -> torch.Tensor:
    """Circular 'same' convolution of each channel with its (odd-sized) kernel via rfft2.

    kernels_CKK may have C = 1 to share one kernel across channels. Callers pad the image by at
    least K // 2 so the wrap-around falls in the cropped border.
    """
    height, width = image_CHW.shape[-2:]
    size = kernels_CKK.shape[-1]
    padded = image_CHW.new_zeros(kernels_CKK.shape[0], height, width)
    padded[:, :size, :size] = kernels_CKK
    padded = torch.roll(padded, shifts=(-(size // 2), -(size // 2)), dims=(-2, -1))
    spectrum = torch.fft.rfft2(image_CHW) * torch.fft.rfft2(padded)
    return torch.fft.irfft2(spectrum, s=(height, width))


def fft_size(n: int) -> int:
    # multiples of 32 keep pocketfft on fast radix paths
    return -(-n // 32) * 32


def convolve_image(image_3HW: torch.Tensor, kernel_KK: np.ndarray) -> torch.Tensor:
    """'Same' convolution of an image with one (odd-sized) kernel, reflect-padded, via FFT."""
    _, height, width = image_3HW.shape
    size = kernel_KK.shape[0]
    padded_h, padded_w = fft_size(height + size), fft_size(width + size)
    top, left = (padded_h - height) // 2, (padded_w - width) // 2
    pads = (left, padded_w - width - left, top, padded_h - height - top)
    mode = "reflect" if max(pads) < min(height, width) else "replicate"
    padded = F.pad(image_3HW[None], pads, mode=mode)[0]
    out = fft_convolve(padded, as_tensor(kernel_KK, image_3HW)[None])
    return out[:, top : top + height, left : left + width]


def stack_kernels(kernels: list[np.ndarray]) -> np.ndarray:
    """Zero-pad kernels to a common odd size and stack them to (N, K, K)."""
    size = max(k.shape[0] for k in kernels)
    out = np.zeros((len(kernels), size, size), dtype=np.float32)
    for i, k in enumerate(kernels):
        offset = (size - k.shape[0]) // 2
        out[i, offset : offset + k.shape[0], offset : offset + k.shape[0]] = k
    return out


# ---- particles (rain, snow) -----------------------------------------------------------------------


def render_particles(
    rng: np.random.Generator,
    height: int,
    width: int,
    kernels: list[np.ndarray],
    densities: list[float],
    intensities: list[tuple[float, float]],
) -> np.ndarray:
    """Scatter random impulses per layer (``densities`` per pixel) and stamp each layer's kernel.

    Returns (L, H, W) float32 opacity maps in [0, 1]. Impulses land on a canvas padded by the
    kernel size, so particles partly outside the frame still enter it.
    """
    stack = stack_kernels(kernels)
    margin = stack.shape[-1]
    canvas_h, canvas_w = fft_size(height + margin), fft_size(width + margin)
    seeds = np.zeros((len(kernels), canvas_h * canvas_w), dtype=np.float32)
    for layer, (density, intensity) in enumerate(zip(densities, intensities)):
        count = rng.poisson(density * canvas_h * canvas_w)
        where = rng.integers(0, canvas_h * canvas_w, size=count)
        seeds[layer, where] = rng.uniform(*intensity, size=count).astype(np.float32)
    seeds_t = torch.from_numpy(seeds.reshape(len(kernels), canvas_h, canvas_w))
    layers = fft_convolve(seeds_t, torch.from_numpy(stack))
    top, left = (canvas_h - height) // 2, (canvas_w - width) // 2
    return layers[:, top : top + height, left : left + width].clamp(0.0, 1.0).numpy()


def veil(image_3HW: torch.Tensor, transmission: float, airlight: torch.Tensor | float) -> torch.Tensor:
    """Uniform scattering veil, I = J t + A (1 - t): the mist, contrast loss and brightening of rain and snow."""
    if isinstance(airlight, torch.Tensor):
        airlight = airlight.reshape(-1, 1, 1)
    return image_3HW * transmission + airlight * (1.0 - transmission)
