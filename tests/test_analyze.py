"""Scale-space analysis (Fig. 2 / Fig. 9) with the golden tiny model (native 128², 6 scales)."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from restorevar.cli.main import main
from restorevar.evaluation.analyze import AnalysisError, analysis_grid, analyze_pair, swap_scales, token_agreement
from restorevar.evaluation.report import CAPTION_HEIGHT, GAP, LABEL_WIDTH, grid_size


def pair(size=128):
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clean = torch.stack([torch.sin(6 * x), torch.cos(5 * y), torch.sin(4 * (x + y))]) * 0.4 + 0.5
    haze = clean * 0.5 + 0.45  # low contrast, brighter: a global, coarse-scale degradation
    return haze.clamp(0, 1), clean


@pytest.fixture(scope="module")
def analysis(golden_model):
    degraded, clean = pair()
    return analyze_pair(golden_model, degraded, clean, coarse_scales=2, with_restored=True)


def test_agreement_of_an_image_with_itself_is_one(golden_model, analysis):
    _, clean = pair()
    alone = golden_model.vqvae.tokenize(clean[None] * 2 - 1)  # batch of 1 vs the analysis' batch of 2
    assert token_agreement(alone, analysis.tokens["clean"]) == [1.0] * 6


def test_agreement_counts_identical_tokens():
    a = [torch.tensor([[1]]), torch.tensor([[1, 2, 3, 4]])]
    b = [torch.tensor([[2]]), torch.tensor([[1, 2, 0, 4]])]
    assert token_agreement(a, b) == [0.0, 0.75]


def test_swap_all_scales_gives_the_other_tokens(analysis):
    degraded, clean = analysis.tokens["degraded"], analysis.tokens["clean"]
    swapped = swap_scales(degraded, clean, range(6))
    assert all(torch.equal(s, c) for s, c in zip(swapped, clean))
    coarse = swap_scales(degraded, clean, [0, 1])
    assert all(torch.equal(s, c) for s, c in zip(coarse[:2], clean[:2]))
    assert all(torch.equal(s, d) for s, d in zip(coarse[2:], degraded[2:]))
    with pytest.raises(AnalysisError, match="must lie in 0..5"):
        swap_scales(degraded, clean, [6])


def test_swapped_decodes_equal_decode_indices(golden_model, analysis):
    degraded, clean = analysis.tokens["degraded"], analysis.tokens["clean"]
    with torch.no_grad():
        coarse = golden_model.vqvae.decode_indices(swap_scales(degraded, clean, [0, 1]))
        fine = golden_model.vqvae.decode_indices(swap_scales(clean, degraded, range(2, 6)))
    # the analysis decodes 6 variants in one batch: float noise up to ~2e-5
    to_image = lambda x: (x[0].clamp(-1, 1) + 1) / 2  # noqa: E731
    torch.testing.assert_close(analysis.images["degraded + clean scales 1..2"], to_image(coarse), atol=1e-4, rtol=0)
    torch.testing.assert_close(analysis.images["clean + degraded scales 3..6"], to_image(fine), atol=1e-4, rtol=0)
    assert not torch.allclose(analysis.images["recon(degraded)"], analysis.images["recon(clean)"])


def test_restored_tokens_are_compared_with_both(analysis):
    restored = analysis.tokens["restored"]
    assert [t.shape[1] for t in restored] == [1, 4, 9, 16, 36, 64]
    assert analysis.agreement["restored vs clean"] == token_agreement(restored, analysis.tokens["clean"])
    assert analysis.agreement["restored vs degraded"] == token_agreement(restored, analysis.tokens["degraded"])
    assert analysis.images["restored"].shape == (3, 128, 128)


def test_grid_size_and_labels(analysis):
    grid = analysis_grid(analysis, cell=128)
    expected_size = (LABEL_WIDTH + 3 * (128 + GAP) + GAP, GAP + 4 * (CAPTION_HEIGHT + 128 + GAP))
    assert grid.size == grid_size(4, 3, 128) == expected_size
    pixels = np.asarray(grid)
    assert (pixels[:, :LABEL_WIDTH] < 128).any()  # row labels drawn
    assert (pixels[GAP : GAP + CAPTION_HEIGHT, LABEL_WIDTH:] < 128).any()  # captions drawn
    first_cell = pixels[GAP + CAPTION_HEIGHT : GAP + CAPTION_HEIGHT + 128, LABEL_WIDTH : LABEL_WIDTH + 128]
    expected = np.round(analysis.images["degraded"].permute(1, 2, 0).numpy() * 255)
    np.testing.assert_allclose(first_cell, expected, atol=1)
    assert "restored" in analysis.table() and analysis.table().count("*") == 3  # 2 coarse rows + footnote


def test_bad_scale_count_is_refused(golden_model):
    degraded, clean = pair(128)
    with pytest.raises(AnalysisError, match="between 1 and 5"):
        analyze_pair(golden_model, degraded, clean, coarse_scales=6)


def test_cli_writes_grid_and_json(golden_model, tmp_path):
    golden_model.save_pretrained(tmp_path / "model")
    degraded, clean = pair(150)
    for name, image in (("hazy.png", degraded), ("clean.png", clean)):
        Image.fromarray(np.round(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(tmp_path / name)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            [
                "analyze",
                str(tmp_path / "hazy.png"),
                str(tmp_path / "clean.png"),
                "-o",
                str(tmp_path / "out" / "grid.png"),
                "--model",
                str(tmp_path / "model"),
            ]
        )
    assert code == 0
    info = json.loads((tmp_path / "out" / "grid.json").read_text(encoding="utf-8"))
    assert info["coarse_scales"] == 3 and info["patch_nums"] == [1, 2, 3, 4, 6, 8]
    assert "squashed to 128×128" in info["resized"] and "squashed to 128×128" in stdout.getvalue()
    assert len(info["agreement"]["degraded vs clean"]) == 6
    first = f"{info['agreement']['degraded vs clean'][0]:.3f}"
    assert first in stdout.getvalue().splitlines()[2]
    assert Image.open(tmp_path / "out" / "grid.png").size == grid_size(4, 2, 128)
