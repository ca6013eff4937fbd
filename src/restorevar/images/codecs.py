"""Low-level 16-bit pixel codecs that Pillow lacks: decode 16-bit colour, write 16-bit PNG/TIFF.

Pillow has no 16-bit RGB mode. `decode_wide` reads such PNG/TIFF files by decoding
them twice (high bytes, then low bytes); `encode_png16` and `encode_tiff16` write
them back. `images` and `image_save` wrap these with user-facing error messages;
this module raises plain exceptions and never imports them.

Arrays: `wide_HWC` uint16 (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB)
or 4 (RGBA).
"""

from __future__ import annotations

import io
import struct
import sys
import zlib

import numpy as np
from PIL import Image

# What a failed pixel decode raises in Pillow; callers turn these into one-line messages.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


def swap_rawmode_byte_order(rawmode: str) -> str | None:
    """'RGB;16B' -> 'RGB;16L': the same decoder then keeps the low instead of the high byte.

    Returns None for raw modes that are not 16 bits per sample.
    """
    if rawmode.endswith(";16N"):
        rawmode = rawmode[:-1] + ("L" if sys.byteorder == "little" else "B")
    if rawmode.endswith(";16B"):
        return rawmode[:-1] + "L"
    if rawmode.endswith(";16L"):
        return rawmode[:-1] + "B"
    return None


def decode_with_rawmode(data: bytes, rawmode: str) -> np.ndarray:
    """Decode the image file `data` with Pillow's unpacker set to `rawmode` for every tile/strip.

    Returns the 8-bit pixels as Pillow's mode gives them; raises one of `DECODE_ERRORS`
    for a corrupt or truncated file.
    """
    img = Image.open(io.BytesIO(data))
    img.tile = [t._replace(args=(rawmode, *t.args[1:]) if isinstance(t.args, tuple) else rawmode) for t in img.tile]
    img.load()
    return np.asarray(img)


def decode_wide(data: bytes, img: Image.Image) -> np.ndarray | None:
    """Exact `wide_HWC` pixels of a 16-bit RGB(A)/LA file, else None.

    img: `data` opened by Pillow (header only), used to read the tile layout.
    Pillow unfilters/decompresses the full 16-bit stream but its unpacker keeps one
    byte per sample; decoding twice with the byte order swapped gives the other byte.
    Raises one of `DECODE_ERRORS` for a corrupt or truncated file.
    """
    rawmodes = {t.args[0] if isinstance(t.args, tuple) else t.args for t in img.tile}
    if len(rawmodes) != 1:  # multi-strip TIFFs are fine as long as every strip is packed alike
        return None
    rawmode = rawmodes.pop()
    if not isinstance(rawmode, str):
        return None
    if rawmode == "LA;16B":  # 4 bytes/pixel: unpack as 8-bit RGBA = (L hi, L lo, A hi, A lo)
        quad = decode_with_rawmode(data, "RGBA").astype(np.uint16)
        return np.stack([quad[..., 0] << 8 | quad[..., 1], quad[..., 2] << 8 | quad[..., 3]], axis=2)
    if img.mode not in ("RGB", "RGBA") or swap_rawmode_byte_order(rawmode) is None:
        return None
    high = decode_with_rawmode(data, rawmode).astype(np.uint16)
    low = decode_with_rawmode(data, swap_rawmode_byte_order(rawmode)).astype(np.uint16)
    return high << 8 | low


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
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


def narrow_to_uint8(wide: np.ndarray) -> np.ndarray:
    """uint16 values -> uint8, rounded to nearest (65535 -> 255), any shape."""
    return ((wide.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def encode_png16(wide_HWC: np.ndarray, icc: bytes | None) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB, RGBA) from uint16 (H, W, C); Pillow cannot write these.

    icc: an ICC profile to embed (iCCP chunk), or None.
    """
    height, width, channels = wide_HWC.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = wide_HWC.astype(">u2").reshape(height, -1).view(np.uint8)
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


def encode_tiff16(wide_HWC: np.ndarray, icc: bytes | None) -> bytes:
    """An uncompressed little-endian baseline TIFF, 16 bits per sample, one strip.

    wide_HWC: uint16 (H, W, C), C in 1..4 (2 and 4 carry unassociated alpha).
    icc: an ICC profile to embed (tag 34675), or None.
    """
    height, width, channels = wide_HWC.shape
    pixels = wide_HWC.astype("<u2").tobytes()
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
