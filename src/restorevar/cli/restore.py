"""`restorevar restore`: photos in, restored photos out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLE = "example: restorevar restore photos/ -r -o restored/ --compare"


def add_parser(commands) -> None:
    p = commands.add_parser(
        "restore",
        help="restore photos (files, folders or globs)",
        description="Remove haze, rain, snow, low light and motion blur. Outputs keep the input's size, "
        "orientation, alpha, grey/colour and bit depth. Images larger than the model's native size are "
        "restored in overlapping tiles blended without seams (or resized with --resize). Inputs are never "
        "overwritten and outputs are written atomically.",
        epilog=EXAMPLE,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("-o", "--out-dir", type=Path, help="output folder (default: next to each input)")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--model", help="model folder or name (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="bf16/fp16 are for GPUs; on most CPUs they are slower",
    )
    p.add_argument("--batch-size", type=int, default=4, help="tiles restored together")
    fit = p.add_mutually_exclusive_group()
    fit.add_argument("--tile", type=int, help="tile side in pixels (default: the model's native size)")
    fit.add_argument("--resize", action="store_true", help="restore at native size and resize back (fast)")
    p.add_argument("--overlap", type=int, help="tile overlap in pixels (default: tile/8)")
    p.add_argument(
        "--format",
        default="png",
        choices=["png", "jpg", "same"],
        help="output format; 'same' keeps JPEG/PNG/TIFF/WebP and writes GIF/BMP inputs as PNG",
    )
    p.add_argument("--suffix", default="_restored", help="added to each output file name")
    p.add_argument("--compare", action="store_true", help="also write a before|after image")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace earlier outputs (never an input)")
    existing.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    p.add_argument(
        "--max-pixels", type=int, default=80_000_000, help="refuse larger images (decompression-bomb guard); 0 disables"
    )
    p.set_defaults(func=restore_command)


def restore_command(args) -> int:
    from tqdm import tqdm

    from restorevar.inference.folders import restore_paths
    from restorevar.inference.restorer import RestoreOptions
    from restorevar.models.registry import load_model

    model = load_model(args.model, device=args.device, dtype=args.dtype)
    check_options(args, model.image_size)
    options = RestoreOptions(tile=args.tile, overlap=args.overlap, resize=args.resize, batch_size=args.batch_size)
    bar = tqdm(unit="img", file=sys.stderr, dynamic_ncols=True, delay=0.5)

    def on_file(index: int, total: int, path: Path) -> None:
        bar.total = total
        bar.n = index
        bar.set_description(path.name[:40])
        bar.refresh()

    def on_tiles(done: int, total: int) -> None:
        bar.set_postfix_str(f"tiles {done}/{total}")

    summary = restore_paths(
        model,
        args.inputs,
        args.out_dir,
        options=options,
        recursive=args.recursive,
        suffix=args.suffix,
        fmt=args.format,
        compare=args.compare,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        max_pixels=args.max_pixels or None,
        on_file=on_file,
        on_tiles=on_tiles,
        on_done=lambda path: bar.write(str(path), file=sys.stdout),
    )
    bar.n = bar.total or 0
    bar.close()  # a run shorter than the 0.5 s delay prints no bar at all
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed or not (summary.done or summary.skipped) else 0


def check_options(args, native_size: int) -> None:
    """Refuse option values once, up front, rather than failing every file the same way."""
    tile = args.tile or native_size
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if tile < 16:
        raise ValueError(f"--tile must be at least 16 px, got {args.tile}")
    if args.overlap is not None and args.resize:
        raise ValueError("--overlap only applies to tiles; drop it or drop --resize")
    if args.overlap is not None and not 0 <= args.overlap < tile:
        raise ValueError(f"--overlap must be in [0, {tile}) for {tile}-px tiles, got {args.overlap}")
