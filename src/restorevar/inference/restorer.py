"""Real photos of any size: tiling or resizing around the native-size model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from restorevar.images.load import LoadedImage, from_tensor, load_image_from, to_pil, to_tensor
from restorevar.inference.tiling import restore_resized, restore_tiled


@dataclass
class RestoreOptions:
    """How an image of any size is fitted to the model (native side S).

    tile: tile side in input pixels (default S); tiles of another side are resized to S and back.
    overlap: overlap between tiles in pixels (default S/8), blended with feathered weights.
    resize: restore the whole image at S×S and resize back instead (fast; for global degradations).
    """

    tile: int | None = None
    overlap: int | None = None
    resize: bool = False
    batch_size: int = 4


def restore_array(model, rgb_HW3: np.ndarray, options: RestoreOptions, progress=None) -> np.ndarray:
    """(H, W, 3) float [0, 1] → restored (H, W, 3), same size and orientation."""
    size = model.image_size
    image = to_tensor(rgb_HW3)

    def run(tiles_N3TT: torch.Tensor) -> torch.Tensor:
        side = tiles_N3TT.shape[-1]
        if side != size:
            tiles_N3TT = F.interpolate(tiles_N3TT, size=(size, size), mode="bicubic", antialias=side > size)
        restored = model.restore_batch(tiles_N3TT.clamp(0, 1)).image_B3HW.cpu()
        if side != size:
            restored = F.interpolate(restored, size=(side, side), mode="bicubic", antialias=side < size)
        return restored.clamp(0, 1)

    if options.resize:
        out = restore_resized(image, run, size=size)
    else:
        tile = options.tile or size
        overlap = options.overlap if options.overlap is not None else tile // 8
        out = restore_tiled(image, run, tile=tile, overlap=overlap, batch_size=options.batch_size, progress=progress)
    return from_tensor(out)


def restore_image(model, image, options: RestoreOptions | None = None) -> Image.Image:
    """A path, PIL image or numpy array → restored PIL image shaped like the source (mode, alpha, bits)."""
    loaded = image if isinstance(image, LoadedImage) else load_image_from(image)
    rgb = restore_array(model, loaded.rgb, options or RestoreOptions())
    return to_pil(rgb, loaded)
