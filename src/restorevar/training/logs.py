"""What a run writes besides checkpoints: metrics.jsonl, TensorBoard scalars, the progress bar, sample grids."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from restorevar.models.checkpoint import atomic_write

log = logging.getLogger(__name__)


class RunLog:
    """Rank 0's record of a run: a metrics.jsonl line (and TensorBoard scalars) every `every` steps, with the
    throughput since the last line; a progress bar. Other ranks get one that does nothing."""

    def __init__(self, out: Path, *, start: int, total: int, every: int, images_per_step: int, enabled: bool):
        self.out, self.total, self.every, self.enabled = out, total, every, enabled
        self.images_per_step = images_per_step
        self.writer = _tensorboard(out) if enabled else None
        self.progress = _progress(start, total) if enabled else None
        self.tic, self.seen = time.perf_counter(), 0

    def step(self, done: int, metrics: dict[str, float]) -> None:
        self.seen += self.images_per_step
        if not self.enabled:
            return
        self.progress.update(1)
        self.progress.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}")
        if done % self.every and done != self.total:
            return
        record = {"step": done, **metrics, "img_per_s": self.seen / max(time.perf_counter() - self.tic, 1e-9)}
        append_jsonl(self.out / "metrics.jsonl", record)
        self._scalars("train", record, done)
        log.info("step %d  " + "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "step"), done)
        self.tic, self.seen = time.perf_counter(), 0

    def validation(self, step: int, metrics: dict[str, float]) -> None:
        append_jsonl(self.out / "metrics.jsonl", {"step": step, **{f"val_{k}": v for k, v in metrics.items()}})
        self._scalars("val", metrics, step)
        log.info("validation at step %d: %s", step, "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def _scalars(self, group: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{group}/{k}", v, step)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()


def save_image_grid(columns: list[torch.Tensor], path: Path) -> None:
    """Columns of (B, 3, H, W) images in [0, 1] (e.g. degraded | restored | clean) → one PNG, a row per image."""
    from PIL import Image

    grid = torch.cat([torch.cat(list(col.float().clamp(0, 1).cpu()), dim=1) for col in columns], dim=2)  # (3, B·H, n·W)
    array = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines past `step` (a killed run may have logged past its last checkpoint)."""
    if path.is_file():
        kept = [x for x in path.read_text().splitlines() if x and json.loads(x).get("step", 0) <= step]
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(x + "\n" for x in kept)))


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def summarize(out: str | Path) -> dict[str, float]:
    """The last training record of a run (for reports and tests)."""
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    train = [json.loads(x) for x in lines if '"loss"' in x]
    return train[-1] if train else {}


def _progress(start: int, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True, leave=False)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))
