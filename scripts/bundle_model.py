"""Copy a trained checkpoint into the package as a bundled pretrained model (float16).

    python scripts/bundle_model.py RUN/best.safetensors --name tdanet-synth16k \\
        --results results-tdanet.json --about "what it was trained on, how long"

The weights are stored as float16 (half the size; loading casts back to float32) with the
checkpoint's metadata (config, a calibrated verification threshold if any) plus ``about``
and the evaluation summary ``results`` (the JSON ``cocktail evaluate`` writes), so
``cocktail separate`` can say what a bundled model is and how well it did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cocktailparty.core.checkpoint import PRETRAINED_DIR, copy_with_metadata  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a cocktailparty .safetensors checkpoint")
    p.add_argument("--name", required=True, help="bundled name (cocktail separate --model NAME)")
    p.add_argument("--results", help="the JSON summary of 'cocktail evaluate' on the held-out test set")
    p.add_argument("--about", default="", help="one paragraph: data, training budget, intended use")
    args = p.parse_args(argv)
    meta = {"about": args.about}
    if args.results:
        meta["evaluation"] = json.loads(Path(args.results).read_text())
    out = copy_with_metadata(args.checkpoint, PRETRAINED_DIR / f"{args.name}.safetensors", meta, dtype=torch.float16)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
