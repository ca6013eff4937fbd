"""Where the refiner's error is, per degradation, on the held-out crops of `heldout.py`.

    python benchmarks/latent_errors.py --photos data/photos --out /tmp/latent-errors  # bundled model, ~2.5 min
    python benchmarks/latent_errors.py --model DIR --photos data/photos --limit 10      # smoke run

Per crop, three latents: f = E(clean), the target; d, the degraded image's latent, which the refiner
starts from (`refine_degraded`); r, the refined latent. Their squared errors against f are split in three:
- tone, global: the per-crop mean of the first `--tone-channels` channels, i.e. a cast over the whole crop.
  For a `linear_path` tokenizer started at PCA these channels are the patches' top principal components,
  mostly brightness and colour;
- tone, local: the rest of those channels;
- detail: every other channel.
A part where r's error exceeds d's is where the refiner does harm. Image PSNR of the input, of D(d)
(the input through the tokenizer alone) and of the model's output tells whether the tokenizer or the
refiner costs more. Writes OUT.json and OUT.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch
from heldout import PHOTOS_HELP, interleaved_indices, to_hw3, write_atomically
from tqdm import tqdm

from restorevar.data.datasets import open_dataset
from restorevar.evaluation.metrics import psnr
from restorevar.models.registry import load_model, resolve_model
from restorevar.models.restorevar.model import RestoreVAR
from restorevar.models.restorevar.vqvae import to_unit

PARTS = ("tone_global", "tone_local", "detail")


def error_parts(latent_BChw: torch.Tensor, target_BChw: torch.Tensor, tone_channels: int) -> dict[str, torch.Tensor]:
    """Per crop, the summed-over-channels mean squared error of each part; the parts add up to the total."""
    error = (latent_BChw - target_BChw).float()
    tone = error[:, :tone_channels]
    cast = tone.mean((2, 3), keepdim=True)
    return {
        "tone_global": cast.square().sum((1, 2, 3)),
        "tone_local": (tone - cast).square().mean((2, 3)).sum(1),
        "detail": error[:, tone_channels:].square().mean((2, 3)).sum(1),
    }


@torch.inference_mode()
def evaluate(model: RestoreVAR, dataset, indices: list[int], tone_channels: int, batch: int = 4) -> list[dict]:
    vqvae, rows = model.vqvae, []
    for start in tqdm(range(0, len(indices), batch), unit="batch"):
        items = [dataset[i] for i in indices[start : start + batch]]
        degraded = torch.stack([item["degraded"] for item in items])
        restoration = model.restore_batch(degraded, return_intermediates=True)
        steps = restoration.intermediates
        latents = {"degraded": steps.degraded_latent_BChw, "refined": steps.latent_BChw}
        target = vqvae.encode_latent(torch.stack([item["clean"] for item in items]) * 2 - 1)
        parts = {name: error_parts(latent, target, tone_channels) for name, latent in latents.items()}
        images = {
            "input": degraded,
            "tokenizer": to_unit(vqvae.decode_latent(latents["degraded"])),
            "model": restoration.image_B3HW,
        }
        for b, item in enumerate(items):
            row = {"name": item["name"], "kind": item["degradation"]}
            row |= {f"{name}_{part}": float(errors[part][b]) for name, errors in parts.items() for part in PARTS}
            clean = to_hw3(item["clean"])
            row |= {f"{name}_psnr": psnr(to_hw3(x[b]), clean) for name, x in images.items()}
            rows.append(row)
    return rows


def markdown(rows: list[dict], settings: dict) -> str:
    lines = [
        f"# Latent errors: {settings['model_path']}",
        "",
        f"{len(rows)} held-out crops of heldout.py (seed {settings['seed']}, {settings['draws']} draws); "
        f"tone = the first {settings['tone_channels']} latent channels. Latent squared error against E(clean), "
        "×100, degraded latent → refined latent (lower is better).",
        "",
        "| kind | total | tone, global | tone, local | detail | PSNR input / D(degraded) / model |",
        "|---|---|---|---|---|---|",
    ]
    for kind in dict.fromkeys(row["kind"] for row in rows):
        group = [row for row in rows if row["kind"] == kind]
        mean = {key: statistics.fmean(row[key] for row in group) * 100 for key in group[0] if key.endswith(PARTS)}
        cells = [f"{mean[f'degraded_{p}']:.2f} → {mean[f'refined_{p}']:.2f}" for p in PARTS]
        total = [sum(mean[f"{name}_{p}"] for p in PARTS) for name in ("degraded", "refined")]
        psnrs = " / ".join(
            f"{statistics.fmean(row[f'{n}_psnr'] for row in group):.2f}" for n in ("input", "tokenizer", "model")
        )
        lines.append(f"| {kind} | {total[0]:.2f} → {total[1]:.2f} | {' | '.join(cells)} | {psnrs} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or name (default: the bundled model)")
    parser.add_argument("--photos", default=os.environ.get("RESTOREVAR_PHOTOS"), help="clean photo folder")
    parser.add_argument("--seed", type=int, default=20261123, help="degradation seed (heldout.py's)")
    parser.add_argument("--draws", type=int, default=2, help="crops per photo and degradation")
    parser.add_argument("--limit", type=int, default=None, help="only the first N crops (kinds interleaved)")
    parser.add_argument("--tone-channels", type=int, default=2, help="latent channels counted as tone")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/latent-errors", help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    if args.photos is None:
        parser.error(PHOTOS_HELP)
    torch.set_num_threads(args.threads)
    model_path = resolve_model(args.model)
    model = load_model(model_path, device="cpu")
    dataset = open_dataset(
        args.photos, crop_size=model.image_size, split="val", seed=args.seed, draws_per_photo=args.draws
    )
    rows = evaluate(model, dataset, interleaved_indices(dataset, args.limit), args.tone_channels)
    settings = {
        "model_path": str(model_path),
        "photos": str(args.photos),
        "seed": args.seed,
        "draws": args.draws,
        "limit": args.limit,
        "tone_channels": args.tone_channels,
    }
    text = markdown(rows, settings)
    out = Path(args.out)
    write_atomically(out.with_name(out.name + ".json"), json.dumps({"settings": settings, "rows": rows}, indent=2))
    write_atomically(out.with_name(out.name + ".md"), text)
    print(text)


if __name__ == "__main__":
    main()
