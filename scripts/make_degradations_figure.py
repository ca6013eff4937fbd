"""Rebuild docs/img/degradations.png: one photo, clean and under each of the five synthetic degradations.

    python scripts/make_degradations_figure.py [--photo data/photos/gcompris_explore_monuments_tajMahal.png]

The photo comes from `restorevar data photos` (gcompris); each kind is drawn with a fixed seed, picked to show a
typical, clearly visible draw (SEEDS; `--seed N` uses N for all).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from restorevar.data.degradations import DEGRADATIONS, degrade
from restorevar.images.load import to_tensor

ROOT = Path(__file__).resolve().parent.parent
TILE, LABEL = 256, 18
SEEDS = {"haze": 2, "rain": 1, "snow": 1, "low_light": 0, "blur": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=ROOT / "data/photos/gcompris_explore_monuments_tajMahal.png")
    parser.add_argument("--seed", type=int, default=None, help="one seed for every kind (default: SEEDS)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/img/degradations.png")
    args = parser.parse_args()
    photo = Image.open(args.photo).convert("RGB")
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    photo = photo.crop((left, top, left + side, top + side)).resize((TILE, TILE), Image.Resampling.LANCZOS)
    clean = to_tensor(np.asarray(photo, dtype=np.float32) / 255)
    tiles = [("clean", photo)]
    for kind in DEGRADATIONS:
        out = degrade(clean, kind, SEEDS[kind] if args.seed is None else args.seed)
        tiles.append((kind, Image.fromarray((out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))))
    sheet = Image.new("RGB", (3 * TILE, 2 * (TILE + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, tile) in enumerate(tiles):
        x, y = (i % 3) * TILE, (i // 3) * (TILE + LABEL)
        draw.text((x + 4, y + 3), name, fill="black")
        sheet.paste(tile, (x, y + LABEL))
    sheet.save(args.out)


if __name__ == "__main__":
    main()
