"""VarFormer (models/varformer/): the prior is the generated token pyramid, scale by scale; DAE, AFT and the
mix-up skip do what the paper says; an untrained model returns its input; folders round-trip through the
registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from restorevar.models.config import ConfigError
from restorevar.models.registry import load_model
from restorevar.models.varformer.aft import AdaptiveFeatureTransformation
from restorevar.models.varformer.backbone import MixupSkip
from restorevar.models.varformer.config import BackboneConfig, VarFormerConfig
from restorevar.models.varformer.dae import DegradationAwareEnhancement
from restorevar.models.varformer.model import VarFormer


@pytest.fixture(scope="module")
def tiny():
    from restorevar.models.presets import get_preset

    paper = get_preset("tiny")
    config = VarFormerConfig(
        tokenizer=paper.tokenizer,
        transformer=paper.transformer,
        backbone=BackboneConfig(width=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1), middle_blocks=1),
    )
    torch.manual_seed(0)
    return VarFormer(config.validate()).eval()


def test_the_prior_maps_are_the_scales_of_the_generated_latent(tiny):
    image = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        prior = tiny.prior(image)
        f_hat = tiny.vqvae.quantizer.indices_to_fhat(prior.indices, tiny.config.tokenizer.latent_size)
    assert prior.priors_BKChw.shape == (2, 6, 32, 8, 8)  # K = 6 scales of the tiny schedule
    torch.testing.assert_close(prior.priors_BKChw.sum(1), f_hat, atol=1e-5, rtol=0)
    torch.testing.assert_close(prior.latent_BChw, tiny.vqvae.encode_continuous(image))  # untrained adapter: identity


def test_with_a_zero_output_layer_the_model_returns_its_input(tiny):
    image = torch.rand(2, 3, 128, 128)
    ending = tiny.backbone.ending
    saved = {k: v.clone() for k, v in ending.state_dict().items()}
    with torch.no_grad():
        ending.weight.zero_()
        ending.bias.zero_()
    torch.testing.assert_close(tiny.restore_batch(image).image_B3HW, image, atol=1e-6, rtol=0)  # a residual
    ending.load_state_dict(saved)
    with pytest.raises(ValueError, match="128×128"):
        tiny.restore_batch(torch.rand(1, 3, 64, 64))


def test_aft_is_the_two_step_attention_through_the_bridge():
    torch.manual_seed(0)
    aft = AdaptiveFeatureTransformation(8, bridge_tokens=4)
    f, g = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(aft(f, g), f)  # the output projection starts at zero
    torch.nn.init.normal_(aft.proj.weight)
    fn, gn = aft.norm_f(f), aft.norm_g(g)
    m = torch.nn.functional.adaptive_avg_pool2d(aft.bridge(torch.cat([fn, gn], 1)), 2).flatten(2).transpose(1, 2)
    q = aft.q(fn).flatten(2).transpose(1, 2)
    k, v = (t.flatten(2).transpose(1, 2) for t in aft.kv(gn).chunk(2, 1))
    a_qm = torch.softmax(q @ m.transpose(1, 2) / 8**0.5, -1)  # (B, 36, 4)
    a_mk = torch.softmax(m @ k.transpose(1, 2) / 8**0.5, -1)  # (B, 4, 36)
    expected = f + aft.proj((a_qm @ (a_mk @ v)).transpose(1, 2).reshape(2, 8, 6, 6))
    torch.testing.assert_close(aft(f, g), expected, atol=1e-5, rtol=1e-5)


def test_dae_gates_between_the_feature_and_its_weighted_prior():
    torch.manual_seed(0)
    dae = DegradationAwareEnhancement(8, prior_channels=4, num_scales=3)
    feature, priors, latent = torch.randn(2, 8, 8, 8), torch.randn(2, 3, 4, 4, 4), torch.randn(2, 4, 4, 4)
    prior = torch.nn.functional.interpolate(dae.project(priors.mean(1)), size=(8, 8), mode="bilinear")
    with torch.no_grad():
        dae.gate.weight.zero_()
        dae.gate.bias.copy_(torch.tensor([30.0, -30.0]))  # all feature
        torch.testing.assert_close(dae(feature, priors, latent), feature)
        dae.gate.bias.copy_(torch.tensor([-30.0, 30.0]))  # all prior; untrained scale weights are equal
        torch.testing.assert_close(dae(feature, priors, latent), prior, atol=1e-5, rtol=0)
        dae.scale_weights.head.bias.copy_(torch.tensor([0.0, 0.0, 40.0]))  # this image picks the finest scale
        finest = torch.nn.functional.interpolate(dae.project(priors[:, 2]), size=(8, 8), mode="bilinear")
        torch.testing.assert_close(dae(feature, priors, latent), finest, atol=1e-5, rtol=0)
    fixed = DegradationAwareEnhancement(8, prior_channels=4, num_scales=3, mode="fixed")
    fixed.project.load_state_dict(dae.project.state_dict())
    torch.testing.assert_close(fixed(feature, priors, latent), feature + prior, atol=1e-5, rtol=0)


def test_the_mixup_skip_blends_and_the_plain_one_adds():
    x, skip = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(MixupSkip(4, adaptive=True)(x, skip), (x + skip) / 2)
    torch.testing.assert_close(MixupSkip(4, adaptive=False)(x, skip), x + skip)


def test_without_a_prior_no_var_runs(tiny, monkeypatch):
    config = dataclasses.replace(
        tiny.config, backbone=dataclasses.replace(tiny.config.backbone, prior="none", use_aft=False)
    )
    model = VarFormer(config).eval()
    monkeypatch.setattr(model, "prior", lambda image: pytest.fail("the VAR ran"))
    model.restore_batch(torch.rand(1, 3, 128, 128))


def test_save_and_load_through_the_registry(tiny, tmp_path):
    torch.nn.init.normal_(tiny.backbone.ending.weight, std=0.01)
    tiny.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert isinstance(loaded, VarFormer) and loaded.config == tiny.config
    image = torch.rand(1, 3, 128, 128)
    assert torch.equal(loaded.restore_batch(image).image_B3HW, tiny.restore_batch(image).image_B3HW)
    assert {p.name for p in tmp_path.iterdir()} == {
        "config.json",
        "tokenizer.safetensors",
        "transformer.safetensors",
        "adapter.safetensors",
        "backbone.safetensors",
    }


def test_bad_backbones_are_refused():
    with pytest.raises(ConfigError, match="needs a prior"):
        BackboneConfig(prior="none", use_aft=True).validate()
    with pytest.raises(ConfigError, match="one of none, fixed, dae"):
        BackboneConfig(prior="sum").validate()
    with pytest.raises(ConfigError, match="one decoder level per encoder level"):
        BackboneConfig(encoder_blocks=(1, 1), decoder_blocks=(1,)).validate()
