"""VarFormer stage 1, adapter: the VAR (tokenizer and transformer) frozen; the adapter after its encoder learns the
feature matching loss (§3.2):

    L_fema = Σ_k CE(tokens_k predicted from the adapted degraded latent, clean tokens_k) + ‖F_a − sg(f̂_clean)‖²

the transformer teacher-forced on the clean image's tokens and conditioned on the adapted latent F_a, and f̂_clean
the clean image's quantised latent (compared after quant_conv, where f̂ lives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorevar.models.config import ConfigError
from restorevar.models.restorevar.model import as_tokens
from restorevar.training.stages.base import Stage, ValResult


class AdapterForward(nn.Module):
    """Adapter, then the frozen transformer's teacher-forced logits: one forward for DDP."""

    def __init__(self, adapter: nn.Module, transformer: nn.Module):
        super().__init__()
        self.adapter, self.transformer = adapter, transformer

    def forward(self, latent_BChw: torch.Tensor, teacher_BLC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        adapted = self.adapter(latent_BChw)
        return self.transformer(teacher_BLC, as_tokens(adapted)), adapted


class VarFormerAdapterStage(Stage):
    reads = ("vqvae", "transformer")
    native_size_only = True
    selection_metric = "ce"

    def __init__(self, config, env, model):
        if not hasattr(model, "adapter"):
            raise ConfigError(
                "the varformer_adapter stage builds a VarFormer: pass --preset varformer-small (or a "
                "`model:` with model_type varformer)"
            )
        super().__init__(config, env, model)
        model.adapter.requires_grad_(True)
        self.forward_module = AdapterForward(model.adapter, model.transformer)
        self.feature_weight = config.varformer.feature_weight

    def trainables(self):
        return {"adapter": self.forward_module}

    @torch.no_grad()
    def inputs(self, batch):
        """The degraded latent; the clean tokens (teacher input and target) and quantised latent."""
        degraded, clean = self.images(batch)
        return self.model.vqvae.encode_continuous(degraded), *self.clean_tokens(clean)

    def losses(self, batch, forward) -> dict[str, torch.Tensor]:
        latent, teacher, target_BL, f_hat_clean = self.inputs(batch)
        logits_BLV, adapted = forward(latent, teacher)
        ce = F.cross_entropy(logits_BLV.flatten(0, 1).float(), target_BL.flatten())
        feature = (self.model.vqvae.quant_conv(adapted) - f_hat_clean).square().mean()
        accuracy = (logits_BLV.detach().argmax(-1) == target_BL).float().mean()
        return {"loss": ce + self.feature_weight * feature, "ce": ce, "feature": feature, "acc": accuracy}

    def compute_loss(self, batch, step, wrapped):
        return self.losses(batch, wrapped["adapter"])

    def validate(self, batch):
        metrics = {k: float(v) for k, v in self.losses(batch, self.forward_module).items()}
        image = batch["degraded"]
        return ValResult(metrics, [image, batch["clean"]])
