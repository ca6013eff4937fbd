"""Tiling: exact reconstruction, blending weights, seams, padding, memory."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from restorevar.inference.tiling import plan_tiles, restore_padded, restore_resized, restore_tiled


def identity(tiles_N3TT):
    return tiles_N3TT


@pytest.mark.parametrize("height,width", [(1, 1), (5, 300), (256, 256), (257, 511), (700, 1000), (3, 700)])
@pytest.mark.parametrize("tile,overlap", [(64, 16), (256, 32), (96, 60)])
def test_identity_reproduces_input(height, width, tile, overlap):
    image_3HW = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height * width))
    out_3HW = restore_tiled(image_3HW, identity, tile=tile, overlap=overlap, batch_size=4)
    assert out_3HW.shape == image_3HW.shape
    assert (out_3HW - image_3HW).abs().max().item() < 1e-6


def test_constant_offset_is_kept_exactly():
    # Weights are normalised by their sum: fn = x + c must give exactly input + c.
    image_3HW = torch.rand(3, 130, 201, generator=torch.Generator().manual_seed(0))
    out_3HW = restore_tiled(image_3HW, lambda t: t + 0.25, tile=64, overlap=24)
    assert (out_3HW - (image_3HW + 0.25)).abs().max().item() < 1e-6


def _per_tile_scale(seed):
    generator = torch.Generator().manual_seed(seed)
    scales = []

    def fn(tiles_N3TT):
        scale_N = 0.5 + torch.rand(tiles_N3TT.shape[0], generator=generator)
        scales.extend(scale_N.tolist())
        return tiles_N3TT * scale_N[:, None, None, None]

    return fn, scales


def test_blend_is_a_convex_mix_of_tiles():
    # A constant image: every output pixel must lie between the smallest and largest tile value.
    image_3HW = torch.full((3, 150, 170), 0.5)
    fn, scales = _per_tile_scale(1)
    out_3HW = restore_tiled(image_3HW, fn, tile=64, overlap=16)
    assert out_3HW.min().item() >= 0.5 * min(scales) - 1e-6
    assert out_3HW.max().item() <= 0.5 * max(scales) + 1e-6
    # Corner pixel is covered only by the first tile, far corner only by the last.
    assert out_3HW[0, 0, 0].item() == pytest.approx(0.5 * scales[0], abs=1e-6)
    assert out_3HW[0, -1, -1].item() == pytest.approx(0.5 * scales[-1], abs=1e-6)


def _max_step(image_3HW):
    return max(image_3HW.diff(dim=1).abs().max().item(), image_3HW.diff(dim=2).abs().max().item())


def test_no_seams_between_tiles():
    # Each tile is scaled by a random brightness; a hard seam jumps by ~|delta| * 0.5 in
    # one pixel, the raised-cosine ramp over 16 px spreads it to <= |delta| * 0.5 * pi / 32.
    image_3HW = torch.full((3, 200, 260), 0.5)
    tile, overlap = 64, 16
    fn, scales = _per_tile_scale(2)
    smooth = restore_tiled(image_3HW, fn, tile=tile, overlap=overlap)
    max_delta = max(scales) - min(scales)
    bound = 1.5 * 0.5 * max_delta * np.pi / (2 * overlap)
    assert _max_step(smooth) <= bound
    # The same check on unblended tiles must fail, or it proves nothing.
    hard_fn, hard_scales = _per_tile_scale(2)
    hard = restore_tiled(image_3HW, hard_fn, tile=tile, overlap=0)
    assert _max_step(hard) > bound


def test_plan_tiles_known_answer_and_coverage():
    assert plan_tiles(100, 1000, 256, 32) == [(0, x) for x in (0, 186, 372, 558, 744)]
    for height, width, tile, overlap in [(1, 1, 16, 4), (700, 1000, 256, 32), (513, 257, 256, 100), (999, 17, 16, 3)]:
        origins = plan_tiles(height, width, tile, overlap)
        covered = np.zeros((max(height, tile), max(width, tile)), int)
        for y, x in origins:
            covered[y : y + tile, x : x + tile] += 1
        assert covered.min() >= 1 and covered.shape == (max(height, tile), max(width, tile))
        for axis, length in ((0, height), (1, width)):
            starts = sorted({origin[axis] for origin in origins})
            assert starts[0] == 0 and starts[-1] + tile == max(length, tile)  # ends exactly at the border
            strides = np.diff(starts)
            assert all(tile - s >= overlap for s in strides)
            assert len(strides) == 0 or strides.max() - strides.min() <= 1  # evenly spread


def test_plan_tiles_rejects_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        plan_tiles(100, 100, 64, 64)


def test_batch_size_and_progress():
    image_3HW = torch.rand(3, 300, 200, generator=torch.Generator().manual_seed(3))
    fn = lambda t: t.square() + t.mean(dim=(1, 2, 3), keepdim=True)  # noqa: E731 - per-tile, nonlinear
    calls = []
    one = restore_tiled(image_3HW, fn, tile=96, overlap=24, batch_size=1)
    many = restore_tiled(image_3HW, fn, tile=96, overlap=24, batch_size=4, progress=lambda d, t: calls.append((d, t)))
    total = len(plan_tiles(300, 200, 96, 24))
    assert torch.allclose(one, many, atol=1e-7, rtol=0)
    assert calls[-1] == (total, total) and [d for d, _ in calls] == list(range(4, total, 4)) + [total]


def test_small_image_is_reflect_padded_not_squashed():
    image_3HW = torch.arange(3 * 3 * 5, dtype=torch.float32).reshape(3, 3, 5) / 45
    seen = []
    out = restore_tiled(image_3HW, lambda t: seen.append(t.clone()) or t, tile=8, overlap=2)
    tile_38x8 = seen[0][0]
    rows = [0, 1, 2, 1, 0, 1, 2, 1]  # mirrored without repeating the edge, bouncing twice
    cols = [0, 1, 2, 3, 4, 3, 2, 1]
    assert torch.equal(tile_38x8, image_3HW[:, rows][:, :, cols])
    assert torch.equal(out, image_3HW)
    one_pixel = torch.tensor([0.1, 0.2, 0.3]).reshape(3, 1, 1)
    assert torch.equal(restore_padded(one_pixel, identity, size=16), one_pixel)


def test_restore_padded_runs_one_square_and_rejects_large():
    image_3HW = torch.rand(3, 20, 31)
    shapes = []
    out = restore_padded(image_3HW, lambda t: shapes.append(tuple(t.shape)) or 1 - t, size=32)
    assert shapes == [(1, 3, 32, 32)]
    assert (out - (1 - image_3HW)).abs().max().item() < 1e-6
    with pytest.raises(ValueError, match="larger than 32x32"):
        restore_padded(torch.rand(3, 33, 10), identity, size=32)


def test_restore_resized():
    shapes = []
    constant = torch.full((3, 300, 170), 0.5)
    out = restore_resized(constant, lambda t: shapes.append(tuple(t.shape)) or t * 0.5, size=64)
    assert shapes == [(1, 3, 64, 64)] and out.shape == (3, 300, 170)
    assert (out - 0.25).abs().max().item() < 1e-6
    # A smooth ramp survives down/up sampling closely.
    ramp = torch.linspace(0, 1, 400).repeat(3, 200, 1)
    assert (restore_resized(ramp, identity, size=128) - ramp).abs().max().item() < 0.01


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from restorevar.inference.tiling import restore_tiled
    torch.set_num_threads(2)
    image = torch.rand(3, 3000, 4000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = restore_tiled(image, lambda t: t * 0.5, tile=256, overlap=128, batch_size=8)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (out - image * 0.5).abs().max().item() < 1e-6
    print(before // 1024, after // 1024)
    """
)


def test_memory_stays_bounded_for_12_megapixels():
    # Input 3x3000x4000 float32 = 144 MB. Output (144 MB) + weight map (48 MB) + one batch
    # of 8 tiles (6 MB) is ~200 MB on top of it. With overlap 128 every pixel sits in ~4
    # tiles, so materialising all tiles would add ~580 MB and break the 400 MB bound.
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before_mb, after_mb = map(int, result.stdout.split())
    assert after_mb - before_mb < 400, (before_mb, after_mb)
    assert after_mb < 1500
