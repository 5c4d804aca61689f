"""``cocktail evaluate``: a model's SI-SNRi and SDRi on a test set."""

from __future__ import annotations

from pathlib import Path

from .common import DEFAULT_MODEL_NAME, LibraryDefault, add_command, examples, model_arguments


def register(subparsers) -> None:
    p = add_command(subparsers, "evaluate", "SI-SNRi and SDRi of a model on a test set, per utterance and on average",
                    run,
                    epilog=examples("cocktail evaluate --data data/test-real16k     # the default model: "
                                    f"results-{DEFAULT_MODEL_NAME}.csv",
                                    "cocktail evaluate --model runs/tdanet/best.safetensors --data data/test-2mix "
                                    "--out results.csv --stoi"))
    model_arguments(p)
    p.add_argument("--data", required=True, metavar="DIR", help="a test set (wsj0-2mix layout or a standard corpus)")
    p.add_argument("--split", default=LibraryDefault("cocktailparty.eval.evaluate:evaluate", "split"),
                   help="split to score when DIR holds several (default: %(default)s)")
    p.add_argument("--out", metavar="CSV", help="per-utterance results, with a .json summary beside it (default: "
                   "results-NAME.csv in the current folder, NAME being --model's name or file stem)")
    p.add_argument("--pesq", action="store_true", help="also compute PESQ")
    p.add_argument("--stoi", action="store_true", help="also compute STOI")
    p.add_argument("--high-band", action="store_true",
                   help="also score the band above half the Nyquist frequency on its own "
                        "(high_band_si_snri: negative when the output keeps less of it than the mixture)")
    p.add_argument("--limit", type=int, help="evaluate the first N mixtures only")


def run(args) -> int:
    from ..core.atomic import ensure_writable_file
    from ..core.progress import progress_enabled
    from ..eval.evaluate import default_out, evaluate, format_summary

    out_csv = Path(args.out) if args.out else default_out(args.model)
    # Checked here, not by main(): the default name comes from --model.
    ensure_writable_file(out_csv, "--out")
    summary = evaluate(args.model, args.data, out_csv, device=args.device, pesq=args.pesq, stoi=args.stoi,
                       high_band=args.high_band, limit=args.limit, progress=progress_enabled(args.quiet),
                       split=args.split)
    print(format_summary(summary))
    print(f"per-utterance results: {out_csv}")
    return 0
