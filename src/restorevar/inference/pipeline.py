"""`Restorer`: a model of any family, applied to real photos: any size, mode and bit depth, files and folders.

    restorer = Restorer.from_pretrained("restorevar-small")
    restorer.restore("hazy.jpg").save("clean.png")
    restorer.restore_paths(["photos/"], "restored/")

The model only restores native-size batches (`model.restore_batch`); fitting a photo to it (tiles or a resize)
and reading and writing files happen here, as a diffusers pipeline wraps its models.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from restorevar.inference.folders import Summary, restore_paths
from restorevar.inference.restorer import RestoreOptions, restore_image
from restorevar.models.registry import load_model


class Restorer:
    def __init__(self, model, options: RestoreOptions | None = None):
        self.model = model
        self.options = options or RestoreOptions()

    @classmethod
    def from_pretrained(
        cls, name_or_dir: str | Path | None = None, *, device=None, dtype="fp32", options: RestoreOptions | None = None
    ) -> Restorer:
        """A model folder or name (None = the bundled default), of any family."""
        return cls(load_model(name_or_dir, device=device, dtype=dtype), options)

    def restore(
        self,
        image,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        resize: bool | None = None,
        batch_size: int | None = None,
    ) -> Image.Image:
        """A path, PIL image or array, any size → restored PIL image of the same size and mode."""
        base = self.options
        options = RestoreOptions(
            tile if tile is not None else base.tile,
            overlap if overlap is not None else base.overlap,
            base.resize if resize is None else resize,
            batch_size or base.batch_size,
        )
        return restore_image(self.model, image, options)

    def restore_paths(self, inputs, out_dir: str | Path | None = None, **kwargs) -> Summary:
        """Restore files, folders or globs into `out_dir`; see `folders.restore_paths` for the options."""
        kwargs.setdefault("options", self.options)
        return restore_paths(self.model, inputs, out_dir, **kwargs)
