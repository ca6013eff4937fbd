"""Build the clean training photo set from Debian packages (`restorevar data photos OUT_DIR`).

Only the sources listed in docs/data.md are used. Each package is
fetched with ``apt-get download`` (or taken pre-downloaded from the cache folder), unpacked with
``dpkg-deb -x`` into a temporary folder, and its photos are written to OUT_DIR as RGB PNGs with a
``manifest.json``/``manifest.csv`` recording package, version, path, licence, sizes and sha256.

Ground-truth preparation (why each step):
- GCompris WebPs were sharpened by GCompris, so they are box-reduced 2×; photos whose short side is
  then below 256 px are dropped (a 256 crop must fit the ground truth, not the sharpened original).
- Wallpapers larger than 2048 px on the long side are box-reduced by the smallest integer factor
  that brings them under it: it averages out JPEG blocking and keeps files and crops sensible.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from PIL import Image, ImageOps

from restorevar.data.manifest import MANIFEST_NAME, Manifest, PhotoRecord, atomic_write_bytes
from restorevar.data.rcc import RccBundle

logger = logging.getLogger(__name__)

MIN_SHORT_SIDE = 256
MAX_LONG_SIDE = 2048
GCOMPRIS_DOWNSCALE = 2
# upstream README typos: image path -> the path the README lists it under
README_ALIASES = {"germany/aulaPalatina.webp": "germany/audaPalatina.webp"}


class PhotoSetError(RuntimeError):
    """A package could not be fetched, unpacked or read."""


@dataclasses.dataclass(frozen=True)
class PhotoSource:
    """Where photos live inside one Debian package."""

    package: str
    patterns: tuple[str, ...]  # globs relative to the package root
    exclude: tuple[str, ...] = ()  # basename globs to skip
    licence_override: str | None = None  # when debian/copyright alone would mislead


SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource(
        "gcompris-qt-data",
        tuple(
            f"usr/share/gcompris-qt/rcc/{name}.rcc"
            for name in (
                "erase",
                "explore_monuments",
                "explore_world_animals",
                "explore_farm_animals",
                "explore_world_music",
            )
        ),
    ),
    PhotoSource("mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",)),
    PhotoSource(
        "lxqt-themes",
        tuple(
            f"usr/share/lxqt/wallpapers/{name}"
            # the photographic wallpapers; the rest are logos and renders, fog.jpg is a real fog scene
            for name in (
                "Butterfly-Kenneth-Wimer.jpg",
                "Valendas.png",
                "after-the-rain.jpg",
                "appleflower.png",
                "beam.png",
                "butterfly.png",
                "cloud.png",
                "drop.png",
                "flowers.png",
                "this-is-not-windows.jpg",
            )
        ),
        exclude=("fog.jpg",),
        # debian/copyright covers the package with 'Files: *'; upstream's wallpapers/License says CC-BY-SA-3.0
        licence_override="LGPL-2.1+ (debian/copyright) / CC-BY-SA-3.0 (upstream wallpapers/License)",
    ),
    PhotoSource("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*.jpg",), exclude=("umang*", "analogpattern*")),
    PhotoSource(
        "darknet",
        tuple(f"usr/share/darknet/data/{name}.jpg" for name in ("eagle", "kite", "dog", "giraffe", "person", "horses")),
    ),
)


# ---- package handling ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "restorevar" / "debs"


def fetch_deb(package: str, cache_dir: Path) -> Path:
    """Return the .deb for ``package`` in ``cache_dir``, running ``apt-get download`` if needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob(f"{package}_*.deb"))
    if not found:
        _apt_download(package, cache_dir)
        found = sorted(cache_dir.glob(f"{package}_*.deb"))
    if not found:
        raise PhotoSetError(f"apt-get reported success but no {package}_*.deb is in {cache_dir}")
    if len(found) > 1:
        logger.warning("several .deb files for %s in %s; using %s", package, cache_dir, found[-1].name)
    return found[-1]


