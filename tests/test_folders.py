"""Folders with nothing lost, with the golden tiny model (native 128²)."""

import numpy as np
import pytest
from PIL import Image
from test_restorer import photo

from restorevar.cli.main import main
from restorevar.inference.folders import restore_paths
from restorevar.models.restorevar.model import RestoreVAR


@pytest.fixture(scope="module")
def model(golden_model_dir):
    return RestoreVAR.from_pretrained(golden_model_dir)


def write(path, height=30, width=30, seed=0):
    Image.fromarray((photo(height, width, seed) * 255).astype(np.uint8)).save(path)
    return path


def test_folder_run_with_bad_files(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb8 = (photo(60, 90) * 255).astype(np.uint8)
    Image.fromarray(rgb8).save(src / "good.jpg")
    Image.fromarray(rgb8[..., 0]).save(src / "grey.png")
    rgba = np.concatenate([rgb8, np.full((60, 90, 1), 77, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(src / "alpha.png")
    (src / "notes.png").write_text("not an image")
    (src / "empty.jpg").write_bytes(b"")
    summary = restore_paths(model, [src], tmp_path / "out")
    assert sorted(p.name for p in summary.done) == ["alpha_restored.png", "good_restored.png", "grey_restored.png"]
    assert sorted(p.name for p, _ in summary.failed) == ["empty.jpg", "notes.png"]
    assert Image.open(tmp_path / "out" / "grey_restored.png").mode == "L"
    alpha_out = Image.open(tmp_path / "out" / "alpha_restored.png")
    assert alpha_out.mode == "RGBA" and (np.asarray(alpha_out)[..., 3] == 77).all()
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob(".*"))


def test_inputs_are_never_overwritten(model, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray((photo(30, 30) * 255).astype(np.uint8)).save(path)
    before = path.read_bytes()
    summary = restore_paths(model, [path], tmp_path, suffix="")
    assert summary.failed and "would replace an input" in summary.failed[0][1]
    assert path.read_bytes() == before


def test_skip_existing_and_refuse_existing(model, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray((photo(30, 30) * 255).astype(np.uint8)).save(path)
    assert restore_paths(model, [path], tmp_path / "o").done
    assert restore_paths(model, [path], tmp_path / "o", skip_existing=True).skipped == [path]
    assert "exists" in restore_paths(model, [path], tmp_path / "o").failed[0][1]


def test_sixteen_bit_png_stays_sixteen_bit(model, tmp_path):
    wide = (photo(40, 40)[..., 0] * 65535).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    summary = restore_paths(model, [tmp_path / "w.png"], tmp_path / "o")
    out = Image.open(summary.done[0])
    assert out.mode.startswith("I") and np.asarray(out).max() > 255


def test_cli_restore_exit_codes_and_compare(golden_model_dir, tmp_path, capsys):
    Image.fromarray((photo(50, 70) * 255).astype(np.uint8)).save(tmp_path / "x.jpg")
    code = main(
        ["restore", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), "--model", str(golden_model_dir), "--compare"]
    )
    assert code == 0
    assert (tmp_path / "o" / "x_restored.png").is_file() and (tmp_path / "o" / "x_restored_compare.png").is_file()
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code = main(["restore", str(tmp_path / "bad.jpg"), "-o", str(tmp_path / "o"), "--model", str(golden_model_dir)])
    assert code == 1
    assert "bad.jpg" in capsys.readouterr().err


def test_cli_without_a_default_model_explains(tmp_path, capsys, monkeypatch):
    import restorevar.models.registry as presets

    monkeypatch.setattr(presets, "BUNDLED_WEIGHTS", tmp_path / "none")
    assert main(["restore", str(tmp_path / "x.jpg")]) == 1
    assert "default model" in capsys.readouterr().err


def test_overwrite_never_replaces_an_input(model, tmp_path):
    path = write(tmp_path / "a.png")
    before = path.read_bytes()
    summary = restore_paths(model, [path], tmp_path, suffix="", overwrite=True)
    assert "would replace an input" in summary.failed[0][1] and path.read_bytes() == before


def test_rerun_does_not_restore_its_own_outputs(model, tmp_path):
    write(tmp_path / "a.png")
    first = restore_paths(model, [tmp_path], compare=True)
    assert [p.name for p in first.done] == ["a_restored.png"]
    second = restore_paths(model, [tmp_path], compare=True, skip_existing=True)
    assert second.skipped == [tmp_path / "a.png"] and not second.failed and not second.done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_restored.png", "a_restored_compare.png"]


def test_output_folder_inside_the_input_tree_is_not_walked(model, tmp_path):
    write(tmp_path / "a.png")
    for _ in range(2):
        summary = restore_paths(model, [tmp_path], tmp_path / "out", recursive=True, overwrite=True)
        assert [p.name for p in summary.done] == ["a_restored.png"] and not summary.failed
    assert not (tmp_path / "out" / "out").exists()


def test_clashing_names_keep_their_extension(model, tmp_path):
    write(tmp_path / "a.jpg")
    write(tmp_path / "a.png", seed=1)
    summary = restore_paths(model, [tmp_path], tmp_path / "o")
    assert sorted(p.name for p in summary.done) == ["a_jpg_restored.png", "a_png_restored.png"]


def test_compare_image_obeys_the_overwrite_rule(model, tmp_path):
    write(tmp_path / "a.png")
    (tmp_path / "o").mkdir()
    precious = tmp_path / "o" / "a_restored_compare.png"
    precious.write_bytes(b"precious")
    summary = restore_paths(model, [tmp_path / "a.png"], tmp_path / "o", compare=True)
    assert summary.failed and precious.read_bytes() == b"precious" and not (tmp_path / "o" / "a_restored.png").exists()


def test_same_file_twice_is_restored_once(model, tmp_path):
    path = write(tmp_path / "a.png")
    summary = restore_paths(model, [path, path, tmp_path], tmp_path / "o")
    assert len(summary.done) == 1 and not summary.failed


def test_bad_options_fail_once_up_front(golden_model_dir, tmp_path, capsys):
    write(tmp_path / "a.png")
    args = ["restore", str(tmp_path / "a.png"), "--model", str(golden_model_dir), "-o", str(tmp_path / "o")]
    assert main(args + ["--overlap", "128"]) == 1
    assert "--overlap must be in [0, 128)" in capsys.readouterr().err
    assert main(args + ["--batch-size", "0"]) == 1
    assert not (tmp_path / "o").exists()


def test_unmatched_glob_is_explained(golden_model_dir, tmp_path, caplog):
    assert main(["restore", str(tmp_path / "nothing" / "*.png"), "--model", str(golden_model_dir)]) == 1
    assert "no images found" in caplog.text
