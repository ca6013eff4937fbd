"""Training and validation data: synthetic pairs from clean photos, paired folders, the paper's JSON.

Every dataset yields ``{"degraded": (3, S, S), "clean": (3, S, S), "degradation": str, "name": str}``
(float32 tensors in [0, 1]; S = crop_size, the model's native size), so the default DataLoader
collate batches them. Each dataset also lists the degradation label of every index without
loading images (`degradation_labels`), for class-balanced sampling as in the paper (spec §4.1).

    >>> train = open_dataset("data/photos", crop_size=256)                 # synthetic pairs
    >>> both = open_dataset(["data/photos", "data/Rain13K/train"], crop_size=256)
    >>> sampler = WeightedRandomSampler(class_balanced_weights(both), num_samples=len(both))

Determinism: every random choice for item i comes from ``numpy.random.default_rng([seed, stream, i])``
(synthetic) or ``default_rng([seed, i])`` (paired crops), so the same index gives bit-identical
tensors on the same machine and thread count, and a resumed run sees exactly the data it would
have seen.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset

from restorevar.data.degradations import DEGRADATIONS, EXTRA_KINDS, degrade
from restorevar.data.layouts import (
    LAYOUTS,
    DatasetError,
    PairedDataset,
    PairedFolder,
    PaperJSON,
    describe_layouts,
    detect_layout,
    list_images,
    open_layout,
)
from restorevar.data.manifest import MANIFEST_NAME, Manifest, split_photos
from restorevar.images.load import load_image

__all__ = [
    "LAYOUTS",
    "DatasetError",
    "PairedDataset",
    "PairedFolder",
    "PaperJSON",
    "SyntheticPairs",
    "class_balanced_weights",
    "degradation_labels",
    "open_dataset",
    "open_layout",
]

logger = logging.getLogger(__name__)

MIN_CROP = 16  # the degradations need at least 16x16 pixels


def jitter_tone(image_3HW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A new clean photo from an old one: saturation ×[0.5, 1.5], per-channel gains in [0.85, 1.15] (white
    balance), contrast ×[0.35, 1] about a new mean level in [0.15, 0.85]."""
    grey = image_3HW.mean(0, keepdim=True)
    out = grey + rng.uniform(0.5, 1.5) * (image_3HW - grey)
    out = out * torch.tensor(rng.uniform(0.85, 1.15, size=3), dtype=out.dtype)[:, None, None]
    out = rng.uniform(0.15, 0.85) + rng.uniform(0.35, 1.0) * (out - out.mean())
    return out.clamp(0.0, 1.0)


