"""Any-size restoration and folder processing with the golden tiny model (native 128²)."""

import numpy as np
import pytest
import torch
from PIL import Image

from restorevar.inference.restorer import RestoreOptions, restore_array
from restorevar.models.restorevar.model import RestoreVAR


@pytest.fixture(scope="module")
def model(golden_model_dir):
    return RestoreVAR.from_pretrained(golden_model_dir)


def photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 0.4 + 0.5
    return np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 1), (40, 300), (150, 130)])
def test_output_has_the_input_size(model, shape):
    out = restore_array(model, photo(*shape), RestoreOptions(batch_size=4))
    assert out.shape == (*shape, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_small_image_is_padded_not_squashed(model):
    """A 100×128 image must equal the top-left crop of restoring its reflect-padded 128×128 version."""
    rgb = photo(100, 128)
    padded = torch.nn.functional.pad(torch.from_numpy(rgb).permute(2, 0, 1)[None], (0, 0, 0, 28), mode="reflect")
    expected = model.restore_batch(padded).image_B3HW[0, :, :100].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(restore_array(model, rgb, RestoreOptions()), expected, atol=1e-5)


def test_tile_batching_does_not_change_the_result(model):
    rgb = photo(128, 250)
    one = restore_array(model, rgb, RestoreOptions(batch_size=1))
    many = restore_array(model, rgb, RestoreOptions(batch_size=2))
    np.testing.assert_allclose(one, many, atol=2e-3)  # batched convs differ only in float rounding


def test_no_seams_at_tile_borders(model):
    """Gradient across tile borders is no larger than across the interior rows of the tiles."""
    from restorevar.inference.tiling import plan_tiles

    rgb = photo(128, 400, seed=3)
    out = restore_array(model, rgb, RestoreOptions(overlap=32))
    starts = sorted({x for _, x in plan_tiles(128, 400, 128, 32)})
    ends = [s + 128 for s in starts[:-1]]
    jump = np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))  # (W-1,) mean horizontal gradient per column
    border = np.mean([jump[c - 1] for c in starts[1:] + ends])
    interior = np.median(jump)
    assert border <= 1.5 * interior, f"border gradient {border:.4f} vs interior {interior:.4f}"


def test_resize_mode(model):
    out = restore_array(model, photo(90, 333), RestoreOptions(resize=True))
    assert out.shape == (90, 333, 3)


def test_python_api_restores_pil_and_arrays_alike(model):
    from restorevar.inference.pipeline import Restorer

    restorer = Restorer(model)
    rgba = np.concatenate([(photo(70, 90) * 255).astype(np.uint8), np.full((70, 90, 1), 200, np.uint8)], axis=2)
    out = restorer.restore(Image.fromarray(rgba, "RGBA"))
    assert out.size == (90, 70) and out.mode == "RGBA" and (np.asarray(out)[..., 3] == 200).all()
    grey = restorer.restore((photo(50, 40)[..., 0] * 255).astype(np.uint8))
    assert grey.size == (40, 50) and grey.mode == "L"
    same = restorer.restore(Image.fromarray(rgba[..., :3]))
    np.testing.assert_array_equal(np.asarray(same), np.asarray(out)[..., :3])
