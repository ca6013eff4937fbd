"""Loading real-world files, converting back, and saving atomically.

Every file is built in tmp_path by the test itself; no binary fixtures.
"""

import io
import logging
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from restorevar.images.load import (
    ImageError,
    LoadedImage,
    from_tensor,
    load_image,
    load_image_from,
    to_pil,
    to_tensor,
)
from restorevar.images.save import save_image, side_by_side

RNG = np.random.default_rng(0)


def noise(height, width, channels=3, dtype=np.uint8):
    top = 256 if dtype == np.uint8 else 65536
    shape = (height, width) if channels == 1 else (height, width, channels)
    return RNG.integers(0, top, shape).astype(dtype)


def opened(path) -> Image.Image:
    """Image.open without leaving the file handle open."""
    with Image.open(path) as img:
        img.load()
    return img


def round_trip(path, tmp_path, name="out.png"):
    """load -> to_pil -> save -> load again; returns (first, second)."""
    first = load_image(path)
    out = save_image(to_pil(first.rgb, first), tmp_path / name)
    return first, load_image(out)


# ---------------------------------------------------------------- orientation, colour, modes


def test_exif_rotated_jpeg(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.rgb.shape == (40, 20, 3) and loaded.format == "JPEG"
    assert np.allclose(loaded.rgb[5, 10], (1, 0, 0), atol=0.05)  # red is now on top
    assert np.allclose(loaded.rgb[35, 10], (0, 0, 1), atol=0.05)


def _patched_srgb_profile() -> bytes:
    # The same sRGB profile renamed so the loader cannot skip it: exercises the real transform.
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert b"s\x00R\x00G\x00B" in icc or b"sRGB" in icc
    return icc.replace(b"s\x00R\x00G\x00B", b"x\x00R\x00G\x00B").replace(b"sRGB", b"xRGB")


@pytest.mark.parametrize("kind", ["srgb", "renamed", "lab", "garbage"])
def test_png_with_icc_profile(tmp_path, kind):
    pixels = noise(16, 16)
    icc = {
        "srgb": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        "renamed": _patched_srgb_profile(),
        "lab": ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),
        "garbage": b"not an icc profile at all" * 10,
    }[kind]
    Image.fromarray(pixels).save(tmp_path / "icc.png", icc_profile=icc)
    loaded = load_image(tmp_path / "icc.png")
    got = np.round(loaded.rgb * 255)
    if kind == "srgb":  # already sRGB: untouched
        assert np.array_equal(got, pixels) and loaded.warnings == [] and loaded.icc_profile is None
    elif kind == "renamed":  # sRGB -> sRGB through littlecms: within rounding
        assert np.abs(got - pixels).max() <= 2 and loaded.warnings == [] and loaded.icc_profile is None
    else:  # unusable profile: pixels passed through, one warning, profile kept for saving
        assert np.array_equal(got, pixels) and loaded.icc_profile == icc
        assert len(loaded.warnings) == 1 and "ICC" in loaded.warnings[0] and "icc.png" in loaded.warnings[0]


def test_rgba_round_trip_is_bit_exact(tmp_path):
    pixels = noise(9, 13, 4)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    first, second = round_trip(tmp_path / "a.png", tmp_path)
    assert first.alpha is not None and not first.is_grey
    assert np.array_equal(np.asarray(opened(tmp_path / "out.png")), pixels)
    assert np.array_equal(second.alpha, first.alpha)


