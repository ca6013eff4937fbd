"""TrainConfig: one section per concern, strict YAML (unknown and moved keys named), CLI flags over the file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from restorevar.models.config import ConfigError
from restorevar.training.config import KINDS, STAGES, DataConfig, MixerSettings, TrainConfig

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*/*.yaml"))


def parse(*argv: str):
    from restorevar.cli.train import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_unknown_keys_are_named_with_their_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*TrainConfig: stepz"):
        TrainConfig.from_dict({"stepz": 4})
    (tmp_path / "bad.yaml").write_text("optim:\n  batch_size: 2\n  learning_rate: 1.0\n")
    with pytest.raises(ConfigError, match=r"TrainConfig\.optim: learning_rate"):
        TrainConfig.load(tmp_path / "bad.yaml")


def test_a_key_of_the_flat_layout_says_where_it_moved(tmp_path):
    (tmp_path / "old.yaml").write_text("stage: refiner\nsteps: 100\nrefiner_loss: log_mse\nlog_every: 5\n")
    moved = "steps → optim.steps.*refiner_loss → refiner.loss.*log_every → logging.every"
    with pytest.raises(ConfigError, match=moved):
        TrainConfig.load(tmp_path / "old.yaml")
    with pytest.raises(ConfigError, match="data → data.train"):
        TrainConfig.from_dict({"data": ["data/photos"]})


def test_a_file_sets_only_its_own_stage_section(tmp_path):
    (tmp_path / "run.yaml").write_text("stage: refiner\ndecoder:\n  refit: true\n")
    with pytest.raises(ConfigError, match="refiner stage.*decoder"):
        TrainConfig.load(tmp_path / "run.yaml")


def test_values_are_checked_with_their_section():
    with pytest.raises(ConfigError, match="data.kinds.*fog"):
        TrainConfig(data=DataConfig(kinds=("haze", "fog"))).validate()
    assert TrainConfig(data=DataConfig(kinds=("haze", "none"))).validate().data.kinds == ("haze", "none")
    with pytest.raises(ConfigError, match="data.tone_jitter_kinds.*fog"):
        TrainConfig(data=DataConfig(tone_jitter_kinds=("fog",))).validate()
    assert TrainConfig(stage="mixer", mixer=MixerSettings(kind_loss_weights={"blur": 2.0})).validate()
    for bad in ({"fog": 2.0}, {"blur": 0.0}):
        with pytest.raises(ConfigError, match="mixer.kind_loss_weights"):
            TrainConfig(stage="mixer", mixer=MixerSettings(kind_loss_weights=bad)).validate()
    with pytest.raises(ConfigError, match="refiner.loss"):
        TrainConfig.from_dict({"stage": "refiner", "refiner": {"loss": "l2"}}).validate()
    with pytest.raises(ConfigError, match="refiner.log_mse_floor"):
        TrainConfig.from_dict({"refiner": {"log_mse_floor": 0.0}}).validate()
    with pytest.raises(ConfigError, match="optim.steps must be ≥ 0"):
        TrainConfig.from_dict({"optim": {"steps": -1}}).validate()


def test_kinds_match_the_data_code():
    from restorevar.data.degradations import DEGRADATIONS, EXTRA_KINDS

    assert KINDS == DEGRADATIONS + EXTRA_KINDS


@pytest.mark.parametrize("path", CONFIGS, ids=[f"{p.parent.name}/{p.name}" for p in CONFIGS])
def test_the_bundled_recipes_load(path):
    config = TrainConfig.load(path).validate()
    assert config.stage in STAGES and config.optim.steps >= 0


def test_flags_override_the_file_section_by_section(tmp_path):
    from restorevar.cli.train import config_from_args

    (tmp_path / "run.yaml").write_text(
        "data: {train: a, num_workers: 3}\noptim: {steps: 100, batch_size: 16, "
        "lr: 0.002, betas: [0.9, 0.99]}\nrefiner: {loss: log_mse}\n"
    )
    args = parse(
        "refiner",
        "--config",
        str(tmp_path / "run.yaml"),
        "--steps",
        "7",
        "--transformer",
        "runs/var",
        "--data",
        "b",
        "--data",
        "c",
        "--log-every",
        "2",
    )
    config = config_from_args(args)
    optim = config.optim
    assert (optim.steps, optim.batch_size, optim.lr, optim.betas) == (7, 16, 0.002, (0.9, 0.99))
    assert (config.stage, config.init, config.data.train, config.resume) == ("refiner", "runs/var", ("b", "c"), False)
    assert (config.data.num_workers, config.logging.every, config.refiner.loss) == (3, 2, "log_mse")
    decoder = config_from_args(
        parse("decoder", "--refiner", "r", "--latent-source", "noisy-clean", "--gan-weight", "0")
    )
    assert (decoder.decoder.latent_source, decoder.image_loss.gan_weight) == ("noisy-clean", 0.0)
    assert TrainConfig.from_dict(config.to_dict()) == config  # train_config.json reads back


def test_train_cli_imports_no_torch_and_help_ends_with_example():
    import subprocess
    import sys

    code = (
        "import sys, argparse; from restorevar.cli import train as train_cli; assert 'torch' not in sys.modules; "
        "p = argparse.ArgumentParser(prog='restorevar'); train_cli.add_parser(p.add_subparsers()); "
        "p.parse_args(['train', 'decoder', '--help'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("example: restorevar train decoder")
