"""Safe loading, tensor conversion and atomic saving of real photos.

Everything a user hands to `restorevar restore` passes through here: bad input
gets one clear `ImageError` line, and a failed save never leaves a partial file.

Arrays: `rgb_HW3` float32 in [0, 1] (sRGB), `alpha_HW` float32 in [0, 1],
tensors `(3, H, W)` float32 in [0, 1].

16-bit RGB: Pillow has no 16-bit RGB mode. We read such PNG/TIFF files by
decoding them twice (high bytes, then low bytes, see `_decode_wide`), and
`to_pil` returns an 8-bit preview that carries the exact 16-bit pixels in
`img.info[WIDE_PIXELS_KEY]`; `save_image` writes those with a small PNG/TIFF
encoder of its own (`_encode_png16`, `_encode_tiff16`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms
    ImageCms = None

logger = logging.getLogger(__name__)

# Below Pillow's own warning threshold (~89.5 MP), so the default path never
# triggers Pillow's DecompressionBombWarning; 80 MP is a 10000x8000 photo.
DEFAULT_MAX_PIXELS = 80_000_000
WIDE_PIXELS_KEY = "restorevar.uint16"  # img.info key: exact 16-bit pixels, H x W x C
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L")

_GREY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


class ImageError(ValueError):
    """A user's image file (or array) cannot be used; the message is one line."""


@dataclass
class LoadedImage:
    """A decoded photo, ready for the model, plus what is needed to save it alike.

    rgb: float32 (H, W, 3) in [0, 1], sRGB, EXIF orientation applied.
    alpha: float32 (H, W) in [0, 1] in the same orientation, or None.
    icc_profile: the source profile when it could not be converted to sRGB
        (pass it to `save_image` to keep colours as they were), else None.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    is_grey: bool = False
    bit_depth: int = 8
    format: str | None = None
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None
    icc_profile: bytes | None = None


# ---------------------------------------------------------------- loading


def load_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file into a `LoadedImage`; raises `ImageError` for any bad file.

    max_pixels: refuse images with more pixels (decompression bombs);
    None disables our check (Pillow's hard limit of 2 x Image.MAX_IMAGE_PIXELS stays).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"cannot read '{path}': no such file; check the path") from None
    except IsADirectoryError:
        raise ImageError(f"cannot read '{path}': it is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"cannot read '{path}': permission denied; check file permissions") from None
    if not data:
        raise ImageError(f"cannot read '{path}': empty file (0 bytes)")
    loaded = _decode(data, name=str(path), max_pixels=max_pixels)
    loaded.path = path
    return loaded


def load_image_from(obj, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Python API entry: a path, a PIL image, or a numpy array (H,W), (H,W,3), (H,W,4).

    Arrays may be uint8, uint16, or float in [0, 1].
    """
    if isinstance(obj, (str, os.PathLike)):
        return load_image(obj, max_pixels=max_pixels)
    if isinstance(obj, Image.Image):
        name = getattr(obj, "filename", None) or "<PIL image>"
        warnings = []
        if getattr(obj, "n_frames", 1) > 1:
            warnings.append(f"'{name}' has {obj.n_frames} frames; restoring the current frame only")
        try:
            obj = ImageOps.exif_transpose(obj)
        except Exception as err:  # noqa: BLE001 - a broken EXIF block must not stop a restore
            warnings.append(f"'{name}': EXIF orientation ignored ({err})")
        return _from_pil(obj, name=name, fmt=obj.format, warnings=warnings)
    if isinstance(obj, np.ndarray):
        return _from_array(obj)
    raise TypeError(f"cannot load an image from {type(obj).__name__}; pass a path, PIL.Image or numpy array")


def _decode(data: bytes, *, name: str, max_pixels: int | None) -> LoadedImage:
    """Open, check size, decode one frame and normalise to sRGB float."""
    img = _open(data, name)
    width, height = img.size
    # Our own limit, checked on the header before any pixel is decoded; no global state.
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"cannot read '{name}': {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (possible decompression bomb); raise it with --max-pixels {width * height}"
        )
    fmt = img.format
    warnings = []
    if getattr(img, "n_frames", 1) > 1:
        warnings.append(f"'{name}' is animated/multi-frame ({img.n_frames} frames); using the first frame")

    wide = _decode_wide(data, img, name)
    if wide is not None:
        return _from_wide(wide, img, name=name, fmt=fmt, warnings=warnings)
    _load(img, name)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as err:  # noqa: BLE001
        warnings.append(f"'{name}': EXIF orientation ignored ({err})")
    return _from_pil(img, name=name, fmt=fmt, warnings=warnings)


