"""`ExtendedRestoreVAR`: the paper's model with our add-ons composed in (none is in the paper).

- `extensions.refine_degraded`: the refiner also reads the degraded latent and refines it (degraded_refiner.py);
- `extensions.blur_expert`: where the input looks blurred, a deblurring CNN's latent is mixed into the refined
  one (blur_expert.py), after the refiner; its weights are `blur_expert.safetensors`;
- `extensions.input_detail`: after decoding, the input's detail that no latent holds, x − D(E(x)), is added back.

Each was measured on the held-out benchmark with and without it; see docs/design-notes.md.
"""

from __future__ import annotations

from pathlib import Path

import torch

from restorevar.models import checkpoint
from restorevar.models.extensions.blur_expert import BlurExpert
from restorevar.models.extensions.config import ExtendedRestoreVARConfig
from restorevar.models.extensions.degraded_refiner import DegradedLatentRefiner
from restorevar.models.migration import split_legacy_refiner
from restorevar.models.restorevar.model import RestoreVAR, RestoreVARIntermediates, as_tokens


class ExtendedRestoreVAR(RestoreVAR):
    model_type = "restorevar-extended"
    config_class = ExtendedRestoreVARConfig

    def __init__(self, config: ExtendedRestoreVARConfig):
        super().__init__(config)
        expert = config.extensions.blur_expert
        self.blur_expert = None if expert is None else BlurExpert(config.tokenizer.latent_channels, expert)

    def build_refiner(self, config: ExtendedRestoreVARConfig):
        if config.extensions.refine_degraded:
            return DegradedLatentRefiner(config.refiner, config.tokenizer, config.transformer)
        return super().build_refiner(config)

    def weight_files(self) -> dict[str, str]:
        files = super().weight_files()
        if self.blur_expert is not None:
            files["blur_expert"] = "blur_expert.safetensors"
        return files

    def read_weights(self, directory: Path) -> dict[str, dict[str, torch.Tensor]]:
        if self.blur_expert is None or (directory / self.weight_files()["blur_expert"]).is_file():
            return super().read_weights(directory)
        # an older folder: the expert's weights sat in refiner.safetensors
        files = {k: v for k, v in self.weight_files().items() if k != "blur_expert"}
        states = {name: checkpoint.read_safetensors(directory / file) for name, file in files.items()}
        states["refiner"], states["blur_expert"] = split_legacy_refiner(states["refiner"])
        return states

    def refiner_inputs(self, intermediates: RestoreVARIntermediates) -> tuple[torch.Tensor, ...]:
        inputs = super().refiner_inputs(intermediates)
        if not self.config.extensions.refine_degraded:
            return inputs
        return (*inputs, as_tokens(intermediates.degraded_latent_BChw))

    def refine(self, intermediates: RestoreVARIntermediates) -> torch.Tensor:
        refined_BChw = self.refine_latent(intermediates)
        if self.blur_expert is None:
            return refined_BChw
        return self.blur_expert(refined_BChw, intermediates.degraded_latent_BChw)

    def decode(self, intermediates: RestoreVARIntermediates, image_B3HW: torch.Tensor) -> torch.Tensor:
        decoded_B3HW = super().decode(intermediates, image_B3HW)
        if not self.config.extensions.input_detail:
            return decoded_B3HW
        return decoded_B3HW + image_B3HW - self.vqvae.decode_latent(intermediates.degraded_latent_BChw)
