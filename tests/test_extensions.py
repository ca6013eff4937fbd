"""Our add-ons to the paper's model (models/extensions/): each is off unless its config section asks for it, starts
as a no-op where that makes sense, and old model folders (add-on flags in the refiner section, the blur expert
inside refiner.safetensors) load as today's."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from restorevar.models.extensions.config import BlurExpertConfig, ExtendedRestoreVARConfig
from restorevar.models.extensions.degraded_refiner import DegradedLatentRefiner
from restorevar.models.extensions.model import ExtendedRestoreVAR
from restorevar.models.registry import load_config, load_model
from restorevar.models.restorevar.model import RestoreVAR


def test_with_no_add_on_the_extended_model_is_the_papers(tiny_config):
    torch.manual_seed(0)
    paper = RestoreVAR(tiny_config).eval()
    extended = ExtendedRestoreVAR(ExtendedRestoreVARConfig.extending(tiny_config)).eval()
    extended.load_state_dict(paper.state_dict())
    image = torch.rand(2, 3, 128, 128)
    assert torch.equal(extended.restore_batch(image).image_B3HW, paper.restore_batch(image).image_B3HW)
    assert set(extended.weight_files()) == set(paper.weight_files())


def test_the_degraded_refiner_reads_and_refines_the_degraded_latent(tiny_config):
    torch.manual_seed(0)
    refiner = DegradedLatentRefiner(tiny_config.refiner, tiny_config.tokenizer, tiny_config.transformer)
    B, Cv, N = 2, tiny_config.tokenizer.latent_channels, tiny_config.tokenizer.latent_size**2
    f_hat, degraded = torch.randn(B, N, Cv), torch.randn(B, N, Cv)
    hidden = torch.randn(B, tiny_config.tokenizer.num_tokens, tiny_config.transformer.width)
    torch.testing.assert_close(refiner(f_hat, hidden, degraded), degraded)  # starts as the identity
    torch.nn.init.normal_(refiner.proj_out.weight)
    other = refiner(f_hat, hidden, degraded + 1) - 1
    assert not torch.allclose(other, refiner(f_hat, hidden, degraded))  # it is also an input
    with pytest.raises(ValueError, match="degraded"):
        refiner(f_hat, hidden)


def test_input_detail_keeps_what_the_tokenizer_loses(tiny_config):
    # a fresh degraded refiner returns the degraded latent, so with the input's detail added back the output is the
    # input itself; without it, the output is the tokenizer's (lossy) reconstruction
    torch.manual_seed(0)
    plain = ExtendedRestoreVAR(ExtendedRestoreVARConfig.extending(tiny_config, refine_degraded=True)).eval()
    detailed = ExtendedRestoreVAR(
        ExtendedRestoreVARConfig.extending(tiny_config, refine_degraded=True, input_detail=True)
    )
    detailed.load_state_dict(plain.state_dict())
    detailed.eval()
    image = torch.rand(2, 3, 128, 128) * 0.8 + 0.1  # clear of the [0, 1] clamp
    result = detailed.restore_batch(image, return_intermediates=True)
    torch.testing.assert_close(result.image_B3HW, image, atol=1e-5, rtol=0)
    steps = result.intermediates
    torch.testing.assert_close(steps.degraded_latent_BChw, detailed.vqvae.encode_latent(image * 2 - 1))
    torch.testing.assert_close(steps.latent_BChw, steps.degraded_latent_BChw)
    assert (plain.restore_batch(image).image_B3HW - image).abs().mean() > 0.01


def test_config_round_trip_and_a_checkpoints_own_class_list(tiny_config, tmp_path):
    config = ExtendedRestoreVARConfig.extending(
        tiny_config, refine_degraded=True, blur_expert=BlurExpertConfig(width=16, blocks=1, classes=("blur", "none"))
    )
    ExtendedRestoreVAR(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "restorevar-extended" and saved["extensions"]["blur_expert"]["classes"] == [
        "blur",
        "none",
    ]
    assert load_config(tmp_path) == config
    model = load_model(tmp_path)
    assert isinstance(model, ExtendedRestoreVAR) and model.blur_expert.detector_head.out_features == 2
    assert {p.name for p in tmp_path.iterdir()} >= {"blur_expert.safetensors", "refiner.safetensors"}


def test_an_old_model_folder_is_migrated_on_read(tiny_config, tmp_path):
    """The layout before model families: no model_type, add-on flags in `refiner`, the expert in the refiner file."""
    torch.manual_seed(0)
    config = ExtendedRestoreVARConfig.extending(
        tiny_config,
        refine_degraded=True,
        input_detail=True,
        blur_expert=BlurExpertConfig(width=16, blocks=1, mixer_width=8),
    )
    model = ExtendedRestoreVAR(config).eval()
    torch.nn.init.normal_(model.blur_expert.deblur[-1].weight, std=0.1)  # so that the expert changes the output
    new, old = tmp_path / "new", tmp_path / "old"
    model.save_pretrained(new)
    old.mkdir()
    data = json.loads((new / "config.json").read_text())
    del data["model_type"], data["extensions"]
    data["refiner"] |= {
        "refine_degraded": True,
        "add_input_detail": True,
        "blur_expert_width": 16,
        "blur_expert_blocks": 1,
        "blur_expert_mixer_width": 8,
    }
    (old / "config.json").write_text(json.dumps(data))
    refiner = load_file(new / "refiner.safetensors")
    refiner |= {f"blur_expert.{k}": v for k, v in load_file(new / "blur_expert.safetensors").items()}
    save_file(refiner, old / "refiner.safetensors")
    for name in ("tokenizer", "transformer"):
        (old / f"{name}.safetensors").write_bytes((new / f"{name}.safetensors").read_bytes())

    assert load_config(old) == config
    image = torch.rand(1, 3, 128, 128)
    expected = model.restore_batch(image).image_B3HW
    assert torch.equal(load_model(old).restore_batch(image).image_B3HW, expected)


def test_an_old_folder_without_add_ons_is_the_papers_model(tiny_config, tmp_path):
    RestoreVAR(tiny_config).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    del data["model_type"]
    data["refiner"] |= {"refine_degraded": False, "add_input_detail": False, "blur_expert_width": 0}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert type(load_model(tmp_path)) is RestoreVAR
