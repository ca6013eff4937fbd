import torch
from conftest import assert_golden

from restorevar.models.presets import get_preset
from restorevar.models.restorevar.vqvae import VQVAE


def test_golden_encoder_and_decoder(golden_model, golden_vqvae):
    _, inputs, expected = golden_vqvae
    vqvae, x = golden_model.vqvae, inputs["images"]
    seen = {}
    hook = vqvae.encoder.mid.block_2.register_forward_hook(lambda m, i, o: seen.setdefault("mid", o))
    with torch.no_grad():
        enc_out = vqvae.encode_continuous(x)
        hook.remove()
        assert_golden(enc_out, expected["enc_out"], 1e-4)
        assert_golden(seen["mid"], expected["enc_mid"], 1e-4)
        assert_golden(vqvae.encode_latent(x), expected["f"], 1e-4)
        assert_golden(vqvae.post_quant_conv(expected["fhat"]), expected["post_quant_fhat"], 1e-4)
        assert_golden(vqvae.decode_latent(expected["fhat"]), expected["rec_fhat_raw"], 1e-3)
        assert_golden(vqvae.decode_latent(expected["f"]), expected["rec_f_raw"], 1e-3)


def test_tokenize_matches_golden_indices(golden_model, golden_vqvae):
    _, inputs, expected = golden_vqvae
    indices = golden_model.vqvae.tokenize(inputs["images"])
    assert all(torch.equal(idx, expected[f"idx_s{k}"]) for k, idx in enumerate(indices))
    with torch.no_grad():
        decoded = golden_model.vqvae.decode_indices(indices)
    assert_golden(decoded, expected["rec_fhat_raw"], 1e-3)


def test_paper_parameter_count():
    with torch.device("meta"):
        vqvae = VQVAE(get_preset("paper-512").tokenizer)
    assert sum(p.numel() for p in vqvae.parameters()) == 108_948_355
    assert sum(p.numel() for p in vqvae.encoder.parameters()) == 44_107_872
    assert sum(p.numel() for p in vqvae.decoder.parameters()) == 64_653_923


def test_space_to_depth_stem_folds_patches_into_channels():
    import pytest

    from restorevar.models.config import ConfigError
    from restorevar.models.restorevar.config import TokenizerConfig

    config = TokenizerConfig(
        image_size=64,
        vocab_size=16,
        latent_channels=8,
        base_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        norm_groups=8,
        patch_size=4,
        patch_nums=(1, 2, 4, 8),
    )
    assert config.downsample_factor == 8 and config.latent_size == 8
    torch.manual_seed(0)
    vqvae = VQVAE(config)
    assert vqvae.encoder.conv_in.in_channels == 3 * 16 and vqvae.decoder.conv_out.out_channels == 3 * 16
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    f = vqvae.encode_latent(x)
    assert f.shape == (2, 8, 8, 8) and vqvae.decode_latent(f).shape == x.shape
    assert isinstance(vqvae.encoder.unfold, torch.nn.PixelUnshuffle) and isinstance(
        vqvae.decoder.fold, torch.nn.PixelShuffle
    )
    assert isinstance(VQVAE(get_preset("tiny").tokenizer).encoder.unfold, torch.nn.Identity)  # the paper's layout
    with pytest.raises(ConfigError, match="patch_size"):
        TokenizerConfig(patch_size=0).validate()


def linear_path_vqvae(latent_channels: int) -> VQVAE:
    from restorevar.models.restorevar.config import TokenizerConfig

    torch.manual_seed(0)
    return VQVAE(
        TokenizerConfig(
            image_size=32,
            vocab_size=16,
            latent_channels=latent_channels,
            base_channels=16,
            channel_mult=(1,),
            num_res_blocks=1,
            norm_groups=8,
            patch_size=2,
            patch_nums=(1, 2, 4, 8, 16),
            linear_path=True,
        )
    )


def test_linear_path_starts_at_the_pca_of_the_patches():
    import pytest

    from restorevar.models.config import ConfigError
    from restorevar.models.restorevar.config import TokenizerConfig
    from restorevar.models.restorevar.vqvae import fit_linear_path

    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(6, 3, 8, 8, generator=g), size=32, mode="bilinear") * 2 - 1
    errors = []
    with torch.no_grad():
        for channels in (2, 6, 12):  # 12 = 3·2², the full patch dimension
            vqvae = linear_path_vqvae(channels)
            rec_before = vqvae.decode_latent(vqvae.encode_latent(images))
            fit_linear_path(vqvae, images)
            latent = vqvae.encode_latent(images)
            rec = vqvae.decode_latent(latent)
            errors.append(float((rec - images).pow(2).mean()))
            assert errors[-1] < float((rec_before - images).pow(2).mean()) / 5
            assert abs(float(latent[:, 0].std(unbiased=False)) - 1) < 1e-3  # the first component has unit std
            torch.testing.assert_close(vqvae.decode_latent(vqvae.encode_latent(rec)), rec, atol=1e-4, rtol=0)
    assert errors[0] > errors[1] > 1e-4 > 1e-9 > errors[2]  # more components, less error; all of them: exact
    with pytest.raises(ValueError, match="linear_path"):
        fit_linear_path(VQVAE(get_preset("tiny").tokenizer), images)
    with pytest.raises(ConfigError, match="linear_path"):
        TokenizerConfig(channel_mult=(1, 2), linear_path=True).validate()


def test_fit_linear_decoder_recovers_the_best_linear_decoder():
    import pytest

    from restorevar.models.restorevar.vqvae import fit_linear_decoder, fit_linear_path

    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(6, 3, 8, 8, generator=g), size=32, mode="bilinear") * 2 - 1
    vqvae = linear_path_vqvae(6)
    with torch.no_grad():
        fit_linear_path(vqvae, images)  # a PCA encoder: its PCA decoder is the least-squares optimum
        pca_error = float((vqvae.decode_latent(vqvae.encode_latent(images)) - images).pow(2).mean())
        for p in vqvae.decoder.parameters():  # wreck the decoder, as a diverged run would
            p.add_(torch.randn(p.shape, generator=g))
        vqvae.post_quant_conv.weight.mul_(-3)
        wrecked = float((vqvae.decode_latent(vqvae.encode_latent(images)) - images).pow(2).mean())
        fit_linear_decoder(vqvae, images, chunk=4)
        refit = float((vqvae.decode_latent(vqvae.encode_latent(images)) - images).pow(2).mean())
    assert refit == pytest.approx(pca_error, rel=1e-3, abs=1e-7) and wrecked > 10 * refit
    assert not vqvae.decoder.conv_out.weight.any()
    with pytest.raises(ValueError, match="linear_path"):
        fit_linear_decoder(VQVAE(get_preset("tiny").tokenizer), images)
