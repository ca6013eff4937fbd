"""The training loop shared by the stages (training/stages/): resume, step, log, validate, checkpoint.

Single process:   restorevar train refiner --transformer runs/transformer --data data/photos --out runs/refiner
Multi-process:    torchrun --nproc_per_node=2 -m restorevar.cli.main train refiner ...   (gloo on CPU, nccl on GPU)

`run(config, stage)` trains a stage built by `training.stages.build_stage`; the loop knows a stage only by its
interface (trainables, optimizers, compute_loss, validate, ...), so this module imports no stage.

Determinism: the batch of global step s on rank r is drawn from a generator seeded with (seed, s), and the
torch RNG (drop path, noise) is reseeded with (seed, s, r) before each step. Resuming from the checkpoint
of step k therefore replays steps k+1, k+2, ... exactly, with no data-loader state in the checkpoint.

Layout of `--out`:  config.json + *.safetensors (the latest model folder), train_config.json,
metrics.jsonl, checkpoints/step-NNNNNNNN/{trainable.safetensors, state.pt}, samples/step-NNNNNNNN.png, best/.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from restorevar.models.checkpoint import save_json
from restorevar.models.config import ConfigError
from restorevar.training.checkpoints import checkpoint_dirs, load_checkpoint, rng_state, save_checkpoint
from restorevar.training.config import TrainConfig
from restorevar.training.distributed import Dist, autocast_dtype, wrap_ddp
from restorevar.training.logs import RunLog, save_image_grid, truncate_jsonl
from restorevar.training.optim import lin0_lr
from restorevar.training.sampling import StepBatchSampler, dataset_labels, mix_seed, sampling_weights

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    metrics: dict[str, float]  # the last step's losses, lr and grad norm
    model: nn.Module  # the model being trained (this rank's copy)
    trainables: dict[str, nn.Module]  # what the optimizers updated, e.g. {"refiner": ...}


@dataclass
class Loop:
    """What every step of a run shares."""

    config: TrainConfig
    stage: object  # a training.stages.Stage
    trainables: dict[str, nn.Module]
    wrapped: dict[str, nn.Module]  # the trainables in their DDP wrappers (themselves in one process)
    optimizers: list[torch.optim.Optimizer]
    scaler: torch.amp.GradScaler | None
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    peak_lr: float

    @property
    def env(self) -> Dist:
        return self.stage.env


def run(config: TrainConfig, stage, *, dataset=None, val_dataset=None, stop_after: int | None = None) -> TrainResult:
    """Train `stage` as `config` says. `stop_after` ends the run early after that global step (tests: a kill)."""
    config.validate()
    env, out = stage.env, Path(config.out)
    if dataset is None:
        dataset, val_dataset = open_datasets(config, stage.crop_size, val_dataset)
    if config.optim.batch_size % env.world:
        raise ConfigError(f"batch_size {config.optim.batch_size} is not divisible by the {env.world} processes")
    if not (config.resume and checkpoint_dirs(out)):
        stage.initialise(dataset)  # before DDP, which broadcasts rank 0's weights
    loop = make_loop(config, stage)
    start = resume(loop, out) if config.resume else 0
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_json(config.to_dict(), out / "train_config.json")
        truncate_jsonl(out / "metrics.jsonl", start)  # a killed run may have logged past its last checkpoint
    if config.optim.steps == 0:  # initialisation only, e.g. the decoder's least-squares refit: that is the model
        if env.is_main:
            stage.model.save_pretrained(out)
        return TrainResult({}, stage.model, loop.trainables)

    batch_per_rank = config.optim.batch_size // env.world
    sampler = StepBatchSampler(
        sampling_weights(dataset_labels(dataset), config.data.balance_degradations),
        batch_per_rank=batch_per_rank,
        rank=env.rank,
        world=env.world,
        seed=config.seed,
        start_step=start,
        total_steps=config.optim.steps,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config.data.num_workers)
    val_batch = validation_batch(val_dataset if val_dataset is not None else dataset, config.logging.val_images)
    run_log = RunLog(
        out,
        start=start,
        total=config.optim.steps,
        every=config.logging.every,
        images_per_step=config.optim.batch_size,
        enabled=env.is_main,
    )
    metrics: dict[str, float] = {}
    for step, batch in enumerate(loader, start=start):
        metrics = train_step(loop, batch, step)
        done = step + 1
        run_log.step(done, metrics)
        last = done == config.optim.steps
        if done % config.logging.val_every == 0 or last:
            validate(stage, val_batch, out, done, run_log)
        if done % config.checkpoints.every == 0 or last:
            checkpoint(loop, out, done)
        if stop_after is not None and done >= stop_after:
            break
    run_log.close()
    return TrainResult(metrics, stage.model, loop.trainables)


def open_datasets(config: TrainConfig, crop_size: int, val_dataset=None):
    """The training set of `data.train`, and the validation set (`data.val`, else the held-out split) if none."""
    from restorevar.data.datasets import open_dataset
    from restorevar.data.degradations import DEGRADATIONS

    data = config.data
    kinds = tuple(data.kinds or DEGRADATIONS)
    dataset = open_dataset(
        data.train,
        crop_size=crop_size,
        split="train",
        seed=config.seed,
        kinds=kinds,
        tone_jitter=data.tone_jitter,
        tone_jitter_kinds=data.tone_jitter_kinds,
    )
    if val_dataset is None:
        val_dataset = open_dataset(
            data.val or data.train, crop_size=crop_size, split="val", seed=config.seed, kinds=kinds
        )
    return dataset, val_dataset


def make_loop(config: TrainConfig, stage) -> Loop:
    trainables = stage.trainables()
    wrapped = {name: wrap_ddp(m, stage.env) for name, m in trainables.items()}
    dtype = autocast_dtype(config.amp, stage.env.device)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**11, growth_interval=1000) if dtype == torch.float16 else None
    return Loop(config, stage, trainables, wrapped, stage.optimizers(config), scaler, dtype, stage.peak_lr(config))


def resume(loop: Loop, out: Path) -> int:
    """Load the latest checkpoint in `out` (trainables, optimizers, scaler, RNG, the stage's state); its step."""
    if not checkpoint_dirs(out):
        log.warning("--resume: no checkpoint in %s, starting at step 0", out / "checkpoints")
        return 0
    path = checkpoint_dirs(out)[-1]
    state = load_checkpoint(path, loop.trainables)
    for opt, opt_state in zip(loop.optimizers, state["optimizers"]):
        opt.load_state_dict(opt_state)
    if loop.scaler is not None and state.get("scaler"):
        loop.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["cpu"])
    loop.stage.load_extra_state(state.get("stage", {}))
    if loop.env.is_main:
        log.info("resumed from %s at step %d", path, int(state["step"]))
    return int(state["step"])


