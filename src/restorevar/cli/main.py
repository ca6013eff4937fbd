"""The `restorevar` command. Each subcommand is a short handler; heavy imports happen inside it so that
`--help` stays fast. Errors print one line (the traceback with --verbose) and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("restorevar")

EXAMPLES = {
    "convert": "example: restorevar convert ~/Downloads/restorevar_release models/restorevar-paper",
    "restore": "example: restorevar restore photos/ -r -o restored/ --compare",
    "photos": "example: restorevar data photos data/photos",
    "bench": "example: restorevar bench --preset paper-512 --batch 1 --repeats 3 --out benchmarks/results",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restorevar",
        description="All-in-one image restoration (haze, rain, snow, low light, motion blur) with RestoreVAR.",
        epilog="Run `restorevar COMMAND --help` for the options of each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and full tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from restorevar.cli import evaluate as eval_cli

    from restorevar.cli import restore as restore_cli

    from restorevar.serving import app as serve

    from restorevar.cli import train as train_cli

    restore_cli.add_parser(commands, EXAMPLES["restore"])
    train_cli.add_parser(commands)
    eval_cli.add_parser(commands)
    serve.add_parser(commands)

    p = commands.add_parser(
        "convert", help="convert the official RestoreVAR checkpoints to our format",
        description="Read the official release (restorevar.pth + vae_restorevar.ckpt, or vae_ch160v4096z32.pth) "
        "with torch.load(weights_only=True), infer the architecture from tensor shapes and buffers, and write "
        "config.json + safetensors.", epilog=EXAMPLES["convert"],
    )
    p.add_argument("official_dir", type=Path, help="folder with restorevar.pth and the VQVAE file")
    p.add_argument("out_dir", type=Path, help="where to write our model folder")
    p.add_argument("--vae", type=Path, help="explicit VQVAE file (default: looked up in OFFICIAL_DIR)")
    p.add_argument("--var", type=Path, help="explicit restorevar.pth (default: looked up in OFFICIAL_DIR)")
    p.add_argument("--preset", help="use this preset's architecture instead of the inferred one")
    p.add_argument("--refiner-heads", type=int, help="refiner attention heads (default: width/64, as in the paper)")
    p.set_defaults(func=convert_command)

    p = commands.add_parser(
        "bench", help="latency, throughput, memory and FLOPs per stage",
        description="Time encoder, transformer (per scale), refiner and decoder after warm-up, with peak memory "
        "(RSS on CPU, allocated on CUDA) and FLOPs; writes NAME.json and NAME.md.", epilog=EXAMPLES["bench"],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--model", help="model folder or name (default: the bundled model)")
    weights.add_argument("--preset", help="benchmark a preset with random weights (e.g. paper-512)")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (one extra run)")
    p.add_argument("--compile", action="store_true", help="torch.compile the stages first (slow to start)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--name", help="result file name (default: MODEL-DEVICE-DTYPE)")
    p.set_defaults(func=bench_command)

    data = commands.add_parser("data", help="build training data").add_subparsers(dest="data_command", required=True)
    p = data.add_parser(
        "photos", help="build the clean training photo set from Debian packages",
        description="Download the Debian packages listed in docs/data.md with apt-get, extract their photos and "
        "write them with a manifest (package, version, path, licence per photo).", epilog=EXAMPLES["photos"],
    )
    p.add_argument("out_dir", type=Path)
    p.add_argument("--cache-dir", type=Path, help="where .deb files are kept (pre-downloaded ones are used)")
    p.set_defaults(func=photos_command)
    return parser


def convert_command(args) -> int:
    from restorevar.models.checkpoint import load_strict
    from restorevar.models.restorevar.convert import convert_official, find_official_files
    from restorevar.models.restorevar.model import RestoreVAR

    from restorevar.models.presets import get_preset

    vae_file, var_file = find_official_files(args.official_dir, args.vae, args.var)
    preset = get_preset(args.preset) if args.preset else None
    converted = convert_official(vae_file, var_file, preset=preset, refiner_heads=args.refiner_heads)
    model = RestoreVAR(converted.config)
    for name, state in converted.states.items():
        load_strict(getattr(model, name), state, var_file if name != "vqvae" else vae_file)
    model.save_pretrained(args.out_dir)
    for note in converted.notes:
        log.info(note)
    print(f"wrote {args.out_dir} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0


def bench_command(args) -> int:
    import torch

    from restorevar.evaluation.bench import benchmark
    from restorevar.models.presets import get_preset
    from restorevar.models.registry import build_model, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.preset:
        torch.manual_seed(0)
        model = build_model(get_preset(args.preset)).prepare_for_inference(device=args.device, dtype=args.dtype)
        label = f"{args.preset}-random"
    else:
        model = load_model(args.model, device=args.device, dtype=args.dtype)
        label = Path(args.model).name if args.model else "default"
    if args.compile:
        from restorevar.evaluation.speed import compile_model

        compile_model(model, mode="reduce-overhead" if model.device.type == "cuda" else "default")
    name = args.name or f"{label}-{model.device.type}-{args.dtype}" + ("-compiled" if args.compile else "")
    batches = [int(b) for b in args.batch.split(",")]
    report = benchmark(model, name, batches=batches, repeats=args.repeats, warmup=args.warmup,
                       flops=not args.no_flops)
    json_path, md_path = report.save(args.out, name)
    print(report.markdown())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def photos_command(args) -> int:
    from restorevar.data.photos import build_photo_set

    manifest = build_photo_set(args.out_dir, cache_dir=args.cache_dir)
    print(f"wrote {len(manifest.photos)} photos and {args.out_dir / 'manifest.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
