"""Real recorded voices: how well every bundled separator does on people, not TTS voices.

Builds fixed test sets (once, seeded; kept under --work) and scores the bundled models on
them with ``cocktail evaluate``'s code, then prints one table and exits non-zero when a
target is missed or a set cannot be built:

  real-16k     two real talkers of the real corpus's test split (speakers no model trained
               on), 0-5 dB apart, 4 s, 16 kHz, clean: the independent real-voice check of the
               project is mixed the same way
  real-reverb  the same talkers in one simulated room each mixture (RT60 0.1-1.0 s), targets
               their early-reflection images (needs --rooms, a `cocktail corpus rooms` bank)
  real-8k      real-16k's recipe at 8 kHz (telephone-band models)
  tts-16k      the TTS corpus's test voices (the README's synthetic test set)

and real-voice trials: a clean enrollment of a test speaker and a 0-5 dB two-talker
mixture, half of them with that speaker in it. Extraction (``cocktail extract``) on the
target trials: how often the enrolled talker comes out, and its SI-SNRi; verification
(``cocktail verify``): the EER of its scores. Two ways are scored on them:

  separate, then select   the default separator (or --select-separator) and each embedder
                          of --select (``cocktail extract --embedder E``), with verify's
                          threshold calibrated on trials of the corpus's valid split; the
                          extraction and verification targets apply to the default
                          embedder (what ``cocktail extract`` runs by default)
  Tune-In                 the bundled Tune-In model (or --enrolled-model): its own
                          extractor and steering vectors, for comparison

The ">4kHz" column is the SI-SNRi of the band above half the Nyquist frequency alone:
negative when a model's outputs keep less of the top band than the unprocessed mixture (a
muffled voice that plain SI-SNR hardly notices).

Per source: the mean over mixtures with a talker of that package (a mixture counts for each
of its talkers' sources), to see which recordings a model still fails on.

    cocktail corpus real --out data/corpus-real16k --sample-rate 16000
    python benchmarks/real_voices.py --real-corpus data/corpus-real16k \
        --synth-corpus data/corpus-synth16k [--rooms data/rooms16k] [--models tdanet-real16k ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cocktailparty.core.checkpoint import PRETRAINED_DIR, read_metadata  # noqa: E402
from cocktailparty.core.errors import CocktailError  # noqa: E402
from cocktailparty.data.mixture_sets import write_mixture_set  # noqa: E402
from cocktailparty.eval.evaluate import evaluate, mean_ci  # noqa: E402
from targets import finish, mark  # noqa: E402  (benchmarks/targets.py, beside this script)

# (set, model rate) -> SI-SNRi target in dB for the default model of that rate: real voices
# 10 dB (8 dB in rooms, 9 dB for an 8 kHz model), TTS voices no worse than the TTS-only
# model's 12.65 dB.
TARGETS = {("real-16k", 16000): 10.0, ("real-reverb", 16000): 8.0, ("tts-16k", 16000): 12.65,
           ("real-8k", 8000): 9.0}
TARGET_RIGHT_TALKER, TARGET_EXTRACTION_DB, TARGET_EER = 0.95, 8.0, 0.10
SETS = {  # name -> (corpus option, rate, needs rooms)
    "real-16k": ("real", 16000, False),
    "real-reverb": ("real", 16000, True),
    "real-8k": ("real", 8000, False),
    "tts-16k": ("synth", 16000, False),
}


def bundled_separators() -> list[str]:
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def model_rate(name: str) -> int:
    path = PRETRAINED_DIR / f"{name}.safetensors" if "/" not in name else Path(name)
    return int(read_metadata(path)["config"]["sample_rate"])


def build_set(name: str, corpus: Path, work: Path, mixtures: int, rooms: Path | None) -> Path:
    """The test set ``name`` under ``work`` (built once; reused when present)."""
    _, rate, reverb = SETS[name]
    out = work / name
    if (out / "metadata.csv").is_file() or (out / "mix").is_dir() and any((out / "mix").iterdir()):
        return out
    if reverb:
        if rooms is None:
            raise CocktailError("needs --rooms (a room bank: cocktail corpus rooms --out DIR)")
        return write_reverberant_set(corpus, rooms, out, mixtures, rate)
    write_mixture_set(corpus, out, split="test", num_mixtures=mixtures, sample_rate=rate, seconds=4.0,
                      sir=(0.0, 5.0), seed=0, progress=False)
    return out


def write_reverberant_set(corpus: Path, rooms: Path, out: Path, mixtures: int, rate: int) -> Path:
    """Reverberant two-talker mixtures in the wsj0-2mix layout: mix/ holds the sum of the
    reverberant images, s1/ s2/ the early-reflection targets."""
    from cocktailparty.core import audio
    from cocktailparty.data.mixing import DynamicMixer

    mixer = DynamicMixer(corpus, split="test", rooms=rooms, reverb_probability=1.0, segment=4.0,
                         sample_rate=rate, sir=(0.0, 5.0), length=mixtures, seed=0)
    for index in range(mixtures):
        item = mixer[index]
        name = f"{index:05d}.wav"
        audio.write(out / "mix" / name, item["mixture"].numpy(), rate, subtype="FLOAT")
        for k, source in enumerate(item["sources"].numpy()):
            audio.write(out / f"s{k + 1}" / name, source, rate, subtype="FLOAT")
    return out


def extraction_and_verification(corpus: Path, model_name: str, num_trials: int, device: str | None) -> dict:
    """An enrolled model on real-voice trials of the corpus's test split (at the model's rate).

    Verification: every trial scored by the model's steering vectors (cosine to the
    enrollment's), EER over target and non-target trials. Extraction: for each target trial,
    ``cocktail extract``'s path (the model's extractor under a :class:`Separator`); the right
    talker is returned when the output is closer (SI-SNR) to the enrolled talker than to the
    other one, and SI-SNRi is measured against the enrolled talker.
    """
    import torch

    with torch.no_grad():  # not set_grad_enabled: a caller's grad mode must survive
        return _enrolled_scores(corpus, model_name, num_trials, device)


def _enrolled_scores(corpus: Path, model_name: str, num_trials: int, device: str | None) -> dict:
    from cocktailparty.core.checkpoint import load_model
    from cocktailparty.eval.metrics.detection import eer
    from cocktailparty.eval.metrics.signal_ratios import si_snr
    from cocktailparty.eval.verification import SteeringScorer, labels, make_trials, render_trial, score_trials
    from cocktailparty.inference.separate import Separator

    model = load_model(model_name, device)
    rate = int(model.config.sample_rate)
    trials = make_trials(corpus, num_trials, seed=0, sir=(0.0, 5.0), sample_rate=rate, split="test")
    scores = score_trials(trials, {"steering": SteeringScorer(model)})["steering"]
    right, gains = [], []
    for trial in trials:
        if trial.label != 1:
            continue
        rendered = render_trial(trial)
        separator = Separator(model.extractor(rendered.enrollment), device=next(model.parameters()).device)
        estimate = separator(rendered.mixture, rate)[0]
        other = rendered.mixture - rendered.clean
        to_target = float(si_snr(estimate, rendered.clean))
        right.append(to_target > float(si_snr(estimate, other)))
        gains.append(to_target - float(si_snr(rendered.mixture, rendered.clean)))
    return {"model": Path(model_name).stem, "rate": rate, "trials": len(trials), "eer": float(eer(scores, labels(trials))),
            "right_talker": float(np.mean(right)), **gain_interval(gains)}


def gain_interval(gains: list[float]) -> dict:
    """SI-SNRi mean and 95% interval (Student t, as ``cocktail evaluate`` reports) of target-talker gains."""
    summary = mean_ci(gains)
    return {"si_snri": summary["mean"], "si_snri_ci95": summary["ci95"]}


def selection(corpus: Path, separator_name: str, embedders: list[str], num_trials: int, device: str | None,
              split: str = "test") -> dict[str, dict]:
    """Separate, then select by voice (``cocktail extract --embedder E``), on real-voice trials
    of the corpus's ``split`` at the separator's rate: each trial's mixture is separated once
    and every embedder picks from the same outputs.

    Returns embedder -> the row of :func:`extraction_and_verification` (right talker and
    SI-SNRi on the target trials, EER of the verification scores), with ``scores`` and
    ``labels`` (``(N,)``) for calibration, or ``{"error": why}`` when the embedder cannot
    run (Resemblyzer not installed). The key ``"best output"`` is the better of the outputs
    by SI-SNR: what a perfect selector would reach.
    """
    import torch

    with torch.no_grad():
        return _selection_scores(corpus, separator_name, embedders, num_trials, device, split)


def _selection_scores(corpus: Path, separator_name: str, embedders: list[str], num_trials: int,
                      device: str | None, split: str) -> dict[str, dict]:
    from cocktailparty.eval.metrics.detection import eer
    from cocktailparty.eval.metrics.signal_ratios import si_snr
    from cocktailparty.eval.verification import labels, make_trials, render_trial
    from cocktailparty.inference.separate import Separator
    from cocktailparty.inference.voice_select import VoiceSelector, load_embedder

    separator = Separator.from_pretrained(separator_name, device=device)
    rate = separator.sample_rate
    loaded, results = {}, {}
    for name in embedders:
        try:
            loaded[name] = load_embedder(name, device or "cpu")
        except CocktailError as err:
            results[name] = {"error": str(err)}
    trials = make_trials(corpus, num_trials, seed=0, sir=(0.0, 5.0), sample_rate=rate, split=split)
    y = labels(trials)
    scores = {name: np.zeros(len(trials)) for name in loaded}
    right = {name: [] for name in [*loaded, "best output"]}
    gains = {name: [] for name in right}
    selectors: dict[tuple[str, str], VoiceSelector] = {}
    for i, trial in enumerate(trials):
        rendered = render_trial(trial)
        tracks = separator(rendered.mixture, rate)  # (C, time)
        to_target = [float(si_snr(t, rendered.clean)) for t in tracks]
        to_other = [float(si_snr(t, rendered.mixture - rendered.clean)) for t in tracks]
        baseline = float(si_snr(rendered.mixture, rendered.clean))
        picks = {}
        for name, embedder in loaded.items():
            key = (name, str(trial.enrollment))
            if key not in selectors:
                selectors[key] = VoiceSelector(embedder, rendered.enrollment, rate)
            similarity = selectors[key].similarities(tracks, rate)
            scores[name][i] = similarity.max()
            picks[name] = int(similarity.argmax())
        if trial.label == 1:
            picks["best output"] = int(np.argmax(to_target))
            for name, k in picks.items():
                right[name].append(to_target[k] > to_other[k])
                gains[name].append(to_target[k] - baseline)
    for name in right:
        results[name] = {"separator": Path(separator_name).stem, "embedder": name, "rate": rate,
                         "trials": len(trials), "right_talker": float(np.mean(right[name])), **gain_interval(gains[name])}
        if name in scores:
            results[name].update(eer=float(eer(scores[name], y)), scores=scores[name], labels=y)
    return results


def print_selection(test: dict[str, dict], valid: dict[str, dict], separator: str) -> None:
    """The separate-then-select table: per embedder, extraction on the test trials, their EER,
    and verify's threshold calibrated on the validation trials (the EER point there) with
    the test trials' miss and false-alarm rates at it."""
    from cocktailparty.eval.verification import eer_threshold

    first = next((row for row in test.values() if "error" not in row), None)
    if first is None:
        print(f"\nseparate, then select ({separator}): " + "; ".join(f"{n}: {r['error']}" for n, r in test.items()))
        return
    print(f"\nseparate with {first['separator']} ({first['rate']} Hz), then select by voice, on {first['trials']} "
          f"real-voice trials (0-5 dB); threshold: EER point of the validation trials")
    print(f"{'embedder':14s} {'right talker':>12s} {'SI-SNRi':>16s} {'EER':>6s} {'threshold':>9s} "
          f"{'miss':>5s} {'FA':>5s}  (targets {TARGET_RIGHT_TALKER:.0%}, {TARGET_EXTRACTION_DB:.1f} dB, EER "
          f"{TARGET_EER:.2f})")
    for name, row in test.items():
        if "error" in row:
            print(f"{name:14s} not run: {row['error']}")
            continue
        line = f"{name:14s} {row['right_talker']:12.1%} {row['si_snri']:7.2f} +-{row['si_snri_ci95']:4.2f} dB"
        if "eer" in row:
            line += f" {row['eer']:6.3f}"
            if "scores" in valid.get(name, {}):
                threshold, _ = eer_threshold(valid[name]["scores"], valid[name]["labels"])
                accepted, target = row["scores"] >= threshold, row["labels"] == 1
                line += (f" {threshold:9.4f} {np.mean(~accepted[target]):5.2f} {np.mean(accepted[~target]):5.2f}")
        print(line)


