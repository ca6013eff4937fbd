"""`restorevar train STAGE`: registers one command per training stage; torch loads only when one runs.

A run's settings come from `--config FILE` (YAML or JSON, the sections of `training.config.TrainConfig`; unknown
keys are errors), then the command-line flags, which win.
"""

from __future__ import annotations

import argparse
import logging

from restorevar.training.config import STAGE_INPUTS, TrainConfig  # torch-free

log = logging.getLogger(__name__)

EXAMPLES = {
    "tokenizer": "example: restorevar train tokenizer --preset small --data data/photos --steps 20000 --out runs/tok",
    "transformer": "example: torchrun --nproc_per_node=2 -m restorevar.cli.main train transformer --tokenizer runs/tok "
    "--data data/photos --batch-size 48 --out runs/var",
    "refiner": "example: restorevar train refiner --transformer runs/var --data data/photos --out runs/refiner",
    "decoder": "example: restorevar train decoder --refiner runs/refiner --data data/photos --out runs/final",
    "blur_expert": "example: restorevar train blur_expert --decoder runs/final --preset small --data data/photos "
    "--out runs/expert",
    "mixer": "example: restorevar train mixer --expert runs/expert --preset small --data data/photos --out runs/mixer",
    "varformer_adapter": "example: restorevar train varformer_adapter --prior restorevar-small "
    "--preset varformer-small --data data/photos --out runs/vf-adapter",
    "varformer": "example: restorevar train varformer --adapter runs/vf-adapter --data data/photos "
    "--out runs/varformer",
}
HELPS = {
    "tokenizer": "stage 0: the multi-scale VQVAE",
    "transformer": "stage 1: next-scale transformer (CE)",
    "refiner": "stage 2: latent refiner (latent L1)",
    "decoder": "stage 3: decoder for continuous latents",
    "blur_expert": "stage 4 (ours): blur detector + deblurring CNN on the degraded latent",
    "mixer": "stage 5 (ours): per-position weights of the refined, degraded and deblurred latents",
    "varformer_adapter": "VarFormer stage 1: the adapter after the frozen VAR's encoder (feature matching)",
    "varformer": "VarFormer stage 2: the prior-guided restoration U-Net (−PSNR + perceptual)",
}
INPUT_HELPS = {  # what each stage's input flag (training.config.STAGE_INPUTS) names
    "tokenizer": "model folder to fine-tune (e.g. a converted vae_ch160v4096z32); default: from scratch",
    "transformer": "output folder of `train tokenizer` (or a converted model folder)",
    "refiner": "output folder of `train transformer`",
    "decoder": "output folder of `train refiner` (or of `train tokenizer` with --latent-source noisy-clean)",
    "blur_expert": "output folder of `train decoder` (any complete model folder)",
    "mixer": "output folder of `train blur_expert`",
    "varformer_adapter": "a trained RestoreVAR model folder or name whose tokenizer and transformer give the prior",
    "varformer": "output folder of `train varformer_adapter`",
}


def add_parser(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train one stage (RestoreVAR's six, VarFormer's two)",
        description="Train a RestoreVAR stage; see docs/training.md.",
        epilog=EXAMPLES["transformer"],
    )
    stages = train.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for stage, help_text in HELPS.items():
        p = stages.add_parser(
            stage,
            help=help_text,
            description=help_text,
            epilog=EXAMPLES[stage],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_stage_arguments(p, stage)
        p.set_defaults(func=train_command, train_stage=stage)


def add_stage_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    """Each flag's dest is the TrainConfig field it sets (`optim.steps`); None means not given."""
    p.add_argument(STAGE_INPUTS[stage], dest="init", metavar="DIR", help=INPUT_HELPS[stage])
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file with TrainConfig sections")
    p.add_argument("--preset", help="architecture of newly initialised parts: tiny, small, paper-256, paper-512")
    p.add_argument("--data", dest="data.train", action="append", metavar="PATH", help="training data (repeatable)")
    p.add_argument("--val-data", dest="data.val", action="append", metavar="PATH", help="validation data (repeatable)")
    p.add_argument("--steps", dest="optim.steps", type=int)
    p.add_argument("--batch-size", dest="optim.batch_size", type=int, help="global batch, split across processes")
    p.add_argument("--lr", dest="optim.lr", type=float, help="peak learning rate (default: 1e-4 · batch/48)")
    p.add_argument("--out", metavar="DIR", help="output model folder (+ checkpoints, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", default=None, help="continue from the latest checkpoint")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", dest="checkpoints.every", type=int)
    p.add_argument("--val-every", dest="logging.val_every", type=int)
    p.add_argument("--log-every", dest="logging.every", type=int)
    p.add_argument("--num-workers", dest="data.num_workers", type=int)
    if stage == "transformer":
        p.add_argument(
            "--var-d16", dest="transformer.var_d16", metavar="FILE", help="official var_d16.pth to initialise from"
        )
    if stage in ("tokenizer", "decoder"):
        for name in ("l1", "ssim", "perceptual", "gan"):
            p.add_argument(f"--{name}-weight", dest=f"image_loss.{name}_weight", type=float)
        p.add_argument(
            "--gan-start",
            dest="image_loss.gan_start",
            type=float,
            help="step at which the PatchGAN loss starts (< 1: share of --steps)",
        )
    if stage == "varformer":
        p.add_argument("--window", dest="varformer.window", type=int, help="training window side (multiple of 16)")
        p.add_argument("--perceptual-weight", dest="varformer.perceptual_weight", type=float)
    if stage == "decoder":
        p.add_argument("--latent-source", dest="decoder.latent_source", choices=["refiner", "noisy-clean"])


def config_from_args(args) -> TrainConfig:
    """File values, then every flag that was given (None = not given)."""
    config = TrainConfig.load(args.config) if args.config else TrainConfig()
    values = config.to_dict()
    values["stage"] = args.train_stage
    skip = {"config", "func", "train_stage", "stage", "command", "verbose"}
    for key, value in vars(args).items():
        if key not in skip and value is not None:
            *sections, name = key.split(".")
            target = values
            for section in sections:
                target = target[section]
            target[name] = value
    return TrainConfig.from_dict(values).validate()


def train_command(args) -> int:
    import os

    from restorevar.training.distributed import setup_distributed
    from restorevar.training.stages import build_stage
    from restorevar.training.trainer import run

    if os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # logs and progress from rank 0 only
    config = config_from_args(args)
    if not config.data.train:
        from restorevar.models.config import ConfigError

        raise ConfigError("no training data: pass --data PATH or set `data: {train: PATH}` in --config")
    env = setup_distributed(config.device)
    metrics = run(config, build_stage(config, env)).metrics
    if env.is_main:
        loss = (
            f"final loss {metrics['loss']:.4f}"
            if "loss" in metrics
            else "initialised only"
            if config.optim.steps == 0
            else "already complete, nothing to train"
        )
        print(f"trained {config.stage} for {config.optim.steps} steps → {config.out} ({loss})")
    return 0
