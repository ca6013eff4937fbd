"""Benchmark evaluation: restore test sets, score them, and compare with the degraded input (Table 1).

Three protocols (``mode``), all with the model's native side S:

* ``paper`` reproduces the paper's numbers (spec §3, §5): degraded AND target are squashed to S×S
  with LANCZOS (no aspect ratio kept), the model's float output is compared without 8-bit
  rounding, on RGB, with no border crop and skimage-style SSIM (`metrics.PAPER`).
* ``tile`` (default) restores at full resolution in overlapping tiles and compares with the
  full-resolution target: what a user of `restorevar restore` gets.
* ``resize`` restores the whole image at S×S, resizes the result back and compares at full resolution.

Data specs: a paired folder / benchmark layout / paper ``.json`` (see `datasets.open_dataset`);
``noref:PATH`` a folder of degraded photos without targets (no-reference metrics only);
``synthetic:PATH`` the held-out split of a folder of clean photos with synthetic degradations,
cropped to S×S (the project's own validation set).

Arrays: ``rgb_HW3`` float32 in [0, 1]; tensors ``(3, H, W)`` in [0, 1].
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from restorevar.data.layouts import DatasetError
from restorevar.evaluation.data_specs import DataSpec, EvaluationError, open_eval_dataset
from restorevar.evaluation.metrics import (
    BASICSR,
    METRICS,
    PAPER,
    MetricConvention,
    MetricInputError,
    unavailable_metric_reason,
)
from restorevar.images.load import ImageError, from_tensor, to_tensor
from restorevar.inference.restorer import RestoreOptions, restore_array

logger = logging.getLogger(__name__)

MODES = ("tile", "resize", "paper")
CONVENTIONS = {"paper": PAPER, "basicsr": BASICSR}
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "niqe")


# ---- options and results ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How to evaluate. ``tile``/``overlap``/``batch_size`` as in `RestoreOptions`; batch_size also
    batches whole images in paper mode. ``limit``: at most this many images per dataset.
    ``showcase``: how many best and worst images the report shows."""

    mode: str = "tile"
    metrics: tuple[str, ...] = DEFAULT_METRICS
    convention: MetricConvention = PAPER
    tile: int | None = None
    overlap: int | None = None
    batch_size: int = 4
    limit: int | None = None
    showcase: int = 4

    def validate(self) -> EvalOptions:
        if self.mode not in MODES:
            raise EvaluationError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        unknown = [name for name in self.metrics if name not in METRICS]
        if unknown or not self.metrics:
            raise EvaluationError(f"unknown metric(s) {unknown or '(none)'}; known: {', '.join(METRICS)}")
        if self.batch_size < 1 or (self.limit is not None and self.limit < 1) or self.showcase < 0:
            raise EvaluationError("batch_size and limit must be >= 1 and showcase >= 0")
        return self


def make_convention(
    name: str = "paper", *, y_channel: bool | None = None, crop_border: int | None = None
) -> MetricConvention:
    """A named convention with optional overrides (the name gets a '+y' / '+crop N' suffix)."""
    if name not in CONVENTIONS:
        raise EvaluationError(f"unknown metric convention {name!r}; use one of {', '.join(CONVENTIONS)}")
    convention = CONVENTIONS[name]
    if y_channel is not None and y_channel != convention.y_channel:
        convention = dataclasses.replace(convention, name=f"{convention.name}+y", y_channel=y_channel)
    if crop_border:
        if crop_border < 0:
            raise EvaluationError(f"--crop-border must be >= 0, got {crop_border}")
        convention = dataclasses.replace(
            convention, name=f"{convention.name}+crop{crop_border}", crop_border=crop_border
        )
    return convention


def describe_protocol(options: EvalOptions, image_size: int) -> str:
    size = image_size
    if options.mode == "paper":
        return (
            f"paper (spec §5): degraded and target squashed to {size}×{size} with LANCZOS, "
            "float output compared without 8-bit rounding"
        )
    if options.mode == "resize":
        return f"resize: restored at {size}×{size}, resized back, compared with the full-resolution target"
    tile = options.tile or size
    overlap = options.overlap if options.overlap is not None else tile // 8
    return f"tile: full resolution, {tile}-px tiles with {overlap}-px overlap, compared with the full-resolution target"


def describe_convention(convention: MetricConvention) -> str:
    channel = "Y (BT.601)" if convention.y_channel else "RGB"
    values = "8-bit rounded" if convention.quantize_8bit else "float, no rounding"
    window = {"uniform7": "7×7 uniform (skimage)", "gaussian11": "11×11 Gaussian σ=1.5"}[convention.window]
    return f"{convention.name}: {channel}, {values}, crop {convention.crop_border} px, SSIM {window}"


