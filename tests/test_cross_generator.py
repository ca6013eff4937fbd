"""The cross generator (validation-only degradations): deterministic, in range, and each kind degrades the way
its name says; and it is written apart from the training generator (no imports of it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from restorevar.data.cross_generator import KINDS, cross_degrade

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "restorevar" / "data" / "cross_generator"
SEEDS = (0, 1, 2, 3)


def textured(size: int = 96) -> torch.Tensor:
    """A natural-ish test image: smooth colour gradients plus fine texture, mid-range values."""
    g = torch.Generator().manual_seed(5)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.25 + 0.5 * xs, 0.3 + 0.4 * ys, 0.55 - 0.3 * xs * ys])
    texture = F.avg_pool2d(torch.rand(1, 3, size, size, generator=g), 3, stride=1, padding=1)[0] - 0.5
    return (base + 0.5 * texture).clamp(0, 1)


def smooth(size: int = 96) -> torch.Tensor:
    """Only slow gradients: no thin structures of its own."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([0.2 + 0.3 * xs, 0.25 + 0.2 * ys, 0.3 + 0.1 * xs])


def dark_channel_mean(image_3HW: torch.Tensor) -> float:
    low = image_3HW.min(0).values[None, None]
    return (-F.max_pool2d(-low, 7, stride=1, padding=3)).mean().item()


def high_frequency_energy(image_3HW: torch.Tensor) -> float:
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)
    return F.conv2d(image_3HW[None], laplacian, groups=3).pow(2).mean().item()


def bright_thin_structures(image_3HW: torch.Tensor) -> float:
    """99th percentile of the positive part of (grey − its 9×9 local mean): bright, thin things stand out."""
    grey = image_3HW.mean(0)[None, None]
    local = F.avg_pool2d(F.pad(grey, (4, 4, 4, 4), mode="replicate"), 9, stride=1)
    return torch.quantile((grey - local).clamp(min=0).flatten(), 0.99).item()


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_per_seed_and_shape_and_range(kind):
    clean = textured(80)[:, :, :72]  # not square
    first, again, other = cross_degrade(clean, kind, 11), cross_degrade(clean, kind, 11), cross_degrade(clean, kind, 12)
    assert first.shape == clean.shape and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert 0.0 <= first.min().item() and first.max().item() <= 1.0
    assert not torch.allclose(first, clean, atol=1e-3)


def test_rejects_unknown_kinds_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown degradation"):
        cross_degrade(textured(32), "fog", 0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        cross_degrade(textured(32)[None], "haze", 0)


@pytest.mark.parametrize("seed", SEEDS)
def test_haze_lowers_contrast_and_brightens_the_dark_channel(seed):
    clean = textured()
    hazy = cross_degrade(clean, "haze", seed)
    assert hazy.std().item() < clean.std().item()
    assert dark_channel_mean(hazy) > dark_channel_mean(clean) + 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_low_light_is_darker(seed):
    clean = textured()
    dark = cross_degrade(clean, "low_light", seed)
    assert dark.mean().item() < 0.75 * clean.mean().item()


@pytest.mark.parametrize("seed", SEEDS)
def test_blur_removes_high_frequencies(seed):
    clean = textured()
    blurred = cross_degrade(clean, "blur", seed)
    assert high_frequency_energy(blurred) < 0.6 * high_frequency_energy(clean)
    assert abs(blurred.mean().item() - clean.mean().item()) < 0.03  # blur moves light, it does not add it


@pytest.mark.parametrize("kind", ["rain", "snow"])
@pytest.mark.parametrize("seed", SEEDS)
def test_rain_and_snow_add_bright_thin_structures(kind, seed):
    clean = smooth()
    weather = cross_degrade(clean, kind, seed)
    assert bright_thin_structures(clean) < 0.01
    assert bright_thin_structures(weather) > 0.04
    assert weather.mean().item() > clean.mean().item()


def test_written_apart_from_the_training_generator():
    """No module of the cross generator imports `restorevar.data.degradations` (or anything else of ours but
    itself): the two must not share formulas."""
    files = sorted(PACKAGE.glob("*.py"))
    assert files, f"no modules found under {PACKAGE}"
    ours = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                ours.add(node.module)
                ours.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                ours.update(alias.name for alias in node.names)
    assert not {m for m in ours if "degradations" in m}, sorted(ours)
    foreign = {m for m in ours if m.startswith("restorevar") and not m.startswith("restorevar.data.cross_generator")}
    assert not foreign, f"the cross generator imports other restorevar modules: {sorted(foreign)}"
