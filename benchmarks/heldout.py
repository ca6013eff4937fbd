"""Held-out quality benchmark: the model against its input and the classical baselines, on unseen photos.

    # the bundled model, 150 crops
    python benchmarks/heldout.py --photos data/photos --out benchmarks/results/heldout-restorevar-small
    python benchmarks/heldout.py --model DIR --photos data/photos --limit 10 --out /tmp/heldout-smoke  # smoke
    python benchmarks/heldout.py --photos data/photos --generator cross \
        --out benchmarks/results/heldout-cross-restorevar-small

Data: the val split of a photo folder (a fixed 10% of the photos that training never sees), with
every degradation synthesised on seed 20261123, which training never uses (it uses seed 0); each
photo gets ``--draws`` crops per degradation. Per crop: PSNR and SSIM (RGB in [0, 1], no border
crop) of the degraded input, of the classical baseline for its kind (`restorevar.evaluation.baselines`) and
of the model's output; NIQE of those three and of the clean crop. Ceilings on the clean crops: the
tokenizer's discrete reconstruction (all scales' tokens), its continuous reconstruction, and the
whole pipeline run on the clean crop.

``--generator cross`` keeps the same photos, crops and kinds but makes every degraded input with the
second, independent generator (`restorevar.data.cross_generator`, validation only; seed
``seed * 1_000_000 + index``) instead of the training one: the "cross-generator" column, which shows
overfitting to our own degradation code. The baselines are scored the same way.

Writes ``OUT.json`` (every row, the summaries and the machine) and ``OUT.md`` (the tables), then
prints the markdown.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from restorevar.data.cross_generator import cross_degrade
from restorevar.data.datasets import degradation_labels, open_dataset
from restorevar.evaluation.baselines import BASELINES
from restorevar.evaluation.bench import machine_info
from restorevar.evaluation.metrics import niqe, psnr, ssim
from restorevar.models.checkpoint import atomic_write
from restorevar.models.registry import load_model, resolve_model
from restorevar.models.restorevar.model import RestoreVAR
from restorevar.models.restorevar.vqvae import to_unit

BATCH = 4
SOURCES = ("input", "baseline", "model")  # scored against the clean crop
CEILINGS = {
    "tokenizer_discrete": "tokenizer, discrete: decode(f̂ of all scales' tokens)",
    "tokenizer_continuous": "tokenizer, continuous: decode(encode(x))",
    "identity": "whole pipeline on the clean crop",
}
GENERATORS = {
    "ours": "the training generator (`restorevar.data.degradations`)",
    "cross": "the independent cross generator (`restorevar.data.cross_generator`), never used in training",
}
PHOTOS_HELP = (
    "no photo folder: pass --photos DIR or set RESTOREVAR_PHOTOS (build one with `restorevar data photos DIR`)"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or name (default: the bundled model)")
    parser.add_argument(
        "--photos", default=os.environ.get("RESTOREVAR_PHOTOS"), help="clean photo folder (default: $RESTOREVAR_PHOTOS)"
    )
    parser.add_argument("--size", type=int, default=512, help="crop size; must be the model's native size")
    parser.add_argument("--draws", type=int, default=2, help="crops per photo and degradation")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--out", default="benchmarks/results/heldout-small", help="writes OUT.json and OUT.md")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N crops (kinds interleaved)")
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="ours",
        help="who degrades the crops: ours (the training generator) or cross (the independent one)",
    )
    args = parser.parse_args()
    if args.photos is None:
        parser.error(PHOTOS_HELP)
    return args


def interleaved_indices(dataset, limit: int | None) -> list[int]:
    """Every index, one of each kind in turn, so that any prefix (``--limit``) stays balanced."""
    by_kind: dict[str, list[int]] = {}
    for index, kind in enumerate(degradation_labels(dataset)):
        by_kind.setdefault(kind, []).append(index)
    order = [i for group in itertools.zip_longest(*by_kind.values()) for i in group if i is not None]
    return order[:limit]


class CrossDegraded:
    """The same items (clean crops, kinds, names) with the degraded input remade by the cross generator."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        degraded = cross_degrade(item["clean"], item["degradation"], seed=self.seed * 1_000_000 + index)
        return item | {"degraded": degraded}