def scored(model: str, test_set: Path, out: Path, device: str | None) -> dict:
    """``cocktail evaluate``'s summary, with the top band scored too (``high_band_si_snri``: the
    SI-SNRi of the band above half the Nyquist frequency, negative when a model's outputs keep
    less of it than the mixture). Per-mixture results of an earlier run without that metric
    are scored again rather than mixed in."""
    meta = out.with_suffix(".json")
    if meta.is_file() and "high_band_si_snri" not in json.loads(meta.read_text()).get("metrics", []):
        out.unlink(missing_ok=True)
        meta.unlink()
    return evaluate(model, test_set, out, device=device, progress=False, high_band=True)


def sources_of_mixtures(test_set: Path, corpus: Path) -> dict[str, set[str]]:
    """Mixture id -> the corpus sources (manifest column) of its talkers."""
    metadata = test_set / "metadata.csv"
    if not metadata.is_file():
        return {}
    with open(corpus / "manifest.csv", encoding="utf-8") as handle:
        # TTS corpora built before the source column existed: their engine says as much.
        source_of = {r["speaker"]: r.get("source") or r.get("engine") or "?" for r in csv.DictReader(handle)}
    with open(metadata, encoding="utf-8") as handle:
        return {r["mixture_id"]: {source_of.get(r[k], "?") for k in r if k.endswith("_speaker") and r[k]}
                for r in csv.DictReader(handle)}


