"""The latent refiner, reading the degraded image's latent too (ours, not in the paper).

The paper's refiner predicts a residual on f̂, the clean tokens' quantised latent. A briefly trained transformer
gets f̂ wrong in ways the refiner cannot see; this one also reads the degraded latent d, twice (raw, and
normalised per token), and predicts a residual on d, starting as the identity on it. Raw, d keeps the
brightness that low light and haze change; normalised, a patch's detail (which blur removes and haze keeps) is
as visible as its brightness, so blur is not taken for haze.

Shapes: B batch, N latent tokens, Cv latent channels, Ct transformer width.
"""

from __future__ import annotations

import torch
from torch import nn

from restorevar.models.restorevar.refiner import LatentRefiner


class DegradedLatentRefiner(LatentRefiner):
    def __init__(self, config, tokenizer, transformer):
        super().__init__(config, tokenizer, transformer)
        Cv, D = tokenizer.latent_channels, config.width
        self.degraded_proj_in = nn.Linear(Cv, D, bias=False)
        self.degraded_norm_in = nn.LayerNorm(Cv)
        self.degraded_shape_proj_in = nn.Linear(Cv, D, bias=False)
        nn.init.zeros_(self.proj_out.weight)  # starts as the identity on d, not as noise added to it

    def forward(
        self, f_hat_BNCv: torch.Tensor, hidden_BLCt: torch.Tensor, degraded_BNCv: torch.Tensor | None = None
    ) -> torch.Tensor:
        if degraded_BNCv is None:
            raise ValueError("this refiner (extensions.refine_degraded) needs the degraded image's latent")
        shape = self.degraded_shape_proj_in(self.degraded_norm_in(degraded_BNCv))
        x_BND = self.embed(f_hat_BNCv) + self.degraded_proj_in(degraded_BNCv) + shape
        return self.run_layers(x_BND, hidden_BLCt) + degraded_BNCv
