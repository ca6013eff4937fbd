"""Export a trained model folder as the bundled default: fp16 safetensors, config.json and the
manifest of the photos it was trained on (with the held-out split marked).

    python scripts/export_default.py RUN_DIR src/restorevar/weights/restorevar-small PHOTO_DIR

fp16 halves the files; `restorevar.from_pretrained` upcasts to fp32 on load, so inference is unchanged
except for the rounding of the weights. The script measures that rounding on the held-out photos'
bundled examples (fp32 weights vs fp16-rounded weights, PSNR between the two outputs) and refuses to
export if it is below 40 dB.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from restorevar.data.manifest import Manifest, split_photos
from restorevar.images.load import to_tensor
from restorevar.inference.pipeline import Restorer
from restorevar.models import checkpoint
from restorevar.models.registry import load_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MIN_AGREEMENT_DB = 40.0


def write_manifest(photo_dir: Path, out_dir: Path) -> None:
    """Every photo's source and licence, and whether training saw it ("train") or not ("heldout")."""
    manifest = Manifest.load(photo_dir / "manifest.json")
    _, heldout = split_photos(manifest)
    rows = [
        {**dataclasses.asdict(record), "split": "heldout" if record.file in heldout else "train"}
        for record in manifest.photos
    ]
    checkpoint.save_json({"packages": manifest.packages, "photos": rows}, out_dir / "training_photos.json")


def export(run_dir: Path, out_dir: Path, photo_dir: Path) -> None:
    model_fp32 = load_model(run_dir, device="cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.save_json(model_fp32.config.to_dict(), out_dir / checkpoint.CONFIG_FILE)
    for name, file in model_fp32.weight_files().items():
        state = {k: v.half() if v.is_floating_point() else v for k, v in getattr(model_fp32, name).state_dict().items()}
        checkpoint.save_state_dict(state, out_dir / file, metadata={"source": run_dir.name, "dtype": "fp16"})
    write_manifest(photo_dir, out_dir)
    model_fp16 = load_model(out_dir, device="cpu")

    worst = float("inf")
    for path in sorted(EXAMPLES.glob("*.jpg")):
        with torch.inference_mode():
            a, b = (
                to_tensor(np.asarray(Restorer(m).restore(path), dtype=np.float32) / 255)
                for m in (model_fp32, model_fp16)
            )
        mse = float((a - b).square().mean())
        agreement = 10 * torch.log10(torch.tensor(1 / max(mse, 1e-12))).item()
        worst = min(worst, agreement)
        print(f"{path.name}: fp16 vs fp32 weights, output PSNR {agreement:.1f} dB")
    size_mb = sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6
    print(f"exported {run_dir} -> {out_dir}: {size_mb:.1f} MB; worst fp16/fp32 agreement {worst:.1f} dB")
    if worst < MIN_AGREEMENT_DB:
        raise SystemExit(f"fp16 weights change the output too much ({worst:.1f} dB < {MIN_AGREEMENT_DB}); keep fp32")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    export(*(Path(arg) for arg in sys.argv[1:]))
