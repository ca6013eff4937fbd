"""`restorevar evaluate` and `restorevar analyze`: parsers and short handlers (heavy imports inside)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

EVALUATE_EXAMPLE = (
    "example: restorevar evaluate --model models/restorevar-paper --data data/Rain13K/test "
    "--data noref:data/LHP --mode paper --out results/eval"
)
ANALYZE_EXAMPLE = "example: restorevar analyze rainy.png clean.png -o scales.png --restored"
METRIC_NAMES = "psnr, ssim, lpips, niqe, brisque, musiq, clipiqa"


def add_parser(commands) -> None:
    """Register both commands on an argparse subparsers object."""
    add_evaluate_parser(commands)
    add_analyze_parser(commands)


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model folder or name (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])


def add_evaluate_parser(commands, example: str = EVALUATE_EXAMPLE) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "evaluate",
        help="score the model on benchmark sets (Table 1) against the degraded input",
        description="Restore every image of each --data set, score input and output, and print a table "
        "(rows: datasets + Average; per metric: degraded input | ours). Writes per_image.csv, results.json, "
        "report.html and report.png (best/worst images) to --out. "
        "--data takes a paired folder or benchmark layout (input/+target/, hazy/+gt/, low/+high/, ...), the "
        "paper's .json pair list, noref:DIR for degraded photos without targets (no-reference metrics only), "
        "or synthetic:DIR for clean photos degraded on the fly (held-out split, native-size crops). "
        "--mode paper reproduces the paper's protocol: both images squashed to the native size with LANCZOS, "
        "float output, RGB, no crop, skimage SSIM. --mode tile (default) and resize compare at full resolution. "
        "Metrics whose package or weights are missing are listed as 'unavailable' with what they need.",
        epilog=example,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _model_arguments(p)
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SPEC",
        help="dataset: PATH (paired), noref:PATH or synthetic:PATH; repeat for several",
    )
    p.add_argument("--metrics", default="psnr,ssim,lpips,niqe", help=f"comma-separated, from: {METRIC_NAMES}")
    p.add_argument(
        "--convention",
        default="paper",
        choices=["paper", "basicsr"],
        help="PSNR/SSIM convention: paper = skimage on float RGB; basicsr = 8-bit, Gaussian SSIM",
    )
    p.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on the BT.601 Y channel")
    p.add_argument("--crop-border", type=int, default=0, help="pixels cropped from each side for PSNR/SSIM")
    p.add_argument("--mode", default="tile", choices=["tile", "resize", "paper"], help="evaluation protocol")
    p.add_argument("--tile", type=int, help="tile side for --mode tile (default: the native size)")
    p.add_argument("--overlap", type=int, help="tile overlap (default: tile/8)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles (or, in paper mode, images) per model call")
    p.add_argument("--limit", type=int, help="at most N images per dataset")
    p.add_argument("--group", default="dataset", choices=["dataset", "degradation"], help="table rows")
    p.add_argument("--showcase", type=int, default=4, help="best and worst K images in the report")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="report folder (files in it are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=evaluate_command)
    return p


def add_analyze_parser(commands, example: str = ANALYZE_EXAMPLE) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "analyze",
        help="scale-space analysis: which token scales carry the degradation (Fig. 2)",
        description="Tokenise a degraded image and its clean version (both squashed to the model's native size "
        "with LANCZOS), swap their coarse scales (the first K) and their fine scales, decode, and write a "
        "labelled grid. Prints the fraction of identical tokens per scale (also in GRID.json). With --restored "
        "the model also restores DEGRADED and its generated tokens are compared with both (Fig. 9).",
        epilog=example,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("degraded", type=Path, metavar="DEGRADED")
    p.add_argument("clean", type=Path, metavar="CLEAN")
    p.add_argument("-o", "--output", type=Path, help="grid PNG (default: DEGRADED-stem_scales.png here)")
    _model_arguments(p)
    p.add_argument("--swap-scales", type=int, metavar="K", help="coarse scales to swap (default: half)")
    p.add_argument("--restored", action="store_true", help="also restore DEGRADED and compare its tokens")
    p.add_argument("--cell", type=int, help="grid cell side in pixels (default: max(128, native size))")
    p.set_defaults(func=analyze_command)
    return p


def evaluate_command(args) -> int:
    from restorevar.evaluation.data_specs import parse_data_spec
    from restorevar.evaluation.evaluate import EvalOptions, evaluate, make_convention
    from restorevar.evaluation.report import format_table, write_report
    from restorevar.models.registry import load_model

    options = EvalOptions(
        mode=args.mode,
        metrics=tuple(m.strip().lower() for m in args.metrics.split(",") if m.strip()),
        convention=make_convention(args.convention, y_channel=args.y_channel or None, crop_border=args.crop_border),
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        limit=args.limit,
        showcase=args.showcase,
    ).validate()
    if args.mode == "paper" and options.convention.name != "paper":
        log.warning(
            "--mode paper with convention %s: the numbers are not the paper's protocol", options.convention.name
        )
    specs = [parse_data_spec(text) for text in args.data]
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    result = evaluate(model, specs, options, model_name=args.model or "default", progress=not args.no_progress)
    if not result.records:
        log.error("no images were evaluated")
        return 1
    paths = write_report(result, args.out, group=args.group)
    print(format_table(result, group=args.group))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    if result.failed:
        print(
            f"{len(result.failed)} image(s) could not be read and were not scored (listed in results.json)",
            file=sys.stderr,
        )
    return 1 if result.failed else 0


def analyze_command(args) -> int:
    from restorevar.evaluation.analyze import analysis_grid, analyze_files, default_grid_path
    from restorevar.images.save import save_image
    from restorevar.models.registry import load_model

    model = load_model(args.model, device=args.device, dtype=args.dtype)
    analysis, info = analyze_files(
        model, args.degraded, args.clean, coarse_scales=args.swap_scales, with_restored=args.restored
    )
    grid_path = args.output or default_grid_path(args.degraded)
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    save_image(analysis_grid(analysis, cell=args.cell), grid_path, overwrite=True)
    json_path = grid_path.with_suffix(".json")
    json_path.write_text(
        json.dumps({**info, "grid": grid_path.name}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(info["resized"])
    print(analysis.table())
    print(f"wrote {grid_path} and {json_path}", file=sys.stderr)
    return 0
