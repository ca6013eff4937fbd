"""The blur expert: nearly a no-op until trained, a mixture of the refined and the deblurred latent weighted by
the detector's P(blur), which the mixer corrects per position, and the stages that train them with the rest of the
model frozen."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from test_trainer import MICRO, Pairs, micro_config, micro_folder, train, train_losses

from restorevar.models.config import ConfigError
from restorevar.models.extensions.blur_expert import BlurExpert
from restorevar.models.extensions.config import BlurExpertConfig, ExtendedRestoreVARConfig
from restorevar.models.extensions.model import ExtendedRestoreVAR
from restorevar.training.distributed import Dist
from restorevar.training.stages import build_stage

WITH_EXPERT = ExtendedRestoreVARConfig.extending(MICRO, blur_expert=BlurExpertConfig(width=16, blocks=1))
BLUR = BlurExpertConfig().classes.index("blur")


def expert_of(width: int = 16, blocks: int = 1, mixer_width: int = 0) -> BlurExpert:
    return BlurExpert(8, BlurExpertConfig(width=width, blocks=blocks, mixer_width=mixer_width))


def latents(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 8, 6, 6, generator=g), torch.randn(3, 8, 6, 6, generator=g)


def test_an_untrained_expert_nearly_keeps_the_refined_latent():
    expert, (refined, degraded) = expert_of(), latents()
    assert torch.equal(expert.deblurred(degraded), degraded)  # the CNN starts as the identity
    p = expert.p_blur(degraded)
    assert p.max() < 0.05  # blur's bias starts at −4
    torch.testing.assert_close(expert(refined, degraded), refined + p.view(-1, 1, 1, 1) * (degraded - refined))


def test_the_output_follows_the_detector_image_by_image():
    torch.manual_seed(0)
    expert, (refined, degraded) = expert_of(), latents()
    torch.nn.init.normal_(expert.deblur[-1].weight, std=0.1)  # a CNN that changes its input
    torch.nn.init.normal_(expert.detector_head.weight)
    assert not torch.allclose(expert.deblurred(degraded), degraded)
    with torch.no_grad():
        expert.detector_head.bias[BLUR] = 60.0  # sure it is blur: the deblurred latent
        torch.testing.assert_close(expert(refined, degraded), expert.deblurred(degraded))
        expert.detector_head.bias[BLUR] = -60.0  # sure it is not: the refiner's
        torch.testing.assert_close(expert(refined, degraded), refined)
        expert.detector_head.bias.zero_()
        p = expert.p_blur(degraded).view(-1, 1, 1, 1)
        assert 0.01 < p.min() < p.max() < 0.99  # mixed, and not the same for every image
        torch.testing.assert_close(expert(refined, degraded), (1 - p) * refined + p * expert.deblurred(degraded))
        torch.testing.assert_close(expert(refined, degraded)[1:2], expert(refined[1:2], degraded[1:2]))


def test_the_pipeline_decodes_the_deblurred_latent_where_the_expert_sees_blur():
    torch.manual_seed(0)
    model = ExtendedRestoreVAR(WITH_EXPERT).eval()
    expert = model.blur_expert
    torch.nn.init.normal_(expert.deblur[-1].weight, std=0.1)
    size = WITH_EXPERT.tokenizer.image_size
    image = torch.rand(2, 3, size, size)
    with torch.no_grad():
        expert.detector_head.bias[BLUR] = 60.0
    result = model.restore_batch(image, return_intermediates=True).intermediates
    torch.testing.assert_close(result.latent_BChw, expert.deblurred(result.degraded_latent_BChw))
    with torch.no_grad():
        expert.detector_head.bias[BLUR] = -60.0
    refined = model.refiner.refine_latent(
        result.f_hat_BChw,
        model.transformer.generate(
            model.vqvae.encode_continuous(image * 2 - 1).flatten(2).transpose(1, 2), model.vqvae.quantizer
        ).hidden_BLC,
    )
    torch.testing.assert_close(model.restore_batch(image, return_intermediates=True).intermediates.latent_BChw, refined)


class BlurOrHaze(Pairs):
    """8 random textures; even ones blurred (3×3 box, twice), odd ones hazy (lifted and flattened enough for the
    micro encoder to see)."""

    def __init__(self, n: int = 8, size: int = 32):
        super().__init__(n, size)
        self.clean = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
        self.kinds = ["blur" if i % 2 == 0 else "haze" for i in range(n)]

    def __getitem__(self, i: int) -> dict:
        c = self.clean[i]
        box = lambda x: F.avg_pool2d(F.pad(x[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]  # noqa: E731
        d = box(box(c)) if self.kinds[i] == "blur" else c * 0.3 + 0.6
        return {"degraded": d, "clean": c, "degradation": self.kinds[i], "name": f"img{i}"}


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    return micro_folder(tmp_path_factory.mktemp("start"))  # a finished model without an expert


def test_stage_learns_to_detect_and_to_deblur_and_changes_nothing_else(start, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "expert"
    train(
        micro_config(
            out,
            "blur_expert",
            start,
            steps=120,
            lr=1e-2,
            val_every=40,
            val_images=8,
            model=WITH_EXPERT.to_dict(),
            log_mse_floor=1e-6,
        ),
        dataset=BlurOrHaze(),
        val_dataset=BlurOrHaze(),
    )
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    detect = [x["detect"] for x in lines if "detect" in x]
    deblur = [x["deblur"] for x in lines if "deblur" in x]
    assert len(train_losses(out)) == 120
    assert sum(detect[-5:]) < 0.5 * sum(detect[:5]), detect
    assert sum(deblur[-5:]) < sum(deblur[:5]) - 0.5, deblur  # log MSE: more than 0.5 nepers lower
    val = [x for x in lines if "val_detect_accuracy" in x][-1]
    assert val["val_detect_accuracy"] == val["val_blur_accuracy"] == 1.0 and val["val_deblur_gain_db"] > 1.0, val

    model = ExtendedRestoreVAR.from_pretrained(out)
    assert model.config.extensions.blur_expert.width == 16  # the expert's size from `model:`, the rest from init
    assert (out / "blur_expert.safetensors").is_file() and not (start / "blur_expert.safetensors").exists()
    for name in ("tokenizer", "transformer", "refiner"):  # the rest, the refiner included, is frozen
        a, b = load_file(start / f"{name}.safetensors"), load_file(out / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_stage_needs_an_expert_size(start, tmp_path):
    with pytest.raises(ConfigError, match="extensions.blur_expert"):
        build_stage(micro_config(tmp_path / "e", "blur_expert", start).validate(), Dist())
    with pytest.raises(ConfigError, match="--decoder"):
        build_stage(micro_config(tmp_path / "e", "blur_expert", None, model=WITH_EXPERT.to_dict()).validate(), Dist())


def test_expert_width_must_suit_its_group_norm():
    with pytest.raises(ConfigError, match="multiple of 8"):
        BlurExpertConfig(width=12).validate()


def test_a_batch_without_blur_trains_the_detector_only(start, tmp_path):
    config = micro_config(tmp_path / "e", "blur_expert", start, model=WITH_EXPERT.to_dict()).validate()
    stage = build_stage(config, Dist())
    data = BlurOrHaze()
    hazy = {
        "degraded": torch.stack([data[i]["degraded"] for i in (1, 3)]),
        "clean": torch.stack([data[i]["clean"] for i in (1, 3)]),
        "degradation": ["haze", "haze"],
    }
    losses = stage.compute_loss(hazy, 0, stage.trainables())
    assert losses["deblur"].item() == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert stage.forward_module.detector_head.bias.grad is not None
    with torch.no_grad():  # as the trainer validates
        assert "deblur_gain_db" not in stage.validate(hazy).metrics


# ------------------------------------------------------------------------------------------------ the mixer

WITH_MIXER = ExtendedRestoreVARConfig.extending(MICRO, blur_expert=BlurExpertConfig(width=16, blocks=1, mixer_width=8))


def test_an_untrained_mixer_keeps_the_detectors_rule():
    torch.manual_seed(0)
    plain, mixed = expert_of(), expert_of(mixer_width=8)
    torch.nn.init.normal_(plain.deblur[-1].weight, std=0.1)
    torch.nn.init.normal_(plain.detector_head.weight)
    mixed.load_state_dict(plain.state_dict(), strict=False)
    refined, degraded = latents()
    torch.testing.assert_close(mixed(refined, degraded), plain(refined, degraded))


def test_the_mixer_moves_the_weights_of_the_refined_and_the_deblurred_latent():
    torch.manual_seed(0)
    expert, (refined, degraded) = expert_of(mixer_width=8), latents()
    torch.nn.init.normal_(expert.deblur[-1].weight, std=0.1)
    deblurred, p = expert.deblurred(degraded), expert.p_blur(degraded).view(-1, 1, 1, 1)
    with torch.no_grad():
        expert.mixer.global_net[-1].bias.copy_(torch.tensor([-0.5, 0.25]))  # Δa, Δb everywhere
        expected = degraded + (0.5 - p) * (refined - degraded) + (p + 0.25) * (deblurred - degraded)
        torch.testing.assert_close(expert(refined, degraded), expected)
        torch.nn.init.normal_(expert.mixer.local_net[-1].weight, std=0.1)  # and a part that differs by position
        delta = expert.mixer(
            torch.cat([degraded, refined - degraded, deblurred - degraded], 1), expert.kind_logits(degraded).softmax(1)
        )
    assert delta.shape == (3, 2, 6, 6) and delta[:, :, 0, 0].sub(delta[:, :, 3, 3]).abs().min() > 0


def test_the_detector_needs_a_blur_class():
    with pytest.raises(ConfigError, match="including 'blur'"):
        BlurExpertConfig(classes=("haze", "none")).validate()


@pytest.fixture(scope="module")
def start_with_expert(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("expert")
    ExtendedRestoreVAR(WITH_EXPERT).save_pretrained(path)  # random micro weights stand in for the blur_expert stage's
    return path


def test_mixer_stage_learns_to_distrust_a_bad_refiner_and_changes_nothing_else(start_with_expert, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "mixer"
    train(
        micro_config(
            out,
            "mixer",
            start_with_expert,
            steps=60,
            lr=1e-2,
            val_every=30,
            val_images=8,
            model=WITH_MIXER.to_dict(),
            log_mse_floor=1e-6,
        ),
        dataset=BlurOrHaze(),
        val_dataset=BlurOrHaze(),
    )
    losses = train_losses(out)
    assert len(losses) == 60 and sum(losses[-5:]) < sum(losses[:5]) - 5 * 0.5, losses  # > 0.5 nepers lower
    val = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "val_gain_db" in x][-1]
    # a random refiner's latent is far from the clean one; the mixer learns to fall back on the degraded latent
    assert val["val_gain_db"] > val["val_gain_db_detector_rule"] + 3, val

    model = ExtendedRestoreVAR.from_pretrained(out)
    assert model.config.extensions.blur_expert.mixer_width == 8
    before, after = (load_file(d / "blur_expert.safetensors") for d in (start_with_expert, out))
    assert all(torch.equal(before[k], after[k]) for k in before)  # the expert itself is frozen
    assert {k for k in after if k not in before} == {k for k in after if k.startswith("mixer.")} != set()
    for name in ("tokenizer", "transformer", "refiner"):
        a, b = load_file(start_with_expert / f"{name}.safetensors"), load_file(out / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_mixer_stage_needs_a_trained_expert_and_a_mixer_size(start, start_with_expert, tmp_path):
    with pytest.raises(ConfigError, match="trained blur expert"):
        build_stage(micro_config(tmp_path / "m", "mixer", start, model=WITH_MIXER.to_dict()).validate(), Dist())
    with pytest.raises(ConfigError, match="mixer_width > 0"):
        build_stage(
            micro_config(tmp_path / "m", "mixer", start_with_expert, model=WITH_EXPERT.to_dict()).validate(), Dist()
        )


@pytest.mark.parametrize("stage", ["refiner", "decoder", "blur_expert", "mixer"])
def test_a_stage_trains_exactly_what_its_forward_uses(stage, tmp_path):
    """DDP (without find_unused_parameters) needs every trainable parameter used on every step; a model with the
    expert and its mixer, as the `small` preset, must not lend the refiner or the blur_expert stage a part they skip.
    The same under torchrun: tests/test_ddp_torchrun.py."""
    torch.manual_seed(0)
    ExtendedRestoreVAR(WITH_MIXER).save_pretrained(tmp_path / "start")
    config = micro_config(
        tmp_path / stage,
        stage,
        tmp_path / "start",
        model=WITH_MIXER.to_dict(),
        latent_source="refiner",
        gan_weight=0.0,
        perceptual_weight=0.0,
    ).validate()
    built = build_stage(config, Dist())
    data = BlurOrHaze()
    batch = {
        "degraded": torch.stack([data[i]["degraded"] for i in range(4)]),
        "clean": torch.stack([data[i]["clean"] for i in range(4)]),
        "degradation": data.kinds[:4],
    }
    built.set_train_modes()
    built.compute_loss(batch, 0, built.trainables())["loss"].backward()
    for name, module in built.trainables().items():
        unused = [k for k, p in module.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, f"{stage}: {name} holds parameters its forward does not use: {unused[:5]}"
    assert built.model.blur_expert.mixer is not None  # the expert's parts were there to be left out
