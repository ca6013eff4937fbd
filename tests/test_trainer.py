"""The training loop: schedule, deterministic sampling, resume (bit-identical) and DDP.

The micro model, the fixed 8-image dataset and `train` here are shared with test_stages.py and test_blur_expert.py.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from restorevar.models.restorevar.config import RefinerConfig, RestoreVARConfig, TokenizerConfig, TransformerConfig
from restorevar.models.restorevar.model import RestoreVAR
from restorevar.training.config import MOVED, TrainConfig
from restorevar.training.distributed import setup_distributed
from restorevar.training.optim import lin0_lr
from restorevar.training.sampling import StepBatchSampler, sampling_weights
from restorevar.training.stages import build_stage
from restorevar.training.trainer import TrainResult, run

# 32² images, 8×8 latent, 4 scales (L = 85): every stage runs in a few seconds on one CPU thread
MICRO = RestoreVARConfig(
    tokenizer=TokenizerConfig(
        image_size=32,
        vocab_size=32,
        latent_channels=8,
        base_channels=16,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        norm_groups=8,
        patch_nums=(1, 2, 4, 8),
    ),
    transformer=TransformerConfig(depth=1, width=64, num_heads=2, num_classes=0, drop_path_rate=0.2),
    refiner=RefinerConfig(depth=1, width=32, num_heads=1, mlp_dim=64),
)


class Pairs(torch.utils.data.Dataset):
    """8 smooth random images; 'haze' lifts and flattens, 'dark' scales down (2 dark, 6 hazy: unbalanced)."""

    def __init__(self, n: int = 8, size: int = 32):
        g = torch.Generator().manual_seed(0)
        base = torch.rand(n, 3, size // 8, size // 8, generator=g)
        self.clean = torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)
        self.kinds = ["dark" if i % 4 == 0 else "haze" for i in range(n)]

    def __len__(self) -> int:
        return len(self.clean)

    def degradation_labels(self) -> list[str]:
        return self.kinds

    def __getitem__(self, i: int) -> dict:
        c = self.clean[i]
        d = c * 0.5 + 0.4 if self.kinds[i] == "haze" else c * 0.3
        return {"degraded": d, "clean": c, "degradation": self.kinds[i], "name": f"img{i}"}


def micro_folder(path: Path, seed: int = 0) -> Path:
    """A RestoreVAR folder with random micro weights (a stand-in for an earlier stage's output)."""
    torch.manual_seed(seed)
    RestoreVAR(MICRO).save_pretrained(path)
    return path


def micro_config(out: Path, stage: str, init: Path | None = None, **overrides) -> TrainConfig:
    """A short run of the micro model; overrides may use the flat names of `training.config.MOVED` (steps=...)."""
    values: dict = dict(stage=stage, out=str(out), init=str(init) if init else None, model=MICRO.to_dict())
    flat = dict(steps=8, batch_size=4, lr=1e-3, log_every=1, val_every=1000, checkpoint_every=1000, val_images=2)
    for key, value in {**flat, **overrides}.items():
        *section, name = MOVED.get(key, key).format(stage=stage).split(".")
        (values.setdefault(section[0], {}) if section else values)[name] = value
    return TrainConfig.from_dict(values)


def train(config: TrainConfig, **kwargs) -> TrainResult:
    """What `restorevar train` does: build the stage, run it."""
    return run(config, build_stage(config, setup_distributed(config.device)), **kwargs)


def train_losses(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if '"loss"' in x]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------- schedule, sampler


def test_lin0_is_flat_then_linear_to_one_percent():
    lrs = [lin0_lr(s, 101, 1.0, flat=0.05) for s in range(101)]
    assert lrs[:6] == [1.0] * 6  # flat for 5% of the steps
    assert lrs[-1] == pytest.approx(0.01)
    assert lrs[50] == pytest.approx(0.01 + 0.99 * 0.5 / 0.95)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert [lin0_lr(s, 100, 1.0, warmup=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_sampler_is_step_indexed_balanced_and_split_across_ranks():
    weights = sampling_weights(Pairs().kinds, balance=True)

    def make(rank, start):
        return StepBatchSampler(
            weights, batch_per_rank=3, rank=rank, world=2, seed=7, start_step=start, total_steps=400
        )

    full = list(make(0, 0))
    assert list(make(0, 150)) == full[150:]  # a resumed sampler continues exactly
    assert make(0, 0).batch_indices(5) + make(1, 0).batch_indices(5) == StepBatchSampler(
        weights, batch_per_rank=6, rank=0, world=1, seed=7, start_step=0, total_steps=1
    ).batch_indices(5)
    drawn = torch.tensor(full).flatten()
    dark = sum(int((drawn == i).sum()) for i in (0, 4)) / len(drawn)
    assert 0.43 < dark < 0.57  # 2 of 8 images, but half of the draws: inverse-frequency weights


# ------------------------------------------------------------------------------------------- resume


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    tokenizer = micro_folder(tmp_path / "tok")
    straight = micro_config(tmp_path / "straight", "transformer", tokenizer, checkpoint_every=3)
    train(straight, dataset=Pairs())
    # "killed" after step 4: the last checkpoint is step 3, so step 4 is redone on resume
    killed = micro_config(tmp_path / "killed", "transformer", tokenizer, checkpoint_every=3)
    train(killed, dataset=Pairs(), stop_after=4)
    assert [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()] == ["step-00000003"]
    train(micro_config(tmp_path / "killed", "transformer", tokenizer, checkpoint_every=3, resume=True), dataset=Pairs())
    a = load_file(tmp_path / "straight" / "transformer.safetensors")
    b = load_file(tmp_path / "killed" / "transformer.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["head.weight"], load_file(tokenizer / "transformer.safetensors")["head.weight"])
    assert train_losses(tmp_path / "killed") == train_losses(tmp_path / "straight")  # the log is replayed too


# ------------------------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, port: int, out: str, stages: list[tuple[str, str, dict]]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    import torch.distributed as dist
    from safetensors.torch import save_file

    for stage, init, overrides in stages:
        result = train(micro_config(Path(out) / stage, stage, Path(init), device="cpu", **overrides), dataset=Pairs())
        state = {
            f"{name}.{k}": v.contiguous() for name, m in result.trainables.items() for k, v in m.state_dict().items()
        }
        save_file(state, Path(out) / f"{stage}-rank{rank}.safetensors")
    dist.destroy_process_group()


def run_ddp(tmp_path: Path, stages: list[tuple[str, str, dict]]) -> None:
    """Train the stages in a 2-process gloo group; each rank writes its trainables to STAGE-rankR.safetensors."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path), stages), nprocs=2, join=True)


def test_ddp_ranks_stay_identical(tmp_path):
    """Tokenizer (dead-code resets), refiner (the paper bypassed DDP there) and decoder with PatchGAN +
    adaptive weight, 2 ranks on gloo."""
    start = micro_folder(tmp_path / "start")
    run_ddp(
        tmp_path,
        [
            ("tokenizer", str(start), dict(steps=3, dead_code_every=2, gan_weight=0.0, perceptual_weight=0.0)),
            ("refiner", str(start), dict(steps=3)),
            ("decoder", str(start), dict(steps=3, gan_start=1, perceptual_weight=0.0, latent_source="noisy-clean")),
        ],
    )
    initial = load_file(start / "refiner.safetensors")
    for stage in ("tokenizer", "refiner", "decoder"):
        a = load_file(tmp_path / f"{stage}-rank0.safetensors")
        b = load_file(tmp_path / f"{stage}-rank1.safetensors")
        assert a.keys() == b.keys() and any(k.startswith("discriminator.") for k in a) == (stage == "decoder")
        for k in a:
            assert torch.equal(a[k], b[k]), f"{stage}: {k} differs between ranks"
    trained = load_file(tmp_path / "refiner-rank0.safetensors")["refiner.proj_out.weight"]
    assert not torch.equal(trained, initial["proj_out.weight"])  # it did train


@pytest.mark.parametrize("device, expected", [("auto", "cuda:0"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1")])
def test_setup_distributed_picks_the_cuda_device(device, expected, monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    env = setup_distributed(device)  # "auto" crashed in torch.device("auto") on the first GPU run
    assert str(env.device) == expected and [str(d) for d in chosen] == [expected]
