"""Speaker verification on two-talker mixtures (Tune-In, Fig. 2): AUC / EER / minDCF and a ROC.

Trials (cocktailparty.eval.verification.make_trials) pair a clean enrollment utterance with a
0-5 dB two-talker test mixture, half with the enrolled speaker in it, from a held-out corpus
split whose speakers (and recorded persons) are checked against the training split. Systems:

  tune-in    --model CKPT     steering vectors (cosine) on the mixtures; the paper reports
                              AUC 0.980 / EER 0.061 for Tune-InCE on LibriSpeech mixtures
  tune-id    --tune-id CKPT   the same scoring with a Tune-ID checkpoint (supervised speaker
                              tokens; the paper finds it generalises poorly)
  resemblyzer                 a pretrained GE2E speaker encoder (optional: pip install
                              resemblyzer), on the clean test talker (the upper reference) and
                              on the same mixtures

A system that cannot run gets a row saying why; the script does not fail for it.

    python benchmarks/verification.py --corpus CORPUS --model runs/x/model.safetensors \
        [--tune-id runs/y/model.safetensors] [--trials 400] [--roc roc.png] \
        [--attention attention.png] [--calibrate calibrated.safetensors]

--calibrate writes a copy of --model with the EER-point threshold of these trials in its
metadata (verify_threshold), which 'cocktail verify' uses as its decision threshold.
--attention plots the cross-attention maps of the first target trial's mixture.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from cocktailparty.core.checkpoint import load_model
from cocktailparty.core.errors import CocktailError
from cocktailparty.data.speaker_corpus import SpeakerCorpus
from cocktailparty.eval.metrics.detection import auc, eer, min_dcf, plot_roc
from cocktailparty.eval.verification import (EncoderScorer, ResemblyzerEncoder, SteeringScorer, calibrate, labels,
                                             make_trials, render_trial, score_trials, write_calibrated_checkpoint)
from cocktailparty.models.tunein.plot import plot_cross_attention

PAPER = {"tune-in": "paper: AUC 0.980, EER 0.061 (Tune-InCE, LibriSpeech mixtures)"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True, help="speaker-labelled corpus folder (cocktail corpus build)")
    p.add_argument("--split", default="test", help="held-out split the trials come from (default: %(default)s)")
    p.add_argument("--train-split", default="train", help="split whose speakers the trials must avoid")
    p.add_argument("--model", help="Tune-In checkpoint (steering vectors on mixtures)")
    p.add_argument("--tune-id", help="Tune-ID checkpoint (same scoring)")
    p.add_argument("--no-resemblyzer", action="store_true", help="skip the reference encoder")
    p.add_argument("--trials", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sir", default="0,5", help="relative level range of the two talkers, dB")
    p.add_argument("--max-seconds", type=float, default=6.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--roc", default="verification-roc.png", help="ROC plot (default: %(default)s)")
    p.add_argument("--attention", metavar="PNG", help="cross-attention maps of one target trial (--model)")
    p.add_argument("--calibrate", metavar="OUT.safetensors",
                   help="copy --model here with the EER-point threshold as 'verify_threshold' metadata")
    args = p.parse_args(argv)
    try:
        return run(args)
    except CocktailError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def run(args) -> int:
    torch.set_grad_enabled(False)
    corpus = SpeakerCorpus.open(args.corpus, split=args.split)
    try:
        training = SpeakerCorpus.open(args.corpus, split=args.train_split)
    except CocktailError:
        training = None  # a corpus with no training split: nothing to be disjoint from
    sir = tuple(float(v) for v in args.sir.split(","))
    trials = make_trials(corpus, args.trials, seed=args.seed, sir=sir, max_seconds=args.max_seconds,
                         exclude=training)
    y = labels(trials)
    print(f"{len(trials)} trials ({int(y.sum())} target) from {corpus.name}: {len(corpus.speakers)} speakers, "
          f"{len(corpus.persons)} persons, none in '{args.train_split}'; SIR {sir[0]:g}..{sir[1]:g} dB, seed {args.seed}")

    systems, notes, models = {}, {}, {}
    for name, spec in (("tune-in", args.model), ("tune-id", args.tune_id)):
        if not spec:
            notes[f"{name} (mixture)"] = f"not run: no checkpoint (--{name} CKPT)" if name == "tune-id" else \
                "not run: no checkpoint (--model CKPT)"
            continue
        try:
            models[name] = load_model(spec, args.device)
            systems[f"{name} (mixture)"] = SteeringScorer(models[name])
        except CocktailError as err:
            notes[f"{name} (mixture)"] = f"not run: {err}"
    if args.no_resemblyzer:
        notes["resemblyzer (clean)"] = notes["resemblyzer (mixture)"] = "not run: --no-resemblyzer"
    else:
        try:
            encoder = ResemblyzerEncoder(args.device)
            systems["resemblyzer (clean)"] = EncoderScorer(encoder, test_audio="clean")
            systems["resemblyzer (mixture)"] = EncoderScorer(encoder, test_audio="mixture")
        except CocktailError as err:
            notes["resemblyzer (clean)"] = notes["resemblyzer (mixture)"] = f"not run: {err}"

    start = time.perf_counter()
    scores = score_trials(trials, systems, progress=True) if systems else {}
    elapsed = time.perf_counter() - start

    print(f"\n{'system (test audio)':<24} {'AUC':>6} {'EER':>6} {'minDCF':>7} {'EER thr':>8}  note")
    order = ["tune-in (mixture)", "tune-id (mixture)", "resemblyzer (clean)", "resemblyzer (mixture)"]
    for name in order:
        if name in scores:
            s = scores[name]
            threshold = calibrate(s, y).threshold
            note = PAPER.get(name.split(" ")[0], "")
            print(f"{name:<24} {auc(s, y):>6.3f} {eer(s, y):>6.3f} {min_dcf(s, y):>7.3f} {threshold:>8.4f}  {note}")
        else:
            print(f"{name:<24} {'-':>6} {'-':>6} {'-':>7} {'-':>8}  {notes.get(name, '')}")
    if scores:
        print(f"(scored in {elapsed:.1f} s)")
        names = [n for n in order if n in scores]
        plot_roc([scores[n] for n in names], [y] * len(names), args.roc, label=names,
                 title=f"speaker verification, {len(trials)} trials, SIR {sir[0]:g}-{sir[1]:g} dB")
        print(f"ROC: {args.roc}")

    if args.attention:
        if "tune-in" not in models:
            print("attention: needs --model", file=sys.stderr)
        else:
            trial = next(t for t in trials if t.label == 1)
            rendered = render_trial(trial)
            plot = plot_cross_attention(models["tune-in"], rendered.mixture, args.attention, trial.sample_rate,
                                        title=f"{trial.id} ({trial.sir_db:+.1f} dB)")
            print(f"attention: {plot.path} ({len(plot.panels)} panels)")

    if args.calibrate:
        if "tune-in (mixture)" not in scores:
            print("--calibrate: needs --model", file=sys.stderr)
            return 1
        if not Path(args.model).is_file():
            print(f"--calibrate: {args.model} is not a checkpoint file", file=sys.stderr)
            return 1
        cal = calibrate(scores["tune-in (mixture)"], y)
        out = write_calibrated_checkpoint(args.model, args.calibrate, cal, corpus=str(corpus.name),
                                          seed=args.seed, sir=list(sir))
        print(f"calibrated: threshold {cal.threshold:.4f} (EER {cal.eer:.3f} on {cal.num_trials} trials) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