def _open(data: bytes, name: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        match = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
        raise ImageError(
            f"cannot read '{name}': {pixels} is above Pillow's hard limit of "
            f"{2 * Image.MAX_IMAGE_PIXELS:,} (possible decompression bomb); shrink the image first"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"cannot read '{name}': not an image Pillow can read (unrecognised contents); "
            f"check the file or convert it to PNG"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise _corrupt(name, None, err) from None


def _load(img: Image.Image, name: str) -> None:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as err:
        raise _corrupt(name, img.format, err) from None


def _corrupt(name: str, fmt: str | None, err: Exception) -> ImageError:
    kind = fmt or "image"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "truncated" in text or isinstance(err, EOFError):
        return ImageError(f"cannot read '{name}': truncated {kind} (file ends early); re-download or re-export it")
    return ImageError(f"cannot read '{name}': corrupt {kind} data ({text}); re-export the file")


def _from_pil(img: Image.Image, *, name: str, fmt: str | None, warnings: list[str]) -> LoadedImage:
    """Normalise any Pillow mode to float sRGB + optional alpha (8-bit or 16-bit grey)."""
    mode = img.mode
    is_grey = mode in _GREY_MODES
    icc = img.info.get("icc_profile")
    kept_icc = None
    if mode.startswith("I") or mode == "F":
        grey, bit_depth = _numeric_grey(img, name, warnings)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        return LoadedImage(rgb, None, True, bit_depth, fmt, warnings)

    if mode == "P":
        mode_to = "RGBA" if "transparency" in img.info or img.palette.mode == "RGBA" else "RGB"
        img = img.convert(mode_to)
    elif mode in ("1", "La"):
        img = img.convert("L" if mode == "1" else "LA")
    elif mode in ("PA", "RGBa"):
        img = img.convert("RGBA")

    if icc and not is_grey:
        img, kept_icc = _to_srgb(img, icc, name, warnings)
    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            img = img.convert("RGB")
        except ValueError:
            raise ImageError(
                f"cannot read '{name}': colour mode {img.mode} is not supported; convert it to RGB first"
            ) from None

    pixels = np.asarray(img, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    alpha = pixels[..., -1].copy() if img.mode in ("LA", "RGBA") else None
    colour = pixels[..., :-1] if alpha is not None else pixels
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else np.ascontiguousarray(colour)
    return LoadedImage(rgb, alpha, is_grey, 8, fmt, warnings, icc_profile=kept_icc)


def _numeric_grey(img: Image.Image, name: str, warnings: list[str]) -> tuple[np.ndarray, int]:
    """Modes I;16*, I and F: grey values scaled by 65535 (or clipped floats)."""
    values = np.asarray(img)
    if img.mode == "F":
        warnings.append(f"'{name}' is 32-bit float; values clipped to [0, 1] and saved back at 16 bit")
        return np.clip(values, 0.0, 1.0).astype(np.float32), 16
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageError(
            f"cannot read '{name}': 32-bit integer pixels ({values.min()}..{values.max()}) are not supported; "
            f"convert it to 16-bit"
        )
    return (values.astype(np.float32) / 65535.0), 16


def _to_srgb(img: Image.Image, icc: bytes, name: str, warnings: list[str]) -> tuple[Image.Image, bytes | None]:
    """Convert with the embedded ICC profile; on failure keep pixels and return the profile."""
    if ImageCms is None:
        warnings.append(f"'{name}': ICC profile not applied (Pillow lacks littlecms); colours kept as stored")
        return img, icc
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(source) or ""
        if "srgb" in description.lower() and img.mode in ("RGB", "RGBA"):
            return img, None  # already sRGB: converting would only add rounding
        alpha = img.getchannel("A") if img.mode in ("RGBA", "LA") else None
        base = img.convert("RGB") if img.mode == "RGBA" else img
        out = ImageCms.profileToProfile(base, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        if alpha is not None:
            out.putalpha(alpha)
        return out, None
    except (ImageCms.PyCMSError, OSError, ValueError) as err:
        warnings.append(f"'{name}': ICC profile not applied ({str(err).splitlines()[0]}); colours kept as stored")
        return img, icc


def _from_array(array: np.ndarray) -> LoadedImage:
    name = "<array>"
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ImageError(f"cannot read {name}: shape {array.shape} is not (H,W), (H,W,3) or (H,W,4)")
    if array.dtype == np.uint8:
        values, bit_depth = array.astype(np.float32) / 255.0, 8
    elif array.dtype == np.uint16:
        values, bit_depth = array.astype(np.float32) / 65535.0, 16
    elif np.issubdtype(array.dtype, np.floating):
        values, bit_depth = array.astype(np.float32), 8
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise ImageError(
                f"cannot read {name}: float values must be finite and in [0, 1], "
                f"got {np.nanmin(values):.3g}..{np.nanmax(values):.3g}; divide by 255 first"
            )
    else:
        raise ImageError(f"cannot read {name}: dtype {array.dtype} is not supported; use uint8, uint16 or float")
    is_grey = values.ndim == 2
    values = values[..., None] if is_grey else values
    alpha = values[..., 3].copy() if values.shape[2] == 4 else None
    rgb = np.ascontiguousarray(np.repeat(values, 3, axis=2) if is_grey else values[..., :3])
    return LoadedImage(rgb, alpha, is_grey, bit_depth, None, [])


# ---------------------------------------------------------------- 16-bit colour


def _other_byte(rawmode: str) -> str | None:
    """'RGB;16B' -> 'RGB;16L': the same decoder then keeps the low instead of the high byte."""
    if rawmode.endswith(";16N"):
        rawmode = rawmode[:-1] + ("L" if sys.byteorder == "little" else "B")
    if rawmode.endswith(";16B"):
        return rawmode[:-1] + "L"
    if rawmode.endswith(";16L"):
        return rawmode[:-1] + "B"
    return None


def _decode_with(data: bytes, name: str, rawmode: str) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    tile = img.tile[0]
    args = (rawmode, *tile.args[1:]) if isinstance(tile.args, tuple) else rawmode
    img.tile = [tile._replace(args=args)]
    _load(img, name)
    return np.asarray(img)


def _decode_wide(data: bytes, img: Image.Image, name: str) -> np.ndarray | None:
    """Exact uint16 (H, W, C) pixels of a 16-bit RGB(A)/LA file, else None.

    Pillow unfilters/decompresses the full 16-bit stream but its unpacker keeps one
    byte per sample; decoding twice with the byte order swapped gives the other byte.
    """
    if len(img.tile) != 1:
        return None
    args = img.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) else args
    if not isinstance(rawmode, str):
        return None
    if rawmode == "LA;16B":  # 4 bytes/pixel: unpack as 8-bit RGBA = (L hi, L lo, A hi, A lo)
        quad = _decode_with(data, name, "RGBA").astype(np.uint16)
        return np.stack([quad[..., 0] << 8 | quad[..., 1], quad[..., 2] << 8 | quad[..., 3]], axis=2)
    if img.mode not in ("RGB", "RGBA") or _other_byte(rawmode) is None:
        return None
    high = _decode_with(data, name, rawmode).astype(np.uint16)
    low = _decode_with(data, name, _other_byte(rawmode)).astype(np.uint16)
    return high << 8 | low


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as ImageOps.exif_transpose."""
    steps = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(steps[orientation](array)) if orientation in steps else array


def _from_wide(wide: np.ndarray, img: Image.Image, *, name: str, fmt, warnings) -> LoadedImage:
    orientation = img.getexif().get(0x0112, 1)
    values = _orient(wide, orientation).astype(np.float32) / 65535.0
    is_grey = values.shape[2] == 2
    has_alpha = values.shape[2] in (2, 4)
    alpha = values[..., -1].copy() if has_alpha else None
    colour = values[..., :-1] if has_alpha else values
    rgb = np.ascontiguousarray(np.repeat(colour, 3, axis=2) if is_grey else colour)
    icc = img.info.get("icc_profile")
    if icc and not is_grey:
        # littlecms in Pillow transforms 8-bit images only; converting would lose the 16 bits.
        warnings.append(f"'{name}': ICC profile of a 16-bit image not applied; it is kept for saving")
    return LoadedImage(rgb, alpha, is_grey, 16, fmt, warnings, icc_profile=icc if not is_grey else None)


# ---------------------------------------------------------------- back to images


def to_pil(rgb: np.ndarray, like: LoadedImage) -> Image.Image:
    """Turn a restored float (H, W, 3) array in [0, 1] into an image shaped like the source.

    Grey stays grey (ITU-R 601 luma), alpha is re-attached unchanged, 16-bit grey is
    mode "I;16"; 16-bit colour is an 8-bit preview with the exact pixels in
    `img.info[WIDE_PIXELS_KEY]`, which `save_image` writes as 16-bit PNG/TIFF.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got {rgb.shape}")
    if like.alpha is not None and like.alpha.shape != rgb.shape[:2]:
        raise ValueError(f"rgb is {rgb.shape[:2]} but the source alpha is {like.alpha.shape}; crop or resize alpha")
    values = np.clip(rgb, 0.0, 1.0)
    if like.is_grey:
        values = (values @ np.asarray(LUMA_WEIGHTS, dtype=np.float32))[..., None]
    if like.alpha is not None:
        values = np.concatenate([values, like.alpha[..., None]], axis=2)
    channels = values.shape[2]
    if like.bit_depth == 16:
        wide = np.round(values * 65535.0).astype(np.uint16)
        if channels == 1:
            return Image.fromarray(wide[..., 0])  # mode I;16
        img = Image.fromarray(_narrow(wide), mode_for(channels))
        img.info[WIDE_PIXELS_KEY] = wide
        return img
    narrow = np.round(values * 255.0).astype(np.uint8)
    return Image.fromarray(narrow[..., 0] if channels == 1 else narrow, mode_for(channels))


def mode_for(channels: int) -> str:
    return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]


def _narrow(wide: np.ndarray) -> np.ndarray:
    return ((wide.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _wide_pixels(img: Image.Image) -> np.ndarray | None:
    """The 16-bit pixels attached by `to_pil`, if the image was not edited since."""
    wide = img.info.get(WIDE_PIXELS_KEY)
    if wide is None:
        return None
    if mode_for(wide.shape[2]) == img.mode and wide.shape[:2] == (img.height, img.width):
        if np.array_equal(_narrow(wide), np.asarray(img)):
            return wide
    logger.warning("image was edited after to_pil; saving its 8-bit pixels, not the 16-bit ones")
    return None


# ---------------------------------------------------------------- saving


def save_image(
    img: Image.Image,
    path,
    *,
    format: str | None = None,
    quality: int = 95,
    overwrite: bool = False,
    icc_profile: bytes | None = None,
) -> Path:
    """Write `img` atomically: temp file in the same folder, fsync, then rename into place.

    format: Pillow format name; default from the extension. Raises FileExistsError if
    `path` exists and overwrite is False. On any error the destination is untouched
    and the temp file is removed.
    """
    path = Path(path)
    fmt = (format or _format_for(path)).upper()
    if path.is_dir():
        raise ImageError(f"cannot save '{path}': it is a directory; give a file name")
    if not path.parent.is_dir():
        raise ImageError(f"cannot save '{path}': folder '{path.parent}' does not exist; create it first")
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' already exists; pass overwrite=True (--overwrite) to replace it")
    write = _writer(img, fmt, quality, icc_profile, name=str(path))

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        _place(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _format_for(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            f"cannot save '{path}': unknown image extension '{path.suffix}'; use .png, .jpg, .tif or .webp"
        )
    return fmt


def _writer(img: Image.Image, fmt: str, quality: int, icc: bytes | None, *, name: str):
    """Return write(file) for the chosen format, converting what the format cannot hold."""
    wide = _wide_pixels(img)
    if wide is not None and fmt in ("PNG", "TIFF"):
        encode = _encode_png16 if fmt == "PNG" else _encode_tiff16
        return lambda file: file.write(encode(wide, icc))
    if wide is not None or img.mode.startswith("I;16"):
        if fmt not in ("PNG", "TIFF") or wide is not None:
            logger.warning("%s stores 8 bits per channel; '%s' saved at 8 bit (use .png or .tif for 16)", fmt, name)
            img = _to_8bit(img)
    if fmt == "JPEG":
        img = _for_jpeg(img, name)
    params = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if icc is not None:
        params["icc_profile"] = icc

    def write(file) -> None:
        try:
            img.save(file, format=fmt, **params)
        except (OSError, ValueError, KeyError) as err:
            if isinstance(err, OSError) and err.errno is not None:
                raise  # a real I/O error (disk full ...), not a format problem
            raise ImageError(f"cannot save '{name}' as {fmt}: {err}; choose another format such as .png") from None

    return write


def _to_8bit(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I;16"):
        return Image.fromarray(_narrow(np.asarray(img).astype(np.uint16)))
    return img.copy()  # a wide preview already holds the rounded 8-bit pixels


def _for_jpeg(img: Image.Image, name: str) -> Image.Image:
    if img.mode in ("P", "PA", "RGBa", "La", "1"):
        img = img.convert("RGBA" if img.mode != "1" and _has_alpha(img.convert("RGBA")) else "RGB")
    if img.mode in ("LA", "RGBA"):
        logger.warning("JPEG has no alpha channel; '%s' composited on white", name)
        img = _on_white(img)
    return img


def _has_alpha(rgba: Image.Image) -> bool:
    return rgba.getchannel("A").getextrema() != (255, 255)


def _on_white(img: Image.Image) -> Image.Image:
    """Drop alpha from an LA/RGBA image by compositing it over white."""
    base = Image.new(img.mode[:-1], img.size, "white")
    base.paste(img.convert(img.mode[:-1]), mask=img.getchannel("A"))
    return base


def _place(tmp: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path appeared meanwhile: no silent overwrite
    except FileExistsError:
        raise FileExistsError(f"'{path}' already exists; pass overwrite=True (--overwrite) to replace it") from None
    except OSError:  # filesystems without hard links
        if path.exists():
            raise FileExistsError(f"'{path}' already exists; pass overwrite=True (--overwrite) to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _umask() -> int:
    # os.umask() can only be read by setting it, which races with other threads.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); not possible on Windows."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _encode_png16(wide: np.ndarray, icc: bytes | None) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB, RGBA) from uint16 (H, W, C); Pillow cannot write these."""
    height, width, channels = wide.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = wide.astype(">u2").reshape(height, -1).view(np.uint8)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # "Up" filter: byte minus the byte above; compresses photos well
    filtered[:, 1:] = rows
    filtered[1:, 1:] -= rows[:-1]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header)]
    if icc:
        parts.append(chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    parts += [chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)), chunk(b"IEND", b"")]
    return b"".join(parts)


def _encode_tiff16(wide: np.ndarray, icc: bytes | None) -> bytes:
    """An uncompressed little-endian baseline TIFF, 16 bits per sample, one strip."""
    height, width, channels = wide.shape
    pixels = wide.astype("<u2").tobytes()
    short, long, undefined = 3, 4, 7
    entries = [  # (tag, type, values)
        (256, long, [width]),
        (257, long, [height]),
        (258, short, [16] * channels),
        (259, short, [1]),  # no compression
        (262, short, [1 if channels <= 2 else 2]),  # min-is-black or RGB
        (273, long, [0]),  # strip offset, patched below
        (277, short, [channels]),
        (278, long, [height]),
        (279, long, [len(pixels)]),
        (284, short, [1]),  # chunky (interleaved) samples
    ]
    if channels in (2, 4):
        entries.append((338, short, [2]))  # extra sample = unassociated alpha
    if icc:
        entries.append((34675, undefined, icc))
    ifd_size = 2 + 12 * len(entries) + 4
    extra = bytearray()
    table = bytearray(struct.pack("<H", len(entries)))
    for tag, kind, values in entries:
        fmt = {short: "H", long: "I", undefined: "B"}[kind]
        body = struct.pack(f"<{len(values)}{fmt}", *values) if kind != undefined else bytes(values)
        if len(body) <= 4:
            field_value = body.ljust(4, b"\x00")
        else:
            field_value = struct.pack("<I", 8 + ifd_size + len(extra))
            extra += body + b"\x00" * (len(body) % 2)  # keep offsets word-aligned
        table += struct.pack("<HHI", tag, kind, len(values)) + field_value
    table += struct.pack("<I", 0)  # no next IFD
    data_offset = 8 + ifd_size + len(extra)
    strip_at = 2 + 12 * [tag for tag, _, _ in entries].index(273) + 8
    table[strip_at : strip_at + 4] = struct.pack("<I", data_offset)
    return b"II*\x00" + struct.pack("<I", 8) + bytes(table) + bytes(extra) + pixels


def side_by_side(before: Image.Image, after: Image.Image, *, gap: int = 8) -> Image.Image:
    """`before | gap | after` as one RGB image for `--compare`; `after` scaled to before's height."""
    left, right = _display(before), _display(after)
    if right.height != left.height:
        width = max(1, round(right.width * left.height / right.height))
        right = right.resize((width, left.height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (left.width + gap + right.width, left.height), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + gap, 0))
    return canvas


def _display(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I;16"):
        img = _to_8bit(img)
    elif img.mode in ("P", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA"):
        img = _on_white(img)
    return img.convert("RGB")


# ---------------------------------------------------------------- tensors


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array in [0, 1] -> (3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1).contiguous()


def from_tensor(image_3HW: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 array (not clipped; `to_pil` clips)."""
    if image_3HW.ndim != 3 or image_3HW.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(image_3HW.shape)}")
    return image_3HW.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()