def test_la_and_grey_stay_grey(tmp_path):
    la = noise(7, 5, 2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    grey = noise(7, 5, 1)
    Image.fromarray(grey).save(tmp_path / "l.png")
    first, _ = round_trip(tmp_path / "la.png", tmp_path, "la_out.png")
    assert first.is_grey and first.alpha is not None
    assert opened(tmp_path / "la_out.png").mode == "LA"
    assert np.array_equal(np.asarray(opened(tmp_path / "la_out.png")), la)
    first, _ = round_trip(tmp_path / "l.png", tmp_path, "l_out.png")
    assert first.is_grey and first.alpha is None
    out = opened(tmp_path / "l_out.png")
    assert out.mode == "L" and np.array_equal(np.asarray(out), grey)


def test_grey_uses_pillow_luma():
    like = LoadedImage(rgb=np.zeros((4, 4, 3), np.float32), is_grey=True)
    rgb = RNG.random((4, 4, 3)).astype(np.float32)
    ours = np.asarray(to_pil(rgb, like)).astype(int)
    pillows = np.asarray(Image.fromarray(np.round(rgb * 255).astype(np.uint8)).convert("L")).astype(int)
    assert np.abs(ours - pillows).max() <= 1


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    img.save(tmp_path / "p.png", transparency=1)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.alpha is not None and not loaded.is_grey
    assert loaded.alpha.tolist() == [[1, 0, 1, 0], [0, 0, 1, 1]]
    assert loaded.rgb[0, 0].tolist() == [1, 0, 0]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg")  # pure cyan
    loaded = load_image(tmp_path / "cmyk.jpg")
    assert loaded.rgb.shape == (8, 8, 3) and not loaded.is_grey
    assert np.allclose(loaded.rgb, (0, 1, 1), atol=0.03)


def test_16bit_grey_png_round_trip(tmp_path):
    values = noise(6, 11, 1, np.uint16)
    values[0, :3] = (0, 1, 65535)
    Image.fromarray(values).save(tmp_path / "g16.png")
    first, second = round_trip(tmp_path / "g16.png", tmp_path)
    assert first.bit_depth == 16 and first.is_grey and second.bit_depth == 16
    out = opened(tmp_path / "out.png")
    assert out.mode == "I;16" and np.array_equal(np.asarray(out), values)


def test_16bit_rgb_tiff_read_exactly(tmp_path):
    tifffile = pytest.importorskip("tifffile")  # independent 16-bit RGB writer and reader
    values = noise(5, 7, 3, np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", values, photometric="rgb")
    tifffile.imwrite(tmp_path / "c16z.tif", values, photometric="rgb", compression="zlib")
    for name in ("c16.tif", "c16z.tif"):
        loaded = load_image(tmp_path / name)
        assert loaded.bit_depth == 16 and not loaded.is_grey
        assert np.array_equal(np.round(loaded.rgb * 65535).astype(np.uint16), values)
    # And our own 16-bit TIFF writer, read back by tifffile.
    save_image(to_pil(loaded.rgb, loaded), tmp_path / "back.tif")
    assert np.array_equal(tifffile.imread(tmp_path / "back.tif"), values)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_png_round_trip(tmp_path, channels):
    """Grey+alpha, RGB, RGBA at 16 bit: to_pil -> our PNG writer -> our reader, exact."""
    values = noise(6, 9, channels, np.uint16)
    values[0, 0] = 65535
    values[0, 1] = 0
    like = LoadedImage(
        rgb=np.zeros((6, 9, 3), np.float32),
        alpha=values[..., -1].astype(np.float32) / 65535 if channels != 3 else None,
        is_grey=channels == 2,
        bit_depth=16,
    )
    colour = values[..., :1].repeat(3, axis=2) if channels == 2 else values[..., :3]
    img = to_pil(colour.astype(np.float32) / 65535, like)
    save_image(img, tmp_path / "w.png")
    loaded = load_image(tmp_path / "w.png")
    assert loaded.bit_depth == 16 and loaded.is_grey == (channels == 2)
    got = np.round(loaded.rgb * 65535).astype(np.uint16)
    assert np.array_equal(got[..., 0] if channels == 2 else got, values[..., 0] if channels == 2 else values[..., :3])
    if channels != 3:
        assert np.array_equal(np.round(loaded.alpha * 65535).astype(np.uint16), values[..., -1])
    if channels == 3:  # Pillow alone (checks chunks, CRC, filter) keeps the high bytes
        assert np.array_equal(np.asarray(opened(tmp_path / "w.png")), values >> 8)


def test_animated_gif_takes_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    loaded = load_image(tmp_path / "anim.gif")
    assert np.allclose(loaded.rgb, (1, 0, 0), atol=0.01)
    assert len(loaded.warnings) == 1 and "frame" in loaded.warnings[0] and "anim.gif" in loaded.warnings[0]


def test_tiny_image(tmp_path):
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "one.png")
    loaded = load_image(tmp_path / "one.png")
    assert np.array_equal(np.round(loaded.rgb * 255), [[[10, 20, 30]]])


# ---------------------------------------------------------------- bad files


def _write_truncated(tmp_path, name, fmt):
    buffer = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(buffer, fmt)
    (tmp_path / name).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.mark.parametrize(
    "name,make,expected",
    [
        ("cut.jpg", lambda p: _write_truncated(p, "cut.jpg", "JPEG"), "truncated JPEG"),
        ("cut.png", lambda p: _write_truncated(p, "cut.png", "PNG"), "PNG"),
        ("empty.png", lambda p: (p / "empty.png").write_bytes(b""), "empty file"),
        ("notes.jpg", lambda p: (p / "notes.jpg").write_text("hello, not a photo\n"), "not an image"),
        ("folder.png", lambda p: (p / "folder.png").mkdir(), "directory"),
        ("missing.png", lambda p: None, "no such file"),
    ],
)
def test_bad_files_raise_one_line_image_error(tmp_path, name, make, expected):
    make(tmp_path)
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / name)
    message = str(info.value)
    assert expected in message and name in message and "\n" not in message


