"""A before/after grid (the model card's and the README's): each bundled example, restored by a model, beside its
clean photo.

    python scripts/make_grid.py [--model NAME_OR_DIR] [--out docs/img/before-after.jpg]

Rows are the five examples; columns are degraded input | restored | clean. Each tile is labelled with
its PSNR against the clean photo, measured here on the full-size images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from restorevar.data.degradations import DEGRADATIONS
from restorevar.evaluation.metrics import psnr
from restorevar.inference.pipeline import Restorer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def labelled(image: Image.Image, text: str, scale: float) -> Image.Image:
    tile = image.convert("RGB").resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
    )
    draw = ImageDraw.Draw(tile)
    box = draw.textbbox((6, 6), text)
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((6, 6), text, fill=(255, 255, 255))
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or name (default: the bundled model)")
    parser.add_argument("--out", type=Path, default=Path("docs/img/before-after.jpg"))
    parser.add_argument("--scale", type=float, default=0.5, help="tile size relative to the examples")
    args = parser.parse_args()

    restorer = Restorer.from_pretrained(args.model, device="cpu")
    rows = []
    for kind in DEGRADATIONS:
        degraded = Image.open(EXAMPLES / f"{kind}.jpg").convert("RGB")
        clean = Image.open(EXAMPLES / "clean" / f"{kind}.png").convert("RGB")
        restored = restorer.restore(degraded)
        target = np.asarray(clean, dtype=np.float32) / 255
        score = {
            name: psnr(np.asarray(im, dtype=np.float32) / 255, target)
            for name, im in (("input", degraded), ("restored", restored))
        }
        print(f"{kind}: input {score['input']:.2f} dB -> restored {score['restored']:.2f} dB")
        rows.append(
            [
                labelled(degraded, f"{kind}: input {score['input']:.1f} dB", args.scale),
                labelled(restored, f"RestoreVAR small {score['restored']:.1f} dB", args.scale),
                labelled(clean, "clean", args.scale),
            ]
        )
    width, height = rows[0][0].size
    grid = Image.new("RGB", (3 * width, len(rows) * height), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            grid.paste(tile, (c * width, r * height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp" + args.out.suffix)
    grid.save(tmp, quality=90)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
