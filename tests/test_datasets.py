"""Datasets: determinism by index, balanced labels, crops taken from the photo, pairing of every layout.

All images are tiny PNGs written into tmp_path (the training photos are never used here).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader

from restorevar.data.datasets import (
    DatasetError,
    PairedFolder,
    PaperJSON,
    SyntheticPairs,
    class_balanced_weights,
    degradation_labels,
    indices_by_degradation,
    jitter_tone,
    open_dataset,
    open_layout,
)
from restorevar.data.degradations import DEGRADATIONS
from restorevar.data.layouts import paired_crop
from restorevar.models.config import ConfigError
from restorevar.training.config import DataConfig, TrainConfig

CROP = 32


def write_png(path, pixels_HW3: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels_HW3.astype(np.uint8)).save(path)


def noise(seed: int, height: int = 40, width: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3))


@pytest.fixture()
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    for number in range(3):
        write_png(folder / f"photo{number}.png", noise(number, 64, 80))
    return folder


@pytest.fixture()
def ramp_dir(tmp_path):
    """One photo whose pixels encode their position: R = 2x, G = 2y, B = 100."""
    y, x = np.mgrid[0:80, 0:100]
    write_png(tmp_path / "ramp" / "ramp.png", np.stack([2 * x, 2 * y, np.full_like(x, 100)], axis=-1))
    return tmp_path / "ramp"


def write_pair(degraded_path, clean_path, seed: int, height: int = 40, width: int = 48) -> None:
    """Random clean image of even values and degraded = clean / 2 exactly, so a pair is checkable."""
    clean = noise(seed, height, width) // 2 * 2
    write_png(clean_path, clean)
    write_png(degraded_path, clean // 2)


def assert_paired(item) -> None:
    """The degraded image of a `write_pair` pair is exactly half its clean image, pixel for pixel."""
    assert torch.equal(item["clean"] * 0.5, item["degraded"])


# ---- SyntheticPairs -----------------------------------------------------------------------------


def test_synthetic_same_index_is_bit_identical_across_instances(photo_dir):
    first = SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=2)
    second = SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=2)
    for index in (0, 7, 29):
        a, b = first[index], second[index]
        assert torch.equal(a["degraded"], b["degraded"]) and torch.equal(a["clean"], b["clean"])
        assert a["name"] == b["name"] and a["degradation"] == b["degradation"]
    # the same photo and kind, one draw apart (index + n·K), is a different crop and degradation
    assert not torch.equal(first[0]["clean"], first[15]["clean"])
    assert not torch.equal(first[0]["degraded"], first[15]["degraded"])
    other_seed = SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=2, seed=1)
    assert not torch.equal(first[7]["degraded"], other_seed[7]["degraded"])


def test_synthetic_labels_are_balanced_over_a_full_cycle(photo_dir):
    data = SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=3)
    photos, kinds = 3, len(DEGRADATIONS)
    labels = degradation_labels(data)
    assert len(labels) == len(data) == photos * kinds * 3
    cycle = photos * kinds
    for start in (0, cycle, 2 * cycle):
        assert Counter(labels[start : start + cycle]) == {kind: photos for kind in DEGRADATIONS}
    # every (photo, kind) once per cycle, and labels agree with what the items report
    items = [data[i] for i in range(cycle)]
    assert len({(item["name"].split("_")[0], item["degradation"]) for item in items}) == cycle
    assert [item["degradation"] for item in items] == labels[:cycle]
    assert torch.equal(class_balanced_weights(data), torch.full((len(data),), 1 / (photos * 3), dtype=torch.float64))


def test_validation_indices_take_every_degradation_in_turn(photo_dir):
    data = SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=2)
    first = indices_by_degradation(data, len(DEGRADATIONS))
    assert [data.degradation_of(i) for i in first] == list(DEGRADATIONS)  # range(5) would be one kind only
    labels = degradation_labels(data)
    assert Counter(labels[i] for i in indices_by_degradation(data, 4 * len(DEGRADATIONS))) == {
        k: 4 for k in DEGRADATIONS
    }
    assert len(set(indices_by_degradation(data, len(data) + 7))) == len(data)  # all, each once
    assert indices_by_degradation(list(range(10)), 3) == [0, 1, 2]  # unlabelled: the first ones


def test_synthetic_items_have_shapes_ranges_and_collate(photo_dir):
    data = SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=1)
    for index in range(len(data)):
        item = data[index]
        for key in ("degraded", "clean"):
            assert item[key].shape == (3, CROP, CROP) and item[key].dtype == torch.float32
            assert 0.0 <= item[key].min() and item[key].max() <= 1.0
        assert item["degradation"] == DEGRADATIONS[index // 3]
        assert (item["degraded"] - item["clean"]).abs().mean() > 0.005  # really degraded
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert batch["degraded"].shape == (4, 3, CROP, CROP) and batch["degradation"] == ["haze"] * 3 + ["rain"]
    with pytest.raises(IndexError):
        data[len(data)]


def test_synthetic_crops_are_windows_of_the_photo(ramp_dir):
    data = SyntheticPairs(ramp_dir, crop_size=CROP, min_scale=1.0, max_scale=1.0, draws_per_photo=12)
    flips = set()
    for index in range(len(data)):
        pixels = torch.round(data[index]["clean"] * 255).long()  # (3, S, S): R = 2x, G = 2y
        top, left = pixels[1, 0, 0].item() // 2, pixels[0, 0].min().item() // 2
        row = pixels[0, 0]
        is_flipped = bool(row[0] > row[-1])
        flips.add(is_flipped)
        expected_row = 2 * torch.arange(left, left + CROP)
        assert torch.equal(row, expected_row.flip(0) if is_flipped else expected_row)
        assert torch.equal(pixels[0], row.expand(CROP, CROP))
        assert torch.equal(pixels[1], (2 * torch.arange(top, top + CROP))[:, None].expand(CROP, CROP))
        assert torch.all(pixels[2] == 100)
    assert flips == {False, True}


def test_synthetic_rescale_shrinks_the_photo(ramp_dir):
    # scale 0.5: a 64-pixel source window becomes 32 pixels, so R (= 2x) climbs 4 per output pixel
    data = SyntheticPairs(ramp_dir, crop_size=CROP, min_scale=0.5, max_scale=0.5, draws_per_photo=2)
    for index in range(len(data)):
        red = data[index]["clean"][0] * 255
        slope = (red[:, 4:-4].diff(dim=1)).abs().mean().item()
        assert slope == pytest.approx(4.0, abs=0.1)


def test_synthetic_rejects_bad_arguments(photo_dir):
    with pytest.raises(DatasetError, match="missing.png"):
        SyntheticPairs(photo_dir, crop_size=CROP, names=["photo0.png", "missing.png"])
    with pytest.raises(DatasetError, match="too small"):
        SyntheticPairs(photo_dir, crop_size=8)
    with pytest.raises(DatasetError, match="fog"):
        SyntheticPairs(photo_dir, crop_size=CROP, kinds=("haze", "fog"))
    assert len(SyntheticPairs(photo_dir, crop_size=CROP, names=["photo1.png"], draws_per_photo=1)) == 5


def test_jitter_tone_changes_level_contrast_and_colour_within_range():
    rng = np.random.default_rng(0)
    image = torch.rand(1, 24, 24, generator=torch.Generator().manual_seed(0)).expand(3, -1, -1)  # grey
    outs = [jitter_tone(image, rng) for _ in range(50)]
    assert all(o.shape == image.shape and 0 <= o.min() and o.max() <= 1 for o in outs)
    means, stds = torch.tensor([o.mean() for o in outs]), torch.tensor([o.std() for o in outs])
    assert means.min() < 0.3 and means.max() > 0.7  # new levels both ways
    assert stds.max() <= image.std() * 1.15 and stds.min() < 0.6 * image.std()  # at most the white-balance gain up
    assert max(float((o[0] - o[2]).abs().mean()) for o in outs) > 0.01  # grey in, tinted out
    assert torch.equal(jitter_tone(image, np.random.default_rng(1)), jitter_tone(image, np.random.default_rng(1)))


def test_tone_jitter_applies_to_the_clean_crop_before_degrading(photo_dir):
    plain = SyntheticPairs(photo_dir, crop_size=CROP, kinds=("none", "haze"), draws_per_photo=4)
    jittered = SyntheticPairs(photo_dir, crop_size=CROP, kinds=("none", "haze"), draws_per_photo=4, tone_jitter=1.0)
    for index in range(len(plain)):
        item = jittered[index]
        assert not torch.equal(item["clean"], plain[index]["clean"])
        if item["degradation"] == "none":  # the jittered crop is the target, not a degradation of it
            assert torch.equal(item["degraded"], item["clean"])
    half = SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=8, tone_jitter=0.5)
    changed = sum(
        not torch.equal(half[i]["clean"], SyntheticPairs(photo_dir, crop_size=CROP, draws_per_photo=8)[i]["clean"])
        for i in range(len(half))
    )
    assert 0.25 * len(half) < changed < 0.75 * len(half)
    with pytest.raises(DatasetError, match="tone_jitter"):
        SyntheticPairs(photo_dir, crop_size=CROP, tone_jitter=1.5)


def test_tone_jitter_can_spare_kinds_whose_clean_tone_the_model_must_infer(photo_dir):
    kinds = ("none", "haze", "low_light")
    plain = SyntheticPairs(photo_dir, crop_size=CROP, kinds=kinds, draws_per_photo=2)
    some = SyntheticPairs(
        photo_dir, crop_size=CROP, kinds=kinds, draws_per_photo=2, tone_jitter=1.0, tone_jitter_kinds=("none",)
    )
    for index in range(len(plain)):
        item = some[index]
        assert torch.equal(item["clean"], plain[index]["clean"]) == (item["degradation"] != "none"), item["name"]
    with pytest.raises(ConfigError, match="tone_jitter_kinds"):
        TrainConfig(stage="refiner", data=DataConfig(tone_jitter_kinds=("fog",))).validate()


# ---- paired folders and the paper's JSON --------------------------------------------------------


def test_paired_folder_pairs_by_stem_and_crops_aligned(tmp_path):
    root = tmp_path / "Rain13K"
    for seed, stem in enumerate(("a", "b", "c")):
        write_pair(root / "input" / f"{stem}.png", root / "target" / f"{stem}.png", seed)
    data = PairedFolder(root, crop_size=16, draws_per_pair=4)
    assert len(data) == 12 and set(degradation_labels(data)) == {"rain"}
    for index in range(len(data)):
        item = data[index]
        assert item["clean"].shape == (3, 16, 16)
        assert_paired(item)
    assert not torch.equal(data[0]["clean"], data[3]["clean"])  # another pass, another crop
    full = PairedFolder(root, crop_size=None)[1]
    assert full["clean"].shape == (3, 40, 48) and full["name"] == "b.png"
    assert_paired(full)


@pytest.mark.parametrize(
    "folder, label",
    [
        ("Snow100K/train", "snow"),
        ("data/Rain13K/train", "rain"),
        ("LOL-v1/our485", "low_light"),
        ("yellow/test", "unknown"),
    ],
)
def test_paired_folder_guesses_the_label_from_folder_names(tmp_path, folder, label):
    root = tmp_path / "sets" / folder
    write_pair(root / "input" / "a.png", root / "target" / "a.png", 0)
    assert degradation_labels(PairedFolder(root)) == [label]
    assert degradation_labels(PairedFolder(root, degradation="haze")) == ["haze"]


def test_paired_folder_reports_unmatched_files(tmp_path):
    root = tmp_path / "pairs"
    write_pair(root / "input" / "a.png", root / "target" / "a.png", 0)
    write_png(root / "input" / "lonely.png", noise(1))
    with pytest.raises(DatasetError, match="lonely.png"):
        PairedFolder(root)
    (root / "input" / "lonely.png").unlink()
    write_png(root / "target" / "orphan.png", noise(2))
    with pytest.raises(DatasetError, match="orphan.png"):
        PairedFolder(root)


def test_paired_size_mismatch_names_both_sizes(tmp_path):
    root = tmp_path / "pairs"
    write_png(root / "input" / "a.png", noise(0, 30, 40))
    write_png(root / "target" / "a.png", noise(0, 30, 48))
    data = PairedFolder(root, crop_size=16, degradation="rain")
    with pytest.raises(DatasetError, match="40x30.*48x30"):
        data[0]


@pytest.mark.parametrize("generator", [np.random.default_rng(3), None])
def test_paired_crop_keeps_the_pair_aligned(generator):
    clean_3HW = torch.rand(3, 37, 51)
    degraded, clean = paired_crop(clean_3HW * 0.5, clean_3HW, 20, generator)
    assert clean.shape == (3, 20, 20) and torch.equal(clean * 0.5, degraded)
    small_degraded, small_clean = paired_crop(clean_3HW * 0.5, clean_3HW, 64, generator)  # upscaled first
    assert small_clean.shape == (3, 64, 64)
    torch.testing.assert_close(small_clean * 0.5, small_degraded, rtol=0, atol=1e-6)


def test_paper_json_maps_labels_and_resolves_paths(tmp_path, monkeypatch):
    write_pair(tmp_path / "data" / "hazy" / "h.png", tmp_path / "data" / "gt" / "h.png", 0)
    write_pair(tmp_path / "data" / "blur" / "b.png", tmp_path / "data" / "sharp" / "b.png", 1)
    write_pair(tmp_path / "data" / "oled" / "o.png", tmp_path / "data" / "oled_gt" / "o.png", 2)
    entries = [
        {"image_path": "data/hazy/h.png", "target_path": "data/gt/h.png", "degradation": "Haze", "dataset": "RESIDE"},
        {
            "image_path": "data/blur/b.png",
            "target_path": "data/sharp/b.png",
            "degradation": "Motion blur",
            "dataset": "GoPro",
        },
        {
            "image_path": str(tmp_path / "data/oled/o.png"),
            "target_path": "data/oled_gt/o.png",
            "degradation": "toled",
            "dataset": "TOLED",
        },
    ]
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.json").write_text(json.dumps(entries))
    monkeypatch.chdir(tmp_path)  # paths are relative to the CWD here, not to lists/
    data = PaperJSON(tmp_path / "lists" / "train.json", crop_size=16)
    assert degradation_labels(data) == ["haze", "blur", "toled"]
    assert [data[i]["name"] for i in range(3)] == ["RESIDE/h.png", "GoPro/b.png", "TOLED/o.png"]
    for index in range(3):
        assert_paired(data[index])
    weights = class_balanced_weights(ConcatDataset([data, PaperJSON(tmp_path / "lists" / "train.json")]))
    assert torch.equal(weights, torch.full((6,), 0.5, dtype=torch.float64))
    entries[0]["image_path"] = "data/hazy/missing.png"
    (tmp_path / "lists" / "bad.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match="missing.png"):
        PaperJSON(tmp_path / "lists" / "bad.json")


# ---- standard layouts ---------------------------------------------------------------------------

# layout -> (degraded file, clean file) relative paths, expected label
LAYOUT_TREES = {
    "RESIDE": (
        [
            ("hazy/0001_0.8_0.2.png", "gt/0001.png"),
            ("hazy/0001_0.9_0.1.png", "gt/0001.png"),
            ("hazy/0002_1.png", "gt/0002.png"),
        ],
        "haze",
    ),
    "RESIDE-clear": ([("hazy/0005_0.8_0.2.png", "clear/0005.png")], "haze"),
    "Snow100K": (
        [
            ("synthetic/beautiful_00001.png", "gt/beautiful_00001.png"),
            ("synthetic/beautiful_00002.png", "gt/beautiful_00002.png"),
        ],
        "snow",
    ),
    "Rain13K": ([("input/1.png", "target/1.png"), ("input/2.png", "target/2.png")], "rain"),
    "LOLv1": ([("low/22.png", "high/22.png"), ("low/23.png", "high/23.png")], "low_light"),
    "GoPro": (
        [
            ("GOPR0372_07_00/blur/000047.png", "GOPR0372_07_00/sharp/000047.png"),
            ("GOPR0384_11_01/blur/000001.png", "GOPR0384_11_01/sharp/000001.png"),
        ],
        "blur",
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUT_TREES))
def test_layouts_pair_the_right_files(tmp_path, layout):
    files, label = LAYOUT_TREES[layout]
    root = tmp_path / layout
    scenes = sorted({clean for _, clean in files})
    for degraded, clean in files:  # RESIDE: two hazy images of one scene share its clean image
        write_pair(root / degraded, root / clean, scenes.index(clean))
    data = open_dataset(root, crop_size=16)
    assert sorted(
        (p.degraded.relative_to(root).as_posix(), p.clean.relative_to(root).as_posix()) for p in data.pairs
    ) == sorted(files)
    assert set(degradation_labels(data)) == {label}
    for index in range(len(data)):
        assert_paired(data[index])


def test_open_layout_errors_name_the_known_layouts(tmp_path):
    (tmp_path / "mystery" / "stuff").mkdir(parents=True)
    with pytest.raises(DatasetError, match="RESIDE.*Snow100K.*LOLv1.*GoPro"):
        open_layout(tmp_path / "mystery")
    with pytest.raises(DatasetError, match="RESIDE.*GoPro"):
        open_dataset(tmp_path / "mystery", crop_size=16)
    with pytest.raises(DatasetError, match="unknown layout"):
        open_layout(tmp_path / "mystery", layout="DIV2K")


# ---- open_dataset -------------------------------------------------------------------------------


def test_open_dataset_splits_photos_and_combines_specs(tmp_path):
    folder = tmp_path / "photos"
    for number in range(20):
        write_png(folder / f"p{number:02d}.png", noise(number, 40, 40))
    train = open_dataset(folder, crop_size=CROP)
    val = open_dataset(folder, crop_size=CROP, split="val")
    assert isinstance(train, SyntheticPairs) and len(val.paths) == 2 and len(train.paths) == 18
    assert not {p.name for p in train.paths} & {p.name for p in val.paths}
    assert len(val) == 2 * 5 * 4 and train.stream != val.stream

    write_pair(tmp_path / "LOL" / "low" / "1.png", tmp_path / "LOL" / "high" / "1.png", 0)
    both = open_dataset([folder, tmp_path / "LOL"], crop_size=CROP, split="val")
    assert isinstance(both, ConcatDataset) and len(both) == len(val) + 1
    assert degradation_labels(both) == degradation_labels(val) + ["low_light"]
    assert_paired(both[len(val)])  # val split of paired data: a centre crop, still aligned
    with_clean = open_dataset(folder, crop_size=CROP, split="val", kinds=("blur", "none"))
    assert len(with_clean) == 2 * 2 * 4 and set(degradation_labels(with_clean)) == {"blur", "none"}
    for item in (with_clean[i] for i in range(4)):  # clean → clean pairs for "none" only
        assert torch.equal(item["degraded"], item["clean"]) == (item["degradation"] == "none")
    jitter = {
        split: open_dataset(folder, crop_size=CROP, split=split, tone_jitter=0.5).tone_jitter
        for split in ("train", "val")
    }
    assert jitter == {"train": 0.5, "val": 0.0}  # held-out photos keep their own tones
    with pytest.raises(DatasetError, match="crop_size"):
        open_dataset(folder, crop_size=None)
    with pytest.raises(DatasetError, match="neither a folder nor a .json"):
        open_dataset(tmp_path / "nowhere", crop_size=CROP)