def _png_declaring(tmp_path, width, height):
    """A real 1x1 PNG whose header claims width x height (CRC fixed, data not)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / f"bomb_{width}.png"
    path.write_bytes(bytes(data))
    return path


def test_decompression_bombs(tmp_path):
    with pytest.raises(ImageError, match=r"81,000,000 pixels exceeds the limit of 80,000,000.*--max-pixels"):
        load_image(_png_declaring(tmp_path, 9000, 9000))  # our check, before any decoding
    with pytest.raises(ImageError, match=r"10,000,000,000 pixels is above Pillow's hard limit"):
        load_image(_png_declaring(tmp_path, 100_000, 100_000))
    Image.fromarray(noise(64, 64)).save(tmp_path / "real.png")
    with pytest.raises(ImageError, match=r"real\.png.*4,096 pixels exceeds the limit of 1,000"):
        load_image(tmp_path / "real.png", max_pixels=1000)
    assert load_image(tmp_path / "real.png", max_pixels=None).rgb.shape == (64, 64, 3)


# ---------------------------------------------------------------- Python API


def test_load_image_from_objects(tmp_path):
    pixels = noise(3, 4)
    assert np.array_equal(load_image_from(Image.fromarray(pixels)).rgb, pixels / np.float32(255))
    assert load_image_from(pixels.astype(np.float32) / 255).bit_depth == 8
    wide = load_image_from(noise(3, 4, 1, np.uint16))
    assert wide.bit_depth == 16 and wide.is_grey
    rgba = load_image_from(noise(3, 4, 4))
    assert rgba.alpha is not None and rgba.alpha.shape == (3, 4)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    assert load_image_from(tmp_path / "p.png").path == tmp_path / "p.png"
    with pytest.raises(ImageError, match=r"float values must be .*in \[0, 1\], got 0..255"):
        load_image_from(np.array([[0.0, 255.0]], np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image_from(np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(TypeError, match="list"):
        load_image_from([1, 2])


def test_tensor_round_trip():
    rgb = RNG.random((5, 6, 3)).astype(np.float32)
    tensor = to_tensor(rgb)
    assert tensor.shape == (3, 5, 6) and tensor.dtype == torch.float32
    assert tensor[1, 2, 3].item() == rgb[2, 3, 1]
    assert np.array_equal(from_tensor(tensor), rgb)


# ---------------------------------------------------------------- saving


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "out.png")
    assert os.listdir(tmp_path) == []


def test_failed_encoder_mid_write_leaves_nothing(tmp_path, monkeypatch):
    def half_save(self, fp, format=None, **params):
        fp.write(b"\x89PNG partial")
        raise RuntimeError("interrupted")

    (tmp_path / "keep.png").write_bytes(b"old")
    monkeypatch.setattr(Image.Image, "save", half_save)
    with pytest.raises(RuntimeError):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "keep.png", overwrite=True)
    assert os.listdir(tmp_path) == ["keep.png"] and (tmp_path / "keep.png").read_bytes() == b"old"


def test_refuses_overwrite(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="x.png.*overwrite=True"):
        save_image(Image.new("RGB", (2, 2)), target)
    assert target.read_bytes() == b"precious"
    save_image(Image.new("RGB", (2, 2), "red"), target, overwrite=True)
    assert opened(target).getpixel((0, 0)) == (255, 0, 0)
    assert os.listdir(tmp_path) == ["x.png"]
    assert (os.stat(target).st_mode & 0o777) != 0o600  # not mkstemp's private mode


def test_jpeg_from_rgba_composites_on_white(tmp_path, caplog):
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[:4] = (0, 0, 0, 255)  # top: opaque black; bottom: fully transparent
    with caplog.at_level(logging.WARNING, logger="restorevar.images.save"):
        save_image(Image.fromarray(pixels, "RGBA"), tmp_path / "flat.jpg")
    saved = np.asarray(opened(tmp_path / "flat.jpg")).astype(int)
    assert saved[1, 1].max() < 10 and saved[6, 6].min() > 245
    assert "composited on white" in caplog.text


def test_16bit_to_jpeg_is_8bit_with_log(tmp_path, caplog):
    values = np.full((4, 4), 65535, np.uint16)
    with caplog.at_level(logging.WARNING, logger="restorevar.images.save"):
        save_image(Image.fromarray(values), tmp_path / "g.jpg")
    out = opened(tmp_path / "g.jpg")
    assert out.mode == "L" and np.asarray(out).min() >= 250 and "8 bit" in caplog.text


def test_unknown_extension(tmp_path):
    with pytest.raises(ImageError, match=r"unknown image extension '\.xyz'"):
        save_image(Image.new("RGB", (2, 2)), tmp_path / "a.xyz")


def test_side_by_side():
    before = Image.new("L", (10, 20), 0)
    after = Image.new("RGBA", (5, 10), (255, 0, 0, 255))
    both = side_by_side(before, after)
    assert both.mode == "RGB" and both.size == (10 + 8 + 10, 20)
    assert both.getpixel((0, 0)) == (0, 0, 0)
    assert both.getpixel((13, 5)) == (255, 255, 255)  # the gap
    assert both.getpixel((25, 15)) == (255, 0, 0)


def test_sixteen_bit_rgb_tiff_in_many_strips_is_exact(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    wide = np.random.default_rng(0).integers(0, 65535, (60, 40, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", wide, rowsperstrip=8, compression="zlib")
    loaded = load_image(tmp_path / "s.tif")
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(np.round(loaded.rgb * 65535).astype(np.uint16), wide)
