"""Operator-level profile of one restoration (where the time goes), as a markdown table.

python benchmarks/profile_ops.py --preset paper-512 > benchmarks/results/paper-512-random-cpu-fp32-profile.md
"""

from __future__ import annotations

import argparse

import torch

from restorevar.models.presets import get_preset
from restorevar.models.registry import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper-512")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(get_preset(args.preset)).prepare_for_inference(device="cpu")
    image = torch.rand(1, 3, model.image_size, model.image_size)
    model.restore_batch(image)  # warm-up: oneDNN primitive creation, page faults
    with torch.profiler.profile() as prof:
        model.restore_batch(image)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(
        f"# Operator profile: {args.preset}, random weights, one {model.image_size}² image, CPU fp32, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print(
        f"Sum of operator times {total / 1e6:.1f} s (≈ wall time: the {torch.get_num_threads()} threads work inside "
        "each operator).\n"
    )
    print("| op | self CPU s | share | calls |\n|---|---|---|---|")
    for e in events[: args.rows]:
        print(f"| `{e.key}` | {e.self_cpu_time_total / 1e6:.2f} | {e.self_cpu_time_total / total:.1%} | {e.count} |")


if __name__ == "__main__":
    main()
