"""The training loop shared by the stages (`stages.py`): devices, DDP, AMP, schedule, sampling, checkpoints.

Single process:   restorevar train refiner --transformer runs/transformer --data data/photos --out runs/refiner
Multi-process:    torchrun --nproc_per_node=2 -m restorevar.cli.train refiner ...   (gloo on CPU, nccl on GPU)

Determinism: the batch of global step s on rank r is drawn from a generator seeded with (seed, s), and the
torch RNG (drop path, noise) is reseeded with (seed, s, r) before each step. Resuming from the checkpoint
of step k therefore replays steps k+1, k+2, ... exactly, with no data-loader state in the checkpoint.

Layout of `--out`:  config.json + *.safetensors (the latest model; a RestoreVAR folder), train_config.json,
metrics.jsonl, checkpoints/step-NNNNNNNN/{trainable.safetensors, state.pt}, samples/step-NNNNNNNN.png, best/.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from restorevar.models.checkpoint import CheckpointError, atomic_write, read_safetensors, save_json, save_state_dict
from restorevar.models.config import ConfigError
from restorevar.training.config import TrainConfig

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- devices

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class ValResult:
    metrics: dict[str, float]
    columns: list[torch.Tensor]  # (B, 3, H, W) in [0, 1] each: degraded | outputs... | clean


def setup_distributed(device: str = "auto") -> Dist:
    """torchrun's env vars → a process group (nccl on CUDA, gloo on CPU); a single process otherwise."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        named = torch.device(device).index if device != "auto" else None
        dev = torch.device("cuda", local_rank if world > 1 else named or 0)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, dev)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None  # CPU autocast is slower than fp32 for these models
    if config.amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if config.amp == "bf16" else torch.float16


def lin0_lr(step: int, total: int, peak: float, *, warmup: int = 0, flat: float = 0.05, final: float = 0.01) -> float:
    """The paper's `lin0` (VAR's lr_wd_annealing), for step 0..total-1.

    Linear warm-up from 0, then flat for `flat` of the rest, then linear to final·peak at the last step.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - 1 - warmup, 1)
    if progress <= flat:
        return peak
    return peak * (final + (1 - final) * (1 - progress) / (1 - flat))


def weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """wd on ≥2-D weights and scalar gains; none on biases, norms, log_scale, scale/level/pos embeddings, codebook."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        exempt = any(s in name for s in ("scale_embed", "level_embed", "pos_embed", "log_scale", "codebook"))
        (decay if (p.ndim >= 2 or name.endswith("gain")) and not exempt else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ------------------------------------------------------------------------------------------- sampling

def sampling_weights(labels: list[str], balance: bool) -> torch.Tensor:
    """Per-sample weights: 1/count of its degradation (each type drawn equally often), or uniform."""
    if not balance:
        return torch.ones(len(labels), dtype=torch.float64)
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.float64)


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields the dataset indices of global steps start, start+1, ... for one rank (with replacement)."""

    def __init__(self, weights: torch.Tensor, *, batch_per_rank: int, rank: int, world: int, seed: int,
                 start_step: int, total_steps: int):
        self.weights, self.batch, self.rank, self.world = weights, batch_per_rank, rank, world
        self.seed, self.start, self.total = seed, start_step, total_steps

    def batch_indices(self, step: int) -> list[int]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, step))
        drawn = torch.multinomial(self.weights, self.batch * self.world, replacement=True, generator=g)
        return drawn[self.rank * self.batch:(self.rank + 1) * self.batch].tolist()

    def __iter__(self):
        for step in range(self.start, self.total):
            yield self.batch_indices(step)

    def __len__(self) -> int:
        return max(self.total - self.start, 0)


def mix_seed(*parts: int) -> int:
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (p + 0x9E3779B9 + (value << 6) + (value >> 2))) & 0x7FFFFFFFFFFFFFFF
    return value


def dataset_labels(dataset) -> list[str]:
    try:
        from restorevar.data.datasets import degradation_labels

        return list(degradation_labels(dataset))
    except (ImportError, AttributeError, TypeError):
        return [dataset[i]["degradation"] for i in range(len(dataset))]


# ------------------------------------------------------------------------------------------- checkpoints

def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a checkpoint is renamed into place only once fully written)."""
    root = out / "checkpoints"
    return sorted(p for p in root.glob("step-*") if p.is_dir() and (p / "state.pt").is_file()) if root.is_dir() else []


def rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(out: Path, step: int, trainables: dict[str, nn.Module], state: dict[str, Any], keep: int) -> Path:
    final = out / "checkpoints" / f"step-{step:08d}"
    tmp = out / "checkpoints" / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"{name}.{k}": v for name, m in trainables.items() for k, v in m.state_dict().items()}
    save_state_dict(tensors, tmp / "trainable.safetensors")
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)  # a fresh name: atomic, so a kill leaves either nothing or a full checkpoint
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, trainables: dict[str, nn.Module]) -> dict[str, Any]:
    tensors = read_safetensors(path / "trainable.safetensors")
    for name, module in trainables.items():
        prefix = f"{name}."
        part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not part:
            raise CheckpointError(f"{path} has no weights for {name!r}; was it written by another stage?")
        module.load_state_dict(part, strict=True)
    return torch.load(path / "state.pt", map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------- loop

def wrap_ddp(module: nn.Module, env: Dist) -> nn.Module:
    if env.world == 1:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


@dataclass
class TrainResult:
    metrics: dict[str, float]  # the last step's losses, lr and grad norm
    model: nn.Module  # the RestoreVAR being trained (this rank's copy)
    trainables: dict[str, nn.Module]  # what the optimizers updated, e.g. {"refiner": ...}


def run(config: TrainConfig, *, dataset=None, val_dataset=None, stop_after: int | None = None) -> TrainResult:
    """Train one stage. `stop_after` ends the run early after that global step (tests: a simulated kill)."""
    from restorevar.training.stages import build_stage

    config.validate()
    env = setup_distributed(config.device)
    out = Path(config.out)
    stage = build_stage(config, env)
    if dataset is None:
        from restorevar.data.datasets import open_dataset
        from restorevar.data.degradations import DEGRADATIONS

        kinds = tuple(config.kinds or DEGRADATIONS)
        dataset = open_dataset(config.data, crop_size=stage.crop_size, split="train", seed=config.seed, kinds=kinds,
                               tone_jitter=config.tone_jitter, tone_jitter_kinds=config.tone_jitter_kinds)
        if val_dataset is None:
            val_dataset = open_dataset(config.val_data or config.data, crop_size=stage.crop_size, split="val",
                                       seed=config.seed, kinds=kinds)
    if config.batch_size % env.world:
        raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {env.world} processes")
    batch_per_rank = config.batch_size // env.world

    if not (config.resume and checkpoint_dirs(out)):
        stage.initialise(dataset)  # before DDP, which broadcasts rank 0's weights
    trainables = stage.trainables()
    wrapped = {name: wrap_ddp(m, env) for name, m in trainables.items()}
    optimizers = stage.optimizers(config)
    dtype = autocast_dtype(config, env.device)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**11, growth_interval=1000) if dtype == torch.float16 else None

    start = 0
    if config.resume and checkpoint_dirs(out):
        ckpt = checkpoint_dirs(out)[-1]
        state = load_checkpoint(ckpt, trainables)
        for opt, opt_state in zip(optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["cpu"])
        stage.load_extra_state(state.get("stage", {}))
        start = int(state["step"])
        if env.is_main:
            log.info("resumed from %s at step %d", ckpt, start)
    elif config.resume:
        log.warning("--resume: no checkpoint in %s, starting at step 0", out / "checkpoints")
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_json(config.to_dict(), out / "train_config.json")
        _truncate_jsonl(out / "metrics.jsonl", start)  # a killed run may have logged past its last checkpoint
    if config.steps == 0:  # initialisation only, e.g. the decoder's least-squares refit: that is the model
        if env.is_main:
            stage.model.save_pretrained(out)
        return TrainResult({}, stage.model, trainables)

    sampler = StepBatchSampler(sampling_weights(dataset_labels(dataset), config.balance_degradations),
                               batch_per_rank=batch_per_rank, rank=env.rank, world=env.world, seed=config.seed,
                               start_step=start, total_steps=config.steps)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers)
    val_batch = _val_batch(val_dataset if val_dataset is not None else dataset, config.val_images)
    peak = stage.peak_lr(config)
    writer = _tensorboard(out) if env.is_main else None
    progress = _progress(env, start, config.steps)
    metrics: dict[str, float] = {}
    tic, seen = time.perf_counter(), 0
    for step, batch in enumerate(loader, start=start):
        torch.manual_seed(mix_seed(config.seed, step, env.rank))  # drop path / noise replay exactly on resume
        lr = lin0_lr(step, config.steps, peak, warmup=config.warmup_steps, flat=config.flat_fraction,
                     final=config.final_lr_ratio)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        batch = {k: v.to(env.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        stage.set_train_modes()
        with torch.autocast(env.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            losses = stage.compute_loss(batch, step, wrapped)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total = losses["loss"] + losses.get("disc_loss", 0.0)
        (scaler.scale(total) if scaler else total).backward()
        norms = {}
        for name, opt in zip(stage.optimizer_names, optimizers):
            if scaler:
                scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"]]
            norms[name] = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
            scaler.step(opt) if scaler else opt.step()
        if scaler:
            scaler.update()
        stage.after_step(step, batch, losses)
        seen += batch_per_rank * env.world
        metrics = {k: float(v.detach()) for k, v in losses.items() if torch.is_tensor(v) and v.numel() == 1}
        metrics.update(lr=lr, grad_norm=norms[stage.optimizer_names[0]])
        done = step + 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")
        if env.is_main and (done % config.log_every == 0 or done == config.steps):
            elapsed = time.perf_counter() - tic
            record = {"step": done, **metrics, "img_per_s": seen / max(elapsed, 1e-9)}
            _append_jsonl(out / "metrics.jsonl", record)
            if writer is not None:
                for k, v in record.items():
                    writer.add_scalar(f"train/{k}", v, done)
            log.info("step %d  " + "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "step"), done)
            tic, seen = time.perf_counter(), 0
        if done % config.val_every == 0 or done == config.steps:
            _validate(stage, val_batch, env, out, done, writer)
        if done % config.checkpoint_every == 0 or done == config.steps:
            _checkpoint(stage, trainables, optimizers, scaler, env, out, done, config.keep_checkpoints)
        if stop_after is not None and done >= stop_after:
            break
    if progress is not None:
        progress.close()
    if writer is not None:
        writer.close()
    return TrainResult(metrics, stage.model, trainables)


def _checkpoint(stage, trainables, optimizers, scaler, env: Dist, out: Path, step: int, keep: int) -> None:
    if env.is_main:
        state = {"step": step, "optimizers": [o.state_dict() for o in optimizers],
                 "scaler": scaler.state_dict() if scaler else {}, "rng": rng_state(), "stage": stage.extra_state()}
        save_checkpoint(out, step, trainables, state, keep)
        stage.model.save_pretrained(out)  # the output folder always holds the latest complete model
    if env.world > 1:
        dist.barrier()  # nobody runs ahead (or exits) while rank 0 writes


def _validate(stage, val_batch, env: Dist, out: Path, step: int, writer) -> None:
    if not env.is_main or val_batch is None:
        return
    stage.set_eval_modes()
    with torch.no_grad():
        batch = {k: v.to(env.device) if torch.is_tensor(v) else v for k, v in val_batch.items()}
        result = stage.validate(batch)
    record = {"step": step, **{f"val_{k}": v for k, v in result.metrics.items()}}
    _append_jsonl(out / "metrics.jsonl", record)
    log.info("validation at step %d: %s", step, "  ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()))
    if writer is not None:
        for k, v in result.metrics.items():
            writer.add_scalar(f"val/{k}", v, step)
    save_image_grid(result.columns, out / "samples" / f"step-{step:08d}.png")
    if stage.is_better(result.metrics):
        stage.model.save_pretrained(out / "best")
        save_json({"step": step, **result.metrics}, out / "best" / "selection.json")


def save_image_grid(columns: list[torch.Tensor], path: Path) -> None:
    """Columns of (B, 3, H, W) images in [0, 1] (e.g. degraded | restored | clean) → one PNG, a row per image."""
    from PIL import Image

    grid = torch.cat([torch.cat(list(col.float().clamp(0, 1).cpu()), dim=1) for col in columns], dim=2)  # (3, B·H, n·W)
    array = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _val_batch(dataset, count: int) -> dict | None:
    from restorevar.data.datasets import indices_by_degradation

    if dataset is None or count < 1 or len(dataset) == 0:
        return None
    items = [dataset[i] for i in indices_by_degradation(dataset, count)]
    return torch.utils.data.default_collate(items)


def _truncate_jsonl(path: Path, step: int) -> None:
    if path.is_file():
        kept = [x for x in path.read_text().splitlines() if x and json.loads(x).get("step", 0) <= step]
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(x + "\n" for x in kept)))


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _progress(env: Dist, start: int, total: int):
    if not env.is_main:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True, leave=False)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def summarize(out: str | Path) -> dict[str, float]:
    """The last training record of a run (for reports and tests)."""
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    train = [json.loads(x) for x in lines if '"loss"' in x]
    return train[-1] if train else {}
