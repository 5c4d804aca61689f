"""``cocktail train``: a new run from a config, or a stopped one continued."""

from __future__ import annotations

from .common import add_command, examples, writes


def register(subparsers) -> None:
    p = add_command(subparsers, "train", "train a model from a YAML config", run,
                    epilog=examples("cocktail train --config tdanet-lrs2 --out runs/tdanet --set data.corpus=data/corpus "
                                    "--set training.batch_size=4",
                                    "cocktail train --config my-recipe.yaml --out runs/mine --device cuda:1",
                                    "cocktail train --resume runs/tdanet     # after Ctrl-C or a crash: continues"))
    p.add_argument("--config", metavar="FILE",
                   help="a bundled config's name (e.g. tdanet-lrs2; they are in cocktailparty/configs/) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder of a new run (default: runs/<config>-<time>)")
    writes(p, "--out")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    p.add_argument("--stop-after", type=float, metavar="SECONDS",
                   help="end a fixed-length slot: after SECONDS (set-up included), save mid-epoch as SIGTERM "
                   "would and exit with status 75; --resume continues. It is checked between steps, so "
                   "leave the time of one step, one checkpoint and one epoch's validation")


def run(args) -> int:
    from ..core.errors import CocktailError

    if args.stop_after is not None and not args.stop_after > 0:
        raise CocktailError(f"--stop-after {args.stop_after}: give a positive number of seconds")
    # main() notes its start before importing torch, which is part of the slot too.
    stop_at = None if args.stop_after is None else args.started + args.stop_after
    if args.resume and args.config:
        raise CocktailError("--resume continues a run with its own RUN_DIR/config.yaml; drop --config "
                            "(use --set KEY=VALUE to change e.g. training.epochs)")
    if not args.resume and not args.config:
        raise CocktailError("give --config NAME (a bundled config, e.g. tdanet-lrs2) or --config FILE.yaml "
                            "for a new run, or --resume RUN_DIR")
    from ..core.progress import progress_enabled
    from ..train.engine import new_run, resumed_run, run_training

    if args.resume:
        cfg, run_dir, source = resumed_run(args.resume, args.overrides)
    else:
        cfg, run_dir, source = new_run(args.config, args.overrides, args.out)
    return run_training(cfg, run_dir, source, resume=bool(args.resume), device=args.device,
                        progress=progress_enabled(args.quiet), stop_at=stop_at)