class SyntheticPairs(Dataset):
    """Clean photo crops with a degradation synthesised on the fly.

    Item i uses photo ``i % n``, degradation ``kinds[(i // n) % K]`` and draw ``i // (n K)``, so any
    run of n·K consecutive indices holds every (photo, kind) once: uniform sampling is balanced.
    From a generator seeded by (seed, stream, i) it draws a scale, log-uniform in
    [max(min_scale, S / short side), max_scale] relative to the cached photo, a crop window
    (S / scale source pixels, resampled to S with Lanczos), a horizontal flip, and the
    degradation's own parameters.

    photo_dir: folder of clean photos; names: only these file names (e.g. a `split_photos` split).
    crop_size: S >= 16. draws_per_photo: dataset length is n·K·draws_per_photo.
    cache_long_side: photos are decoded once and kept as 8-bit images with the long side at most
        this many pixels (default max(1024, 2 S)); scales are relative to that cached size.
    stream: separates datasets sharing a seed (`open_dataset` gives val photos their own stream).
    tone_jitter: share of items whose clean crop first gets a random tone (`jitter_tone`), so that bright,
        flat or tinted scenes are seen clean too, and not only as haze.
    tone_jitter_kinds: the degradations whose items may be jittered (default: all).
    """

    def __init__(
        self,
        photo_dir,
        *,
        crop_size: int,
        kinds: tuple[str, ...] = DEGRADATIONS,
        names: list[str] | None = None,
        seed: int = 0,
        draws_per_photo: int = 1000,
        min_scale: float = 0.25,
        max_scale: float = 1.0,
        cache_long_side: int | None = None,
        stream: int = 0,
        tone_jitter: float = 0.0,
        tone_jitter_kinds: Sequence[str] | None = None,
    ) -> None:
        self.photo_dir = Path(photo_dir)
        if not self.photo_dir.is_dir():
            raise DatasetError(f"photo folder '{self.photo_dir}' does not exist; run 'restorevar data photos DIR'")
        if crop_size < MIN_CROP:
            raise DatasetError(f"crop_size {crop_size} is too small; use at least {MIN_CROP} (e.g. 256)")
        unknown = [kind for kind in kinds if kind not in DEGRADATIONS + EXTRA_KINDS]
        if not kinds or unknown:
            raise DatasetError(
                f"degradation kinds {list(kinds)} invalid; choose from {', '.join(DEGRADATIONS + EXTRA_KINDS)}"
            )
        if not 0 < min_scale <= max_scale:
            raise DatasetError(f"need 0 < min_scale <= max_scale, got {min_scale} and {max_scale}")
        if draws_per_photo < 1:
            raise DatasetError(f"draws_per_photo must be >= 1, got {draws_per_photo}")
        if seed < 0 or stream < 0:
            raise DatasetError(f"seed and stream must be >= 0 (numpy SeedSequence), got {seed} and {stream}")
        if not 0 <= tone_jitter <= 1:
            raise DatasetError(f"tone_jitter is a share of items, in [0, 1]; got {tone_jitter}")
        self.paths = self._find_photos(names)
        self.crop_size, self.kinds, self.seed, self.stream = crop_size, tuple(kinds), seed, stream
        self.draws_per_photo, self.min_scale, self.max_scale = draws_per_photo, min_scale, max_scale
        self.tone_jitter = tone_jitter
        self.tone_jitter_kinds = tuple(kinds if tone_jitter_kinds is None else tone_jitter_kinds)
        self.cache_long_side = cache_long_side or max(1024, 2 * crop_size)
        self._cache: dict[int, Image.Image] = {}

    def _find_photos(self, names: list[str] | None) -> list[Path]:
        if names is None:
            paths = list_images(self.photo_dir)
        else:
            paths = [self.photo_dir / name for name in sorted(names)]
            missing = [p.name for p in paths if not p.is_file()]
            if missing:
                raise DatasetError(
                    f"{len(missing)} photo(s) not in '{self.photo_dir}': {', '.join(missing[:5])}; "
                    f"rebuild the set with 'restorevar data photos {self.photo_dir}'"
                )
        if not paths:
            raise DatasetError(f"no photos in '{self.photo_dir}'; run 'restorevar data photos {self.photo_dir}'")
        return paths

    def __len__(self) -> int:
        return len(self.paths) * len(self.kinds) * self.draws_per_photo

    def degradation_of(self, index: int) -> str:
        return self.kinds[(index // len(self.paths)) % len(self.kinds)]

    def degradation_labels(self) -> list[str]:
        """The label of every index, without loading images (for class-balanced sampling)."""
        cycle = [kind for kind in self.kinds for _ in self.paths]
        return cycle * self.draws_per_photo

    def photo(self, number: int) -> Image.Image:
        """Photo ``number`` as a cached RGB 8-bit image, long side <= cache_long_side."""
        if number not in self._cache:
            rgb = load_image(self.paths[number]).rgb  # EXIF orientation and ICC handled there
            image = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
            factor = self.cache_long_side / max(image.size)
            if factor < 1:
                size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
                image = image.resize(size, Image.Resampling.LANCZOS)
            self._cache[number] = image
        return self._cache[number]

    def __getitem__(self, index: int) -> dict:
        index = int(index)  # samplers may hand numpy or tensor scalars
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        number, kind = index % len(self.paths), self.degradation_of(index)
        rng = np.random.default_rng([self.seed, self.stream, index])
        clean_3SS = self._crop(self.photo(number), rng)
        if self.tone_jitter and rng.random() < self.tone_jitter and kind in self.tone_jitter_kinds:
            clean_3SS = jitter_tone(clean_3SS, rng)
        degraded_3SS = degrade(clean_3SS, kind, rng)
        draw = index // (len(self.paths) * len(self.kinds))
        return {
            "degraded": degraded_3SS,
            "clean": clean_3SS,
            "degradation": kind,
            "name": f"{self.paths[number].stem}_{kind}_{draw}",
        }

    def _crop(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        """A random (3, S, S) float32 crop in [0, 1] at a random scale, maybe flipped."""
        size = self.crop_size
        # at least S / short side, so the window fits; photos smaller than S get upscaled
        low = max(self.min_scale, size / min(image.size))
        high = max(self.max_scale, low)
        scale = math.exp(rng.uniform(math.log(low), math.log(high)))
        if scale == 1.0:  # exact pixels: an integer window, no resampling
            left, top = int(rng.integers(0, image.width - size + 1)), int(rng.integers(0, image.height - size + 1))
            crop = image.crop((left, top, left + size, top + size))
        else:
            window = size / scale
            left, top = rng.uniform(0, image.width - window), rng.uniform(0, image.height - window)
            crop = image.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + window, top + window))
        pixels_SS3 = np.asarray(crop, dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            pixels_SS3 = pixels_SS3[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(pixels_SS3.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return (
            f"SyntheticPairs({len(self.paths)} photos in '{self.photo_dir}', crop_size={self.crop_size}, "
            f"kinds={self.kinds}, draws_per_photo={self.draws_per_photo}, scale=[{self.min_scale}, "
            f"{self.max_scale}], seed={self.seed}, stream={self.stream})"
        )


# ---- labels and balanced sampling ---------------------------------------------------------------


def degradation_labels(dataset: Dataset) -> list[str]:
    """The degradation label of every index of ``dataset`` (ours, ConcatDataset or Subset of them)."""
    if hasattr(dataset, "degradation_labels"):
        return dataset.degradation_labels()
    if isinstance(dataset, ConcatDataset):
        return [label for part in dataset.datasets for label in degradation_labels(part)]
    if isinstance(dataset, Subset):
        labels = degradation_labels(dataset.dataset)
        return [labels[i] for i in dataset.indices]
    raise TypeError(
        f"{type(dataset).__name__} has no degradation labels; use restorevar datasets, ConcatDataset or Subset of them"
    )


def indices_by_degradation(dataset: Dataset, count: int) -> list[int]:
    """Up to ``count`` indices taken from each degradation label in turn, so that a small validation
    batch sees every kind (a photo folder's first indices are all one kind). Unlabelled datasets: the first ones."""
    try:
        labels = degradation_labels(dataset)
    except TypeError:
        return list(range(min(count, len(dataset))))
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    rows = itertools.zip_longest(*by_label.values())
    return list(itertools.islice((i for row in rows for i in row if i is not None), count))


def class_balanced_weights(dataset: Dataset) -> torch.Tensor:
    """(N,) float64 sampling weights 1 / count(label), summing to the number of labels.

    With `torch.utils.data.WeightedRandomSampler` every degradation is drawn equally often, as the
    paper's sampler does (spec §4.1).
    """
    labels = degradation_labels(dataset)
    counts = Counter(labels)
    return torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.float64)


# ---- specs --------------------------------------------------------------------------------------


def open_dataset(
    spec,
    *,
    crop_size: int | None,
    split: str = "train",
    seed: int = 0,
    draws_per_photo: int | None = None,
    kinds: tuple[str, ...] = DEGRADATIONS,
    tone_jitter: float = 0.0,
    tone_jitter_kinds: Sequence[str] | None = None,
) -> Dataset:
    """A dataset from a spec, or a `ConcatDataset` from a list of specs.

    spec: a folder of clean photos -> `SyntheticPairs` (train/val photos from `split_photos` of
    the manifest.json, or of the file names when there is none); a benchmark folder -> its layout
    (`open_layout`); a ``.json`` file -> `PaperJSON`.
    split: "train" (random crops and flips) or "val" (synthetic: the held-out photos on their own
    seed stream; paired: centre crops). crop_size: S; None gives full images (paired data only).
    draws_per_photo: synthetic dataset length per photo and kind (default 1000 train, 4 val).
    kinds: the degradations synthesised on photo folders (paired data keeps its own).
    tone_jitter: photo folders, train split: share of clean crops given a random tone (`jitter_tone`);
    tone_jitter_kinds: only items of these degradations (default: all).
    """
    if split not in ("train", "val"):
        raise DatasetError(f"unknown split {split!r}; use 'train' or 'val'")
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise DatasetError("empty list of dataset specs; give at least one folder or JSON file")
        parts = [
            _open_one(item, crop_size, split, seed, draws_per_photo, position, kinds, tone_jitter, tone_jitter_kinds)
            for position, item in enumerate(spec)
        ]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)
    return _open_one(spec, crop_size, split, seed, draws_per_photo, 0, kinds, tone_jitter, tone_jitter_kinds)


def _open_one(
    spec,
    crop_size: int | None,
    split: str,
    seed: int,
    draws: int | None,
    position: int,
    kinds: tuple[str, ...],
    tone_jitter: float,
    tone_jitter_kinds: Sequence[str] | None,
) -> Dataset:
    path = Path(spec)
    is_train = split == "train"
    if path.is_file() and path.suffix.lower() == ".json":
        return PaperJSON(path, crop_size=crop_size, augment=is_train, seed=seed)
    if not path.is_dir():
        raise DatasetError(f"dataset spec '{path}' is neither a folder nor a .json file; check the path")
    if detect_layout(path) is not None:
        return open_layout(path, crop_size=crop_size, augment=is_train, seed=seed)
    photos = [p.name for p in list_images(path)]
    if not photos:
        raise DatasetError(
            f"'{path}' holds no photos and matches no known layout; known: {describe_layouts()}; "
            f"or a folder of clean photos, or a paper .json list"
        )
    if crop_size is None:
        raise DatasetError(f"'{path}' is a photo folder: synthetic pairs need a crop_size (e.g. 256)")
    manifest = path / MANIFEST_NAME
    source = Manifest.load(manifest) if manifest.is_file() else photos
    if not manifest.is_file():
        logger.info("no %s in '%s'; splitting its %d photos by name", MANIFEST_NAME, path, len(photos))
    train_names, val_names = split_photos(source)  # split seed fixed: a new training seed keeps the split
    names = train_names if is_train else val_names
    if not names:
        raise DatasetError(f"the {split} split of '{path}' is empty ({len(photos)} photos); add photos")
    return SyntheticPairs(
        path,
        crop_size=crop_size,
        kinds=kinds,
        names=names,
        seed=seed,
        draws_per_photo=draws or (1000 if is_train else 4),
        stream=2 * position + (0 if is_train else 1),
        tone_jitter=tone_jitter if is_train else 0.0,
        tone_jitter_kinds=tone_jitter_kinds,
    )
