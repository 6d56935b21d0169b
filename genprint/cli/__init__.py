"""`genprint` command line. Each subcommand lives in its own module with `add_parser(subparsers)`;
heavy imports (torch, Ray, MLflow) happen inside the handlers so `--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from genprint.allocator import keep_freed_memory
from genprint.errors import GenprintError

# Libraries whose INFO lines (alembic's migration notes on every registry command) show only with -v.
QUIET = ("alembic", "httpx", "urllib3", "botocore", "mlflow")
# Subcommand modules, in the order `--help` lists them.
COMMANDS = [
    "train",
    "render",
    "extract",
    "eval",
    "export",
    "verify-weights",
    "attack-weights",
    "tenants",
    "users",
    "attribute",
    "audit",
    "calibrate",
    "models",
    "serve",
    "demo",
]


def console():
    """A rich console; in logs and CI (not a terminal) 120 columns wide so tables stay readable."""
    from rich.console import Console

    return Console(width=None if Console().is_terminal else 120)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genprint", description="Fingerprint a latent decoder per user (WOUAF) and attribute images to users."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"genprint.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"genprint.cli.{name}":
                raise
            continue  # a subcommand not built yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # a CLI is quiet unless asked: libraries' progress chatter only with -v
        for name in QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except GenprintError as exc:
        print(f"genprint {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genprint {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
