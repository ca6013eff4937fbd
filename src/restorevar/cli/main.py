"""The `restorevar` command. This module only registers the subcommands (one module per command group); heavy
imports happen inside each handler so that `--help` stays fast. Errors print one line (the traceback with
--verbose) and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import sys

from restorevar.cli import bench, convert, data, models, restore, serve, train
from restorevar.cli import evaluate as evaluate_cli

COMMAND_GROUPS = (restore, serve, train, evaluate_cli, bench, convert, data, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restorevar",
        description="All-in-one image restoration (haze, rain, snow, low light, motion blur) with visual "
        "autoregressive models.",
        epilog="Run `restorevar COMMAND --help` for the options of each command. "
        "example: restorevar restore photos/ -r -o restored/ --compare",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and full tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
