"""``cocktail verify``: does the enrolled talker speak in each recording?"""

from __future__ import annotations

import json
import logging

from .common import DEFAULT_ENROLLED_MODEL_NAME, add_command, examples, talker_arguments

log = logging.getLogger("cocktailparty")


def register(subparsers) -> None:
    p = add_command(subparsers, "verify", "score whether the enrolled talker speaks in each recording", run,
                    epilog=examples("cocktail verify --enroll alice.wav calls/ --json",
                                    "cocktail verify --enroll alice.wav call1.wav call2.wav --threshold 0.6",
                                    f"cocktail verify --enroll alice.wav calls/ --model {DEFAULT_ENROLLED_MODEL_NAME}"))
    p.add_argument("--enroll", required=True, metavar="E.wav")
    p.add_argument("inputs", nargs="+", metavar="IN")
    talker_arguments(p)
    p.add_argument("--threshold", type=float, help="decision threshold (default: the model's calibrated one)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from ..core.progress import progress_enabled
    from ..inference.separate import verify_files

    report = verify_files(args.enroll, args.inputs, model=args.model, device=args.device, threshold=args.threshold,
                          progress=progress_enabled(args.quiet), embedder=args.embedder)
    threshold, results = report["threshold"], report["results"]
    if args.json:
        print(json.dumps({"enrollment": str(args.enroll), "threshold": threshold,
                          "threshold_source": report["threshold_source"], "results": results}, indent=2))
    else:
        width = max([len(r["file"]) for r in results] + [4])
        print(f"enrollment: {args.enroll}   threshold: "
              + (f"{threshold:.4f} ({report['threshold_source']})" if threshold is not None else "none"))
        print(f"{'file':<{width}}  {'score':>8}  decision")
        for r in results:
            verdict = "-" if r["decision"] is None else ("present" if r["decision"] else "absent")
            print(f"{r['file']:<{width}}  {r['score']:>8.4f}  {verdict}")
    if report["failed"]:
        log.error("%d of %d file(s) failed", report["failed"], report["files"])
    return 1 if report["failed"] else 0
