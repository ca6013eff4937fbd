"""Benchmark evaluation with the golden tiny model (native 128², random weights): protocols, scores
against direct metric calls, and the CSV / JSON / HTML reports agreeing with each other."""

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import restorevar.evaluation.evaluate as evaluate_module
from restorevar.cli.main import main
from restorevar.evaluation.data_specs import DataSpec, EvaluationError, open_eval_dataset, parse_data_spec
from restorevar.evaluation.evaluate import (
    EvalOptions,
    EvalResult,
    ImageRecord,
    evaluate,
    make_convention,
    paper_resize,
)
from restorevar.evaluation.metrics import PAPER, psnr, ssim, unavailable_metric_reason
from restorevar.evaluation.report import format_table, results_dict
from restorevar.images.load import load_image

LPIPS_REASON = "LPIPS needs the 'lpips' package (test stand-in)"


def photo(height, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / 100
    clean = np.stack([np.sin(6 * x + seed), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 0.4 + 0.5
    degraded = np.clip(clean * 0.7 + 0.2 + rng.normal(0, 0.05, clean.shape), 0, 1)
    return (np.round(degraded * 255).astype(np.uint8), np.round(clean * 255).astype(np.uint8))


def paired_folder(root, sizes):
    for sub in ("input", "target"):
        (root / sub).mkdir(parents=True)
    for seed, (height, width) in enumerate(sizes):
        degraded, clean = photo(height, width, seed)
        Image.fromarray(degraded).save(root / "input" / f"im{seed}.png")
        Image.fromarray(clean).save(root / "target" / f"im{seed}.png")
    return root


@pytest.fixture(scope="module")
def cli_run(golden_model_dir, tmp_path_factory):
    """One tile-mode CLI run over a paired rain folder (128×128 and 128×150) and a no-reference folder."""
    root = tmp_path_factory.mktemp("data")
    rain = paired_folder(root / "rain", [(128, 128), (128, 150)])
    (root / "dark").mkdir()
    Image.fromarray(photo(128, 128, 7)[0]).save(root / "dark" / "night.png")
    out = root / "report"
    original = evaluate_module.unavailable_metric_reason

    def reason(name):  # LPIPS is reported unavailable whatever is installed here
        return LPIPS_REASON if name == "lpips" else original(name)

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(evaluate_module, "unavailable_metric_reason", reason)
        code = main(
            [
                "evaluate",
                "--model",
                str(golden_model_dir),
                "--data",
                str(rain),
                "--data",
                f"noref:{root / 'dark'}",
                "--metrics",
                "psnr,ssim,lpips,niqe",
                "--out",
                str(out),
                "--showcase",
                "1",
                "--no-progress",
            ]
        )
    assert code == 0
    with open(out / "per_image.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return {
        "rain": rain,
        "out": out,
        "stdout": stdout.getvalue(),
        "rows": rows,
        "json": json.loads((out / "results.json").read_text(encoding="utf-8")),
    }


def test_reports_exist_and_agree(cli_run):
    rows, results = cli_run["rows"], cli_run["json"]
    names = [(r["dataset"], r["name"]) for r in rows]
    assert names == [("rain", "im0.png"), ("rain", "im1.png"), ("dark", "night.png")]
    assert (rows[1]["height"], rows[1]["width"]) == ("128", "150")  # tile mode compares at full resolution
    for metric in ("psnr", "ssim", "niqe"):
        for side in ("input", "output"):
            mean = np.mean([float(r[f"{side}_{metric}"]) for r in rows[:2]])
            assert results["datasets"]["rain"][side][metric] == pytest.approx(mean, rel=1e-12)
    assert results["datasets"]["rain"]["images"] == 2
    assert results["protocol"]["mode"] == "tile" and results["convention"]["name"] == "paper"
    assert results["average"]["output"]["niqe"] == pytest.approx(
        (results["datasets"]["rain"]["output"]["niqe"] + results["datasets"]["dark"]["output"]["niqe"]) / 2
    )
    html = (cli_run["out"] / "report.html").read_text(encoding="utf-8")
    for name in results["best"] + results["worst"]:
        assert name in html
    assert sorted(results["best"] + results["worst"]) == ["im0.png", "im1.png"]
    for source in ("images/best_01_input.png", "images/worst_01_output.png", "images/worst_01_target.png"):
        assert source in html and (cli_run["out"] / source).is_file()
    assert (cli_run["out"] / "report.png").is_file()


def test_table_header_and_values(cli_run):
    stdout, results = cli_run["stdout"], cli_run["json"]
    assert "protocol:   tile: full resolution" in stdout and "metrics:    paper: RGB" in stdout
    rain_line = next(line for line in stdout.splitlines() if line.startswith("rain "))
    psnr_in, psnr_out = results["datasets"]["rain"]["input"]["psnr"], results["datasets"]["rain"]["output"]["psnr"]
    assert f"{psnr_in:.2f}" in rain_line and f"{psnr_out:.2f}" in rain_line and "unavailable" in rain_line
    assert any(line.startswith("Average") for line in stdout.splitlines())


def test_input_baseline_equals_direct_psnr(cli_run):
    for row in cli_run["rows"][:2]:
        degraded = load_image(cli_run["rain"] / "input" / row["name"]).rgb
        clean = load_image(cli_run["rain"] / "target" / row["name"]).rgb
        assert float(row["input_psnr"]) == pytest.approx(psnr(degraded, clean), abs=1e-9)
        assert float(row["input_ssim"]) == pytest.approx(ssim(degraded, clean), abs=1e-9)


def test_unavailable_metric_is_reported_not_dropped(cli_run):
    results, rows = cli_run["json"], cli_run["rows"]
    assert results["metrics"]["unavailable"] == {"lpips": LPIPS_REASON}
    assert all(r["input_lpips"] == r["output_lpips"] == "unavailable" for r in rows)
    assert f"unavailable: lpips — {LPIPS_REASON}" in cli_run["stdout"]


def test_no_reference_set_gets_no_reference_metrics_only(cli_run):
    dark = cli_run["json"]["datasets"]["dark"]
    assert dark["kind"] == "noref"
    assert dark["output"]["psnr"] is None and dark["output"]["ssim"] is None
    assert math.isfinite(dark["output"]["niqe"]) and math.isfinite(dark["input"]["niqe"])
    assert cli_run["rows"][2]["output_psnr"] == "" and float(cli_run["rows"][2]["output_niqe"]) > 0


def test_paper_mode_squashes_to_native_size_and_scores_float_output(golden_model, tmp_path):
    root = paired_folder(tmp_path / "snow", [(160, 200), (200, 160)])
    seen = []
    result = evaluate(
        golden_model,
        [parse_data_spec(str(root))],
        EvalOptions(mode="paper", metrics=("psnr", "ssim")),
        progress=False,
        on_image=lambda *args: seen.append(args),
    )
    assert [(r.height, r.width) for r in result.records] == [(128, 128), (128, 128)]
    for record, degraded, target, output in seen:
        file_clean = load_image(root / "target" / record.name).rgb
        direct = (
            np.asarray(
                Image.fromarray(np.round(file_clean * 255).astype(np.uint8)).resize(
                    (128, 128), Image.Resampling.LANCZOS
                ),
                dtype=np.float64,
            )
            / 255
        )
        np.testing.assert_allclose(target, direct, atol=1e-6)
        assert output.shape == (128, 128, 3)
        assert len(np.unique(output)) > 256  # float output, not rounded to 8 bits
        assert record.output["psnr"] == pytest.approx(psnr(output, target), abs=1e-9)
        assert record.output["ssim"] == pytest.approx(ssim(output, target), abs=1e-9)
        assert record.input["psnr"] == pytest.approx(psnr(degraded, target), abs=1e-9)
    assert "squashed to 128×128 with LANCZOS" in result.protocol
    means = results_dict(result)["datasets"]["snow"]["output"]
    assert means["psnr"] == pytest.approx(np.mean([r.output["psnr"] for r in result.records]))


def test_cli_failures_exit_nonzero(golden_model_dir, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "none"), "--data", str(tmp_path)]) == 1
    assert main(["evaluate", "--model", str(golden_model_dir), "--data", str(tmp_path / "missing")]) == 1
    assert "neither a folder nor a .json" in capsys.readouterr().err


# ---- fast checks without the model --------------------------------------------------------------


def test_data_specs(tmp_path):
    assert parse_data_spec("noref:/data/LHP") == DataSpec(Path("/data/LHP"), "noref", "LHP")
    assert not parse_data_spec("noref:/data/LHP").has_reference
    assert parse_data_spec("data/Rain13K/test").name == "Rain13K/test"
    assert parse_data_spec("jsons/snow100k.json").name == "snow100k"
    assert parse_data_spec("synthetic:photos").kind == "synthetic"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(EvaluationError, match=f"noref:{tmp_path}"):
        open_eval_dataset(parse_data_spec(str(tmp_path)), 128)


def test_options_and_conventions():
    with pytest.raises(EvaluationError, match="unknown metric"):
        EvalOptions(metrics=("psnr", "fid")).validate()
    with pytest.raises(EvaluationError, match="unknown mode"):
        EvalOptions(mode="crop").validate()
    convention = make_convention("basicsr", y_channel=True, crop_border=4)
    assert (convention.y_channel, convention.crop_border, convention.quantize_8bit) == (True, 4, True)
    assert make_convention("paper") == PAPER


def test_paper_resize_is_identity_at_native_size():
    rgb = np.random.default_rng(0).integers(0, 256, (128, 128, 3)).astype(np.float32) / 255
    np.testing.assert_array_equal(paper_resize(rgb, 128), rgb)


def test_table_average_is_mean_of_dataset_means():
    records = [
        ImageRecord("a", "1", "rain", 8, 8, 1.0, {"psnr": 10.0}, {"psnr": 20.0}),
        ImageRecord("a", "2", "rain", 8, 8, 1.0, {"psnr": 12.0}, {"psnr": 22.0}),
        ImageRecord("b", "3", "snow", 8, 8, 3.0, {"psnr": 30.0}, {"psnr": 40.0}),
    ]
    result = EvalResult(EvalOptions(metrics=("psnr", "lpips")), "p", "c", [], records, {"lpips": "needs x"})
    average = next(line for line in format_table(result).splitlines() if line.startswith("Average"))
    assert average.split()[1:5] == ["3", "20.50", "30.50", "unavailable"]  # (11 + 30) / 2, (21 + 40) / 2
    by_degradation = format_table(result, group="degradation")
    assert any(line.startswith("snow") and "30.00" in line for line in by_degradation.splitlines())
    assert unavailable_metric_reason("psnr") is None


def test_an_unreadable_image_is_reported_and_the_rest_scored(golden_model_dir, tmp_path, capsys):
    root = paired_folder(tmp_path / "pairs", [(128, 128), (128, 128)])
    (root / "input" / "im1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code = main(
        [
            "evaluate",
            "--model",
            str(golden_model_dir),
            "--data",
            str(root),
            "--metrics",
            "psnr",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 1
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(data["failed"]) == 1 and "im1.png" in data["failed"][0]["error"]
    rows = list(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))
    assert len(rows) == 1 and rows[0]["name"].endswith("im0.png")
    assert "could not be read" in capsys.readouterr().err
