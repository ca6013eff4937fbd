"""VarFormer's two training stages on the micro model: the adapter learns the feature matching loss with the VAR
frozen; the backbone learns to restore from windows of pooled crops with everything else frozen."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import MICRO, Pairs, micro_config, micro_folder, train, train_losses

from restorevar.models.config import ConfigError
from restorevar.models.registry import load_model
from restorevar.models.varformer.config import AdapterConfig, BackboneConfig, VarFormerConfig
from restorevar.models.varformer.model import VarFormer

VARFORMER = VarFormerConfig(
    tokenizer=MICRO.tokenizer,
    transformer=MICRO.transformer,
    adapter=AdapterConfig(depth=1, width=16, num_heads=1),
    backbone=BackboneConfig(width=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1), middle_blocks=1),
)


@pytest.fixture(scope="module")
def prior_folder(tmp_path_factory):
    return micro_folder(tmp_path_factory.mktemp("prior"))  # a RestoreVAR whose tokenizer and transformer stay frozen


@pytest.fixture(scope="module")
def adapter_folder(prior_folder, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("adapter")
    train(
        micro_config(out, "varformer_adapter", prior_folder, steps=40, lr=3e-3, model=VARFORMER.to_dict()),
        dataset=Pairs(),
    )
    return out


def test_the_adapter_learns_the_feature_matching_loss_with_the_var_frozen(prior_folder, adapter_folder):
    lines = [json.loads(x) for x in (adapter_folder / "metrics.jsonl").read_text().splitlines()]
    feature = [x["feature"] for x in lines if "feature" in x]
    assert len(train_losses(adapter_folder)) == 40
    assert sum(feature[-5:]) < 0.7 * sum(feature[:5]), feature
    model = load_model(adapter_folder)
    assert isinstance(model, VarFormer) and model.config.adapter == VARFORMER.adapter
    for name in ("tokenizer", "transformer"):
        a, b = load_file(prior_folder / f"{name}.safetensors"), load_file(adapter_folder / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_the_backbone_learns_to_restore_from_windows_and_changes_nothing_else(adapter_folder, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "backbone"
    train(
        micro_config(
            out,
            "varformer",
            adapter_folder,
            steps=60,
            lr=3e-3,
            val_every=60,
            val_images=8,
            model=None,
            **{
                "varformer.window": 16,
                "varformer.windows_per_step": 8,
                "varformer.pool": 16,
                "varformer.perceptual_weight": 0.0,
            },
        ),
        dataset=Pairs(),
        val_dataset=Pairs(),
    )
    losses = train_losses(out)
    assert len(losses) == 60 and sum(losses[-5:]) < sum(losses[:5]) - 5 * 3, losses  # > 3 dB better
    val = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "val_psnr" in x][-1]
    assert val["val_psnr"] > val["val_psnr_input"] + 3, val
    for name in ("tokenizer", "transformer", "adapter"):
        a, b = load_file(adapter_folder / f"{name}.safetensors"), load_file(out / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_the_adapter_stage_needs_a_varformer_architecture(prior_folder, tmp_path):
    from restorevar.training.distributed import Dist
    from restorevar.training.stages import build_stage

    with pytest.raises(ConfigError, match="varformer-small"):
        build_stage(micro_config(tmp_path / "a", "varformer_adapter", prior_folder).validate(), Dist())
