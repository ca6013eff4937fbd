import pytest
import torch
from conftest import assert_golden

from restorevar.models.config import ConfigError
from restorevar.models.restorevar.quantizer import MultiScaleQuantizer, phi_index_table


def test_phi_table_matches_reference():
    assert phi_index_table(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]  # spec §1.3 (float64 tie-break upward)
    assert phi_index_table(6, 4) == [0, 0, 1, 2, 3, 3]  # golden meta.json phi_index_per_scale


def test_golden_indices_and_fhat(golden_model, golden_vqvae):
    _, inputs, expected = golden_vqvae
    quantizer = golden_model.vqvae.quantizer
    indices, f_hats = quantizer.encode(expected["f"])
    for k, idx in enumerate(indices):
        assert torch.equal(idx, expected[f"idx_s{k}"]), f"scale {k} indices differ"
    for k, f_hat in enumerate(f_hats):
        assert_golden(f_hat, expected[f"fhat_s{k}"], 1e-4)
    assert_golden(quantizer.indices_to_fhat(indices, 8), expected["fhat"], 1e-4)
    assert_golden(quantizer.teacher_forcing_input(indices, 8), expected["var_input"], 1e-4)


def test_code_usage_matches_reference(golden_model, golden_vqvae):
    _, _, expected = golden_vqvae
    indices, _ = golden_model.vqvae.quantizer.encode(expected["f"])
    assert [int(idx.unique().numel()) for idx in indices] == [2, 6, 8, 18, 25, 45]


def test_schedule_must_end_at_latent_side(tiny_config):
    quantizer = MultiScaleQuantizer(tiny_config.tokenizer)
    with pytest.raises(ConfigError, match="last entry must equal the latent side"):
        quantizer.encode(torch.zeros(1, 32, 16, 16))


def test_any_schedule_works(tiny_config):
    from dataclasses import replace

    config = replace(tiny_config.tokenizer, patch_nums=(1, 3, 5, 8))
    quantizer = MultiScaleQuantizer(config)
    f = torch.randn(2, 32, 8, 8)
    indices, f_hats = quantizer.encode(f)
    assert [i.shape[1] for i in indices] == [1, 9, 25, 64]
    torch.testing.assert_close(quantizer.indices_to_fhat(indices, 8), f_hats[-1], rtol=0, atol=1e-5)
    assert quantizer.teacher_forcing_input(indices, 8).shape == (2, 9 + 25 + 64, 32)
