"""Config of `ExtendedRestoreVAR`: the paper's three sections plus an `extensions` section for our add-ons.

Torch-free. Each add-on is off by default, so `ExtendedRestoreVARConfig()` builds the paper's model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from restorevar.models.config import ConfigError
from restorevar.models.restorevar.config import RestoreVARConfig

# The classes the bundled blur expert's detector was trained on. A checkpoint stores its own list, so adding a
# degradation to the data code never changes an existing model's head.
BLUR_EXPERT_CLASSES: tuple[str, ...] = ("haze", "rain", "snow", "low_light", "blur", "none")


@dataclass(frozen=True)
class BlurExpertConfig:
    """A detector of the degradation and a deblurring CNN on the degraded latent (blur_expert.py)."""

    width: int = 64
    blocks: int = 4
    mixer_width: int = 0  # > 0: a mixer that weighs the refined, degraded and deblurred latents per position
    classes: tuple[str, ...] = BLUR_EXPERT_CLASSES  # what the detector tells apart; must include "blur"

    def validate(self) -> None:
        if self.width <= 0 or self.width % 8 or self.blocks < 0 or self.mixer_width < 0:
            raise ConfigError(
                f"blur_expert needs width a positive multiple of 8, blocks ≥ 0 and mixer_width ≥ 0; "
                f"got {self.width}, {self.blocks} and {self.mixer_width}"
            )
        if "blur" not in self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"blur_expert.classes must be distinct names including 'blur', got {self.classes}")


@dataclass(frozen=True)
class ExtensionsConfig:
    # the refiner also reads the degraded image's latent and refines *it* (the residual base), so a briefly
    # trained transformer cannot lose the scene (degraded_refiner.py)
    refine_degraded: bool = False
    # add back the part of the input the tokenizer cannot represent, x − D(E(x)), so the output is not capped at
    # the tokenizer's reconstruction
    input_detail: bool = False
    blur_expert: BlurExpertConfig | None = None

    def validate(self) -> None:
        if self.blur_expert is not None:
            self.blur_expert.validate()


@dataclass(frozen=True)
class ExtendedRestoreVARConfig(RestoreVARConfig):
    model_type: ClassVar[str] = "restorevar-extended"

    extensions: ExtensionsConfig = field(default_factory=ExtensionsConfig)

    def validate(self) -> ExtendedRestoreVARConfig:
        super().validate()
        self.extensions.validate()
        return self

    def paper_config(self) -> RestoreVARConfig:
        """The same model without our add-ons."""
        return RestoreVARConfig(self.tokenizer, self.transformer, self.refiner)

    @classmethod
    def extending(cls, paper: RestoreVARConfig, **extensions: Any) -> ExtendedRestoreVARConfig:
        base = {f.name: getattr(paper, f.name) for f in dataclasses.fields(RestoreVARConfig)}
        return cls(**base, extensions=ExtensionsConfig(**extensions)).validate()
