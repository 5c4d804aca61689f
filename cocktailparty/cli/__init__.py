"""The ``cocktail`` command: argument parsing only.

Each subcommand is a module here with ``register(subparsers)``, which adds its arguments and
its handler, and the handler, which turns the parsed arguments into plain values for a library
function and prints what the command shows. Handlers import the library themselves, so
``cocktail --help`` stays fast and a subcommand never pays for another's imports; they return
an exit status. A :class:`~cocktailparty.core.errors.CocktailError` becomes a one-line message.
The output locations a subcommand names (``writes``) are checked before its handler starts,
so a folder it cannot write into is reported at once, not after minutes of work.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .. import __version__
from ..core.atomic import ensure_writable_dir, ensure_writable_file
from ..core.errors import CocktailError
from . import corpus, demo, evaluate, export, extract, mix, profile, separate, serve, train, verify
from .common import PROG, QUIET_HELP, fill_library_defaults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Separate overlapping talkers, and pick out one known voice.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    # The order of `cocktail --help`'s list.
    for command in (separate, extract, verify, corpus, mix, train, evaluate, profile, export, serve, demo):
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    from ..core.progress import LogHandler  # here, not at the top: it imports tqdm, --help does not need it

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"{PROG}: %(levelname)s: %(message)s",
        handlers=[LogHandler(sys.stderr)],  # a line logged while a progress bar shows goes above it
    )
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    logging.addLevelName(logging.INFO, "info")
    try:
        for flag, folder in args.outputs if "outputs" in args else ():
            value = vars(args)[flag.lstrip("-").replace("-", "_")]
            if value is not None:
                (ensure_writable_dir if folder else ensure_writable_file)(value, flag)
        fill_library_defaults(args)
        return int(args.handler(args) or 0)
    except CocktailError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
