"""Rebuild examples/: five held-out photos from `restorevar data photos`, one per degradation.

    python scripts/make_examples.py PHOTO_DIR

Photos come from the validation split (never trained on) and carry redistributable licences; each is
centre-cropped to 4:3, reduced to 512×384 and degraded with a fixed seed outside the training seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from restorevar.data.degradations import DEGRADATIONS, degrade
from restorevar.data.manifest import Manifest, split_photos
from restorevar.images.load import to_tensor

OUT = Path(__file__).resolve().parent.parent / "examples"
SEED = 9_000_000  # far from the training seeds
SIZE = (512, 384)
# held-out photos with public-domain / CC0 / CC-BY licences, picked for varied scenes
PICKS = {
    "haze": "gcompris_explore_monuments_goldenTemple.png",
    "rain": "gcompris_explore_world_animals_hedgehog.png",
    "snow": "gcompris_explore_world_animals_kangaroo.png",
    "low_light": "gcompris_explore_monuments_brandenburgGate.png",
    "blur": "gcompris_erase_kitten.png",
}


def crop_4x3(img: Image.Image) -> Image.Image:
    w, h = img.size
    cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch)).resize(SIZE, Image.Resampling.LANCZOS)


def main(photo_dir: Path) -> None:
    manifest = Manifest.load(photo_dir / "manifest.json")
    _, val_names = split_photos(manifest)
    by_name = {r.file: r for r in manifest.photos}
    assert set(PICKS.values()) <= set(val_names), "examples must come from the held-out split"
    (OUT / "clean").mkdir(parents=True, exist_ok=True)
    lines = [
        "# Example photos",
        "",
        "Held-out photos (validation split) degraded synthetically by "
        "`scripts/make_examples.py`. Sources and licences:",
        "",
    ]
    for kind in DEGRADATIONS:
        record = by_name[PICKS[kind]]
        clean = crop_4x3(Image.open(photo_dir / record.file).convert("RGB"))
        degraded = degrade(to_tensor(np.asarray(clean, dtype=np.float32) / 255), kind, SEED)
        pixels = (degraded.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(OUT / f"{kind}.jpg", quality=95)
        clean.save(OUT / "clean" / f"{kind}.png")
        lines.append(
            f"- `{kind}.jpg`: {record.copyright}, {record.licence}, {record.source_url or ''} "
            f"(Debian `{record.package}` {record.version}, `{record.path}`)"
        )
    (OUT / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
