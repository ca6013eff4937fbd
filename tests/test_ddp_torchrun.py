"""The default recipe's stages (configs/default/, the `small` preset) under real `torchrun`: 2 CPU processes, gloo.

DDP runs without `find_unused_parameters`, so each stage's trainable modules must use every parameter they hold on
every step; a stage whose module holds one its forward skips (a refiner holding the blur expert, a blur expert
holding its mixer) fails at the second step. Three steps per stage, at batch 2, on a folder of ten tiny photos.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

RECIPE = Path(__file__).parents[1] / "configs" / "default"
STAGES = {
    "tokenizer": None,
    "transformer": "tokenizer",
    "refiner": "transformer",
    "decoder": "refiner",
    "blur_expert": "decoder",
    "mixer": "blur_expert",
}  # stage: the stage whose output it reads
SHORT = {
    "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 0},
    "logging": {"every": 1, "val_images": 0},
    "checkpoints": {"every": 3},
    "data": {"num_workers": 0},
}
CROPS = {"tokenizer": 64, "blur_expert": 128}  # where the stage allows smaller crops (the detector needs 8×8 latents)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Ten smooth 96² photos (one goes to the val split)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(10):
        small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        small.resize((96, 96), Image.BICUBIC).save(folder / f"photo{i}.png")
    return folder


def short_config(stage: str, path: Path) -> Path:
    """The recipe's file for `stage`, with SHORT's settings and smaller crops."""
    values = yaml.safe_load((RECIPE / f"{stage}.yaml").read_text())
    for section, settings in SHORT.items():
        values[section] = {**values.get(section, {}), **settings}
    if stage in CROPS:
        values["data"]["crop_size"] = CROPS[stage]
    path.write_text(yaml.safe_dump(values))
    return path


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "restorevar.cli.main",
        "train",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_every_stage_of_the_default_recipe_trains_under_torchrun(photos, tmp_path):
    from restorevar.training.config import STAGE_INPUTS

    for stage, previous in STAGES.items():
        args = [
            stage,
            "--config",
            str(short_config(stage, tmp_path / f"{stage}.yaml")),
            "--data",
            str(photos),
            "--out",
            str(tmp_path / stage),
        ]
        if previous:
            args += [STAGE_INPUTS[stage], str(tmp_path / previous)]
        result = torchrun(*args, cwd=tmp_path)
        assert result.returncode == 0, f"{stage} failed under torchrun:\n{result.stdout[-3000:]}{result.stderr[-6000:]}"
        assert f"trained {stage} for 3 steps" in result.stdout, result.stdout
        trained = load_file(tmp_path / stage / "checkpoints" / "step-00000003" / "trainable.safetensors")
        assert trained and all(torch.isfinite(v).all() for v in trained.values()), stage
