"""Paired restoration datasets on disk: plain folders, the paper's JSON lists, standard benchmark layouts.

Every dataset yields ``{"degraded": (3, H, W), "clean": (3, H, W), "degradation": str, "name": str}``
with float32 tensors in [0, 1]. With ``crop_size=S`` both images are cut to (3, S, S) through the
same window (random window + horizontal flip when ``augment``, the centre otherwise); with
``crop_size=None`` the full images come back (evaluation, batch size 1).

Fixes over the paper's data code (spec §4.1): a pair whose two images differ in size raises
`DatasetError` naming both sizes instead of being resized independently and silently misaligned,
and random crops are drawn from a generator seeded by (seed, index), so an index always gives the
same crop and a resumed run sees exactly the data it would have seen.

Known layouts (`LAYOUTS`, picked by `open_layout`):
    RESIDE     hazy/ + gt/ or clear/   hazy '0001_0.8_0.2.jpg' or '1400_1.png' -> GT '0001.png'
    Snow100K   synthetic/ + gt/
    Rain13K    input/ + target/        (also any generic `PairedFolder`)
    LOLv1      low/ + high/
    GoPro      <sequence>/blur/ + <sequence>/sharp/
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from restorevar.images.load import load_image, to_tensor

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# the paper's JSON names (spec §4.1) -> ours; any other name is kept verbatim as its own label
PAPER_DEGRADATIONS = {
    "Haze": "haze",
    "Rain": "rain",
    "Snow": "snow",
    "Low-light": "low_light",
    "Motion blur": "blur",
    "Mixed": "mixed",
}
_SHOWN = 5  # unmatched files named in an error message


class DatasetError(ValueError):
    """A dataset folder, file list or image pair cannot be used; the message is one line."""


@dataclass(frozen=True)
class Pair:
    """One degraded/clean file pair; ``name`` is unique within its dataset (used to save outputs)."""

    degraded: Path
    clean: Path
    degradation: str
    name: str


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (no hidden files), sorted by name."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _shorten(names: list[str]) -> str:
    more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def match_pairs(
    degraded_dir: Path,
    clean_dir: Path,
    *,
    degradation: str,
    prefix: str = "",
    key: Callable[[str], str] = lambda stem: stem,
) -> list[Pair]:
    """Pair every image of ``degraded_dir`` with the clean image whose stem is ``key(stem)``.

    Several degraded images may share one clean image (RESIDE); an unmatched file on either side
    raises `DatasetError` listing it, since a silently dropped pair skews the data.
    """
    for folder in (degraded_dir, clean_dir):
        if not folder.is_dir():
            raise DatasetError(f"missing folder '{folder}'; check the dataset layout")
    clean_by_stem: dict[str, Path] = {}
    for path in list_images(clean_dir):
        if path.stem in clean_by_stem:
            raise DatasetError(
                f"two clean images with stem '{path.stem}' in '{clean_dir}' "
                f"({clean_by_stem[path.stem].name}, {path.name}); keep one"
            )
        clean_by_stem[path.stem] = path
    pairs, unmatched, used = [], [], set()
    for path in list_images(degraded_dir):
        stem = path.stem if path.stem in clean_by_stem else key(path.stem)
        if stem not in clean_by_stem:
            unmatched.append(path.name)
            continue
        used.add(stem)
        pairs.append(Pair(path, clean_by_stem[stem], degradation, prefix + path.name))
    if unmatched:
        raise DatasetError(
            f"{len(unmatched)} image(s) in '{degraded_dir}' have no clean match in '{clean_dir}': "
            f"{_shorten(unmatched)}; add or remove them"
        )
    orphans = sorted(clean_by_stem[stem].name for stem in clean_by_stem.keys() - used)
    if orphans:
        raise DatasetError(
            f"{len(orphans)} image(s) in '{clean_dir}' have no degraded match in '{degraded_dir}': "
            f"{_shorten(orphans)}; add or remove them"
        )
    if not pairs:
        raise DatasetError(f"no images in '{degraded_dir}'; expected {', '.join(IMAGE_SUFFIXES)} files")
    return pairs


# ---- crops --------------------------------------------------------------------------------------


def paired_crop(
    degraded_3HW: torch.Tensor, clean_3HW: torch.Tensor, crop_size: int, rng: np.random.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut both (3, H, W) images through the same (S, S) window; returns two (3, S, S) tensors.

    ``rng`` given: a random window and a horizontal flip with probability 1/2; None: the centre.
    Images whose short side is below S are first upscaled, identically for both (bilinear: unlike
    bicubic it cannot overshoot [0, 1], so no clamp breaks the relation between the two images).
    """
    if degraded_3HW.shape != clean_3HW.shape:
        raise DatasetError(f"cannot crop a pair of sizes {tuple(degraded_3HW.shape)} and {tuple(clean_3HW.shape)}")
    height, width = clean_3HW.shape[-2:]
    if min(height, width) < crop_size:
        factor = crop_size / min(height, width)
        size = (max(crop_size, round(height * factor)), max(crop_size, round(width * factor)))
        both = torch.stack([degraded_3HW, clean_3HW])
        both = F.interpolate(both, size=size, mode="bilinear", align_corners=False)
        degraded_3HW, clean_3HW = both[0], both[1]
        height, width = size
    if rng is None:
        top, left, flip = (height - crop_size) // 2, (width - crop_size) // 2, False
    else:
        top, left = int(rng.integers(0, height - crop_size + 1)), int(rng.integers(0, width - crop_size + 1))
        flip = bool(rng.random() < 0.5)
    window = (slice(None), slice(top, top + crop_size), slice(left, left + crop_size))
    degraded_3SS, clean_3SS = degraded_3HW[window], clean_3HW[window]
    if flip:
        degraded_3SS, clean_3SS = degraded_3SS.flip(-1), clean_3SS.flip(-1)
    return degraded_3SS.contiguous(), clean_3SS.contiguous()


