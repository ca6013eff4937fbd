"""Latency, throughput, memory and FLOPs per stage: encoder, transformer (per scale), refiner, decoder.

Stages are timed with forward hooks on the modules `RestoreVAR.restore_batch` already calls, so the
benchmark runs exactly the production path. GPU timings synchronise at every boundary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from restorevar.models.restorevar.model import RestoreVAR

log = logging.getLogger(__name__)
STAGES = ("encoder", "transformer", "refiner", "decoder")


@dataclass
class BatchResult:
    batch: int
    seconds: dict[str, list[float]]  # stage → one value per repeat (whole batch)
    scale_seconds: list[list[float]]  # repeat → seconds per transformer scale
    peak_memory_mb: float
    memory_kind: str

    def summary(self) -> dict:
        total = [sum(v[i] for v in self.seconds.values()) for i in range(len(self.seconds["encoder"]))]
        med = statistics.median(total)
        return {
            "batch": self.batch,
            "median_s": {s: statistics.median(v) for s, v in self.seconds.items()} | {"total": med},
            "min_s": {s: min(v) for s, v in self.seconds.items()} | {"total": min(total)},
            "max_s": {s: max(v) for s, v in self.seconds.items()} | {"total": max(total)},
            "per_scale_median_s": [statistics.median(col) for col in zip(*self.scale_seconds)],
            "images_per_s": self.batch / med,
            "peak_memory_mb": self.peak_memory_mb,
            "memory_kind": self.memory_kind,
        }


class StageClock:
    """Forward hooks that timestamp stage boundaries (with a CUDA sync when on GPU)."""

    def __init__(self, model):
        self.device = model.device
        self.marks: list[tuple[str, float]] = []
        vq, tr = model.vqvae, model.transformer
        self.handles = [
            vq.encoder.register_forward_pre_hook(lambda m, a: self.mark("start")),
            vq.encoder.register_forward_hook(lambda m, a, o: self.mark("encoder")),
            tr.head.register_forward_hook(lambda m, a, o: self.mark("scale")),
            model.refiner.register_forward_pre_hook(lambda m, a: self.mark("transformer")),
            model.refiner.register_forward_hook(lambda m, a, o: self.mark("refiner")),
            vq.decoder.register_forward_hook(lambda m, a, o: self.mark("decoder")),
        ]

    def mark(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.marks.append((name, time.perf_counter()))

    def split(self) -> tuple[dict[str, float], list[float]]:
        t = dict((n, v) for n, v in self.marks if n != "scale")
        scales = [v for n, v in self.marks if n == "scale"]
        stages = {
            "encoder": t["encoder"] - t["start"],
            "transformer": t["transformer"] - t["encoder"],
            "refiner": t["refiner"] - t["transformer"],
            "decoder": t["decoder"] - t["refiner"],  # includes post_quant_conv
        }
        edges = [t["encoder"], *scales]
        return stages, [b - a for a, b in zip(edges, edges[1:])]

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class PeakMemory:
    """Peak RSS (CPU, reset through /proc/self/clear_refs) or peak allocated bytes (CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "rss_peak"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def run_batch(model, batch: int, *, repeats: int, warmup: int, seed: int = 0) -> BatchResult:
    size = model.image_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    for _ in range(warmup):
        model.restore_batch(images)
    memory = PeakMemory(model.device)
    seconds: dict[str, list[float]] = {s: [] for s in STAGES}
    per_scale = []
    memory.reset()
    for _ in range(repeats):
        clock = StageClock(model)
        try:
            model.restore_batch(images)
        finally:
            clock.close()
        stages, scales = clock.split()
        for s in STAGES:
            seconds[s].append(stages[s])
        per_scale.append(scales)
    return BatchResult(batch, seconds, per_scale, memory.peak_mb(), memory.kind)


def math_attention(q, k, v, attn_mask=None, scale=None, **_):
    """SDPA as explicit matmuls, so the FLOP counter sees attention (it skips CPU SDPA kernels)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    weights = (q @ k.transpose(-2, -1)) * scale
    if attn_mask is not None:
        weights = weights.masked_fill(~attn_mask, float("-inf"))
    return weights.softmax(-1) @ v


def count_flops(model) -> dict[str, float]:
    """GFLOP per stage for one image (1 multiply-add = 2 FLOP)."""
    size = model.image_size
    images = torch.rand(1, 3, size, size, device=model.device)
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = math_attention
    try:
        with FlopCounterMode(display=False) as counter:
            model.restore_batch(images)
    finally:
        F.scaled_dot_product_attention = original
    # restore_batch calls the stage modules directly, so the counter names them by class
    roots = {name: sum(counts.values()) / 1e9 for name, counts in counter.get_flop_counts().items() if "." not in name}
    flops = {
        "encoder": roots.get("Encoder", 0.0),
        "refiner": roots.get("LatentRefiner", 0.0),
        "decoder": roots.get("Decoder", 0.0) + roots.get("Conv2d", 0.0),  # + post_quant_conv
        "total": roots["Global"],
    }
    # what remains is the generation loop: blocks, head, embeddings and the f̂ updates between scales
    flops["transformer"] = flops["total"] - flops["encoder"] - flops["refiner"] - flops["decoder"]
    return flops


def measured_gemm_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Achieved GFLOP/s of a large fp32 matmul: the practical ceiling to compare stages against."""
    a = torch.randn(n, n, device=device)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


@dataclass
class BenchReport:
    model: str
    device: str
    dtype: str
    image_size: int
    machine: dict = field(default_factory=dict)
    gflops_per_image: dict[str, float] = field(default_factory=dict)
    gemm_peak_gflops: float = 0.0
    results: list[dict] = field(default_factory=list)
    vs_fp32: dict | None = None  # mixed precision only: token agreement and PSNR against fp32

    def markdown(self) -> str:
        lines = [
            f"# Benchmark: {self.model} at {self.image_size}², {self.device}, {self.dtype}",
            "",
            f"Machine: {self.machine.get('cpu')} ({self.machine.get('threads')} threads), "
            f"torch {self.machine.get('torch')}, {self.machine.get('gpu') or 'no GPU'}.",
            f"Measured fp32 GEMM ceiling: {self.gemm_peak_gflops:.0f} GFLOP/s.",
            "",
            "| batch | encoder | transformer | refiner | decoder | total (median) | min–max | images/s | peak MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            m = r["median_s"]
            lines.append(
                f"| {r['batch']} | {m['encoder']:.3f} | {m['transformer']:.3f} | {m['refiner']:.3f} | "
                f"{m['decoder']:.3f} | {m['total']:.3f} | {r['min_s']['total']:.3f}–{r['max_s']['total']:.3f} | "
                f"{r['images_per_s']:.2f} | {r['peak_memory_mb']:.0f} ({r['memory_kind']}) |"
            )
        if self.gflops_per_image:
            first = self.results[0]
            lines += [
                "",
                f"| stage | GFLOP / image | achieved GFLOP/s (batch {first['batch']}) | share of GEMM ceiling |",
                "|---|---|---|---|",
            ]
            for stage in (*STAGES, "total"):
                gf = self.gflops_per_image[stage]
                rate = gf * first["batch"] / first["median_s"][stage]
                lines.append(f"| {stage} | {gf:.1f} | {rate:.0f} | {rate / self.gemm_peak_gflops:.0%} |")
        lines += [
            "",
            "Seconds per transformer scale (batch "
            f"{self.results[0]['batch']}, median): "
            + ", ".join(f"{s:.3f}" for s in self.results[0]["per_scale_median_s"]),
        ]
        if self.vs_fp32:
            same = ", ".join(f"{v:.1%}" for v in self.vs_fp32["identical_tokens_per_scale"])
            lines += [
                "",
                f"{self.dtype} vs fp32 on random images: identical tokens per scale {same}; "
                f"output PSNR {self.vs_fp32['psnr_vs_fp32_db']:.1f} dB.",
            ]
        return "\n".join(lines) + "\n"

    def save(self, out_dir: Path, name: str) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
        json_path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        md_path.write_text(self.markdown())
        return json_path, md_path


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": gpu,
        "python": platform.python_version(),
    }


def benchmark(model, name: str, *, batches: list[int], repeats: int, warmup: int, flops: bool = True) -> BenchReport:
    if not isinstance(model, RestoreVAR):  # the stage clock hooks RestoreVAR's encoder, transformer, refiner, decoder
        raise ValueError(
            f"restorevar bench times the stages of RestoreVAR models; {model.model_type!r} models have "
            "other stages (time them with model.restore_batch)"
        )
    dtype = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[model.compute_dtype]
    report = BenchReport(name, str(model.device), dtype, model.image_size, machine_info(model.device))
    report.gemm_peak_gflops = measured_gemm_peak(model.device)
    if flops:
        report.gflops_per_image = count_flops(model)
    if model.compute_dtype != torch.float32:
        from restorevar.evaluation.speed import dtype_agreement

        images = torch.rand(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(1))
        report.vs_fp32 = dtype_agreement(model, images, model.compute_dtype)
    for batch in batches:
        log.info("batch %d: %d warm-up + %d timed runs", batch, warmup, repeats)
        report.results.append(run_batch(model, batch, repeats=repeats, warmup=warmup).summary())
    return report
