"""Real degraded photos through a model: NIQE of input and output, and a contact sheet to look at.

    python benchmarks/real_photos.py --fetch                       # first time: apt-get download the packages
    python benchmarks/real_photos.py                               # bundled model, offline once fetched
    python benchmarks/real_photos.py --model DIR --out /tmp/real --sheet /tmp/real.jpg

The photos (never used for training; see ../shared/data/TRAINING_PHOTOS.md, "Real degraded photos"): fog
from `lxqt-themes` and `enlightenment-data` (Foggy-Trees), dark scenes from `enlightenment-data` and
`plasma-workspace-wallpapers` (DarkestHour), motion and defocus blur from `opencv-doc` and scikit-image.
None has a clean reference, so the score is NIQE (no-reference, lower is better) of input and output.

``--fetch`` runs ``apt-get update`` once, ``apt-get download`` for each missing package and extracts only
the files needed (``dpkg-deb --fsys-tarfile``) into ``--cache-dir`` (default data/real_photos, git-ignored);
the .deb files are deleted afterwards. Enlightenment backgrounds (.edj) are Eet archives whose images are
stored as JPEG streams: we decode the largest one directly instead of running ``edje_decc`` (libedje-bin's
tool needs a dozen EFL libraries that the package does not bring).

Each photo is restored whole with `restorevar.inference.pipeline.Restorer`, tiled at the model's native
size (photos with a long side over ``--max-side`` px are downscaled first; the table says which). Writes
``OUT.md``, ``OUT.json``, the restored PNGs under ``CACHE/restored/`` and the contact sheet (``--sheet``,
input | output per row, labelled).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from heldout import model_label  # a sibling script: benchmarks/ is on sys.path when run
from PIL import Image, ImageDraw, ImageFont

from restorevar.evaluation.bench import machine_info
from restorevar.evaluation.metrics import niqe
from restorevar.inference.pipeline import Restorer
from restorevar.models.registry import resolve_model

SHEET_WIDTH = 1600
LABEL_HEIGHT = 28


@dataclass(frozen=True)
class Photo:
    name: str
    kind: str
    package: str  # a Debian package, or "scikit-image" (installed in the venv)
    member: str  # path inside the package

    def path(self, cache: Path) -> Path:
        if self.package == "scikit-image":
            import skimage

            return Path(skimage.__file__).parent / self.member
        cached, installed = cache / self.package / self.member, Path("/") / self.member
        return installed if not cached.is_file() and installed.is_file() else cached  # the package may be installed


BACKGROUNDS = "usr/share/enlightenment/data/backgrounds"
OPENCV = "usr/share/doc/opencv-doc/examples/data"
PHOTOS = (
    Photo("fog", "fog", "lxqt-themes", "usr/share/lxqt/wallpapers/fog.jpg"),
    Photo("foggy-trees", "fog", "enlightenment-data", f"{BACKGROUNDS}/Foggy-Trees.edj"),
    Photo("mountain", "dark", "enlightenment-data", f"{BACKGROUNDS}/Mountain.edj"),
    Photo("peaks", "dark", "enlightenment-data", f"{BACKGROUNDS}/Peaks.edj"),
    Photo("lichen-branches", "dark", "enlightenment-data", f"{BACKGROUNDS}/Lichen-Branches.edj"),
    Photo(
        "darkest-hour",
        "dark",
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/DarkestHour/contents/images/2560x1600.jpg",
    ),
    Photo("text-motion", "motion blur", "opencv-doc", f"{OPENCV}/text_motion.jpg"),
    Photo("licenseplate-motion", "motion blur", "opencv-doc", f"{OPENCV}/licenseplate_motion.jpg"),
    Photo("clock-motion", "motion blur", "scikit-image", "data/clock_motion.png"),
    Photo("text-defocus", "defocus blur", "opencv-doc", f"{OPENCV}/text_defocus.jpg"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or name (default: the bundled model)")
    parser.add_argument("--cache-dir", default="data/real_photos", help="where the packages' files are kept")
    parser.add_argument("--fetch", action="store_true", help="download missing packages with apt-get")
    parser.add_argument(
        "--out", default="benchmarks/results/real-photos-restorevar-small", help="writes OUT.json and OUT.md"
    )
    parser.add_argument("--sheet", default="docs/img/real-photos.jpg", help="the contact sheet (JPEG)")
    parser.add_argument("--max-side", type=int, default=1600, help="downscale photos with a longer side first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="only these photo names")
    return parser.parse_args()


# ---- fetching -----------------------------------------------------------------------------------


def missing_photos(photos, cache: Path) -> list[Photo]:
    return [photo for photo in photos if not photo.path(cache).is_file()]


def fetch(photos, cache: Path) -> None:
    """apt-get download each package with a missing file, extract only those files, delete the .deb."""
    wanted: dict[str, set[str]] = {}
    for photo in missing_photos(photos, cache):
        if photo.package == "scikit-image":
            raise SystemExit(f"{photo.path(cache)} is missing: install scikit-image (pip install scikit-image)")
        wanted.setdefault(photo.package, set()).add(photo.member)
    if not wanted:
        return
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "update"], check=True)
    for package, members in wanted.items():
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        deb = next(debs.glob(f"{package}_*.deb"))
        extract(deb, members, cache / package)
        deb.unlink()


def extract(deb: Path, members: set[str], target: Path) -> None:
    """Only ``members`` of a .deb's data tarball, streamed through ``dpkg-deb --fsys-tarfile``."""
    process = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    found = set()
    with tarfile.open(fileobj=process.stdout, mode="r|*") as tar:
        for info in tar:
            name = info.name.removeprefix("./")
            if name in members and info.isfile():
                path = target / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tar.extractfile(info).read())
                found.add(name)
    process.wait()
    if found != members:
        raise SystemExit(f"{deb.name} lacks {sorted(members - found)}; the package layout changed")


