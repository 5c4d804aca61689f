"""``cocktail demo``: synthesize two talkers, mix them, separate them, show the result."""

from __future__ import annotations

from .common import LibraryDefault, add_command, examples, model_arguments, writes


def register(subparsers) -> None:
    p = add_command(subparsers, "demo", "synthesize two talkers, mix them, separate them, and show the result", run,
                    epilog=examples("cocktail demo     # writes demo-output/",
                                    "cocktail demo --out demo-synth --model tdanet-synth16k --seed 1"))
    p.add_argument("-o", "--out", default="demo-output", metavar="DIR", help="output folder (default: %(default)s)")
    writes(p, "--out")
    model_arguments(p)
    p.add_argument("--seed", type=int, default=LibraryDefault("cocktailparty.eval.demo:run_demo", "seed"))


def run(args) -> int:
    from ..core.progress import progress_enabled
    from ..eval.demo import run_demo

    result = run_demo(args.out, model=args.model, device=args.device, seed=args.seed,
                      progress=progress_enabled(args.quiet))
    print(f"corpus:       {result['corpus']}")
    print(f"mixture:      {result['mixture']}")
    for path in result["estimates"]:
        print(f"estimate:     {path}")
    print(f"spectrograms: {result['figure']}")
    if result["si_snri"] is not None:
        print(f"SI-SNRi:      {result['si_snri']:.2f} dB")
    return 0
