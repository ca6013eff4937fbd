"""Synthetic degradations for training on clean photos: haze, rain, snow, low light, motion blur.

Each generator is a small physical model with parameter ranges chosen to look like the standard
benchmarks (RESIDE-OTS haze, Rain13K/Rain100 streaks, Snow100K, LOLv1 low light, GoPro blur).
Images are ``image_3HW`` float tensors in sRGB [0, 1]; every function returns the same shape and
range. All randomness comes from one ``numpy.random.Generator``, so the same seed gives
bit-identical output on the same machine and thread count.

    >>> noisy_3HW = degrade(clean_3HW, "rain", generator=1234)
    >>> noisy_3HW, kind = random_degradation(clean_3HW, generator=1234)

Large convolutions (rain/snow layers, blur kernels) run as FFT products on a padded canvas, which
keeps every type under ~20 ms at 256 px and ~80 ms at 512 px on two CPU cores.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DEGRADATIONS: tuple[str, ...] = ("haze", "rain", "snow", "low_light", "blur")
# beside them: "mixed" (two composed) and "none" (the clean crop itself: pairs that teach a restorer to leave a
# clean photo alone)
EXTRA_KINDS: tuple[str, ...] = ("mixed", "none")
# physical order when two are composed: scene (haze, rain, snow) -> camera motion -> sensor
_MIXED_ORDER = ("haze", "rain", "snow", "blur", "low_light")

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


# ---- shared helpers -----------------------------------------------------------------------------


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 decoding; [0, 1] -> [0, 1]."""
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 encoding; [0, 1] -> [0, 1] (input clamped at 0)."""
    x = x.clamp(min=0.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=like.device, dtype=like.dtype)


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


def _normal(rng: np.random.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, seeded from ``rng`` (torch's sampler is faster)."""
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


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


def _stack_kernels(kernels: list[np.ndarray]) -> np.ndarray:
    """Zero-pad kernels to a common odd size and stack them to (N, K, K)."""
    size = max(k.shape[0] for k in kernels)
    out = np.zeros((len(kernels), size, size), dtype=np.float32)
    for i, k in enumerate(kernels):
        offset = (size - k.shape[0]) // 2
        out[i, offset : offset + k.shape[0], offset : offset + k.shape[0]] = k
    return out