def train_step(loop: Loop, batch: dict, step: int) -> dict[str, float]:
    """One optimisation step of global step `step`; the step's scalar losses, lr and the model's grad norm."""
    config, stage, env = loop.config, loop.stage, loop.env
    torch.manual_seed(mix_seed(config.seed, step, env.rank))  # drop path / noise replay exactly on resume
    optim = config.optim
    lr = lin0_lr(
        step, optim.steps, loop.peak_lr, warmup=optim.warmup_steps, flat=optim.flat_fraction, final=optim.final_lr_ratio
    )
    for opt in loop.optimizers:
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
    batch = {k: v.to(env.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    stage.set_train_modes()
    with torch.autocast(env.device.type, dtype=loop.dtype) if loop.dtype else contextlib.nullcontext():
        losses = stage.compute_loss(batch, step, loop.wrapped)
    for opt in loop.optimizers:
        opt.zero_grad(set_to_none=True)
    total = losses["loss"] + losses.get("disc_loss", 0.0)
    (loop.scaler.scale(total) if loop.scaler else total).backward()
    norms = {}
    for name, opt in zip(stage.optimizer_names, loop.optimizers):
        if loop.scaler:
            loop.scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"]]
        norms[name] = float(torch.nn.utils.clip_grad_norm_(params, optim.grad_clip))
        loop.scaler.step(opt) if loop.scaler else opt.step()
    if loop.scaler:
        loop.scaler.update()
    stage.after_step(step, batch, losses)
    metrics = {k: float(v.detach()) for k, v in losses.items() if torch.is_tensor(v) and v.numel() == 1}
    return {**metrics, "lr": lr, "grad_norm": norms[stage.optimizer_names[0]]}


def checkpoint(loop: Loop, out: Path, step: int) -> None:
    """Rank 0 writes the checkpoint of `step` and the model folder; the other ranks wait for it."""
    if loop.env.is_main:
        state = {
            "step": step,
            "optimizers": [o.state_dict() for o in loop.optimizers],
            "scaler": loop.scaler.state_dict() if loop.scaler else {},
            "rng": rng_state(),
            "stage": loop.stage.extra_state(),
        }
        save_checkpoint(out, step, loop.trainables, state, loop.config.checkpoints.keep)
        loop.stage.model.save_pretrained(out)  # the output folder always holds the latest complete model
    if loop.env.world > 1:
        dist.barrier()  # nobody runs ahead (or exits) while rank 0 writes


def validate(stage, val_batch: dict | None, out: Path, step: int, run_log: RunLog) -> None:
    """Rank 0: the stage's validation metrics and sample grid; `best/` when the stage says they are its best."""
    if not stage.env.is_main or val_batch is None:
        return
    stage.set_eval_modes()
    with torch.no_grad():
        batch = {k: v.to(stage.env.device) if torch.is_tensor(v) else v for k, v in val_batch.items()}
        result = stage.validate(batch)
    run_log.validation(step, result.metrics)
    save_image_grid(result.columns, out / "samples" / f"step-{step:08d}.png")
    if stage.is_better(result.metrics):
        stage.model.save_pretrained(out / "best")
        save_json({"step": step, **result.metrics}, out / "best" / "selection.json")


def validation_batch(dataset, count: int) -> dict | None:
    """`count` validation items spread over the degradations, as one batch (None: no validation)."""
    from restorevar.data.datasets import indices_by_degradation

    if dataset is None or count < 1 or len(dataset) == 0:
        return None
    items = [dataset[i] for i in indices_by_degradation(dataset, count)]
    return torch.utils.data.default_collate(items)
