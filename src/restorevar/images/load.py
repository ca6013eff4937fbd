"""Safe loading of real photos, conversion back to images, and tensor conversion.

Everything a user hands to `restorevar restore` passes through here: bad input
gets one clear `ImageError` line. Saving lives in `image_save`.

Arrays: `rgb_HW3` float32 in [0, 1] (sRGB), `alpha_HW` float32 in [0, 1],
tensors `(3, H, W)` float32 in [0, 1].

16-bit RGB: Pillow has no 16-bit RGB mode. We read such PNG/TIFF files with
`image_codecs.decode_wide`, and `to_pil` returns an 8-bit preview that carries
the exact 16-bit pixels in `img.info[WIDE_PIXELS_KEY]`; `image_save` writes
those with `image_codecs.encode_png16` / `encode_tiff16`.
"""

from __future__ import annotations

import io
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from restorevar.images.codecs import DECODE_ERRORS, decode_wide, narrow_to_uint8, orient

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms
    ImageCms = None

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
        (pass it to `image_save.save_image` to keep colours as they were), else None.
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
    loaded = load_image_bytes(data, name=str(path), max_pixels=max_pixels)
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
        if getattr(obj, "n_frames", 1) > 1 and obj.format != "MPO":
            warnings.append(f"'{name}' has {obj.n_frames} frames; restoring the current frame only")
        try:
            obj = ImageOps.exif_transpose(obj)
        except Exception as err:  # noqa: BLE001 - a broken EXIF block must not stop a restore
            warnings.append(f"'{name}': EXIF orientation ignored ({err})")
        return _from_pil(obj, name=name, fmt=obj.format, warnings=warnings)
    if isinstance(obj, np.ndarray):
        return _from_array(obj)
    raise TypeError(f"cannot load an image from {type(obj).__name__}; pass a path, PIL.Image or numpy array")


def load_image_bytes(data: bytes, *, name: str = "upload", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file held in memory into a `LoadedImage`; raises `ImageError` for bad data.

    Opens the file, checks its size, decodes one frame and normalises it to sRGB float.
    name: how messages refer to the data (a path or "upload").
    max_pixels: as in `load_image`.
    """
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
    if getattr(img, "n_frames", 1) > 1 and img.format != "MPO":  # MPO: a camera JPEG with a preview frame
        warnings.append(f"'{name}' is animated/multi-frame ({img.n_frames} frames); using the first frame")

    try:
        wide = decode_wide(data, img)
    except DECODE_ERRORS as err:
        raise _corrupt(name, fmt, err) from None
    if wide is not None:
        return _from_wide(wide, img, name=name, fmt=fmt, warnings=warnings)
    _load(img, name)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as err:  # noqa: BLE001
        warnings.append(f"'{name}': EXIF orientation ignored ({err})")
    return _from_pil(img, name=name, fmt=fmt, warnings=warnings)


def image_size_from_header(data: bytes, *, name: str = "upload") -> tuple[int, int]:
    """(width, height) of an image file held in memory, read from its header: no pixel is decoded.

    Raises `ImageError` for data Pillow cannot open, as `load_image_bytes` does.
    """
    return _open(data, name).size


def _open(data: bytes, name: str) -> Image.Image:
    """Image.open on in-memory bytes (header only), with Pillow's errors turned into `ImageError`."""
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
    except DECODE_ERRORS as err:
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


def _from_wide(wide: np.ndarray, img: Image.Image, *, name: str, fmt, warnings) -> LoadedImage:
    """uint16 (H, W, C) pixels from `decode_wide` -> float sRGB + alpha, EXIF orientation applied."""
    orientation = img.getexif().get(0x0112, 1)
    values = orient(wide, orientation).astype(np.float32) / 65535.0
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
    `img.info[WIDE_PIXELS_KEY]`, which `image_save.save_image` writes as 16-bit PNG/TIFF.
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
        img = Image.fromarray(narrow_to_uint8(wide), mode_for(channels))
        img.info[WIDE_PIXELS_KEY] = wide
        return img
    narrow = np.round(values * 255.0).astype(np.uint8)
    return Image.fromarray(narrow[..., 0] if channels == 1 else narrow, mode_for(channels))


def mode_for(channels: int) -> str:
    """Pillow mode for 1-4 channels: grey, grey + alpha, RGB, RGBA."""
    return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]


# ---------------------------------------------------------------- tensors


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array in [0, 1] -> (3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1).contiguous()


def from_tensor(image_3HW: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 array (not clipped; `to_pil` clips)."""
    if image_3HW.ndim != 3 or image_3HW.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(image_3HW.shape)}")
    return image_3HW.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()
