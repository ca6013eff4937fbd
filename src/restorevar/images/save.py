"""Atomic saving of restored images, in-memory encoding, and the `--compare` view.

A failed save never leaves a partial file: `save_image` writes a temp file in the
same folder, fsyncs it and renames it into place. 16-bit colour images from
`images.to_pil` (exact pixels in `img.info[WIDE_PIXELS_KEY]`) are written as
16-bit PNG/TIFF by `image_codecs`, since Pillow cannot.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from restorevar.images.codecs import encode_png16, encode_tiff16, narrow_to_uint8
from restorevar.images.load import WIDE_PIXELS_KEY, ImageError, mode_for

logger = logging.getLogger(__name__)


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


def encode_image(
    img: Image.Image,
    fmt: str = "PNG",
    *,
    quality: int = 95,
    icc_profile: bytes | None = None,
    name: str = "image",
) -> bytes:
    """The bytes `save_image` would write for `img` in format `fmt`, kept in memory.

    fmt: Pillow format name ("PNG", "JPEG", "TIFF", "WEBP"). name: how log lines and
    `ImageError` messages refer to the image.
    """
    buffer = io.BytesIO()
    _writer(img, fmt.upper(), quality, icc_profile, name=name)(buffer)
    return buffer.getvalue()


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
    """Any mode -> 8-bit RGB for viewing: 16-bit narrowed, alpha composited on white."""
    if img.mode.startswith("I;16"):
        img = _to_8bit(img)
    elif img.mode in ("P", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA"):
        img = _on_white(img)
    return img.convert("RGB")


def _format_for(path: Path) -> str:
    """Pillow format name for the file extension of `path`."""
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
        encode = encode_png16 if fmt == "PNG" else encode_tiff16
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


def _wide_pixels(img: Image.Image) -> np.ndarray | None:
    """The 16-bit pixels attached by `images.to_pil`, if the image was not edited since."""
    wide = img.info.get(WIDE_PIXELS_KEY)
    if wide is None:
        return None
    if mode_for(wide.shape[2]) == img.mode and wide.shape[:2] == (img.height, img.width):
        if np.array_equal(narrow_to_uint8(wide), np.asarray(img)):
            return wide
    logger.warning("image was edited after to_pil; saving its 8-bit pixels, not the 16-bit ones")
    return None


def _to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit grey image or wide preview as plain 8-bit pixels."""
    if img.mode.startswith("I;16"):
        return Image.fromarray(narrow_to_uint8(np.asarray(img).astype(np.uint16)))
    return img.copy()  # a wide preview already holds the rounded 8-bit pixels


def _for_jpeg(img: Image.Image, name: str) -> Image.Image:
    """Convert to a mode JPEG can hold (L or RGB), compositing any alpha on white."""
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
    """Move the finished temp file to `path`, replacing it only when overwrite is True."""
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
