"""Minimal reader for Qt binary resource bundles (``.rcc``), used to pull photos out of GCompris.

Layout (all integers big-endian):

    header   b"qres", version u32, tree offset u32, data offset u32, names offset u32
             (+ format flags u32 when version >= 3)
    tree     one node per entry, 14 bytes (version 1) or 22 bytes (version >= 2, adds a u64 mtime):
               name offset u32, flags u16, then
               directory: child count u32, first child index u32
               file:      country u16, language u16, data offset u32
    names    u16 length, u32 hash, UTF-16-BE characters
    data     u32 size, then the bytes; zlib entries start with a u32 uncompressed size

Node flags: 1 = zlib, 2 = directory, 4 = zstd (Qt >= 5.13). Zstd is reported, not decoded: only
torch, numpy and pillow are core dependencies.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

FLAG_ZLIB = 1
FLAG_DIRECTORY = 2
FLAG_ZSTD = 4


class RccError(ValueError):
    """The bytes are not a readable Qt resource bundle."""


class RccBundle:
    """A parsed ``.rcc`` file: list its files with :meth:`files`, read one with :meth:`read`."""

    def __init__(self, data: bytes, *, source: str = "<bytes>"):
        if len(data) < 20 or data[:4] != b"qres":
            raise RccError(f"{source} is not a Qt resource bundle (no 'qres' magic)")
        self.source = source
        self._data = data
        self.version, self._tree, self._payload, self._names = struct.unpack_from(">4I", data, 4)
        if self.version not in (1, 2, 3):
            raise RccError(f"{source}: unsupported rcc version {self.version}; expected 1, 2 or 3")
        self._node_size = 14 if self.version == 1 else 22
        self._paths = dict(self._walk(0, ""))

    @classmethod
    def open(cls, path: str | Path) -> RccBundle:
        """Read and parse a bundle from disk."""
        return cls(Path(path).read_bytes(), source=str(path))

    def files(self) -> list[str]:
        """All file paths in the bundle, sorted, '/'-separated, without a leading slash."""
        return sorted(self._paths)

    def read(self, path: str) -> bytes:
        """Return the decompressed bytes of ``path`` (as listed by :meth:`files`)."""
        node = self._paths.get(path.lstrip("/"))
        if node is None:
            raise KeyError(f"{path!r} not in {self.source}")
        flags, data_offset = node
        start = self._payload + data_offset
        (size,) = struct.unpack_from(">I", self._data, start)
        blob = self._data[start + 4 : start + 4 + size]
        if flags & FLAG_ZSTD:
            raise RccError(
                f"{self.source}:{path} is zstd-compressed; rebuild the bundle with 'rcc --compress-algo zlib'"
            )
        if flags & FLAG_ZLIB:
            (expected,) = struct.unpack_from(">I", blob, 0)
            blob = zlib.decompress(blob[4:])
            if len(blob) != expected:
                raise RccError(f"{self.source}:{path}: inflated {len(blob)} bytes, header says {expected}")
        return blob

    # ---- parsing -------------------------------------------------------------------------------

    def _node(self, index: int) -> tuple[int, int, int, int]:
        """(name offset, flags, a, b): a, b = child count, first child (dir) or 0, data offset."""
        offset = self._tree + index * self._node_size
        if offset + 14 > len(self._data):
            raise RccError(f"{self.source}: tree node {index} lies past the end of the file")
        name_offset, flags = struct.unpack_from(">IH", self._data, offset)
        if flags & FLAG_DIRECTORY:
            count, first = struct.unpack_from(">II", self._data, offset + 6)
            return name_offset, flags, count, first
        (data_offset,) = struct.unpack_from(">I", self._data, offset + 10)
        return name_offset, flags, 0, data_offset

    def _name(self, name_offset: int) -> str:
        start = self._names + name_offset
        (length,) = struct.unpack_from(">H", self._data, start)
        return self._data[start + 6 : start + 6 + 2 * length].decode("utf-16-be")

    def _walk(self, index: int, prefix: str, depth: int = 0):
        """Yield (path, (flags, data offset)) for every file below directory node ``index``."""
        if depth > 64:
            raise RccError(f"{self.source}: directory tree deeper than 64 levels (corrupt?)")
        _, flags, count, first = self._node(index)
        assert flags & FLAG_DIRECTORY, "walk starts at a directory"
        for child in range(first, first + count):
            name_offset, child_flags, _, data_offset = self._node(child)
            path = prefix + self._name(name_offset)
            if child_flags & FLAG_DIRECTORY:
                yield from self._walk(child, path + "/", depth + 1)
            else:
                yield path, (child_flags, data_offset)


def build_rcc(files: dict[str, bytes], *, version: int = 2, compress: set[str] | None = None) -> bytes:
    """Write a bundle holding ``files`` ('/'-separated paths → bytes); used by tests and fixtures.

    Paths in ``compress`` are stored zlib-compressed. Children are ordered by name, not by Qt's
    hash order: our reader walks the tree and does not binary-search.
    """
    compress = compress or set()
    tree: dict = {}
    for path in files:
        parts = path.strip("/").split("/")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = path

    names, payload, nodes = bytearray(), bytearray(), []
    name_offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(name), 0) + encoded)
        return name_offsets[name]

    # breadth-first, so every directory's children are contiguous, as in Qt's layout
    nodes.append(["", FLAG_DIRECTORY, tree])
    queue = [0]
    while queue:
        index = queue.pop(0)
        children = nodes[index][2]
        nodes[index].append(len(nodes))  # first child index
        for child_name in sorted(children):
            value = children[child_name]
            if isinstance(value, dict):
                nodes.append([child_name, FLAG_DIRECTORY, value])
                queue.append(len(nodes) - 1)
            else:
                blob = files[value]
                flags = 0
                if value in compress:
                    blob = struct.pack(">I", len(blob)) + zlib.compress(blob)
                    flags = FLAG_ZLIB
                nodes.append([child_name, flags, len(payload)])
                payload.extend(struct.pack(">I", len(blob)) + blob)

    tree_bytes = bytearray()
    for entry in nodes:
        name, flags = entry[0], entry[1]
        if flags & FLAG_DIRECTORY:
            tree_bytes += struct.pack(">IHII", name_offset(name), flags, len(entry[2]), entry[3])
        else:
            tree_bytes += struct.pack(">IHHHI", name_offset(name), flags, 0, 0, entry[2])
        if version >= 2:
            tree_bytes += struct.pack(">Q", 0)

    header_size = 20 if version < 3 else 24
    tree_offset = header_size
    data_offset = tree_offset + len(tree_bytes)
    names_offset = data_offset + len(payload)
    header = b"qres" + struct.pack(">4I", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + bytes(tree_bytes) + bytes(payload) + bytes(names)
