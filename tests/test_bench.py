import json
import os

import pytest
import torch

from restorevar.cli.main import main
from restorevar.evaluation.bench import StageClock, count_flops, run_batch
from restorevar.evaluation.speed import compile_model, dtype_agreement


def test_stage_clock_covers_every_scale(golden_model):
    result = run_batch(golden_model, 1, repeats=1, warmup=0)
    summary = result.summary()
    assert len(summary["per_scale_median_s"]) == 6
    assert all(summary["median_s"][s] > 0 for s in ("encoder", "transformer", "refiner", "decoder"))
    assert (
        abs(sum(summary["per_scale_median_s"]) - summary["median_s"]["transformer"])
        < 0.05 * summary["median_s"]["transformer"] + 0.02
    )  # the refiner's pre-hook closes the last scale


def test_flops_split_into_stages(golden_model):
    flops = count_flops(golden_model)
    assert all(flops[s] > 0 for s in ("encoder", "transformer", "refiner", "decoder"))
    assert flops["total"] == pytest.approx(sum(flops[s] for s in ("encoder", "transformer", "refiner", "decoder")))
    # the decoder works at full resolution and is the larger VQVAE half, as in the paper's model
    assert flops["decoder"] > flops["encoder"]


def test_bench_command_writes_results(tmp_path, capsys):
    assert (
        main(
            [
                "bench",
                "--preset",
                "tiny",
                "--batch",
                "1",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--out",
                str(tmp_path),
                "--name",
                "t",
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["results"][0]["batch"] == 1 and data["gflops_per_image"]["total"] > 0
    assert "| batch | encoder |" in (tmp_path / "t.md").read_text()


def test_mixed_precision_agreement(golden_model, golden_restorevar):
    inputs, _ = golden_restorevar
    x = (inputs["degraded"] + 1) / 2
    same = dtype_agreement(golden_model, x, torch.float32)
    assert same == {"identical_tokens_per_scale": [1.0] * 6, "psnr_vs_fp32_db": float("inf")}
    # random golden weights have logit margins of only 0.017, so bf16 flips fine-scale tokens; the
    # coarse scales still agree, and the measurement is what the benchmark reports for real weights
    report = dtype_agreement(golden_model, x, torch.bfloat16)
    assert report["identical_tokens_per_scale"][:2] == [1.0, 1.0]
    assert 0 < report["identical_tokens_per_scale"][-1] < 1 and 5 < report["psnr_vs_fp32_db"] < 60


@pytest.mark.skipif(
    not os.environ.get("RESTOREVAR_SLOW"),
    reason="torch.compile takes ~3 min on 2 CPU cores; set RESTOREVAR_SLOW=1 to run",
)
def test_compiled_model_matches(golden_model, golden_restorevar):
    import copy

    inputs, _ = golden_restorevar
    x = (inputs["degraded"] + 1) / 2
    reference = golden_model.restore_batch(x, return_intermediates=True)
    compiled = copy.deepcopy(golden_model)
    compile_model(compiled)
    out = compiled.restore_batch(x, return_intermediates=True)
    assert all(torch.equal(a, b) for a, b in zip(reference.indices, out.indices))
    torch.testing.assert_close(out.image_B3HW, reference.image_B3HW, rtol=0, atol=1e-4)


def test_stage_clock_removes_its_hooks(golden_model):
    clock = StageClock(golden_model)
    clock.close()
    assert not golden_model.vqvae.encoder._forward_hooks and not golden_model.transformer.head._forward_hooks
