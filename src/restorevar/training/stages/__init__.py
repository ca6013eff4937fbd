"""The training stages, one module each: what a stage reads, what it trains, its loss and its validation.

  0. tokenizer    the multi-scale VQVAE (+ PatchGAN)                              stages/tokenizer.py
  1. transformer  next-scale prediction, teacher-forced CE                         stages/transformer.py
  2. refiner      rollout of the frozen transformer → clean continuous latent      stages/refiner.py
  3. decoder      decoding continuous latents                                      stages/decoder.py
  4. blur_expert  (ours) detector + deblurring CNN on the degraded latent          stages/blur_expert.py
  5. mixer        (ours) per-position weights of the refined/degraded/deblurred    stages/mixer.py

VarFormer, on a trained RestoreVAR's frozen tokenizer and transformer:
  1. varformer_adapter  the latent adapter, feature matching loss                  stages/varformer_adapter.py
  2. varformer          the prior-guided U-Net, −PSNR + perceptual                 stages/varformer.py

Every stage gets its latents from the model's own data flow (`forward_latents`, `refine_latent`, `refine`), so a
stage trains on what inference computes. `build_stage` builds the model a stage starts from (stages/base.py);
`trainer.run(config, stage)` trains it.

Shapes: B batch, C latent channels, h×w latent, N = h·w, L tokens over all scales, V vocabulary.
"""

from __future__ import annotations

from restorevar.training.config import TrainConfig
from restorevar.training.distributed import Dist
from restorevar.training.stages.base import Stage, ValResult, build_model
from restorevar.training.stages.blur_expert import BlurExpertStage
from restorevar.training.stages.decoder import DecoderStage
from restorevar.training.stages.mixer import MixerStage
from restorevar.training.stages.refiner import RefinerStage
from restorevar.training.stages.tokenizer import TokenizerStage
from restorevar.training.stages.transformer import TransformerStage
from restorevar.training.stages.varformer import VarFormerStage
from restorevar.training.stages.varformer_adapter import VarFormerAdapterStage

STAGES: dict[str, type[Stage]] = {
    "tokenizer": TokenizerStage,
    "transformer": TransformerStage,
    "refiner": RefinerStage,
    "decoder": DecoderStage,
    "blur_expert": BlurExpertStage,
    "mixer": MixerStage,
    "varformer_adapter": VarFormerAdapterStage,
    "varformer": VarFormerStage,
}

__all__ = ["STAGES", "Stage", "ValResult", "build_stage"]


def build_stage(config: TrainConfig, env: Dist) -> Stage:
    """The stage `config.stage` on the model it starts from (`init`, `preset`/`model`), on `env`'s device."""
    stage = STAGES[config.stage]
    return stage(config, env, build_model(config, stage))