def require(photos, cache: Path) -> None:
    missing = missing_photos(photos, cache)
    if missing:
        lines = [
            f"  {photo.path(cache)}  <- /{photo.member} from the Debian package {photo.package}" for photo in missing
        ]
        raise SystemExit(
            "missing real photos (run again with --fetch, or put each file where shown):\n" + "\n".join(lines)
        )


# ---- reading ------------------------------------------------------------------------------------


def largest_jpeg_in(data: bytes) -> Image.Image:
    """The largest decodable JPEG stream in a blob (an .edj Eet archive stores its images so)."""
    best = None
    for match in re.finditer(rb"\xff\xd8\xff", data):
        try:
            image = Image.open(io.BytesIO(data[match.start() :]))
            image.load()
        except (OSError, SyntaxError, ValueError):
            continue
        if best is None or image.width * image.height > best.width * best.height:
            best = image
    if best is None:
        raise SystemExit("no JPEG image found in the .edj file; extract it with `edje_decc FILE.edj` instead")
    return best


def read_photo(path: Path, max_side: int) -> tuple[Image.Image, tuple[int, int]]:
    """The photo as RGB, downscaled (Lanczos) to ``max_side`` if larger; also its original size."""
    image = largest_jpeg_in(path.read_bytes()) if path.suffix == ".edj" else Image.open(path)
    image = image.convert("RGB")
    original = image.size
    factor = max_side / max(image.size)
    if factor < 1:
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)
    return image, original


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


# ---- the run ------------------------------------------------------------------------------------


def run(restorer: Restorer, photos, cache: Path, max_side: int) -> tuple[list[dict], list[tuple]]:
    rows, pairs = [], []
    restored_dir = cache / "restored"
    restored_dir.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        image, original = read_photo(photo.path(cache), max_side)
        start = time.perf_counter()
        restored = restorer.restore(image).convert("RGB")
        seconds = time.perf_counter() - start
        restored.save(restored_dir / f"{photo.name}.png")
        row = {
            "name": photo.name,
            "kind": photo.kind,
            "package": photo.package,
            "file": photo.member,
            "original_size": list(original),
            "size": list(image.size),
            "downscaled": image.size != original,
            "niqe_input": niqe(as_array(image)),
            "niqe_output": niqe(as_array(restored)),
            "seconds": seconds,
        }
        row["niqe_change"] = row["niqe_output"] - row["niqe_input"]
        print(
            f"{photo.name}: {image.width}×{image.height}, NIQE {row['niqe_input']:.2f} → {row['niqe_output']:.2f}, "
            f"{seconds:.1f} s",
            flush=True,
        )
        rows.append(row)
        pairs.append((image, restored, row))
    return rows, pairs


