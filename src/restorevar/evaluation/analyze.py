"""Scale-space analysis (paper Fig. 2 and Fig. 9): where in the token pyramid does degradation live?

The paper's insight: a degraded image and its clean version share most fine-scale tokens, while
the degradation sits in the coarse scales. So swapping the first K scales of a degraded image's
tokens for the clean image's should largely restore it, and the model only has to fix the
coarse scales. This module measures that on any image pair, at the model's native side S.

Tokens: a list over scales k = 1..N of ``(B, pn_k²)`` int64 index tensors, coarse to fine.
Images: ``(3, S, S)`` float tensors in [0, 1].
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from restorevar.evaluation.evaluate import paper_resize
from restorevar.evaluation.report import labelled_grid
from restorevar.images.load import load_image, to_tensor
from restorevar.models.restorevar.vqvae import to_unit


class AnalysisError(ValueError):
    """The analysis cannot run as asked (bad scale count, mismatched tokens); one line."""


def token_agreement(indices_a: list[torch.Tensor], indices_b: list[torch.Tensor]) -> list[float]:
    """Fraction of identical tokens at each scale (over positions and batch), in [0, 1]."""
    if len(indices_a) != len(indices_b):
        raise AnalysisError(f"token lists have {len(indices_a)} and {len(indices_b)} scales; they must match")
    return [float((a == b).float().mean()) for a, b in zip(indices_a, indices_b)]


def swap_scales(indices_a: list[torch.Tensor], indices_b: list[torch.Tensor], scales) -> list[torch.Tensor]:
    """``indices_a`` with the scales listed in ``scales`` (0-based) taken from ``indices_b``."""
    chosen = set(scales)
    if not chosen <= set(range(len(indices_a))) or len(indices_a) != len(indices_b):
        raise AnalysisError(f"scales {sorted(chosen)} must lie in 0..{len(indices_a) - 1} of equal-length token lists")
    return [b if k in chosen else a for k, (a, b) in enumerate(zip(indices_a, indices_b))]


def load_resized(path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """An image file squashed to size×size with LANCZOS (the paper's transform) -> (3, S, S), (W, H)."""
    rgb = load_image(path).rgb
    return to_tensor(paper_resize(rgb, size)), (rgb.shape[1], rgb.shape[0])


@dataclasses.dataclass
class ScaleAnalysis:
    """Tokens, decoded swaps and per-scale agreements of one degraded/clean pair."""

    patch_nums: tuple[int, ...]
    coarse_scales: int  # K: scales 1..K are 'coarse'
    images: dict[str, torch.Tensor]  # label -> (3, S, S) in [0, 1]
    tokens: dict[str, list[torch.Tensor]]  # degraded / clean / restored -> per-scale (1, pn²)
    agreement: dict[str, list[float]]  # e.g. "degraded vs clean" -> per scale

    def table(self) -> str:
        """Per-scale agreement as text: scale, side, tokens, one column per comparison."""
        names = list(self.agreement)
        width = max(18, *(len(n) + 2 for n in names))
        lines = [f"{'scale':>5} {'side':>5} {'tokens':>7}" + "".join(f"{n:>{width}}" for n in names)]
        for k, side in enumerate(self.patch_nums):
            mark = "*" if k < self.coarse_scales else " "
            row = f"{k + 1:>4}{mark} {f'{side}×{side}':>5} {side * side:>7}"
            lines.append(row + "".join(f"{self.agreement[n][k]:>{width}.3f}" for n in names))
        lines.append(
            f"* coarse scales 1..{self.coarse_scales} (swapped in the grid); agreement = fraction of identical tokens"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "patch_nums": list(self.patch_nums),
            "coarse_scales": self.coarse_scales,
            "agreement": self.agreement,
            "images": list(self.images),
        }


def _to_image(decoded_B3HW: torch.Tensor) -> torch.Tensor:
    return to_unit(decoded_B3HW).cpu()


@torch.no_grad()
def analyze_pair(
    model,
    degraded_3SS: torch.Tensor,
    clean_3SS: torch.Tensor,
    *,
    coarse_scales: int | None = None,
    with_restored: bool = False,
) -> ScaleAnalysis:
    """Tokenise both images, swap their coarse and fine scales, decode everything (one batch).

    coarse_scales: K, default half the scales (rounded down). with_restored: also run the model on
    the degraded image and compare its generated tokens with both (Fig. 9).
    """
    vqvae = model.vqvae
    patch_nums = tuple(vqvae.quantizer.patch_nums)
    num_scales = len(patch_nums)
    k = num_scales // 2 if coarse_scales is None else coarse_scales
    if not 0 < k < num_scales:
        raise AnalysisError(f"--swap-scales must be between 1 and {num_scales - 1} for {num_scales} scales, got {k}")
    pair_23SS = torch.stack([degraded_3SS, clean_3SS]).to(model.device, torch.float32)
    both = vqvae.tokenize(pair_23SS * 2 - 1)
    degraded, clean = [t[:1] for t in both], [t[1:] for t in both]
    coarse, fine = range(k), range(k, num_scales)
    variants = {
        "recon(degraded)": degraded,
        "recon(clean)": clean,
        f"degraded + clean scales 1..{k}": swap_scales(degraded, clean, coarse),
        f"clean + degraded scales 1..{k}": swap_scales(clean, degraded, coarse),
        f"degraded + clean scales {k + 1}..{num_scales}": swap_scales(degraded, clean, fine),
        f"clean + degraded scales {k + 1}..{num_scales}": swap_scales(clean, degraded, fine),
    }
    decoded = _to_image(vqvae.decode_indices([torch.cat(scale) for scale in zip(*variants.values())]))
    images = {"degraded": degraded_3SS.cpu(), "clean": clean_3SS.cpu()}
    images.update(zip(variants, decoded))
    tokens = {"degraded": degraded, "clean": clean}
    agreement = {"degraded vs clean": token_agreement(degraded, clean)}
    if with_restored:
        restoration = model.restore_batch(pair_23SS[:1], return_intermediates=True)
        images["restored"] = restoration.image_B3HW[0].cpu()
        tokens["restored"] = [t.to(degraded[0].device) for t in restoration.intermediates.indices]
        agreement["restored vs clean"] = token_agreement(tokens["restored"], clean)
        agreement["restored vs degraded"] = token_agreement(tokens["restored"], degraded)
    return ScaleAnalysis(patch_nums, k, images, tokens, agreement)


def _pil(image_3HW: torch.Tensor) -> Image.Image:
    return Image.fromarray(np.round(image_3HW.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


def analysis_grid(analysis: ScaleAnalysis, *, cell: int | None = None) -> Image.Image:
    """Rows: inputs, reconstructions, coarse swaps, fine swaps; each cell captioned."""
    images = analysis.images
    k, n = analysis.coarse_scales, len(analysis.patch_nums)
    cell = cell or max(128, next(iter(images.values())).shape[-1])

    def cells(*labels: str) -> list[tuple[str, Image.Image]]:
        # captions must fit a cell: "deg." for "degraded"
        return [
            (
                label.replace("degraded +", "deg. +").replace("+ degraded", "+ deg.").replace(" scales", ""),
                _pil(images[label]),
            )
            for label in labels
        ]

    inputs = ["degraded", "clean"] + (["restored"] if "restored" in images else [])
    rows = [
        ("inputs", cells(*inputs)),
        ("VQ reconstructions\n(all scales own)", cells("recon(degraded)", "recon(clean)")),
        (
            f"coarse swap:\nscales 1..{k} taken\nfrom the other image",
            cells(f"degraded + clean scales 1..{k}", f"clean + degraded scales 1..{k}"),
        ),
        (
            f"fine swap:\nscales {k + 1}..{n} taken\nfrom the other image",
            cells(f"degraded + clean scales {k + 1}..{n}", f"clean + degraded scales {k + 1}..{n}"),
        ),
    ]
    return labelled_grid(rows, cell=cell)


def analyze_files(
    model, degraded_path, clean_path, *, coarse_scales: int | None = None, with_restored: bool = False
) -> tuple[ScaleAnalysis, dict]:
    """`analyze_pair` on two image files resized to the native size; also -> a JSON-ready dict."""
    size = model.image_size
    degraded, degraded_size = load_resized(degraded_path, size)
    clean, clean_size = load_resized(clean_path, size)
    analysis = analyze_pair(model, degraded, clean, coarse_scales=coarse_scales, with_restored=with_restored)
    info = {
        "degraded": str(degraded_path),
        "clean": str(clean_path),
        "image_size": size,
        "resized": f"both images squashed to {size}×{size} with LANCZOS (the model's native size); "
        f"originals {degraded_size[0]}×{degraded_size[1]} and {clean_size[0]}×{clean_size[1]}",
        **analysis.to_dict(),
    }
    return analysis, info


def default_grid_path(degraded_path) -> Path:
    return Path(f"{Path(degraded_path).stem}_scales.png")