def per_source(results_csv: Path, sources: dict[str, set[str]]) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    with open(results_csv, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for source in sources.get(row["id"], ()):
                values.setdefault(source, []).append(float(row["si_snri"]))
    return {s: float(np.mean(v)) for s, v in sorted(values.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--real-corpus", type=Path, required=True, help="cocktail corpus real output (16 kHz)")
    p.add_argument("--synth-corpus", type=Path, help="cocktail corpus build output (the TTS test voices)")
    p.add_argument("--rooms", type=Path, help="a room bank (cocktail corpus rooms) for the reverberant set")
    p.add_argument("--models", nargs="*", help="default: every bundled model")
    p.add_argument("--default", default=None, help="the model the 16 kHz targets apply to (default: the "
                   "bundled default)")
    p.add_argument("--narrowband", default=None, help="the model the 8 kHz target applies to (default: the "
                   "bundled 8 kHz default)")
    p.add_argument("--mixtures", type=int, default=150)
    p.add_argument("--trials", type=int, default=120, help="extraction / verification trials, half with the "
                   "enrolled talker in the mixture (0: skip)")
    p.add_argument("--enrolled-model", help="a Tune-In model to compare, by its own extractor and steering "
                   "vectors (default: the bundled one)")
    p.add_argument("--select", nargs="*", default=None, metavar="E", help="embedders for separate-then-select "
                   "(cocktail extract --embedder E; default: tunein resemblyzer; none: skip)")
    p.add_argument("--select-separator", default=None, metavar="M", help="the separator they select from "
                   "(default: the bundled default)")
    p.add_argument("--sets", nargs="*", choices=list(SETS), default=list(SETS), help="test sets to build and "
                   "score (default: all; none: only the trials)")
    p.add_argument("--work", type=Path, default=Path("data/bench-real"), help="test sets and per-mixture CSVs")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    from cocktailparty.core.checkpoint import DEFAULT_MODEL, DEFAULT_NARROWBAND_MODEL

    default = args.default or DEFAULT_MODEL
    narrowband = args.narrowband or DEFAULT_NARROWBAND_MODEL
    models = args.models or bundled_separators()
    corpora = {"real": args.real_corpus, "synth": args.synth_corpus}
    rows, failures = [], []
    for set_name, (which, rate, _) in SETS.items():
        if set_name not in args.sets:
            failures.append(f"{set_name}: not scored (--sets)")
            continue
        corpus = corpora[which]
        if corpus is None:
            failures.append(f"{set_name}: not built (no --{which}-corpus)")
            continue
        try:
            test_set = build_set(set_name, corpus, args.work, args.mixtures, args.rooms)
        except CocktailError as err:
            failures.append(f"{set_name}: not built ({err})")
            continue
        sources = sources_of_mixtures(test_set, corpus)
        for model in models:
            if model_rate(model) != rate:
                continue
            out = args.work / "results" / f"{Path(model).stem}-{set_name}.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            summary = scored(model, test_set, out, args.device)
            target = TARGETS.get((set_name, rate)) if Path(model).stem in (default, narrowband) else None
            score = summary["si_snri"]["mean"]
            rows.append((set_name, Path(model).stem, score, summary["si_snri"]["ci95"], summary["sdri"]["mean"],
                         summary["high_band_si_snri"]["mean"], target, per_source(out, sources)))
            if target is not None and not score >= target:
                failures.append(f"{Path(model).stem} on {set_name}: {score:.2f} dB SI-SNRi, target {target:.2f}")
    for (set_name, rate), target in TARGETS.items():
        if rate == 8000 and set_name in args.sets and not any(r[0] == set_name and r[6] is not None for r in rows):
            failures.append(f"{set_name}: {narrowband} not scored; it has the {target:.1f} dB target")

    print(f"{'set':12s} {'model':24s} {'SI-SNRi':>16s} {'SDRi':>7s} {'>4kHz':>7s} {'target':>7s}  per source (SI-SNRi)")
    for set_name, model, score, ci, sdri, high, target, by_source in rows:
        verdict = "" if target is None else (" " + mark(score >= target))
        target_text = "" if target is None else f"{target:.2f}"
        breakdown = ", ".join(f"{s} {v:.1f}" for s, v in by_source.items())
        print(f"{set_name:12s} {model:24s} {score:7.2f} +-{ci:4.2f} dB {sdri:7.2f} {high:7.2f} {target_text:>7s}{verdict:7s} "
              f"{breakdown}")
    enrolled, selected = None, {}
    if args.trials:
        from cocktailparty.core.checkpoint import DEFAULT_ENROLLED_MODEL
        from cocktailparty.inference.voice_select import DEFAULT_EMBEDDER, ENROLLED_MODEL_ALIAS, RESEMBLYZER

        separator = args.select_separator or DEFAULT_MODEL
        embedders = [ENROLLED_MODEL_ALIAS, RESEMBLYZER] if args.select is None else args.select
        if embedders:
            selected = selection(args.real_corpus, separator, embedders, args.trials, args.device)
            runnable = [e for e in embedders if "error" not in selected[e]]
            try:  # verify's threshold comes from other voices than the ones it is scored on
                calibration = selection(args.real_corpus, separator, runnable, args.trials, args.device,
                                        split="valid") if runnable else {}
            except CocktailError as err:
                print(f"no threshold calibrated: {err}")
                calibration = {}
            print_selection(selected, calibration, separator)
        enrolled = extraction_and_verification(args.real_corpus, args.enrolled_model or DEFAULT_ENROLLED_MODEL,
                                               args.trials, args.device)
        print(f"\n{enrolled['model']} ({enrolled['rate']} Hz, its own extractor and steering vectors) on "
              f"{enrolled['trials']} real-voice trials (0-5 dB): extraction picks the enrolled talker in "
              f"{enrolled['right_talker']:.0%} of target trials, SI-SNRi {enrolled['si_snri']:.2f} "
              f"+-{enrolled['si_snri_ci95']:.2f} dB; verification EER {enrolled['eer']:.3f}")
        # The targets are cocktail extract's and verify's: the default separator selecting
        # with the default embedder.
        default_row = selected.get(DEFAULT_EMBEDDER) if separator == DEFAULT_MODEL else None
        if default_row is None or "error" in default_row:
            failures.append(f"extraction and verification: {DEFAULT_MODEL} with --embedder {DEFAULT_EMBEDDER} "
                            f"(cocktail extract's default) not measured")
        else:
            if not (default_row["right_talker"] >= TARGET_RIGHT_TALKER
                    and default_row["si_snri"] >= TARGET_EXTRACTION_DB):
                failures.append(f"extraction: {default_row['right_talker']:.0%} right talker, "
                                f"{default_row['si_snri']:.2f} dB")
            if not default_row["eer"] <= TARGET_EER:
                failures.append(f"verification: EER {default_row['eer']:.3f}")
    else:
        failures.append("extraction and verification: not measured (--trials 0)")
    selected = {name: {k: v for k, v in row.items() if k not in ("scores", "labels")} for name, row in selected.items()}
    args.work.mkdir(parents=True, exist_ok=True)  # with --sets and nothing else, nothing made it yet
    (args.work / "summary.json").write_text(json.dumps({"rows": rows, "enrolled": enrolled, "selected": selected,
                                                        "failures": failures},
                                                       indent=1))
    return finish(failures)


if __name__ == "__main__":
    sys.exit(main())