def contact_sheet(pairs, width: int = SHEET_WIDTH) -> Image.Image:
    """Input | output per row, each row labelled with the photo, its kind and the two NIQE scores."""
    panel = (width - 10) // 2
    font = ImageFont.load_default(size=18)
    rows = []
    for image, restored, row in pairs:
        height = max(1, round(image.height * panel / image.width))
        strip = Image.new("RGB", (width, height + LABEL_HEIGHT), "white")
        strip.paste(image.resize((panel, height), Image.Resampling.LANCZOS), (0, LABEL_HEIGHT))
        strip.paste(restored.resize((panel, height), Image.Resampling.LANCZOS), (panel + 10, LABEL_HEIGHT))
        draw = ImageDraw.Draw(strip)
        size = "x".join(map(str, row["size"])) + (" (downscaled)" if row["downscaled"] else "")  # the font lacks ×
        draw.text(
            (4, 4),
            f"{row['name']} ({row['kind']}, {size}) input, NIQE {row['niqe_input']:.2f}",
            fill="black",
            font=font,
        )
        draw.text((panel + 14, 4), f"output, NIQE {row['niqe_output']:.2f}", fill="black", font=font)
        rows.append(strip)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    top = 0
    for strip in rows:
        sheet.paste(strip, (0, top))
        top += strip.height
    return sheet


def markdown(report: dict) -> str:
    settings, machine = report["settings"], report["machine"]
    lines = [
        f"# Real degraded photos: {settings['model_path']}",
        "",
        f"{len(report['rows'])} real photos from Debian packages and scikit-image (never used for training), "
        f"restored whole, tiled at the model's native size; photos with a long side over {settings['max_side']} px "
        "were downscaled first (Lanczos). NIQE (no reference; lower is better) of input and output. "
        f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}; {report['wall_s']:.0f} s. "
        f"Contact sheet: `{settings['sheet']}`.",
        "",
        "| photo | kind | source | size | NIQE input | NIQE output | change | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        size = "×".join(map(str, row["size"]))
        if row["downscaled"]:
            size += f" (from {'×'.join(map(str, row['original_size']))})"
        lines.append(
            f"| {row['name']} | {row['kind']} | {row['package']} `{Path(row['file']).name}` | {size} | "
            f"{row['niqe_input']:.2f} | {row['niqe_output']:.2f} | {row['niqe_change']:+.2f} | "
            f"{row['seconds']:.1f} |"
        )
    worse = [row["name"] for row in report["rows"] if row["niqe_change"] > 0]
    lines += ["", "**NIQE above the input on:** " + (", ".join(worse) if worse else "none") + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache_dir)
    photos = [p for p in PHOTOS if args.only is None or p.name in args.only]
    if args.fetch:
        fetch(photos, cache)
    require(photos, cache)
    model_path = resolve_model(args.model)
    restorer = Restorer.from_pretrained(model_path, device="cpu")
    start = time.perf_counter()
    rows, pairs = run(restorer, photos, cache, args.max_side)
    wall_s = time.perf_counter() - start
    settings = {
        "model": args.model,
        "model_path": model_label(args.model, model_path),
        "max_side": args.max_side,
        "sheet": args.sheet,
        "tile": restorer.model.image_size,
    }
    report = {"settings": settings, "machine": machine_info(restorer.model.device), "wall_s": wall_s, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    out.with_name(out.name + ".md").write_text(text)
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(pairs).save(args.sheet, quality=88, optimize=True)
    print(text)


if __name__ == "__main__":
    main()
