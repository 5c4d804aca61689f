"""``cocktail serve``: the local web page."""

from __future__ import annotations

from .common import LibraryDefault, add_command, examples, model_arguments

LIMITS = "cocktailparty.serve.app:Limits"
SERVE = "cocktailparty.serve.server:serve"


def _number(value: float) -> str:
    return f"{value:g}"


def register(subparsers) -> None:
    p = add_command(subparsers, "serve", "a local web page to separate, listen and extract", run,
                    description="Start a web server for a page that separates a recording (each talker "
                                "to listen to, see and download) or extracts one enrolled talker. It "
                                "listens on this machine only unless --host says otherwise; uploads and "
                                "results stay in a private temporary folder and are removed after "
                                "--keep-minutes and at exit.",
                    epilog=examples("cocktail serve     # then open http://127.0.0.1:8000/",
                                    "cocktail serve --port 8080 --model tdanet-synth16k --device cuda"))
    p.add_argument("--host", default=LibraryDefault(SERVE, "host"),
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=LibraryDefault(SERVE, "port"),
                   help="port (default: %(default)s; 0 picks a free one)")
    model_arguments(p)
    p.add_argument("--max-mb", type=float, default=LibraryDefault(LIMITS, "max_bytes", lambda b: b / 1e6, _number),
                   help="largest upload in MB (default: %(default)s)")
    p.add_argument("--max-minutes", type=float,
                   default=LibraryDefault(LIMITS, "max_seconds", lambda s: s / 60, _number),
                   help="longest recording in minutes (default: %(default)s)")
    p.add_argument("--keep-minutes", type=float,
                   default=LibraryDefault(LIMITS, "keep_seconds", lambda s: s / 60, _number),
                   help="results are removed this long after they are ready (default: %(default)s)")
    p.add_argument("--queue", type=int, default=LibraryDefault(LIMITS, "max_pending"),
                   help="most jobs waiting or running at once; more are refused (default: %(default)s)")


def run(args) -> int:
    from ..core.errors import CocktailError
    from ..serve.app import Limits
    from ..serve.server import serve

    for flag, value in (("--max-mb", args.max_mb), ("--max-minutes", args.max_minutes),
                        ("--keep-minutes", args.keep_minutes), ("--queue", args.queue)):
        if not value > 0:
            raise CocktailError(f"{flag} {value:g}: must be above 0")
    if not 0 <= args.port <= 65535:
        raise CocktailError(f"--port {args.port}: not a port number (0-65535; 0 picks a free one)")
    limits = Limits(max_bytes=int(args.max_mb * 1e6), max_seconds=args.max_minutes * 60,
                    max_pending=int(args.queue), keep_seconds=args.keep_minutes * 60)
    serve(args.model, device=args.device, host=args.host, port=args.port, limits=limits)
    return 0
