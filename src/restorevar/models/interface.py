"""What every model family offers, so that restore, serve, evaluate, analyze and bench treat them alike.

A family subclasses `RestorationModel`, names its `model_type` (the key in `config.json` and the registry), its
config class and its weight files, and implements `restore_batch` at its native size. Loading, saving, devices
and compute dtypes are written once here.

Shapes: B batch, H×W the native image size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from restorevar.models import checkpoint

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Restoration:
    image_B3HW: torch.Tensor  # restored images in [0, 1]
    intermediates: Any = None  # the family's intermediate results, when asked for (e.g. RestoreVARIntermediates)


class RestorationModel(nn.Module):
    model_type: ClassVar[str]
    config_class: ClassVar[type]
    supports_upscale: ClassVar[bool] = False  # True: restore_batch's output is `upscale` times the input's size

    def __init__(self, config):
        super().__init__()
        self.config = config.validate()
        self.compute_dtype = torch.float32  # bf16/fp16 run under autocast; weights stay fp32

    # ------------------------------------------------------------------------------- what a family defines

    @property
    def image_size(self) -> int:
        """The native side S: restore_batch takes S×S images; inference/ tiles or resizes anything else."""
        raise NotImplementedError

    def restore_batch(self, degraded_B3HW: torch.Tensor, *, return_intermediates: bool = False) -> Restoration:
        """Restore S×S images in [0, 1]."""
        raise NotImplementedError

    def weight_files(self) -> dict[str, str]:
        """Submodule name → safetensors file in a model folder."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------- shared behaviour

    def check_native_size(self, images_B3HW: torch.Tensor) -> None:
        size = self.image_size
        if images_B3HW.shape[-2:] != (size, size):
            raise ValueError(
                f"restore_batch() takes {size}×{size} images, got {tuple(images_B3HW.shape[-2:])}; "
                "use restorevar.Restorer for any size (tiling)"
            )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def autocast(self):
        """Mixed precision as chosen by `prepare_for_inference` (a no-op in fp32)."""
        is_mixed = self.compute_dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=is_mixed)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        checkpoint.save_json(self.config.to_dict(), directory / checkpoint.CONFIG_FILE)
        for name, file in self.weight_files().items():
            checkpoint.save_state_dict(getattr(self, name).state_dict(), directory / file)

    def read_weights(self, directory: Path) -> dict[str, dict[str, torch.Tensor]]:
        """Submodule name → its state, from a model folder's files."""
        return {name: checkpoint.read_safetensors(directory / file) for name, file in self.weight_files().items()}

    def load_weights(self, directory: str | Path) -> None:
        """Every weight file of a model folder, strictly (an error names the file and the keys)."""
        directory = Path(directory)
        files = self.weight_files()
        for name, state in self.read_weights(directory).items():
            checkpoint.load_strict(
                getattr(self, name), {k: v.float() for k, v in state.items()}, directory / files[name]
            )

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "fp32",
    ) -> RestorationModel:
        """Load a model folder or a named model (None = the bundled default); it must be of this family."""
        from restorevar.models.registry import load_model  # the registry imports the families

        model = load_model(name_or_dir, device=device, dtype=dtype)
        if not isinstance(model, cls):
            raise TypeError(
                f"{name_or_dir or 'the default model'} is a {model.model_type!r} model, not "
                f"{cls.model_type!r}; load it with restorevar.from_pretrained()"
            )
        return model

    def prepare_for_inference(
        self, *, device: str | torch.device | None = None, dtype: str | torch.dtype = "fp32"
    ) -> RestorationModel:
        """Device, compute dtype (autocast; weights stay fp32), eval mode."""
        self.compute_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        return self.to(pick_device(device)).eval()


def pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but this PyTorch build sees no CUDA GPU; use --device cpu")
    return device
