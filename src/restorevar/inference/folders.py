"""Whole folders with nothing lost: every output path is planned before any work, inputs and earlier
outputs are never restored again or replaced, writes are atomic, and a bad file costs one log line."""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from restorevar.images.load import DEFAULT_MAX_PIXELS, ImageError, load_image, to_pil
from restorevar.images.save import save_image, side_by_side
from restorevar.inference.restorer import RestoreOptions, restore_array

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
# --format same: keep the container when we can write it; GIF and BMP become PNG
SAME_SUFFIX = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png", ".tif": ".tif", ".tiff": ".tif", ".webp": ".webp"}
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg"}


@dataclass
class Job:
    source: Path
    target: Path
    compare: Path | None


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def line(self) -> str:
        return f"{len(self.done)} restored, {len(self.skipped)} skipped, {len(self.failed)} failed"


def collect_inputs(
    inputs: Iterable[str | Path], *, recursive: bool = False, exclude_dir: Path | None = None, suffix: str = ""
) -> list[tuple[Path, Path]]:
    """Files, folders (images inside; recursive with -r) and globs → unique (file, base folder) pairs.

    Walking a folder skips hidden files, the output folder and earlier outputs (stems ending in
    `suffix` or `suffix_compare`), so a re-run never restores its own results again.
    """
    found: dict[Path, tuple[Path, Path]] = {}

    def is_earlier_output(path: Path) -> bool:
        return bool(suffix) and (path.stem.endswith(suffix) or path.stem.endswith(f"{suffix}_compare"))

    def inside_output(path: Path) -> bool:
        return exclude_dir is not None and path.resolve().is_relative_to(exclude_dir.resolve())

    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(
                p
                for p in path.glob("**/*" if recursive else "*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not p.name.startswith(".")
                and not is_earlier_output(p)
                and not inside_output(p)
            )
            pairs = [(f, path) for f in files]
        elif path.exists() or not any(ch in str(spec) for ch in "*?["):
            pairs = [(path, path.parent)]  # a missing file is reported by the loader, one line
        else:
            pairs = [
                (Path(p), Path(p).parent)
                for p in sorted(glob.glob(str(spec), recursive=recursive))
                if Path(p).is_file()
            ]
        if not pairs:
            log.warning("no images found in %r", str(spec))
        for file, base in pairs:
            found.setdefault(file.resolve(), (file, base))
    return list(found.values())


def plan_jobs(
    sources: list[tuple[Path, Path]], out_dir: Path | None, *, suffix: str, fmt: str, compare: bool
) -> list[Job]:
    """Output paths for every input; inputs whose names would clash keep their extension in the name."""

    def target(source: Path, base: Path, stem: str) -> Path:
        folder = source.parent if out_dir is None else out_dir / source.relative_to(base).parent
        ext = SAME_SUFFIX.get(source.suffix.lower(), ".png") if fmt == "same" else FORMAT_SUFFIX[fmt]
        return folder / f"{stem}{suffix}{ext}"

    first = [target(src, base, src.stem) for src, base in sources]
    clashes = {t for t in first if first.count(t) > 1}
    jobs = []
    for (src, base), t in zip(sources, first):
        if t in clashes:  # a.jpg and a.png → a_jpg_restored.png and a_png_restored.png
            t = target(src, base, f"{src.stem}_{src.suffix.lstrip('.').lower()}")
        jobs.append(Job(src, t, t.with_name(f"{t.stem}_compare.png") if compare else None))
    return jobs


def check_writable(job: Job, inputs: set[Path], *, overwrite: bool) -> None:
    for path in filter(None, (job.target, job.compare)):
        if path.resolve() in inputs:
            raise ImageError(f"output '{path}' would replace an input; use another --suffix or -o")
        if path.exists() and not overwrite:
            raise ImageError(f"'{path}' exists; pass --overwrite to replace it or --skip-existing")
    job.target.parent.mkdir(parents=True, exist_ok=True)


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
    on_done: Callable[[Path], None] | None = None,
) -> Summary:
    """Restore many files. A bad file (or an out-of-memory tile batch) is reported and skipped; inputs are
    never replaced, even with `overwrite`, which only allows replacing earlier outputs."""
    options = options or RestoreOptions()
    out_dir = Path(out_dir) if out_dir is not None else None
    sources = collect_inputs(inputs, recursive=recursive, exclude_dir=out_dir, suffix=suffix)
    inputs_set = {src.resolve() for src, _ in sources}
    summary = Summary()
    for i, job in enumerate(plan_jobs(sources, out_dir, suffix=suffix, fmt=fmt, compare=compare)):
        if on_file is not None:
            on_file(i, len(sources), job.source)
        if skip_existing and job.target.exists():
            summary.skipped.append(job.source)
            continue
        try:
            check_writable(job, inputs_set, overwrite=overwrite)  # before spending time on the model
            loaded = load_image(job.source, max_pixels=max_pixels)
            for warning in loaded.warnings:
                log.warning(warning)
            restored = to_pil(restore_array(model, loaded.rgb, options, on_tiles), loaded)
            save_image(restored, job.target, overwrite=overwrite, icc_profile=loaded.icc_profile)
            if job.compare is not None:
                save_image(side_by_side(to_pil(loaded.rgb, loaded), restored), job.compare, overwrite=overwrite)
            summary.done.append(job.target)
            if on_done is not None:
                on_done(job.target)
        except (ImageError, OSError, ValueError, RuntimeError, MemoryError) as e:
            # RuntimeError/MemoryError: e.g. out of memory on a huge photo; the next file may still fit
            message = (
                str(e) if isinstance(e, ImageError) else f"{job.source}: {str(e).splitlines()[0] or type(e).__name__}"
            )
            log.error("%s", message)
            summary.failed.append((job.source, message))
    return summary