# ---- datasets -----------------------------------------------------------------------------------


class PairedDataset(Dataset):
    """Degraded/clean image pairs read from disk.

    crop_size: S for (3, S, S) crops, or None for full images. augment: random window + flip
    (training) instead of the centre crop. draws_per_pair: the dataset is this many passes over
    the pairs long (item i -> pair i % n, crop seeded by (seed, i)), so each pass gets new crops.
    """

    def __init__(
        self,
        pairs: list[Pair],
        *,
        crop_size: int | None = None,
        augment: bool = True,
        seed: int = 0,
        draws_per_pair: int = 1,
    ) -> None:
        if not pairs:
            raise DatasetError("no image pairs; check the dataset folder or JSON")
        if crop_size is not None and crop_size < 1:
            raise DatasetError(f"crop_size must be a positive number of pixels, got {crop_size}")
        if draws_per_pair < 1:
            raise DatasetError(f"draws_per_pair must be >= 1, got {draws_per_pair}")
        if seed < 0:
            raise DatasetError(f"seed must be >= 0 (numpy SeedSequence), got {seed}")
        self.pairs = list(pairs)
        self.crop_size, self.augment, self.seed, self.draws_per_pair = crop_size, augment, seed, draws_per_pair

    def __len__(self) -> int:
        return len(self.pairs) * self.draws_per_pair

    def degradation_of(self, index: int) -> str:
        return self.pairs[index % len(self.pairs)].degradation

    def degradation_labels(self) -> list[str]:
        """The label of every index, without loading images (for class-balanced sampling)."""
        return [pair.degradation for pair in self.pairs] * self.draws_per_pair

    def __getitem__(self, index: int) -> dict:
        index = int(index)  # samplers may hand numpy or tensor scalars
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        pair = self.pairs[index % len(self.pairs)]
        degraded_3HW, clean_3HW = to_tensor(load_image(pair.degraded).rgb), to_tensor(load_image(pair.clean).rgb)
        if degraded_3HW.shape != clean_3HW.shape:
            (_, dh, dw), (_, ch, cw) = degraded_3HW.shape, clean_3HW.shape
            raise DatasetError(
                f"pair '{pair.name}' differs in size: degraded {dw}x{dh} ('{pair.degraded}') vs "
                f"clean {cw}x{ch} ('{pair.clean}'); crop or resize one of them to match"
            )
        if self.crop_size is not None:
            rng = np.random.default_rng([self.seed, index]) if self.augment else None
            degraded_3HW, clean_3HW = paired_crop(degraded_3HW, clean_3HW, self.crop_size, rng)
        return {"degraded": degraded_3HW, "clean": clean_3HW, "degradation": pair.degradation, "name": pair.name}

    def extra_repr(self) -> str:
        return f"{len(self.pairs)} pairs, crop_size={self.crop_size}, augment={self.augment}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class PairedFolder(PairedDataset):
    """``root/input/`` + ``root/target/`` matched by file stem (Rain13K and most restoration repos)."""

    def __init__(self, root, *, degradation: str | None = None, **kwargs) -> None:
        root = Path(root)
        degradation = degradation or guess_degradation(root)
        super().__init__(match_pairs(root / "input", root / "target", degradation=degradation), **kwargs)


class PaperJSON(PairedDataset):
    """The paper code's JSON list of ``{image_path, target_path, degradation, dataset}``.

    Relative paths are tried against the JSON's folder, then the current directory. Degradation
    names Haze|Rain|Snow|Low-light|Motion blur|Mixed map onto ours; others (toled, poled) stay
    as their own labels. Item names are ``<dataset>/<file name>``.
    """

    def __init__(self, path, **kwargs) -> None:
        path = Path(path)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(f"cannot read pair list '{path}': {err}; give a JSON list of pairs") from None
        if not isinstance(entries, list):
            raise DatasetError(f"'{path}' holds a JSON {type(entries).__name__}, not a list of pairs; see spec §4.1")
        pairs, missing = [], []
        for number, entry in enumerate(entries):
            if not isinstance(entry, dict) or not {"image_path", "target_path"} <= entry.keys():
                raise DatasetError(f"entry {number} of '{path}' lacks image_path/target_path: {str(entry)[:120]}")
            files = [_resolve(entry[key], path.parent) for key in ("image_path", "target_path")]
            missing += [str(f) for f in files if not f.is_file()]
            label = str(entry.get("degradation", "unknown"))
            label = PAPER_DEGRADATIONS.get(label, label)
            dataset = str(entry.get("dataset", ""))
            pairs.append(Pair(files[0], files[1], label, f"{dataset}/{files[0].name}" if dataset else files[0].name))
        if missing:
            raise DatasetError(
                f"{len(missing)} file(s) listed in '{path}' do not exist: {_shorten(missing)}; "
                f"run from the folder the paths are relative to"
            )
        super().__init__(pairs, **kwargs)


