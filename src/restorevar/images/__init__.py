"""Image I/O, the floor of the package: loading (EXIF, ICC, 16-bit, size limits), codecs and atomic saving."""