def _apt_download(package: str, cache_dir: Path) -> None:
    hint = f"download {package}_*.deb from a Debian mirror (packages.debian.org/{package}) into {cache_dir}"
    if shutil.which("apt-get") is None:
        raise PhotoSetError(f"apt-get not found, cannot fetch {package}; {hint}")
    for attempt in range(2):
        result = subprocess.run(["apt-get", "download", package], cwd=cache_dir, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if attempt == 0:
            # a fresh machine has no package lists yet: refresh once and retry
            logger.info("apt-get download %s failed; running apt-get update once", package)
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit code {result.returncode}"
    raise PhotoSetError(f"apt-get download {package} failed ({message}); {hint}")


def unpack_deb(deb: Path, dest: Path) -> str:
    """Unpack ``deb`` into ``dest`` with dpkg-deb and return the package version."""
    if shutil.which("dpkg-deb") is None:
        raise PhotoSetError(f"dpkg-deb not found, cannot unpack {deb}; install the 'dpkg' package")
    result = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if result.returncode != 0:
        raise PhotoSetError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()}")
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True)
    return version.stdout.strip()


def parse_fields(text: str) -> list[dict[str, str]]:
    """Parse 'Key: value' paragraphs (debian/copyright and GCompris READMEs) into dicts.

    Lines without a key continue the previous key; paragraphs are separated by blank lines.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            match = re.match(r"^([A-Za-z][A-Za-z-]*):\s*(.*)$", line)
            if match:
                key = match.group(1).lower()
                fields[key] = match.group(2).strip()
            elif key is not None:
                fields[key] = (fields[key] + "\n" + line.strip()).strip()
        if fields:
            paragraphs.append(fields)
    return paragraphs


def lookup_licence(paragraphs: list[dict[str, str]], path: str) -> tuple[str, str, str]:
    """(licence, copyright, source) for ``path``; the last matching 'Files' paragraph wins (DEP-5).

    A pattern matches the path, a suffix of it, or, when it names a file literally, the file name
    alone: debian/copyright names source paths (``16.04/x.jpg``) that install elsewhere.
    """
    found = None
    name = path.rsplit("/", 1)[-1]
    for fields in paragraphs:
        for pattern in fields.get("files", "").split():
            pattern = pattern.removeprefix("./")
            if (
                fnmatch.fnmatch(path, pattern)
                or fnmatch.fnmatch(path, "*/" + pattern)
                or pattern.rsplit("/", 1)[-1] == name
            ):
                found = fields
    if found is None:
        return "unknown", "", ""
    licence = found.get("license", "").splitlines()[0] if found.get("license") else "unknown"
    return normalise_licence(licence), " ".join(found.get("copyright", "").split()), found.get("source", "")


def normalise_licence(licence: str) -> str:
    """Spell licences one way: 'CC-BY-SA 4.0' -> 'CC-BY-SA-4.0', 'Public Domain' -> 'public-domain'."""
    licence = licence.strip()
    if licence.lower() in ("public domain", "public-domain"):
        return "public-domain"
    return re.sub(r"^(CC[-\w]*?)[ -](\d\.\d)$", r"\1-\2", licence)


# ---- image preparation --------------------------------------------------------------------------


def prepare_image(data: bytes, *, downscale: int = 1) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``data`` to RGB, box-reduce by ``downscale`` then to ≤ MAX_LONG_SIDE; return (image, original size)."""
    image = Image.open(io.BytesIO(data))
    image = ImageOps.exif_transpose(image)
    original = image.size
    image = image.convert("RGB")
    factor = max(downscale, -(-max(image.size) // MAX_LONG_SIDE))
    if factor > 1:
        image = image.reduce(factor)
    return image, original


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _iter_package_photos(
    source: PhotoSource, root: Path
) -> Iterator[tuple[str, str, bytes, int, tuple[str, str, str]]]:
    """Yield (output stem, path in package, bytes, downscale, (licence, copyright, url))."""
    copyright_file = root / "usr/share/doc" / source.package / "copyright"
    paragraphs = (
        parse_fields(copyright_file.read_text(encoding="utf-8", errors="replace")) if copyright_file.exists() else []
    )
    for pattern in source.patterns:
        matches = sorted(root.glob(pattern))
        if not matches:
            raise PhotoSetError(f"{source.package}: nothing matches {pattern}; has the package layout changed?")
        for file in matches:
            if any(fnmatch.fnmatch(file.name, ex) for ex in source.exclude):
                continue
            inner = file.relative_to(root).as_posix()
            if file.suffix == ".rcc":
                yield from _iter_rcc_photos(file, inner)
                continue
            licence, holder, url = lookup_licence(paragraphs, inner)
            if source.licence_override:
                licence = source.licence_override
            yield f"{source.package}_{file.stem}", inner, file.read_bytes(), 1, (licence, holder, url)


def _iter_rcc_photos(file: Path, inner: str) -> Iterator[tuple[str, str, bytes, int, tuple[str, str, str]]]:
    bundle = RccBundle.open(file)
    readmes = {
        p.rsplit("/", 1)[0]: parse_fields(bundle.read(p).decode("utf-8", "replace"))
        for p in bundle.files()
        if p.endswith("/README")
    }
    for path in bundle.files():
        if not path.endswith(".webp"):
            continue
        # the README nearest above the image describes it, with paths relative to its folder
        folder = path.rsplit("/", 1)[0]
        while folder and folder not in readmes:
            folder = folder.rsplit("/", 1)[0] if "/" in folder else ""
        relative = path[len(folder) + 1 :] if folder else path
        relative = README_ALIASES.get(relative, relative)
        licence, holder, url = lookup_licence(readmes.get(folder, []), relative)
        stem = f"gcompris_{file.stem}_{Path(path).stem}"
        yield stem, f"{inner}:{path}", bundle.read(path), GCOMPRIS_DOWNSCALE, (licence, holder, url)


# ---- the builder --------------------------------------------------------------------------------


def build_photo_set(
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    packages: Iterable[str] | None = None,
    progress: Callable[[PhotoRecord], None] | None = None,
    sources: tuple[PhotoSource, ...] = SOURCES,
) -> Manifest:
    """Fetch, unpack and extract the training photos into ``out_dir``; return the manifest.

    Idempotent: packages completed by an earlier run (same manifest, files present) are skipped
    without downloading, and photos already written are not re-encoded.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    wanted = set(packages) if packages is not None else {s.package for s in sources}
    unknown = wanted - {s.package for s in sources}
    if unknown:
        raise ValueError(f"unknown packages {sorted(unknown)}; valid: {[s.package for s in sources]}")

    old = Manifest.load(out_dir) if (out_dir / MANIFEST_NAME).exists() else Manifest(photos=[], packages={})
    old_by_file = {p.file: p for p in old.photos}
    manifest = Manifest(photos=[], packages={})
    for source in sources:
        if source.package not in wanted:
            continue
        done = [p for p in old.photos if p.package == source.package]
        if source.package in old.packages and all((out_dir / p.file).exists() for p in done):
            logger.info("%s: already complete (%d photos), skipping", source.package, len(done))
            manifest.photos.extend(done)
            manifest.packages[source.package] = old.packages[source.package]
            continue
        deb = fetch_deb(source.package, cache_dir)
        with tempfile.TemporaryDirectory(prefix="restorevar-deb-") as tmp:
            version = unpack_deb(deb, Path(tmp))
            for stem, inner, data, downscale, (licence, holder, url) in _iter_package_photos(source, Path(tmp)):
                name = _safe(stem) + ".png"
                if any(p.file == name for p in manifest.photos):
                    raise PhotoSetError(f"two photos map to {name}; rename rule in photos.py needs fixing")
                previous = old_by_file.get(name)
                if (
                    previous is not None
                    and (previous.version, previous.path) == (version, inner)
                    and (out_dir / name).exists()
                ):
                    # same bytes as before: skip decoding, but refresh the licence fields
                    manifest.photos.append(
                        dataclasses.replace(previous, licence=licence, copyright=holder, source_url=url)
                    )
                    continue
                image, original = prepare_image(data, downscale=downscale)
                if min(image.size) < MIN_SHORT_SIDE:
                    logger.info("skip %s: %s after downscaling is below %d px", inner, image.size, MIN_SHORT_SIDE)
                    continue
                buffer = io.BytesIO()
                image.save(buffer, format="PNG", compress_level=6)
                encoded = buffer.getvalue()
                atomic_write_bytes(out_dir / name, encoded)
                record = PhotoRecord(
                    file=name,
                    package=source.package,
                    version=version,
                    path=inner,
                    licence=licence,
                    copyright=holder,
                    source_url=url,
                    original_size=original,
                    size=image.size,
                    sha256=hashlib.sha256(encoded).hexdigest(),
                )
                manifest.photos.append(record)
                if progress is not None:
                    progress(record)
        manifest.packages[source.package] = version
        # save after each package so an interrupted run resumes from here
        manifest.save(out_dir)
    manifest.save(out_dir)
    total = sum((out_dir / p.file).stat().st_size for p in manifest.photos)
    logger.info("%d photos, %.1f MB, %.1f s", len(manifest.photos), total / 1e6, time.perf_counter() - started)
    return manifest
