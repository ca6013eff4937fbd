"""Photo-set builder: the .rcc reader, licence lookup, manifest, split, and a build from a fake .deb."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from restorevar.data import photos
from restorevar.data.manifest import Manifest, PhotoRecord, split_photos
from restorevar.data.photos import PhotoSetError, PhotoSource, build_photo_set, lookup_licence, parse_fields
from restorevar.data.rcc import FLAG_ZSTD, RccBundle, RccError, build_rcc

README = """Copyright: Someone, 2020
License: CC-BY-SA 4.0
Files:
icon.svg

Copyright: Jane Doe
Source: https://example.org/a.jpg
License: Public Domain
Files:
animals/a.webp

Copyright: John Roe
License: CC0-1.0
Source: https://example.org/b.jpg
Files: animals/b.webp
"""

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Package Team
License: GPL-2+

Files: 16.04/sea.png
Copyright: 2018, Ann Example
License: CC-BY-4.0

Files: debian/*
Copyright: 2021 Packager
License: Expat
"""


def webp_bytes(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="WEBP", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_round_trip(version):
    files = {
        "res/README": README.encode(),
        "res/animals/a.webp": b"A" * 100,
        "res/animals/b.webp": bytes(range(256)) * 3,
        "top.txt": "héllo".encode(),
    }
    data = build_rcc(files, version=version, compress={"res/animals/b.webp", "top.txt"})
    assert data[:4] == b"qres" and struct.unpack_from(">I", data, 4)[0] == version
    bundle = RccBundle(data)
    assert bundle.files() == sorted(files)
    for path, blob in files.items():
        assert bundle.read(path) == blob
    with pytest.raises(KeyError):
        bundle.read("missing")


def test_rcc_rejects_bad_input():
    with pytest.raises(RccError, match="qres"):
        RccBundle(b"PK\x03\x04" + bytes(40))
    with pytest.raises(RccError, match="version 9"):
        RccBundle(b"qres" + struct.pack(">4I", 9, 20, 20, 20))
    # flip the only file node to zstd: reading it must say so instead of returning garbage
    data = bytearray(build_rcc({"a.webp": b"xyz"}, version=2))
    tree_offset = struct.unpack_from(">I", data, 8)[0]
    struct.pack_into(">H", data, tree_offset + 22 + 4, FLAG_ZSTD)
    with pytest.raises(RccError, match="zstd"):
        RccBundle(bytes(data)).read("a.webp")


def test_licence_lookup_readme_and_dep5():
    readme = parse_fields(README)
    assert lookup_licence(readme, "animals/a.webp") == ("public-domain", "Jane Doe", "https://example.org/a.jpg")
    assert lookup_licence(readme, "animals/b.webp")[:2] == ("CC0-1.0", "John Roe")
    assert lookup_licence(readme, "animals/c.webp")[0] == "unknown"
    dep5 = parse_fields(COPYRIGHT)
    # installed path differs from the source path named in debian/copyright
    assert lookup_licence(dep5, "usr/share/backgrounds/sea.png")[:2] == ("CC-BY-4.0", "2018, Ann Example")
    assert lookup_licence(dep5, "usr/share/backgrounds/other.png")[0] == "GPL-2+"


def record(name: str) -> PhotoRecord:
    return PhotoRecord(
        file=name,
        package="pkg",
        version="1.0-1",
        path=f"usr/share/{name}",
        licence="CC0-1.0",
        copyright="Me",
        source_url="",
        original_size=(640, 480),
        size=(320, 240),
        sha256="0" * 64,
    )


def test_manifest_round_trip(tmp_path):
    manifest = Manifest(photos=[record("a.png"), record("b.png")], packages={"pkg": "1.0-1"})
    manifest.save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded == manifest
    assert Manifest.from_json(manifest.to_json()) == manifest
    rows = (tmp_path / "manifest.csv").read_text().splitlines()
    assert rows[0].startswith("file,package,version,path,licence") and "320x240" in rows[1]


def test_split_is_stable_and_disjoint():
    names = [f"photo_{i:03d}.png" for i in range(150)]
    train, val = split_photos(names, val_fraction=0.1, seed=0)
    assert len(val) == 15 and set(train) | set(val) == set(names) and not set(train) & set(val)
    assert (train, val) == split_photos(list(reversed(names)), val_fraction=0.1, seed=0)
    assert val != split_photos(names, val_fraction=0.1, seed=1)[1]
    manifest = Manifest(photos=[record(n) for n in names], packages={})
    assert split_photos(manifest, 0.1, 0) == (train, val)
    # known answer: pins the hash rule so held-out photos never move between versions
    assert val[:3] == sorted(val)[:3] and split_photos(["x.png", "y.png"], 0.5, 0) == (["x.png"], ["y.png"])
    with pytest.raises(ValueError, match="val_fraction"):
        split_photos(names, 1.5)


def test_fetch_without_apt_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(photos.shutil, "which", lambda name: None)
    with pytest.raises(
        PhotoSetError, match=r"apt-get not found, cannot fetch mate-backgrounds; download mate-backgrounds_\*\.deb"
    ):
        photos.fetch_deb("mate-backgrounds", tmp_path)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed: cannot build the fake .deb")
def test_build_photo_set_from_fake_deb(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: fake-photos\nVersion: 1.2-3\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
    )
    doc = root / "usr/share/doc/fake-photos"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    shots = root / "usr/share/backgrounds"
    shots.mkdir(parents=True)
    Image.open(io.BytesIO(webp_bytes(640, 300, 0))).save(shots / "sea.png")
    Image.open(io.BytesIO(webp_bytes(400, 300, 1))).save(shots / "hill.png")
    Image.open(io.BytesIO(webp_bytes(400, 300, 2))).save(shots / "skip_me.png")
    Image.open(io.BytesIO(webp_bytes(300, 200, 3))).save(shots / "tiny.png")  # short side < 256: dropped
    bundle = build_rcc(
        {
            "res/README": README.encode(),
            "res/animals/a.webp": webp_bytes(700, 560, 4),
            "res/animals/b.webp": webp_bytes(600, 400, 5),  # 300x200 after the 2x downscale: dropped
        },
        version=2,
        compress={"res/README"},
    )
    (shots / "bundle.rcc").write_bytes(bundle)
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(
        ["dpkg-deb", "--build", "-Zgzip", str(root), str(cache / "fake-photos_1.2-3_all.deb")],
        check=True,
        capture_output=True,
    )

    sources = (
        PhotoSource(
            "fake-photos", ("usr/share/backgrounds/*.png", "usr/share/backgrounds/bundle.rcc"), exclude=("skip*",)
        ),
    )
    out = tmp_path / "out"
    seen = []
    manifest = build_photo_set(out, cache_dir=cache, sources=sources, progress=seen.append)

    by_file = {p.file: p for p in manifest.photos}
    assert sorted(by_file) == ["fake-photos_hill.png", "fake-photos_sea.png", "gcompris_bundle_a.png"]
    assert len(seen) == 3 and manifest.packages == {"fake-photos": "1.2-3"}
    sea = by_file["fake-photos_sea.png"]
    assert (sea.licence, sea.version, sea.size, sea.original_size) == ("CC-BY-4.0", "1.2-3", (640, 300), (640, 300))
    assert by_file["fake-photos_hill.png"].licence == "GPL-2+"
    animal = by_file["gcompris_bundle_a.png"]
    assert animal.path == "usr/share/backgrounds/bundle.rcc:res/animals/a.webp"
    assert (animal.licence, animal.copyright, animal.size) == ("public-domain", "Jane Doe", (350, 280))
    assert Image.open(out / animal.file).size == (350, 280)
    assert json.loads((out / "manifest.json").read_text())["photos"][0]["sha256"] == manifest.photos[0].sha256

    # second run: nothing re-encoded, same manifest, no temp files left behind
    mtimes = {p.file: (out / p.file).stat().st_mtime_ns for p in manifest.photos}
    again = build_photo_set(out, cache_dir=cache, sources=sources)
    assert again == manifest
    assert mtimes == {p.file: (out / p.file).stat().st_mtime_ns for p in again.photos}
    assert sorted(f.name for f in out.iterdir()) == sorted([*mtimes, "manifest.json", "manifest.csv"])
