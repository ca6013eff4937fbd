"""`restorevar bench`: latency, throughput, memory and FLOPs per stage."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

EXAMPLE = "example: restorevar bench --preset paper-512 --batch 1 --repeats 3 --out benchmarks/results"


def add_parser(commands) -> None:
    p = commands.add_parser(
        "bench",
        help="latency, throughput, memory and FLOPs per stage",
        description="Time encoder, transformer (per scale), refiner and decoder after warm-up, with peak memory "
        "(RSS on CPU, allocated on CUDA) and FLOPs; writes NAME.json and NAME.md.",
        epilog=EXAMPLE,
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
    report = benchmark(model, name, batches=batches, repeats=args.repeats, warmup=args.warmup, flops=not args.no_flops)
    json_path, md_path = report.save(args.out, name)
    print(report.markdown())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0
