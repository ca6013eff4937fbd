"""`restorevar serve`: the local web page and HTTP API (serving/)."""

from __future__ import annotations

import argparse
import logging

from restorevar.serving.jobs import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "serve",
        help="local web page and HTTP API",
        description="Start a web page (upload or drop photos, before/after slider, download) and an HTTP API "
        "(POST /api/restore, /api/jobs; GET /api/health, /openapi.json). Uploads wait in a bounded queue; "
        "a full queue answers 503 with Retry-After.",
        epilog="example: restorevar serve --port 7860 --model restorevar-small",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind; other than loopback exposes the server")
    p.add_argument("--port", type=int, default=7860, help="TCP port (0 picks a free one)")
    p.add_argument("--model", help="model folder or name (default: the bundled model)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs restored at the same time")
    p.add_argument("--queue-size", type=int, default=8, help="jobs that may wait; more get 503")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload (413 above)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image in pixels (413 above)")
    p.set_defaults(func=serve_command)


def serve_command(args) -> int:
    from restorevar.serving.app import create_server
    from restorevar.serving.jobs import ServeConfig

    config = ServeConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        concurrency=args.concurrency,
        queue_size=args.queue_size,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
    )
    server = create_server(config)
    log.info("serving %s on %s (Ctrl+C stops)", server.model_name, server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()
    return 0
