"""``cocktail profile``: a model's size, compute, memory and speed."""

from __future__ import annotations

import json

from .common import LibraryDefault, add_command, examples, model_arguments

PROFILE = "cocktailparty.eval.profile:profile_model"


def register(subparsers) -> None:
    p = add_command(subparsers, "profile", "parameters, MACs, peak memory and real-time factor of a model", run,
                    epilog=examples("cocktail profile --model tdanet --seconds 1",
                                    "cocktail profile --model dprnn-wsj0 --device cuda --json"))
    model_arguments(p)
    p.add_argument("--sample-rate", type=int, help="default: the model's own")
    p.add_argument("--seconds", type=float, default=LibraryDefault(PROFILE, "seconds"),
                   help="input length (default: %(default)s)")
    p.add_argument("--batch", type=int, default=LibraryDefault(PROFILE, "batch"), help="batch size (default: %(default)s)")
    p.add_argument("--threads", type=int, default=LibraryDefault(PROFILE, "threads"),
                   help="CPU threads for timing (default: %(default)s, like the papers' reference figures)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..core.errors import CocktailError
    from ..core.progress import progress_enabled
    from ..eval.profile import format_report, profile_model

    if args.threads < 1:
        raise CocktailError(f"--threads must be at least 1, got {args.threads}")
    result = profile_model(args.model, seconds=args.seconds, sample_rate=args.sample_rate, device=args.device,
                           threads=args.threads, batch=args.batch, progress=progress_enabled(args.quiet))
    print(json.dumps(result) if args.json else format_report(result))
    return 0