def to_hw3(image_3HW: torch.Tensor) -> np.ndarray:
    return image_3HW.permute(1, 2, 0).double().numpy()


@torch.inference_mode()
def ceilings(model: RestoreVAR, clean_B3HW: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the model could at best return for a clean input, each (B, 3, H, W) in [0, 1]."""
    vqvae = model.vqvae
    # the pipeline's convention: [-1, 1] and channels-last in, to_unit out
    latent = vqvae.encode_latent((clean_B3HW * 2 - 1).contiguous(memory_format=torch.channels_last))
    _, f_hats = vqvae.quantizer.encode(latent)
    decoded = {
        "tokenizer_discrete": vqvae.decode_latent(f_hats[-1]),
        "tokenizer_continuous": vqvae.decode_latent(latent),
    }
    images = {name: to_unit(y) for name, y in decoded.items()}
    return images | {"identity": model.restore_batch(clean_B3HW).image_B3HW}


def score(item: dict, restored_3HW: torch.Tensor, ceiling_images: dict[str, torch.Tensor]) -> dict:
    """One row: PSNR/SSIM/NIQE of input, baseline and model; NIQE of the clean crop; the ceilings."""
    clean = to_hw3(item["clean"])
    kind = item["degradation"]
    images = {"input": item["degraded"], "baseline": BASELINES[kind](item["degraded"]), "model": restored_3HW}
    row = {"name": item["name"], "kind": kind}
    for source, image_3HW in (images | ceiling_images).items():
        image = to_hw3(image_3HW)
        row[f"{source}_psnr"], row[f"{source}_ssim"] = psnr(image, clean), ssim(image, clean)
        if source in SOURCES:
            row[f"{source}_niqe"] = niqe(image)
    row["clean_niqe"] = niqe(clean)
    row["model_gain_db"] = row["model_psnr"] - row["input_psnr"]
    return row


def evaluate(model: RestoreVAR, dataset, indices: list[int]) -> list[dict]:
    rows = []
    with tqdm(total=len(indices), unit="crop") as progress:
        for start in range(0, len(indices), BATCH):
            items = [dataset[i] for i in indices[start : start + BATCH]]
            degraded_B3HW = torch.stack([item["degraded"] for item in items])
            with torch.inference_mode():
                restored_B3HW = model.restore_batch(degraded_B3HW).image_B3HW.cpu()
            ceiling_B3HW = ceilings(model, torch.stack([item["clean"] for item in items]))
            for b, item in enumerate(items):
                rows.append(score(item, restored_B3HW[b], {name: x[b].cpu() for name, x in ceiling_B3HW.items()}))
            progress.update(len(items))
    return rows


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean of every metric per kind (in the order met), plus "mean": the unweighted mean of the kinds."""
    metrics = [key for key in rows[0] if key not in ("name", "kind")]
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    summary = {kind: {m: statistics.fmean(r[m] for r in rows if r["kind"] == kind) for m in metrics} for kind in kinds}
    summary["mean"] = {m: statistics.fmean(summary[kind][m] for kind in kinds) for m in metrics}
    return summary


def where_model_loses(summary: dict[str, dict[str, float]]) -> str:
    """Every kind (and the mean) where the model's mean PSNR or SSIM is below the input's or the baseline's."""
    losses = []
    for kind, values in summary.items():
        gaps = [
            f"{metric.upper()} {gap:+.{digits}f}{unit} vs {rival}"
            for metric, unit, digits in (("psnr", " dB", 2), ("ssim", "", 3))
            for rival in ("input", "baseline")
            if (gap := values[f"model_{metric}"] - values[f"{rival}_{metric}"]) < 0
        ]
        if gaps:
            losses.append(f"{kind} ({', '.join(gaps)})")
    if not losses:
        return "**Where the model loses:** nowhere; it beats input and baseline in PSNR and SSIM on every kind."
    return "**Where the model loses:** " + "; ".join(losses) + "."


def markdown(report: dict) -> str:
    summary, settings, machine = report["summary"], report["settings"], report["machine"]
    lines = [
        f"# Held-out benchmark: {settings['model_path']} (generator: {settings.get('generator', 'ours')})",
        "",
        f"Degradations by {GENERATORS[settings.get('generator', 'ours')]}.",
        "",
        f"{report['count']} val crops of {settings['size']}² from {settings['photos']} (photos training never "
        f"sees; seed {settings['seed']}, {settings['draws']} draws per photo and kind"
        f"{', limit ' + str(settings['limit']) if settings['limit'] else ''}). PSNR (dB) and SSIM against the clean "
        "crop, RGB in [0, 1], no border crop; NIQE: lower is better. "
        f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, {settings['dtype']}; "
        f"{report['wall_s']:.0f} s.",
        "",
        "| kind | crops | input PSNR | input SSIM | baseline PSNR | baseline SSIM | model PSNR | model SSIM "
        "| model gain (dB) | NIQE input / baseline / model / clean |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, v in summary.items():
        crops = report["counts"].get(kind, report["count"])
        lines.append(
            f"| {kind} | {crops} | {v['input_psnr']:.2f} | {v['input_ssim']:.3f} | {v['baseline_psnr']:.2f} | "
            f"{v['baseline_ssim']:.3f} | {v['model_psnr']:.2f} | {v['model_ssim']:.3f} | {v['model_gain_db']:+.2f} | "
            f"{v['input_niqe']:.2f} / {v['baseline_niqe']:.2f} / {v['model_niqe']:.2f} / {v['clean_niqe']:.2f} |"
        )
    baselines = ", ".join(f"{kind}: `{fn.__name__}`" for kind, fn in BASELINES.items())
    lines += [
        "",
        f'Baselines ({baselines}) are in `restorevar.evaluation.baselines`; "mean" is the mean of the kinds.',
        "",
        "## Ceilings on the clean crops",
        "",
        "| reconstruction | PSNR | SSIM |",
        "|---|---|---|",
    ]
    for name, label in CEILINGS.items():
        lines.append(f"| {label} | {summary['mean'][f'{name}_psnr']:.2f} | {summary['mean'][f'{name}_ssim']:.3f} |")
    lines += ["", where_model_loses(summary)]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def model_label(name: str | None, path: Path) -> str:
    """What the results call the model: its name, or its folder relative to here (never a machine's full path)."""
    if name is None or not Path(name).is_dir():
        return name or f"{path.name} (bundled)"
    return Path(name).as_posix()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model_path = resolve_model(args.model)
    model = load_model(model_path, device="cpu")
    if args.size != model.image_size:
        raise SystemExit(f"the model restores {model.image_size}² crops; pass --size {model.image_size}")
    dataset = open_dataset(args.photos, crop_size=args.size, split="val", seed=args.seed, draws_per_photo=args.draws)
    indices = interleaved_indices(dataset, args.limit)
    if args.generator == "cross":  # same clean crops, another generator's degradations
        dataset = CrossDegraded(dataset, args.seed)

    start = time.perf_counter()
    rows = evaluate(model, dataset, indices)
    wall_s = time.perf_counter() - start

    settings = {
        "model": args.model,
        "model_path": model_label(args.model, model_path),
        "photos": str(args.photos),
        "size": args.size,
        "draws": args.draws,
        "seed": args.seed,
        "limit": args.limit,
        "batch": BATCH,
        "generator": args.generator,
        "dtype": str(model.compute_dtype).removeprefix("torch."),
    }
    counts = {kind: sum(row["kind"] == kind for row in rows) for kind in dict.fromkeys(r["kind"] for r in rows)}
    report = {
        "settings": settings,
        "machine": machine_info(model.device),
        "count": len(rows),
        "counts": counts,
        "wall_s": wall_s,
        "summary": summarise(rows),
        "rows": rows,
    }
    text = markdown(report)
    out = Path(args.out)
    write_atomically(out.with_name(out.name + ".json"), json.dumps(report, indent=2) + "\n")
    write_atomically(out.with_name(out.name + ".md"), text)
    print(text)


if __name__ == "__main__":
    main()
