"""What `restorevar evaluate --data` accepts: paired benchmark folders and lists, folders of degraded photos without
targets (`noref:PATH`) and clean photos to degrade (`synthetic:PATH`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch.utils.data import Dataset

from restorevar.data.datasets import open_dataset
from restorevar.data.layouts import DatasetError, detect_layout, guess_degradation, list_images
from restorevar.images.load import load_image, to_tensor

_GENERIC_FOLDER_NAMES = {"test", "val", "valid", "eval", "train", "input", "data"}


class EvaluationError(ValueError):
    """An evaluation cannot run as asked (bad spec, metric or option); the message is one line."""


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """One ``--data`` argument: where the images are and what kind of set it is."""

    path: Path
    kind: str = "paired"  # paired | noref | synthetic
    name: str = ""

    @property
    def has_reference(self) -> bool:
        return self.kind != "noref"


def parse_data_spec(text: str) -> DataSpec:
    """``PATH``, ``noref:PATH`` or ``synthetic:PATH`` -> `DataSpec` named after the folder or JSON file."""
    kind, _, rest = text.partition(":")
    if kind in ("noref", "synthetic") and rest:
        path = Path(rest)
    else:
        kind, path = "paired", Path(text)
    name = path.stem if path.suffix.lower() == ".json" else path.name
    if name.lower() in _GENERIC_FOLDER_NAMES and path.parent.name:
        name = f"{path.parent.name}/{name}"  # 'Rain13K/test' says more than 'test'
    return DataSpec(path, kind, name or str(path))


class NoReferenceFolder(Dataset):
    """Degraded photos without targets: items have ``"clean": None``; labels from the folder name."""

    def __init__(self, root) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"no-reference folder '{self.root}' does not exist; check the path")
        self.paths = list_images(self.root)
        if not self.paths:
            raise DatasetError(f"no images directly inside '{self.root}'; give a folder of degraded photos")
        self.degradation = guess_degradation(self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        return {
            "degraded": to_tensor(load_image(path).rgb),
            "clean": None,
            "degradation": self.degradation,
            "name": path.name,
        }


def open_eval_dataset(spec: DataSpec, image_size: int) -> Dataset:
    """The dataset behind a spec, full-size images (synthetic pairs: S×S crops)."""
    if spec.kind == "noref":
        return NoReferenceFolder(spec.path)
    if spec.kind == "synthetic":
        return open_dataset(spec.path, crop_size=image_size, split="val")
    is_json = spec.path.suffix.lower() == ".json"
    if spec.path.is_dir() and not is_json and detect_layout(spec.path) is None and list_images(spec.path):
        raise EvaluationError(
            f"'{spec.path}' is a plain image folder without targets; use noref:{spec.path} for degraded photos "
            f"(no-reference metrics) or synthetic:{spec.path} for clean photos (synthetic degradations)"
        )
    return open_dataset(spec.path, crop_size=None, split="val")
