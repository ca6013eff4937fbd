import shutil

import pytest
import torch
from conftest import GOLDEN
from safetensors.torch import load_file, save_file

from restorevar.cli.main import main
from restorevar.models.checkpoint import CheckpointError
from restorevar.models.presets import get_preset
from restorevar.models.restorevar.convert import convert_official, load_var_backbone
from restorevar.models.restorevar.model import RestoreVAR
from restorevar.models.restorevar.transformer import RestoreVARTransformer


def test_architecture_is_inferred_from_the_files(converted_tiny):
    config = converted_tiny.config
    tiny = get_preset("tiny")
    assert config.tokenizer == tiny.tokenizer
    assert config.transformer.depth == 2 and config.transformer.width == 128 and config.transformer.num_heads == 2
    assert config.refiner == tiny.refiner


@pytest.fixture
def official_dir(tmp_path):
    d = tmp_path / "official"
    d.mkdir()
    shutil.copy(GOLDEN / "restorevar_tiny" / "restorevar.pth", d / "restorevar.pth")
    vae = load_file(GOLDEN / "vqvae_tiny" / "state_dict.safetensors")
    torch.save({k: v.float() for k, v in vae.items()}, d / "vae_restorevar.ckpt")
    return d


def test_convert_command_writes_a_loadable_model(official_dir, tmp_path, golden_model, golden_restorevar):
    assert main(["convert", str(official_dir), str(tmp_path / "ours"), "--refiner-heads", "2"]) == 0
    model = RestoreVAR.from_pretrained(tmp_path / "ours")
    inputs, expected = golden_restorevar
    result = model.restore_batch((inputs["degraded"] + 1) / 2, return_intermediates=True)
    assert all(torch.equal(idx, expected[f"ar_idx_s{k}"]) for k, idx in enumerate(result.intermediates.indices))


def test_missing_and_wrong_files_are_clear(official_dir, tmp_path, capsys):
    (official_dir / "vae_restorevar.ckpt").unlink()
    assert main(["convert", str(official_dir), str(tmp_path / "x")]) == 1
    assert "vae_restorevar.ckpt" in capsys.readouterr().err
    broken = load_file(GOLDEN / "vqvae_tiny" / "state_dict.safetensors")
    broken["quant_conv.weight"] = torch.zeros(32, 32, 1, 1)
    save_file(broken, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="quant_conv.weight: file \\(32, 32, 1, 1\\)"):
        from restorevar.models.checkpoint import load_strict
        from restorevar.models.restorevar.convert import vqvae_state_from_official

        converted = convert_official(tmp_path / "vae.safetensors", official_dir / "restorevar.pth", refiner_heads=2)
        load_strict(RestoreVAR(converted.config).vqvae, vqvae_state_from_official(broken), "vae.safetensors")


def test_untrusted_pickles_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "restorevar.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        convert_official(GOLDEN / "vqvae_tiny" / "state_dict.safetensors", tmp_path / "restorevar.pth")


def test_var_backbone_initialisation_report(tmp_path):
    """var_tiny (a class-conditional VAR) initialises a RestoreVAR transformer of the same size."""
    from dataclasses import replace

    tiny = get_preset("tiny")
    config = replace(tiny.transformer, num_heads=4)
    transformer = RestoreVARTransformer(config, tiny.tokenizer)
    state = load_file(GOLDEN / "var_tiny" / "state_dict.safetensors")
    report = load_var_backbone(transformer, GOLDEN / "var_tiny" / "state_dict.safetensors")
    assert torch.equal(transformer.blocks[1].ffn.fc1.weight, state["blocks.1.ffn.fc1.weight"])
    assert torch.equal(transformer.token_embed.weight, state["word_embed.weight"])
    assert "blocks.0.ada_lin.1.weight" in report.ignored and "pos_1LC" in report.ignored
    assert "blocks.0.cross_attn.kv_proj.weight" in report.initialised and "global_gain" in report.initialised
    assert transformer.blocks[0].cross_attn.gain.item() == 0.0  # new modules keep their init
