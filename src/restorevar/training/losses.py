"""Training losses: L1, log MSE (ours), SSIM, perceptual (see `perceptual.py`), PatchGAN + hinge, and VAR's
multi-scale VQ loss.

The paper's released code trains only with CE (stage 1) and latent L1 (stage 2); it has no tokenizer or
decoder training code (spec §1.6). The tokenizer and decoder losses here follow VQGAN/VAR practice.

Shapes: B batch, C channels, H×W image, h×w latent, pn side of one scale. Images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.restorevar.quantizer import MultiScaleQuantizer
from restorevar.training.config import LOG_MSE_FLOOR


def l1_loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (input.float() - target.float()).abs().mean()


def log_mse(
    input_BX: torch.Tensor, target_BX: torch.Tensor, floor: float = LOG_MSE_FLOOR, weights_B: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over images (or weighted mean) of log(MSE + floor): minus the mean PSNR (in nepers), so each image
    counts by its relative error. The floor keeps a clean → clean pair, whose error starts at zero, from
    outweighing the rest."""
    per_image = ((input_BX.float() - target_BX.float()).square().flatten(1).mean(1) + floor).log()
    return per_image.mean() if weights_B is None else (weights_B * per_image).sum() / weights_B.sum()


# ------------------------------------------------------------------------------------------------ SSIM


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian (size,), as in Wang et al. 2004."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    w = torch.exp(-x.square() / (2 * sigma**2))
    return w / w.sum()


def ssim(
    input_B3HW: torch.Tensor,
    target_B3HW: torch.Tensor,
    *,
    data_range: float = 2.0,
    window: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Differentiable mean SSIM with a Gaussian window (valid region, per channel). Default range: [-1, 1].

    Always fp32, also under autocast: var = E[x²] − E[x]² in bf16 is mostly rounding error, and the
    bf16 gradients made the GPU decoder stage diverge."""
    with torch.autocast(input_B3HW.device.type, enabled=False):
        return _ssim_fp32(input_B3HW.float(), target_B3HW.float(), data_range, window, sigma)


def _ssim_fp32(x: torch.Tensor, y: torch.Tensor, data_range: float, window: int, sigma: float) -> torch.Tensor:
    C = x.shape[1]
    g = gaussian_window(window, sigma).to(x.device)
    kernel_h = g.view(1, 1, 1, -1).expand(C, 1, 1, window)
    kernel_v = g.view(1, 1, -1, 1).expand(C, 1, window, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, no padding
        return F.conv2d(F.conv2d(t, kernel_h, groups=C), kernel_v, groups=C)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.mean()


def ssim_loss(input_B3HW: torch.Tensor, target_B3HW: torch.Tensor) -> torch.Tensor:
    return 1 - ssim(input_B3HW, target_B3HW)


# ------------------------------------------------------------------------------------------------ GAN


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): 4×4 convs, stride 2 `num_layers` times, one logit per ~70 px patch.

    GroupNorm instead of BatchNorm, so the logits of one image do not depend on the rest of the batch
    (and DDP needs no buffer broadcast).
    """

    def __init__(self, *, channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2**i, 8)
            layers += [
                nn.Conv2d(ch, out, 4, 2 if i < num_layers else 1, 1, bias=False),
                nn.GroupNorm(min(32, out // 4), out),
                nn.LeakyReLU(0.2),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)  # pix2pix init

    def forward(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        """→ patch logits (B, 1, h', w')."""
        return self.net(image_B3HW)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def adaptive_gan_weight(
    rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, *, max_weight: float = 1e4
) -> torch.Tensor:
    """VQGAN's balance: ‖∇_last rec‖ / ‖∇_last gan‖ at the decoder's last layer (detached)."""
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (g_grad,) = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, max_weight).detach()


# ------------------------------------------------------------------------------------------------ VQ


@dataclass
class Quantized:
    f_hat_BChw: torch.Tensor  # straight-through: values of f̂, gradient of f
    vq_loss: torch.Tensor
    indices: list[torch.Tensor]  # per scale (B, pn²)


def multiscale_vq(quantizer: MultiScaleQuantizer, f_BChw: torch.Tensor, *, beta: float = 0.25) -> Quantized:
    """VAR's training-time quantization (Alg. 1) with its loss and a straight-through estimator.

    vq_loss = mean over scales k of  β·‖sg(f̂_k) − f‖² + ‖f̂_k − sg(f)‖²,  f̂_k = sum of scales ≤ k.
    The second term trains the codebook and the φ convs; the first (commitment) trains the encoder.
    """
    side = f_BChw.shape[-1]
    f = f_BChw.float()
    f_rest = f.detach().clone()
    f_hat = torch.zeros_like(f)
    loss = f.new_zeros(())
    indices = []
    for k, pn in enumerate(quantizer.patch_nums):
        z = F.interpolate(f_rest, size=(pn, pn), mode="area") if pn != side else f_rest
        idx_Bl = quantizer.lookup(z.detach())
        h = quantizer.upsample_and_phi(quantizer.embed(idx_Bl, side), k, side)
        f_hat = f_hat + h
        f_rest = f_rest - h.detach()
        loss = loss + beta * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f.detach())
        indices.append(idx_Bl)
    f_hat_st = f_hat.detach() - f.detach() + f  # forward: f̂, backward: identity into the encoder
    return Quantized(f_hat_st, loss / len(quantizer.patch_nums), indices)


def codebook_usage(indices: list[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """Per-scale code counts (K, V) of one batch, for usage logging and dead-code resets."""
    return torch.stack([torch.bincount(idx.flatten(), minlength=vocab_size) for idx in indices])