@dataclasses.dataclass
class ImageRecord:
    """Scores of one image: metric -> value for the degraded input and for our output (NaN = failed)."""

    dataset: str
    name: str
    degradation: str
    height: int  # the compared size
    width: int
    seconds: float
    input: dict[str, float]
    output: dict[str, float]


@dataclasses.dataclass
class Showcase:
    """A best/worst image for the report: 8-bit thumbnails, target None for no-reference sets."""

    record: ImageRecord
    gain: float
    input: Image.Image
    output: Image.Image
    target: Image.Image | None


@dataclasses.dataclass
class EvalResult:
    options: EvalOptions
    protocol: str
    convention: str
    datasets: list[DataSpec]
    records: list[ImageRecord]
    unavailable: dict[str, str]  # metric -> what it needs
    ranking_metric: str | None = None
    best: list[Showcase] = dataclasses.field(default_factory=list)
    worst: list[Showcase] = dataclasses.field(default_factory=list)
    model: dict = dataclasses.field(default_factory=dict)
    environment: dict = dataclasses.field(default_factory=dict)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (image, why): skipped, not scored

    @property
    def computed_metrics(self) -> list[str]:
        return [name for name in self.options.metrics if name not in self.unavailable]


# ---- scoring ------------------------------------------------------------------------------------


def score(
    pred_HW3: np.ndarray, target_HW3: np.ndarray | None, metrics: list[str], convention: MetricConvention
) -> dict[str, float]:
    """Each metric of ``pred`` (full-reference ones only with a target); NaN when it cannot be computed."""
    values = {}
    for name in metrics:
        spec = METRICS[name]
        if spec.is_full_reference and target_HW3 is None:
            continue
        try:
            if name == "psnr":
                values[name] = spec.compute(pred_HW3, target_HW3, **convention.psnr_kwargs())
            elif name == "ssim":
                values[name] = spec.compute(pred_HW3, target_HW3, **convention.ssim_kwargs())
            elif spec.is_full_reference:
                values[name] = spec.compute(pred_HW3, target_HW3)
            else:
                values[name] = spec.compute(pred_HW3)
        except MetricInputError as err:
            logger.warning("%s skipped: %s", name, err)
            values[name] = math.nan
    return values


