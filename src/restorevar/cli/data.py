"""`restorevar data`: build training data."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

EXAMPLE = "example: restorevar data photos data/photos"


def add_parser(commands) -> None:
    data = commands.add_parser("data", help="build training data").add_subparsers(dest="data_command", required=True)
    p = data.add_parser(
        "photos",
        help="build the clean training photo set from Debian packages",
        description="Download the Debian packages listed in docs/data.md with apt-get, extract their photos and "
        "write them with a manifest (package, version, path, licence per photo).",
        epilog=EXAMPLE,
    )
    p.add_argument("out_dir", type=Path)
    p.add_argument("--cache-dir", type=Path, help="where .deb files are kept (pre-downloaded ones are used)")
    p.set_defaults(func=photos_command)


def photos_command(args) -> int:
    from restorevar.data.photos import build_photo_set

    manifest = build_photo_set(args.out_dir, cache_dir=args.cache_dir)
    print(f"wrote {len(manifest.photos)} photos and {args.out_dir / 'manifest.json'}")
    return 0
