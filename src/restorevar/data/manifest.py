"""The photo set's manifest (package, version, path, licence, sizes and sha256 of every photo) and its
deterministic train/val split."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass
class PhotoRecord:
    """One photo of the set; ``path`` is inside the package (``bundle.rcc:inner/path`` for rcc)."""

    file: str
    package: str
    version: str
    path: str
    licence: str
    copyright: str
    source_url: str
    original_size: tuple[int, int]  # (width, height)
    size: tuple[int, int]
    sha256: str


@dataclasses.dataclass
class Manifest:
    """All photos plus the package versions they came from."""

    photos: list[PhotoRecord]
    packages: dict[str, str]  # package -> version, only for fully processed packages

    def to_json(self) -> str:
        return json.dumps({"packages": self.packages, "photos": [dataclasses.asdict(p) for p in self.photos]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        photos = []
        for entry in raw["photos"]:
            entry = dict(entry, original_size=tuple(entry["original_size"]), size=tuple(entry["size"]))
            photos.append(PhotoRecord(**entry))
        return cls(photos=photos, packages=dict(raw["packages"]))

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        return cls.from_json(path.read_text(encoding="utf-8"))

    def save(self, out_dir: str | Path) -> None:
        """Write manifest.json and manifest.csv atomically."""
        out_dir = Path(out_dir)
        atomic_write_bytes(out_dir / MANIFEST_NAME, self.to_json().encode("utf-8"))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        fields = [f.name for f in dataclasses.fields(PhotoRecord)]
        writer.writerow(fields)
        for photo in self.photos:
            row = dataclasses.asdict(photo)
            writer.writerow(["x".join(map(str, row[f])) if isinstance(row[f], tuple) else row[f] for f in fields])
        atomic_write_bytes(out_dir / "manifest.csv", buffer.getvalue().encode("utf-8"))


def split_photos(
    manifest: Manifest | Iterable[str], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Deterministic (train, val) split of photo file names.

    Names are ranked by sha256(f"{seed}:{name}") and the lowest ``round(n * val_fraction)`` go to
    validation, so the split depends only on the names and the seed, not on order or platform.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    names = sorted({p.file for p in manifest.photos} if isinstance(manifest, Manifest) else set(manifest))
    ranked = sorted(names, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
    num_val = round(len(names) * val_fraction)
    val = set(ranked[:num_val])
    return [n for n in names if n not in val], sorted(val)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
