"""Official checkpoints → our modules.

* `vae_ch160v4096z32.pth` / `vae_restorevar.ckpt`: the VQVAE (324 keys).
* `restorevar.pth`: transformer + refiner (under `vae_refiner.`), with RoPE tables, masks and
  `zero_k_bias` as buffers; the architecture and patch schedule are read from shapes and buffers.
* `var_d16.pth`: initialises a transformer for training; AdaLN and absolute positions are dropped.

Every file is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from restorevar.models.checkpoint import CheckpointError, read_safetensors, read_torch_file
from restorevar.models.layers import rope_angles
from restorevar.models.restorevar.config import RefinerConfig, RestoreVARConfig, TokenizerConfig, TransformerConfig

log = logging.getLogger(__name__)

# (official pattern, our replacement), applied in order to each key
VQVAE_RENAMES = [
    (r"^quantize\.embedding\.", "quantizer.codebook."),
    (r"^quantize\.quant_resi\.qresi_ls\.", "quantizer.phis."),
]
TRANSFORMER_RENAMES = [
    (r"^word_embed\.", "token_embed."),
    (r"^class_emb\.", "class_embed."),
    (r"^lvl_embed\.", "scale_embed."),
    (r"^cond_proj4\.", "cond_proj."),
    (r"^word_embed_cond\.", "cond_embed."),
    (r"^lvl_embed_cond\.", "cond_level_embed."),
    (r"^global_embed\.", "global_proj."),
    (r"^global_embed_gain$", "global_gain"),
    (r"\.attn\.mat_qkv\.", ".attn.qkv."),
    (r"\.scale_mul_1H11$", ".log_scale"),
]
REFINER_RENAMES = [
    (r"^pos_embedding$", "pos_embed"),
    (r"^pos_embedding_cond$", "cond_pos_embed"),
    (r"^norm_in_cond\.", "cond_norm_in."),
    (r"^proj_in_cond\.", "cond_proj_in."),
    (r"^transformer\.norm\.", "norm_out."),
    (r"^transformer\.layers\.(\d+)\.0\.norm\.", r"layers.\1.self_attn.norm."),
    (r"^transformer\.layers\.(\d+)\.0\.to_qkv\.", r"layers.\1.self_attn.qkv."),
    (r"^transformer\.layers\.(\d+)\.0\.to_out\.0\.", r"layers.\1.self_attn.proj."),
    (r"^transformer\.layers\.(\d+)\.1\.net\.0\.", r"layers.\1.mlp.norm."),
    (r"^transformer\.layers\.(\d+)\.1\.net\.1\.", r"layers.\1.mlp.fc1."),
    (r"^transformer\.layers\.(\d+)\.1\.net\.4\.", r"layers.\1.mlp.fc2."),
    (r"^transformer\.layers\.(\d+)\.2\.to_q\.", r"layers.\1.cross_attn.q."),
    (r"^transformer\.layers\.(\d+)\.2\.to_kv\.", r"layers.\1.cross_attn.kv."),
    (r"^transformer\.layers\.(\d+)\.2\.to_out\.", r"layers.\1.cross_attn.proj."),
    (r"^transformer\.layers\.(\d+)\.2\.", r"layers.\1.cross_attn."),
]
VQVAE_DROPPED = {"quantize.ema_vocab_hit_SV"}  # codebook-usage statistics of VAR's VAE training
TRANSFORMER_BUFFERS = {"lvl_1L", "attn_bias_for_masking", "lvl_1L_cond", "freqs_cis", "freqs_cis_cross"}
VAR_D16_IGNORED = re.compile(r"(ada_lin|^head_nm\.|^pos_start$|^pos_1LC$|^lvl_1L$|^attn_bias_for_masking$)")


def rename(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path) if str(path).endswith(".safetensors") else read_torch_file(path)


# ---------------------------------------------------------------------------------------------- VQVAE


def vqvae_state_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return rename({k: v.float() for k, v in state.items() if k not in VQVAE_DROPPED}, VQVAE_RENAMES)


def infer_tokenizer_config(state: dict[str, torch.Tensor], source: str | Path) -> dict:
    """Channel layout, vocabulary and φ count of an official VQVAE state dict (patch schedule excluded)."""
    try:
        ch = state["encoder.conv_in.weight"].shape[0]
        num_levels = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k)))
        mult = tuple(state[f"encoder.down.{lvl}.block.0.conv1.weight"].shape[0] // ch for lvl in range(num_levels))
        return dict(
            vocab_size=state["quantize.embedding.weight"].shape[0],
            latent_channels=state["encoder.conv_out.weight"].shape[0],
            base_channels=ch,
            channel_mult=mult,
            num_res_blocks=len({k.split(".")[4] for k in state if k.startswith("encoder.down.0.block.")}),
            use_attention="encoder.mid.attn_1.qkv.weight" in state,
            num_phi=len({k.split(".")[3] for k in state if k.startswith("quantize.quant_resi.qresi_ls.")}),
        )
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{source} is not an official VQVAE state dict (missing {e})") from None


# ---------------------------------------------------------------------------------------- transformer


def split_official_restorevar(state: dict[str, torch.Tensor]):
    """restorevar.pth → (transformer state, refiner state, buffers), all in our key names."""
    refiner = {k[len("vae_refiner.") :]: v for k, v in state.items() if k.startswith("vae_refiner.")}
    buffers = {k: v for k, v in state.items() if k in TRANSFORMER_BUFFERS or k.endswith("zero_k_bias")}
    rest = {k: v for k, v in state.items() if not k.startswith("vae_refiner.") and k not in buffers}
    return rename(rest, TRANSFORMER_RENAMES), rename(refiner, REFINER_RENAMES), buffers


def patch_nums_from_levels(levels_1L: torch.Tensor) -> tuple[int, ...]:
    counts = torch.bincount(levels_1L.flatten()).tolist()
    sides = tuple(math.isqrt(c) for c in counts)
    if any(s * s != c for s, c in zip(sides, counts)):
        raise CheckpointError(f"lvl_1L token counts {counts} are not square maps")
    return sides


def infer_transformer_config(state: dict[str, torch.Tensor]) -> dict:
    width = state["token_embed.weight"].shape[0]
    return dict(
        depth=1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        width=width,
        num_heads=state["blocks.0.attn.log_scale"].shape[1],
        mlp_ratio=state["blocks.0.ffn.fc1.weight"].shape[0] / width,
        num_classes=state["class_embed.weight"].shape[0] - 1,
    )


def infer_refiner_config(state: dict[str, torch.Tensor], num_heads: int | None) -> dict:
    width = state["proj_in.weight"].shape[0]
    return dict(
        depth=1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers.")),
        width=width,
        num_heads=num_heads or max(1, width // 64),  # the paper's refiner uses 64-wide heads
        mlp_dim=state["layers.0.mlp.fc1.weight"].shape[0],
    )


def check_official_buffers(buffers: dict[str, torch.Tensor], config: RestoreVARConfig, source) -> None:
    """The stored RoPE tables must be the ones we compute, or the checkpoint came from other code."""
    tok, tr = config.tokenizer, config.transformer
    for key, pns in (("freqs_cis", tok.patch_nums), ("freqs_cis_cross", (tok.latent_size,))):
        if key not in buffers:
            continue
        angles = rope_angles(pns, tok.latent_size, tr.head_dim, tr.rope_base)
        ours = torch.polar(torch.ones_like(angles), angles)
        if ours.shape != buffers[key].shape or (ours - buffers[key]).abs().max() > 1e-5:
            raise CheckpointError(f"{source}: buffer {key} differs from the 2D RoPE of this architecture")
    for key, value in buffers.items():
        if key.endswith("zero_k_bias") and value.abs().max() != 0:
            raise CheckpointError(f"{source}: {key} is not zero; this is not a RestoreVAR/VAR checkpoint")


@dataclass
class ConvertedCheckpoint:
    config: RestoreVARConfig
    states: dict[str, dict[str, torch.Tensor]]  # component name → our state dict
    notes: list[str] = field(default_factory=list)


def find_official_files(official_dir: Path, vae_file: Path | None = None, var_file: Path | None = None):
    """The VQVAE file and the transformer file inside a folder of official downloads (given ones win)."""

    def first(names):
        for name in names:
            hits = sorted(Path(official_dir).glob(name))
            if hits:
                return hits[0]
        return None

    var_file = var_file or first(["restorevar.pth", "ar-ckpt-*.pth"])
    vae_file = vae_file or first(
        ["vae_restorevar.ckpt", "vae_ch160v4096z32.pth", "*vae*.safetensors", "*vae*.pth", "*vae*.ckpt"]
    )
    if var_file is None:
        raise CheckpointError(f"no restorevar.pth in {official_dir}; download the RestoreVAR release and put it there")
    if vae_file is None:
        raise CheckpointError(
            f"no VQVAE file in {official_dir}; put vae_restorevar.ckpt (or vae_ch160v4096z32.pth) there"
        )
    return vae_file, var_file


def convert_official(
    vae_file: str | Path,
    var_file: str | Path,
    *,
    preset: RestoreVARConfig | None = None,
    refiner_heads: int | None = None,
) -> ConvertedCheckpoint:
    """Read the official VQVAE and restorevar.pth and infer the whole architecture from them."""
    vae_state = read_weights(vae_file)
    tokenizer_fields = infer_tokenizer_config(vae_state, vae_file)
    transformer_state, refiner_state, buffers = split_official_restorevar(read_weights(var_file))
    if "lvl_1L" not in buffers or "token_embed.weight" not in transformer_state:
        raise CheckpointError(f"{var_file} is not a RestoreVAR checkpoint (no lvl_1L / word_embed keys)")
    if not refiner_state:
        raise CheckpointError(f"{var_file} has no vae_refiner.* keys; is it a stage-1 (transformer only) file?")
    patch_nums = patch_nums_from_levels(buffers["lvl_1L"])
    factor = 2 ** (len(tokenizer_fields["channel_mult"]) - 1)
    inferred = RestoreVARConfig(
        tokenizer=TokenizerConfig(image_size=patch_nums[-1] * factor, patch_nums=patch_nums, **tokenizer_fields),
        transformer=TransformerConfig(**infer_transformer_config(transformer_state)),
        refiner=RefinerConfig(**infer_refiner_config(refiner_state, refiner_heads)),
    )
    config = (preset if preset is not None else inferred).validate()
    if refiner_heads is not None and preset is not None:
        config = replace(config, refiner=replace(config.refiner, num_heads=refiner_heads)).validate()
    check_official_buffers(buffers, config, var_file)
    states = {
        "vqvae": vqvae_state_from_official(vae_state),
        "transformer": {k: v.float() for k, v in transformer_state.items()},
        "refiner": {k: v.float() for k, v in refiner_state.items()},
    }
    notes = [
        f"patch schedule {patch_nums} from lvl_1L",
        f"refiner heads {config.refiner.num_heads}"
        + (" (given)" if refiner_heads else " (assumed 64-wide heads; set --refiner-heads if different)"),
    ]
    return ConvertedCheckpoint(config, states, notes)


# ---------------------------------------------------------------------------------------------- var_d16


@dataclass
class InitReport:
    loaded: list[str]
    ignored: list[str]
    initialised: list[str]

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors, ignored {len(self.ignored)} (AdaLN / absolute positions / "
            f"buffers), kept init for {len(self.initialised)} (cross-attention, condition, global context)"
        )


def load_var_backbone(transformer: torch.nn.Module, path: str | Path) -> InitReport:
    """Initialise a RestoreVAR transformer from an official class-conditional VAR (e.g. var_d16.pth)."""
    official = read_weights(path)
    kept = {k: v for k, v in official.items() if not VAR_D16_IGNORED.search(k) and not k.endswith("zero_k_bias")}
    ours = rename(kept, TRANSFORMER_RENAMES)
    expected = transformer.state_dict()
    bad = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in ours.items()
        if k in expected and v.shape != expected[k].shape
    ]
    unknown = sorted(set(ours) - set(expected))
    if bad or unknown:
        raise CheckpointError(f"{path} does not fit this transformer: {'; '.join(bad + unknown)[:600]}")
    transformer.load_state_dict({k: v.float() for k, v in ours.items()}, strict=False)
    report = InitReport(sorted(ours), sorted(set(official) - set(kept)), sorted(set(expected) - set(ours)))
    log.info("%s: %s", path, report.summary())
    return report
