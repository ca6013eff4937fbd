"""Any size and aspect ratio for a model that restores square S x S images.

Three ways to fit an image of any H x W to the model's native size S:
- `restore_tiled`: overlapping S x S tiles, feathered blending (local degradations);
- `restore_resized`: resize to S x S and back (fast, for global degradations);
- `restore_padded`: reflect-pad a small image to S x S and crop (one tile).

Shapes: `image_3HW` one image, `tiles_N3TT` a batch of N tiles of side T.
`fn` maps (N, 3, T, T) float -> (N, 3, T, T) float.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

TileFn = Callable[[torch.Tensor], torch.Tensor]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Tile origins (y, x), row-major, for `tile` x `tile` tiles overlapping by >= `overlap`.

    Origins are spread evenly; the first tile starts at 0 and the last ends exactly at
    the border. A side shorter than `tile` gets one tile (the image is padded to it).
    """
    _check_tiling(tile, overlap)
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {height}x{width}")
    return [(y, x) for y in _starts(height, tile, overlap) for x in _starts(width, tile, overlap)]


def _check_tiling(tile: int, overlap: int) -> None:
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap} with tile={tile}; lower --overlap")


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts along one side; neighbours overlap by at least `overlap`."""
    if length <= tile:
        return [0]
    # n tiles cover `length` with stride <= tile - overlap when (n-1)(tile-overlap) >= length - tile.
    count = 1 + math.ceil((length - tile) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _ramp(size: int, overlap: int, *, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """1-D blending weight: raised cosine over `overlap` px at faded ends, 1 elsewhere.

    Sampled at pixel centres, so it is > 0 at the edge pixel and the ramps of two
    neighbours overlapping by exactly `overlap` sum to 1. Ends on the image border
    are not faded, so no pixel is ever divided by a tiny weight.
    """
    weight = torch.ones(size, dtype=torch.float32)
    if overlap == 0:
        return weight
    distance = torch.arange(size, dtype=torch.float32) + 0.5
    rise = 0.5 - 0.5 * torch.cos(math.pi * torch.clamp(distance / overlap, max=1.0))
    if fade_start:
        weight = weight * rise
    if fade_end:
        weight = weight * rise.flip(0)
    return weight


def _reflect_index(start: int, size: int, length: int) -> torch.Tensor:
    """Indices start..start+size-1 mirrored into [0, length) (any number of bounces).

    A period of 2(length-1) mirrors without repeating the edge pixel, like torch's
    reflect pad but valid for pads >= length; a side of 1 pixel just repeats it.
    """
    index = torch.arange(start, start + size)
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    index = index % period
    return torch.where(index >= length, period - index, index)


def _cut(image_3HW: torch.Tensor, y: int, x: int, tile: int) -> torch.Tensor:
    _, height, width = image_3HW.shape
    if y + tile <= height and x + tile <= width:
        return image_3HW[:, y : y + tile, x : x + tile]
    rows = _reflect_index(y, tile, height).to(image_3HW.device)
    cols = _reflect_index(x, tile, width).to(image_3HW.device)
    return image_3HW.index_select(1, rows).index_select(2, cols)


def _batches(origins: list[tuple[int, int]], batch_size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(origins), batch_size):
        yield origins[i : i + batch_size]


def restore_tiled(
    image_3HW: torch.Tensor,
    fn: TileFn,
    *,
    tile: int,
    overlap: int,
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run `fn` on overlapping `tile` x `tile` tiles and blend them into a (3, H, W) float32 image.

    image_3HW: float in [0, 1], any H, W >= 1; sides < tile are reflect-padded, never resized.
    Only the float32 output and a (1, H, W) weight map are full size; tiles are cut,
    run and accumulated `batch_size` at a time. `progress(done, total)` after each batch.
    """
    if image_3HW.ndim != 3 or image_3HW.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image_3HW.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _, height, width = image_3HW.shape
    origins = plan_tiles(height, width, tile, overlap)
    padded_h, padded_w = max(height, tile), max(width, tile)
    out_3HW = torch.zeros(3, height, width, dtype=torch.float32, device=image_3HW.device)
    weight_1HW = torch.zeros(1, height, width, dtype=torch.float32, device=image_3HW.device)

    weights: dict[tuple[bool, ...], torch.Tensor] = {}
    done = 0
    for group in _batches(origins, batch_size):
        tiles_N3TT = torch.stack([_cut(image_3HW, y, x, tile) for y, x in group])
        restored_N3TT = fn(tiles_N3TT)
        if tuple(restored_N3TT.shape) != tuple(tiles_N3TT.shape):
            raise ValueError(
                f"fn must return the tile batch shape {tuple(tiles_N3TT.shape)}, got {tuple(restored_N3TT.shape)}"
            )
        restored_N3TT = restored_N3TT.to(torch.float32)
        for (y, x), restored_3TT in zip(group, restored_N3TT):
            fades = (y > 0, y + tile < padded_h, x > 0, x + tile < padded_w)
            if fades not in weights:  # at most 16 distinct tile weights
                rows = _ramp(tile, overlap, fade_start=fades[0], fade_end=fades[1])
                cols = _ramp(tile, overlap, fade_start=fades[2], fade_end=fades[3])
                weights[fades] = (rows[:, None] * cols[None, :]).to(out_3HW.device)[None]
            weight_1TT = weights[fades]
            # The part of a tile that lies in the padding is dropped.
            keep_h, keep_w = min(tile, height - y), min(tile, width - x)
            weight_1TT = weight_1TT[:, :keep_h, :keep_w]
            out_3HW[:, y : y + keep_h, x : x + keep_w].addcmul_(restored_3TT[:, :keep_h, :keep_w], weight_1TT)
            weight_1HW[:, y : y + keep_h, x : x + keep_w] += weight_1TT
        done += len(group)
        if progress is not None:
            progress(done, len(origins))
    return out_3HW.div_(weight_1HW)


def restore_padded(image_3HW: torch.Tensor, fn: TileFn, *, size: int) -> torch.Tensor:
    """Reflect-pad an image no larger than `size` on either side to size x size, run `fn`, crop."""
    _, height, width = image_3HW.shape
    if height > size or width > size:
        raise ValueError(f"image {height}x{width} is larger than {size}x{size}; use restore_tiled or restore_resized")
    return restore_tiled(image_3HW, fn, tile=size, overlap=0)


def restore_resized(image_3HW: torch.Tensor, fn: TileFn, *, size: int) -> torch.Tensor:
    """Resize to size x size (bicubic, antialiased when shrinking), run `fn`, resize back.

    Fast, but fine detail is lost when the image is much larger than `size`.
    Returns (3, H, W) float32 clamped to [0, 1] (bicubic overshoots).
    """
    if image_3HW.ndim != 3 or image_3HW.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image_3HW.shape)}")
    _, height, width = image_3HW.shape
    square_13SS = _resize(image_3HW[None].to(torch.float32), size, size)
    restored_13SS = fn(square_13SS).to(torch.float32)
    if tuple(restored_13SS.shape) != (1, 3, size, size):
        raise ValueError(f"fn must return shape (1, 3, {size}, {size}), got {tuple(restored_13SS.shape)}")
    return _resize(restored_13SS, height, width)[0]


def _resize(image_B3HW: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if image_B3HW.shape[-2:] == (height, width):
        return image_B3HW
    is_shrinking = image_B3HW.shape[-2] > height or image_B3HW.shape[-1] > width
    resized = F.interpolate(
        image_B3HW, size=(height, width), mode="bicubic", align_corners=False, antialias=is_shrinking
    )
    return resized.clamp_(0.0, 1.0)
