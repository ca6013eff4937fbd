import torch
from conftest import assert_golden

from restorevar.models.presets import get_preset
from restorevar.models.restorevar.refiner import LatentRefiner


def test_golden_refiner(golden_model, golden_restorevar):
    _, expected = golden_restorevar
    refiner = golden_model.refiner
    seen = []
    hook = refiner.norm_out.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        refined = refiner(expected["ar_fhat_tokens"], expected["ar_last_block"])
    hook.remove()
    assert_golden(seen[0], expected["ar_refiner_transformer_out"], 1e-4)
    assert_golden(refined, expected["ar_refined_tokens"], 1e-4)
    latent = refiner.refine_latent(
        expected["ar_fhat_tokens"].transpose(1, 2).reshape(2, 32, 8, 8), expected["ar_last_block"]
    )
    assert_golden(latent, expected["ar_fhat_refined"], 1e-4)


def test_refiner_is_residual(tiny_config):
    refiner = LatentRefiner(tiny_config.refiner, tiny_config.tokenizer, tiny_config.transformer)
    torch.nn.init.zeros_(refiner.proj_out.weight)
    f_hat = torch.randn(2, 64, 32)
    assert torch.equal(refiner(f_hat, torch.randn(2, 130, 128)), f_hat)


def test_paper_parameter_count():
    config = get_preset("paper-512")
    with torch.device("meta"):
        refiner = LatentRefiner(config.refiner, config.tokenizer, config.transformer)
    assert sum(p.numel() for p in refiner.parameters()) == 22_967_616