def _resolve(text: str, base: Path) -> Path:
    path = Path(text)
    if path.is_absolute():
        return path
    beside = base / path
    return beside if beside.exists() or not path.exists() else path


# ---- standard layouts ---------------------------------------------------------------------------


def guess_degradation(root: Path) -> str:
    """A label from the folder names, innermost first (``Rain13K/train`` -> rain); else "unknown".

    Words must start with a key ("train" is not rain, "yellow" is not low light).
    """
    keys = {
        "haze": ("haze", "hazy", "reside", "sots", "dehaz", "fog"),
        "rain": ("rain", "derain"),
        "snow": ("snow", "desnow"),
        "low_light": ("low", "lol", "dark"),
        "blur": ("blur", "gopro", "deblur"),
    }
    for part in reversed(Path(root).resolve().parts):
        for word in re.split(r"[^a-z0-9]+", part.lower()):
            label = next((label for label, starts in keys.items() if word.startswith(starts)), None)
            if label is not None:
                return label
    logger.warning("cannot tell the degradation of '%s' from its name; labelled 'unknown'", root)
    return "unknown"


def _first_dir(root: Path, *names: str) -> Path:
    return next((root / n for n in names if (root / n).is_dir()), root / names[0])


def _reside_pairs(root: Path) -> list[Pair]:
    # ITS/OTS/SOTS-outdoor '0001_0.8_0.2', SOTS-indoor '1400_1': the GT stem is the part before '_'
    return match_pairs(
        root / "hazy", _first_dir(root, "gt", "clear", "GT"), degradation="haze", key=lambda stem: stem.split("_")[0]
    )


def _gopro_sequences(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "blur").is_dir() and (d / "sharp").is_dir())


def _gopro_pairs(root: Path) -> list[Pair]:
    return [
        pair
        for seq in _gopro_sequences(root)
        for pair in match_pairs(seq / "blur", seq / "sharp", degradation="blur", prefix=f"{seq.name}/")
    ]


@dataclass(frozen=True)
class Layout:
    """A benchmark's folder layout: how to recognise it and how to pair its files."""

    name: str
    description: str
    matches: Callable[[Path], bool]
    find_pairs: Callable[[Path], list[Pair]]


def _has(*names: str) -> Callable[[Path], bool]:
    return lambda root: all((root / n).is_dir() for n in names)


LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "RESIDE",
        "hazy/ + gt/ or clear/",
        lambda r: (r / "hazy").is_dir() and any((r / n).is_dir() for n in ("gt", "clear", "GT")),
        _reside_pairs,
    ),
    Layout(
        "Snow100K",
        "synthetic/ + gt/",
        _has("synthetic", "gt"),
        lambda r: match_pairs(r / "synthetic", r / "gt", degradation="snow"),
    ),
    Layout(
        "paired folder (Rain13K)",
        "input/ + target/",
        _has("input", "target"),
        lambda r: match_pairs(r / "input", r / "target", degradation=guess_degradation(r)),
    ),
    Layout(
        "LOLv1",
        "low/ + high/",
        _has("low", "high"),
        lambda r: match_pairs(r / "low", r / "high", degradation="low_light"),
    ),
    Layout("GoPro", "<sequence>/blur/ + <sequence>/sharp/", lambda r: bool(_gopro_sequences(r)), _gopro_pairs),
)


def describe_layouts() -> str:
    return "; ".join(f"{layout.name}: {layout.description}" for layout in LAYOUTS)


def detect_layout(root) -> Layout | None:
    """The first layout in `LAYOUTS` that ``root`` matches, else None."""
    root = Path(root)
    return next((layout for layout in LAYOUTS if layout.matches(root)), None) if root.is_dir() else None


def open_layout(root, *, layout: str | None = None, **kwargs) -> PairedDataset:
    """A `PairedDataset` for a benchmark folder; ``layout`` names one of `LAYOUTS`, else auto-detected.

    kwargs go to `PairedDataset` (crop_size, augment, seed, draws_per_pair).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder '{root}' does not exist; check the path")
    if layout is None:
        found = detect_layout(root)
    else:
        found = next((item for item in LAYOUTS if item.name.lower().startswith(layout.lower())), None)
        if found is None:
            raise DatasetError(f"unknown layout {layout!r}; known: {', '.join(item.name for item in LAYOUTS)}")
    if found is None:
        raise DatasetError(f"'{root}' matches no known dataset layout; known: {describe_layouts()}")
    logger.info("'%s': %s layout", root, found.name)
    return PairedDataset(found.find_pairs(root), **kwargs)
