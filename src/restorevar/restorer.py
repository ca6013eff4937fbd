"""Real photos of any size: tiling or resizing around the native-size model, and whole folders with
nothing lost (atomic writes, no overwriting of inputs, one clear line per bad file)."""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .image_save import save_image, side_by_side
from .images import DEFAULT_MAX_PIXELS, ImageError, LoadedImage, from_tensor, load_image, load_image_from
from .images import to_pil, to_tensor
from .tiling import restore_resized, restore_tiled

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg"}
SAME_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}


@dataclass
class RestoreOptions:
    """How an image of any size is fitted to the model (native side S).

    tile: tile side in input pixels (default S); tiles of another side are resized to S and back.
    overlap: overlap between tiles in pixels (default S/8), blended with feathered weights.
    resize: restore the whole image at S×S and resize back instead (fast; for global degradations).
    """

    tile: int | None = None
    overlap: int | None = None
    resize: bool = False
    batch_size: int = 4


def restore_array(model, rgb_HW3: np.ndarray, options: RestoreOptions, progress=None) -> np.ndarray:
    """(H, W, 3) float [0, 1] → restored (H, W, 3), same size and orientation."""
    size = model.image_size
    image = to_tensor(rgb_HW3)

    def run(tiles_N3TT: torch.Tensor) -> torch.Tensor:
        side = tiles_N3TT.shape[-1]
        if side != size:
            tiles_N3TT = F.interpolate(tiles_N3TT, size=(size, size), mode="bicubic", antialias=side > size)
        restored = model.restore_batch(tiles_N3TT.clamp(0, 1)).image_B3HW.cpu()
        if side != size:
            restored = F.interpolate(restored, size=(side, side), mode="bicubic", antialias=side < size)
        return restored.clamp(0, 1)

    if options.resize:
        out = restore_resized(image, run, size=size)
    else:
        tile = options.tile or size
        overlap = options.overlap if options.overlap is not None else tile // 8
        out = restore_tiled(image, run, tile=tile, overlap=overlap, batch_size=options.batch_size, progress=progress)
    return from_tensor(out)


def restore_image(model, image, options: RestoreOptions | None = None) -> Image.Image:
    """A path, PIL image or numpy array → restored PIL image shaped like the source (mode, alpha, bits)."""
    loaded = image if isinstance(image, LoadedImage) else load_image_from(image)
    rgb = restore_array(model, loaded.rgb, options or RestoreOptions())
    return to_pil(rgb, loaded)


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def line(self) -> str:
        return f"{len(self.done)} restored, {len(self.skipped)} skipped, {len(self.failed)} failed"


def collect_inputs(inputs: Iterable[str | Path], *, recursive: bool = False) -> list[tuple[Path, Path]]:
    """Files, folders (images inside; recursive with -r) and globs → (file, base folder) pairs."""
    found: list[tuple[Path, Path]] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [(f, path) for f in files]
        elif path.exists():
            found.append((path, path.parent))
        elif any(ch in str(spec) for ch in "*?["):
            found += [(Path(p), Path(p).parent) for p in sorted(glob.glob(str(spec), recursive=recursive))
                      if Path(p).is_file()]
        else:
            found.append((path, path.parent))  # reported as a failure with the loader's message
    return found


def output_path(source: Path, base: Path, out_dir: Path | None, *, suffix: str, fmt: str, loaded_format) -> Path:
    relative = source.relative_to(base) if out_dir is not None else Path(source.name)
    folder = (out_dir / relative.parent) if out_dir is not None else source.parent
    ext = SAME_FORMAT_SUFFIX.get(loaded_format or "", ".png") if fmt == "same" else FORMAT_SUFFIX[fmt]
    return folder / f"{source.stem}{suffix}{ext}"


def restore_paths(
    model,
    inputs: Iterable[str | Path],
    out_dir: str | Path | None = None,
    *,
    options: RestoreOptions | None = None,
    recursive: bool = False,
    suffix: str = "_restored",
    fmt: str = "png",
    compare: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    on_file: Callable[[int, int, Path], None] | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> Summary:
    """Restore many files; a bad file is reported and skipped, never fatal, and inputs are never replaced."""
    options = options or RestoreOptions()
    out_dir = Path(out_dir) if out_dir is not None else None
    sources = collect_inputs(inputs, recursive=recursive)
    input_set = {p.resolve() for p, _ in sources if p.exists()}
    summary = Summary()
    for i, (source, base) in enumerate(sources):
        if on_file is not None:
            on_file(i, len(sources), source)
        try:
            loaded = load_image(source, max_pixels=max_pixels)
            target = output_path(source, base, out_dir, suffix=suffix, fmt=fmt, loaded_format=loaded.format)
            if target.resolve() in input_set and not overwrite:
                raise ImageError(f"output '{target}' would replace an input; use another --suffix or -o")
            if target.exists() and skip_existing:
                summary.skipped.append(source)
                continue
            if target.exists() and not overwrite:
                raise ImageError(f"'{target}' exists; pass --overwrite to replace it or --skip-existing")
            for warning in loaded.warnings:
                log.warning(warning)
            restored = to_pil(restore_array(model, loaded.rgb, options, on_tiles), loaded)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_image(restored, target, overwrite=overwrite, icc_profile=loaded.icc_profile)
            if compare:
                before = to_pil(loaded.rgb, loaded)
                compare_path = target.with_name(f"{target.stem}_compare.png")
                save_image(side_by_side(before, restored), compare_path, overwrite=True)
            summary.done.append(target)
        except (ImageError, OSError, ValueError) as e:
            log.error("%s", e)
            summary.failed.append((source, str(e)))
    return summary