def _fft_size(n: int) -> int:
    # multiples of 32 keep pocketfft on fast radix paths
    return -(-n // 32) * 32


def _render_particles(rng: np.random.Generator, height: int, width: int, kernels: list[np.ndarray],
                      densities: list[float], intensity: tuple[float, float]) -> np.ndarray:
    """Scatter random impulses per layer (``densities`` per pixel) and stamp each layer's kernel.

    Returns (L, H, W) float32 opacity maps in [0, 1]. Impulses land on a canvas padded by the
    kernel size, so particles partly outside the frame still enter it.
    """
    stack = _stack_kernels(kernels)
    margin = stack.shape[-1]
    canvas_h, canvas_w = _fft_size(height + margin), _fft_size(width + margin)
    seeds = np.zeros((len(kernels), canvas_h * canvas_w), dtype=np.float32)
    for layer, density in enumerate(densities):
        count = rng.poisson(density * canvas_h * canvas_w)
        where = rng.integers(0, canvas_h * canvas_w, size=count)
        seeds[layer, where] = rng.uniform(*intensity, size=count).astype(np.float32)
    seeds_t = torch.from_numpy(seeds.reshape(len(kernels), canvas_h, canvas_w))
    layers = fft_convolve(seeds_t, torch.from_numpy(stack))
    top, left = (canvas_h - height) // 2, (canvas_w - width) // 2
    return layers[:, top : top + height, left : left + width].clamp(0.0, 1.0).numpy()


def _veil(image_3HW: torch.Tensor, transmission: float, airlight: float) -> torch.Tensor:
    """Uniform scattering veil, I = J t + A (1 - t): the mist that comes with rain and snow."""
    return image_3HW * transmission + airlight * (1.0 - transmission)


def _check(image_3HW: torch.Tensor) -> None:
    if image_3HW.dim() != 3 or image_3HW.shape[0] != 3 or not image_3HW.is_floating_point():
        raise ValueError(f"expected a float (3, H, W) image in [0, 1], got {tuple(image_3HW.shape)} {image_3HW.dtype}")
    if min(image_3HW.shape[-2:]) < 16:
        raise ValueError(f"image too small to degrade: {tuple(image_3HW.shape)}; need at least 16x16")


# ---- the five degradations ----------------------------------------------------------------------


def haze(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Atmospheric scattering (Koschmieder, as in RESIDE): I = J t + A (1 - t), t = exp(-beta d).

    d is a depth proxy in [d_near, 1]: a vertical gradient (the top is far), a fractal field and
    blurred luminance (bright, flat regions such as sky tend to be far). beta in [0.4, 2.0] per unit
    depth gives far-field transmission 0.14-0.67, RESIDE-OTS-like; A is a bluish grey in [0.7, 1].
    Applied in sRGB, as RESIDE does.
    """
    _, height, width = image_3HW.shape
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None] ** rng.uniform(0.6, 1.6)
    field = smooth_field(rng, height, width)
    luminance = image_3HW.mean(0, keepdim=True)[None]
    small = F.avg_pool2d(luminance, kernel_size=max(1, min(height, width) // 16))
    luminance = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
    weights = rng.dirichlet([4.0, 2.0, 1.5])
    depth = weights[0] * rows + weights[1] * field + weights[2] * luminance
    depth = (depth - depth.min()) / (depth.max() - depth.min() + 1e-8)
    d_near = rng.uniform(0.05, 0.35)
    depth = d_near + (1.0 - d_near) * depth
    beta = rng.uniform(0.4, 2.0)
    transmission = _tensor(np.exp(-beta * depth).astype(np.float32), image_3HW)
    level = rng.uniform(0.7, 1.0)
    blue = rng.uniform(0.0, 0.06)
    airlight = _tensor(np.array([level * (1 - 2 * blue), level * (1 - blue), level], dtype=np.float32), image_3HW)
    out = image_3HW * transmission + airlight[:, None, None] * (1.0 - transmission)
    return out.clamp(0.0, 1.0)


def rain(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Rain streaks: sparse drops smeared along one wind angle, 2-4 depth layers, screen-blended.

    Angle within ±30° of vertical; far layers are short, thin, dense and dim, near layers long,
    wide and sparse (Rain100L-like light rain up to Rain100H-like downpour). A veil with
    transmission 0.8-1 adds the mist of heavy rain.
    """
    _, height, width = image_3HW.shape
    scale = min(height, width) / 256
    angle = math.radians(rng.uniform(-30, 30))
    heaviness = rng.uniform(0.0, 1.0)
    kernels, densities = [], []
    for depth in np.linspace(0.0, 1.0, rng.integers(2, 5)):  # 0 = far, 1 = near
        length = scale * rng.uniform(5, 10) * (1 + 1.2 * depth) * (1 + 0.8 * heaviness)
        radius = rng.uniform(0.25, 0.55) * (1 + 1.2 * depth) * max(1.0, scale**0.5)
        kernels.append(capsule_kernel(length, angle + math.radians(rng.normal(0, 2)), radius, rng.uniform(0.6, 1.2), taper=0.7))
        densities.append(rng.uniform(0.001, 0.004) * (1 + 2 * heaviness) * (1.6 - depth) / scale)
    layers = _render_particles(rng, height, width, kernels, densities, intensity=(0.2, 0.8))
    streaks = 1.0 - np.prod(1.0 - layers, axis=0)
    streaks = _tensor(streaks * rng.uniform(0.4, 0.8), image_3HW)
    tint = _tensor(np.array([0.92, 0.95, 1.0], dtype=np.float32), image_3HW)[:, None, None]
    out = _veil(image_3HW, rng.uniform(0.8, 1.0), rng.uniform(0.7, 0.9))
    out = 1.0 - (1.0 - out) * (1.0 - streaks * tint)
    return out.clamp(0.0, 1.0)


def snow(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Snowfall (Snow100K-like): 3 layers of flakes, small-dense to large-sparse-defocused.

    Each flake is a soft disc smeared a little along the fall direction; layers are alpha-composited
    with a near-white colour, over an optional veil (transmission 0.75-1).
    """
    _, height, width = image_3HW.shape
    scale = min(height, width) / 256
    angle = math.radians(rng.uniform(-35, 35))
    amount = rng.uniform(0.3, 1.0)
    kernels, densities = [], []
    for radius, softness, density in ((0.8, 0.7, 0.012), (1.6, 1.0, 0.002), (3.5, 2.5, 0.0002)):
        radius = radius * scale * rng.uniform(0.7, 1.4)
        streak = rng.uniform(0.0, 2.5) * radius
        kernels.append(capsule_kernel(streak, angle, radius, softness * max(1.0, scale) * rng.uniform(0.8, 1.3)))
        densities.append(density * amount * rng.uniform(0.5, 1.5) / scale**2)
    layers = _render_particles(rng, height, width, kernels, densities, intensity=(0.5, 1.0))
    alpha = _tensor(1.0 - np.prod(1.0 - layers * rng.uniform(0.7, 1.0), axis=0), image_3HW)
    flake = _tensor(np.array([0.93, 0.96, 1.0], dtype=np.float32) * rng.uniform(0.9, 1.0), image_3HW)[:, None, None]
    out = _veil(image_3HW, rng.uniform(0.75, 1.0), rng.uniform(0.75, 0.95))
    out = out * (1.0 - alpha) + flake * alpha
    return out.clamp(0.0, 1.0)


def low_light(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Under-exposure with sensor noise (LOLv1-like), simulated in linear RGB.

    linear = srgb^-1(x); dim = (k * linear)^gamma * cast, k log-uniform in [0.03, 0.3], gamma in
    [1.0, 1.25], cast = per-channel gain in [0.85, 1.15]; noise is Poisson-Gaussian with the
    heteroscedastic Gaussian approximation: var = dim / photons + read^2, photons (at white) log-
    uniform in [300, 3000], read std in [0.0005, 0.004]. Then sRGB encoding and 8-bit rounding.
    """
    exposure = math.exp(rng.uniform(math.log(0.03), math.log(0.3)))
    gamma = rng.uniform(1.0, 1.25)
    cast = rng.uniform(0.85, 1.15, size=3).astype(np.float32) * exposure**gamma
    # (k * srgb^-1(x))^gamma with the sRGB power segment only (one pow; the toe below 0.04 differs
    # by < 0.001 before the exposure scale shrinks it further)
    dim = ((image_3HW + 0.055) / 1.055) ** (2.4 * gamma) * _tensor(cast, image_3HW)[:, None, None]
    photons = math.exp(rng.uniform(math.log(300), math.log(3000)))
    read = rng.uniform(0.0005, 0.004)
    std = torch.sqrt(dim.clamp(min=0) / photons + read**2)
    noisy = dim + std * _normal(rng, image_3HW)
    out = linear_to_srgb(noisy).clamp(0.0, 1.0)
    return torch.round(out * 255.0) / 255.0


def motion_kernel(rng: np.random.Generator, extent: float) -> np.ndarray:
    """Camera-shake kernel: a random walk with momentum (Boracchi & Foi 2012 style), splatted.

    The trajectory is sampled at 0.25 px steps with sub-pixel bilinear splatting and rescaled so its
    largest extent is ``extent`` px. Returns a (K, K) float32 kernel, K odd, summing to 1.
    """
    steps = 64
    velocity = np.array(rng.normal(size=2), dtype=np.float64)
    velocity /= np.linalg.norm(velocity) + 1e-8
    position, points = np.zeros(2), []
    jitter, inertia = rng.uniform(0.02, 0.25), rng.uniform(0.0, 0.3)
    for _ in range(steps):
        points.append(position.copy())
        # smooth turns plus occasional jerks, pulled back towards the start (a hand holding still)
        velocity += jitter * rng.normal(size=2) - inertia * position / steps
        if rng.random() < 0.03:
            velocity += rng.normal(size=2)
        velocity /= np.linalg.norm(velocity) + 1e-8
        position = position + velocity
    points = np.array(points)
    points -= (points.min(0) + points.max(0)) / 2
    span = np.ptp(points, axis=0).max() + 1e-8
    points *= extent / span
    # densify to 0.25 px steps so the splat has no gaps
    gaps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    t = np.concatenate([[0.0], np.cumsum(gaps)])
    dense_t = np.linspace(0.0, t[-1], max(2, int(t[-1] / 0.25) + 2))
    dense = np.stack([np.interp(dense_t, t, points[:, 0]), np.interp(dense_t, t, points[:, 1])], axis=1)
    size = 2 * math.ceil(np.abs(dense).max() + 1) + 1
    kernel = np.zeros((size, size), dtype=np.float64)
    coords = dense + size // 2
    base = np.floor(coords).astype(int)
    frac = coords - base
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            np.add.at(kernel, (base[:, 0] + dy, base[:, 1] + dx), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def blur(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Camera-shake motion blur (GoPro-like), convolved in linear RGB, where light adds up.

    Kernel extent uniform in [5, max(9, 0.06 * short side)] px (about 5-15 px at 256, 5-31 px at
    512), reflect padding, then Gaussian noise with std in [0, 0.01] in sRGB.
    """
    _, height, width = image_3HW.shape
    extent = rng.uniform(5.0, max(9.0, 0.06 * min(height, width)))
    kernel = motion_kernel(rng, extent)
    size = kernel.shape[0]
    padded_h, padded_w = _fft_size(height + size), _fft_size(width + size)
    top, left = (padded_h - height) // 2, (padded_w - width) // 2
    pads = (left, padded_w - width - left, top, padded_h - height - top)
    mode = "reflect" if max(pads) < min(height, width) else "replicate"
    linear = F.pad(srgb_to_linear(image_3HW)[None], pads, mode=mode)[0]
    blurred = fft_convolve(linear, _tensor(kernel, image_3HW)[None])
    out = linear_to_srgb(blurred[:, top : top + height, left : left + width])
    sigma = rng.uniform(0.0, 0.01)
    out = out + sigma * _normal(rng, image_3HW)
    return out.clamp(0.0, 1.0)


# ---- public entry points ------------------------------------------------------------------------

_GENERATORS = {"haze": haze, "rain": rain, "snow": snow, "low_light": low_light, "blur": blur}


@torch.no_grad()
def degrade(clean_3HW: torch.Tensor, kind: str, generator: GeneratorLike) -> torch.Tensor:
    """Apply one degradation ``kind`` (or "mixed": two composed in physical order; "none": the input).

    clean_3HW: float (3, H, W) sRGB in [0, 1], H, W ≥ 16. Returns the same shape and dtype in [0, 1].
    """
    if kind not in _GENERATORS and kind not in EXTRA_KINDS:
        raise ValueError(f"unknown degradation {kind!r}; valid: {', '.join(DEGRADATIONS + EXTRA_KINDS)}")
    _check(clean_3HW)
    rng = as_numpy_rng(generator)
    image = clean_3HW.clamp(0.0, 1.0)
    if kind == "none":
        return image.clone()
    if kind == "mixed":
        first, second = rng.choice(len(DEGRADATIONS), size=2, replace=False)
        for name in sorted((DEGRADATIONS[first], DEGRADATIONS[second]), key=_MIXED_ORDER.index):
            image = _GENERATORS[name](image, rng)
        return image
    return _GENERATORS[kind](image, rng)


def random_degradation(clean_3HW: torch.Tensor, generator: GeneratorLike,
                       kinds: tuple[str, ...] = DEGRADATIONS) -> tuple[torch.Tensor, str]:
    """Pick one of ``kinds`` uniformly and apply it; returns (degraded_3HW, kind)."""
    if not kinds:
        raise ValueError("kinds is empty; pass at least one of " + ", ".join(DEGRADATIONS))
    rng = as_numpy_rng(generator)
    kind = kinds[int(rng.integers(len(kinds)))]
    return degrade(clean_3HW, kind, rng), kind
