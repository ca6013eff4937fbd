"""Print how closely we reproduce every golden tensor of the paper's code (markdown table).

    python scripts/golden_report.py > docs/faithfulness_table.md

End-to-end: our encoder, quantizer, transformer, refiner and decoder run on the golden inputs, as
`restore_batch` does; `recommended_atol` comes from tests/fixtures/golden/tolerances.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import GOLDEN  # noqa: E402

from restorevar.models.restorevar.convert import convert_official  # noqa: E402
from restorevar.models.restorevar.model import RestoreVAR  # noqa: E402


def ours() -> dict[str, dict[str, torch.Tensor]]:
    converted = convert_official(
        GOLDEN / "vqvae_tiny" / "state_dict.safetensors", GOLDEN / "restorevar_tiny" / "restorevar.pth", refiner_heads=2
    )
    model = RestoreVAR(converted.config).eval()
    for name, state in converted.states.items():
        getattr(model, name).load_state_dict(state)
    vq, tr = model.vqvae, model.transformer
    images = load_file(GOLDEN / "vqvae_tiny" / "input.safetensors")["images"]
    rv = load_file(GOLDEN / "restorevar_tiny" / "inputs.safetensors")
    out: dict[str, dict[str, torch.Tensor]] = {"vqvae_tiny": {}, "restorevar_tiny": {}}
    with torch.no_grad():
        v = out["vqvae_tiny"]
        v["enc_out"] = vq.encode_continuous(images)
        v["f"] = vq.quant_conv(v["enc_out"])
        indices, f_hats = vq.quantizer.encode(v["f"])
        v |= {f"idx_s{k}": i for k, i in enumerate(indices)} | {f"fhat_s{k}": f for k, f in enumerate(f_hats)}
        v["fhat"] = f_hats[-1]
        v["post_quant_fhat"] = vq.post_quant_conv(f_hats[-1])
        v["rec_fhat_raw"] = vq.decode_latent(f_hats[-1])
        v["rec_f_raw"] = vq.decode_latent(v["f"])
        v["var_input"] = vq.quantizer.teacher_forcing_input(indices, 8)

        r = out["restorevar_tiny"]
        gt = vq.tokenize(rv["clean"])
        r |= {f"tf_gt_idx_s{k}": i for k, i in enumerate(gt)}
        r["tf_x_BLCv_wo_first_l"] = vq.quantizer.teacher_forcing_input(gt, 8)
        r["tf_cond_fs3"] = vq.encode_continuous(rv["degraded"]).flatten(2).transpose(1, 2)
        r["tf_logits"] = tr(r["tf_x_BLCv_wo_first_l"], r["tf_cond_fs3"])
        result = model.restore_batch((rv["degraded"] + 1) / 2, return_intermediates=True)
        gen = tr.generate(r["tf_cond_fs3"], vq.quantizer, return_logits=True)
        r |= {f"ar_idx_s{k}": i for k, i in enumerate(result.indices)}
        r["ar_logits"] = gen.logits_BLV
        r["ar_last_block"] = gen.hidden_BLC
        r["ar_fhat_tokens"] = gen.f_hat_BChw.flatten(2).transpose(1, 2)
        r["ar_fhat_refined"] = result.latent_BChw
        r["ar_image"] = result.image_B3HW
    return out


def main() -> None:
    tolerances = json.loads((GOLDEN / "tolerances.json").read_text())
    print("| model | tensor | max abs | our max abs diff | recommended atol | margin |")
    print("|---|---|---|---|---|---|")
    for model_name, tensors in ours().items():
        expected = load_file(GOLDEN / model_name / "expected.safetensors")
        for name, got in tensors.items():
            exp = expected[name]
            if not exp.is_floating_point():
                print(
                    f"| {model_name} | {name} | – | "
                    f"{'identical' if torch.equal(got, exp) else 'DIFFERENT'} | exact | – |"
                )
                continue
            diff = (got.float() - exp).abs().max().item()
            atol = tolerances[model_name].get(name, {}).get("recommended_atol")
            margin = f"{atol / diff:.0f}×" if atol and diff else "–"
            print(f"| {model_name} | {name} | {exp.abs().max().item():.3g} | {diff:.2g} | {atol} | {margin} |")


if __name__ == "__main__":
    main()
