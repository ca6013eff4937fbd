import pytest
import torch
from conftest import assert_golden

from restorevar.models.checkpoint import CheckpointError
from restorevar.models.restorevar.model import RestoreVAR


def test_golden_restoration_end_to_end(golden_model, golden_restorevar):
    inputs, expected = golden_restorevar
    result = golden_model.restore_batch((inputs["degraded"] + 1) / 2, return_intermediates=True)
    for k, idx in enumerate(result.intermediates.indices):
        assert torch.equal(idx, expected[f"ar_idx_s{k}"])
    assert_golden(result.intermediates.latent_BChw, expected["ar_fhat_refined"], 1e-3)
    assert_golden(result.image_B3HW, expected["ar_image"], 1e-3)


def test_save_and_load_round_trip(golden_model, golden_restorevar, tmp_path):
    inputs, _ = golden_restorevar
    golden_model.save_pretrained(tmp_path / "m")
    loaded = RestoreVAR.from_pretrained(tmp_path / "m")
    assert loaded.config == golden_model.config
    x = (inputs["degraded"] + 1) / 2
    assert torch.equal(loaded.restore_batch(x).image_B3HW, golden_model.restore_batch(x).image_B3HW)


def test_missing_and_mismatched_files_are_named(golden_model, tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        RestoreVAR.from_pretrained(tmp_path)
    golden_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "refiner.safetensors").unlink()
    with pytest.raises(CheckpointError, match="refiner.safetensors"):
        RestoreVAR.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "refiner.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        RestoreVAR.from_pretrained(tmp_path / "m")


def test_wrong_size_is_a_clear_error(golden_model):
    with pytest.raises(ValueError, match="128×128"):
        golden_model.restore_batch(torch.rand(1, 3, 64, 64))