def paper_resize(rgb_HW3: np.ndarray, size: int) -> np.ndarray:
    """The paper's val transform: 8-bit PIL image -> LANCZOS squash to size×size -> float [0, 1]."""
    pixels = Image.fromarray(np.round(np.clip(rgb_HW3, 0, 1) * 255).astype(np.uint8))
    return np.asarray(pixels.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def _load_item(dataset: Dataset, index: int, failed: list[tuple[str, str]]) -> dict | None:
    """One item, or None after logging why it cannot be read: one bad file must not end an evaluation."""
    try:
        return dataset[index]
    except (ImageError, DatasetError, OSError, ValueError) as e:
        logger.error("%s", e)
        failed.append((f"{type(dataset).__name__}[{index}]", str(e)))
        return None


def _restore_items(
    model, dataset: Dataset, count: int, options: EvalOptions, failed: list[tuple[str, str]]
) -> Iterator[tuple]:
    """Yield (item, degraded_HW3, target_HW3 | None, output_HW3, seconds) as compared by the protocol."""
    size = model.image_size
    if options.mode != "paper":
        restore_options = RestoreOptions(options.tile, options.overlap, options.mode == "resize", options.batch_size)
        for index in range(count):
            item = _load_item(dataset, index, failed)
            if item is None:
                continue
            degraded = from_tensor(item["degraded"])
            target = None if item["clean"] is None else from_tensor(item["clean"])
            start = time.perf_counter()
            output = restore_array(model, degraded, restore_options)
            yield item, degraded, target, output, time.perf_counter() - start
        return
    # paper: every image becomes S×S, so whole images are batched
    for first in range(0, count, options.batch_size):
        batch = [
            item
            for index in range(first, min(first + options.batch_size, count))
            if (item := _load_item(dataset, index, failed)) is not None
        ]
        if not batch:
            continue
        degraded = [paper_resize(from_tensor(item["degraded"]), size) for item in batch]
        start = time.perf_counter()
        # .cpu() inside the timer: it waits for the GPU, which the paper's timer did not (spec §3)
        restored_B3SS = model.restore_batch(torch.stack([to_tensor(d) for d in degraded])).image_B3HW.cpu()
        seconds = (time.perf_counter() - start) / len(batch)
        for item, degraded_SS3, restored_3SS in zip(batch, degraded, restored_B3SS):
            target = None if item["clean"] is None else paper_resize(from_tensor(item["clean"]), size)
            yield item, degraded_SS3, target, from_tensor(restored_3SS), seconds


def _thumbnail(rgb_HW3: np.ndarray, long_side: int = 512) -> Image.Image:
    image = Image.fromarray(np.round(np.clip(rgb_HW3, 0, 1) * 255).astype(np.uint8))
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return image


def _ranking_metric(metrics: list[str], *, has_reference: bool) -> str | None:
    """What 'best' and 'worst' are judged by: PSNR, else the first usable computed metric."""
    usable = [m for m in metrics if has_reference or not METRICS[m].is_full_reference]
    return "psnr" if "psnr" in usable else (usable[0] if usable else None)


def _gain(record: ImageRecord, metric: str | None) -> float:
    if metric is None or metric not in record.output:
        return math.nan
    sign = 1 if METRICS[metric].higher_is_better else -1
    return sign * (record.output[metric] - record.input[metric])


def _add_showcase(showcase: list[Showcase], record: ImageRecord, gain: float, images, options) -> list[Showcase]:
    """Keep the `options.showcase` best and worst images by gain, with thumbnails of (degraded, output, target)."""
    if not options.showcase or math.isnan(gain):
        return showcase
    degraded, output, target = images
    thumbnails = (_thumbnail(degraded), _thumbnail(output), None if target is None else _thumbnail(target))
    return _keep_extremes([*showcase, Showcase(record, gain, *thumbnails)], options.showcase)


def evaluate(
    model,
    specs: list[DataSpec],
    options: EvalOptions,
    *,
    model_name: str = "",
    progress: bool = True,
    on_image: Callable[[ImageRecord, np.ndarray, np.ndarray | None, np.ndarray], None] | None = None,
) -> EvalResult:
    """Restore and score every image of every spec; ``on_image(record, degraded, target, output)``
    sees the compared arrays (``(H, W, 3)`` float in [0, 1]) of each image."""
    from tqdm import tqdm

    options = options.validate()
    if not specs:
        raise EvaluationError("no datasets to evaluate; pass --data PATH at least once")
    unavailable = {name: reason for name in options.metrics if (reason := unavailable_metric_reason(name))}
    metrics = [name for name in options.metrics if name not in unavailable]
    for name, reason in unavailable.items():
        logger.warning("%s unavailable: %s", name, reason)
    opened = [(spec, open_eval_dataset(spec, model.image_size)) for spec in specs]
    counts = [min(len(dataset), options.limit or len(dataset)) for _, dataset in opened]
    ranking = _ranking_metric(metrics, has_reference=any(spec.has_reference for spec in specs))
    records, showcase, failed = [], [], []
    with tqdm(total=sum(counts), unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for (spec, dataset), count in zip(opened, counts):
            bar.set_description(spec.name[:30])
            for item, degraded, target, output, seconds in _restore_items(model, dataset, count, options, failed):
                scores = (score(image, target, metrics, options.convention) for image in (degraded, output))
                record = ImageRecord(spec.name, item["name"], item["degradation"], *output.shape[:2], seconds, *scores)
                records.append(record)
                if on_image is not None:
                    on_image(record, degraded, target, output)
                showcase = _add_showcase(showcase, record, _gain(record, ranking), (degraded, output, target), options)
                bar.update(1)
    showcase.sort(key=lambda entry: -entry.gain)
    # with fewer than 2K images, split them so that 'best' and 'worst' never share one
    best = showcase[: min(options.showcase, (len(showcase) + 1) // 2)]
    worst = showcase[len(best) :][::-1][: options.showcase]
    model_info = {
        "name": model_name,
        "image_size": model.image_size,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return EvalResult(
        options,
        describe_protocol(options, model.image_size),
        describe_convention(options.convention),
        [spec for spec, _ in opened],
        records,
        unavailable,
        ranking,
        best,
        worst,
        model=model_info,
        environment=environment(model),
        failed=failed,
    )


def _keep_extremes(entries: list[Showcase], k: int) -> list[Showcase]:
    """The k highest and k lowest gains (thumbnails of the rest are dropped to bound memory)."""
    if len(entries) <= 2 * k:
        return entries
    entries.sort(key=lambda entry: -entry.gain)
    return entries[:k] + entries[-k:]


def environment(model) -> dict:
    """Where the numbers came from: machine, versions, device and dtype."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(model.device),
        "dtype": str(model.compute_dtype).replace("torch.", ""),
    }
    if model.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(model.device)
    return info
