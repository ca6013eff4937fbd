import dataclasses

import pytest
import torch

from conftest import assert_golden
from restorevar.models.checkpoint import CheckpointError
from restorevar.models.restorevar.model import RestoreVAR


def test_golden_restoration_end_to_end(golden_model, golden_restorevar):
    inputs, expected = golden_restorevar
    result = golden_model.restore_batch((inputs["degraded"] + 1) / 2, return_intermediates=True)
    for k, idx in enumerate(result.indices):
        assert torch.equal(idx, expected[f"ar_idx_s{k}"])
    assert_golden(result.latent_BChw, expected["ar_fhat_refined"], 1e-3)
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


def test_add_input_detail_keeps_what_the_tokenizer_loses(tiny_config):
    # a fresh refine_degraded refiner returns the degraded latent, so with the input's detail added back the
    # output is the input itself; without it, the output is the tokenizer's (lossy) reconstruction
    refiner = dataclasses.replace(tiny_config.refiner, refine_degraded=True)
    torch.manual_seed(0)
    plain = RestoreVAR(dataclasses.replace(tiny_config, refiner=refiner)).eval()
    detailed = RestoreVAR(dataclasses.replace(tiny_config, refiner=dataclasses.replace(refiner, add_input_detail=True)))
    detailed.load_state_dict(plain.state_dict())
    detailed.eval()
    size = tiny_config.tokenizer.image_size
    image = torch.rand(2, 3, size, size) * 0.8 + 0.1  # clear of the [0, 1] clamp
    result = detailed.restore_batch(image, return_intermediates=True)
    torch.testing.assert_close(result.image_B3HW, image, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.degraded_latent_BChw, detailed.vqvae.encode_latent(image * 2 - 1))
    torch.testing.assert_close(result.latent_BChw, result.degraded_latent_BChw)
    assert (plain.restore_batch(image).image_B3HW - image).abs().mean() > 0.01
