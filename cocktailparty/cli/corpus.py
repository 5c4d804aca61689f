"""``cocktail corpus ...``: speech corpora, and the noises and rooms training mixes in."""

from __future__ import annotations

import logging

from .common import LibraryDefault, add_command, examples, text_range, writes

log = logging.getLogger("cocktailparty")

BUILD = "cocktailparty.data.corpus:build_corpus"
REAL = "cocktailparty.data.real.build:build_real_corpus"
REAL_NOISE = "cocktailparty.data.real.noise:build_real_noise"
BANDWIDTH = "cocktailparty.data.real.build:annotate_bandwidth"
NOISE = "cocktailparty.data.noise:build_noise_folder"
ROOMS = "cocktailparty.data.rooms:RoomBank.build"


def register(subparsers) -> None:
    corpus = add_command(subparsers, "corpus", "build a speaker-labelled speech corpus from TTS voices",
                         description="Speech corpora made from the packaged TTS voices or from real "
                                     "recordings, and the noises and rooms training mixes in.",
                         epilog=examples("cocktail corpus build --out data/corpus-synth16k --speakers 96 "
                                         "--utterances 32",
                                         "cocktail corpus real --out data/corpus-real16k",
                                         "cocktail corpus noise --out data/noise16k"))
    actions = corpus.add_subparsers(dest="corpus_command", metavar="ACTION")
    actions.required = True

    p = add_command(actions, "build", "synthesize a speaker-labelled corpus (FLAC + manifest)", run_build,
                    description="Synthesize a speaker-labelled multi-speaker corpus from the "
                                "Debian TTS voices, split speaker-disjointly into train/valid/test.",
                    epilog=examples("cocktail corpus build --out data/corpus --speakers 120 --utterances 50",
                                    "cocktail corpus build --out data/corpus-us --speakers 8 --utterances 4 "
                                    "--voices 'mb-us*'"))
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    writes(p, "--out")
    p.add_argument("--speakers", type=int, default=LibraryDefault(BUILD, "speakers"),
                   help="number of speaker identities (default: %(default)s)")
    p.add_argument("--utterances", type=int, default=LibraryDefault(BUILD, "utterances"),
                   help="utterances per speaker (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=LibraryDefault(BUILD, "sample_rate"),
                   help="output rate in Hz (default: %(default)s)")
    p.add_argument("--seed", type=int, default=LibraryDefault(BUILD, "seed"))
    p.add_argument("--voices", nargs="*", metavar="VOICE",
                   help="restrict to these base voices (e.g. mb-us1 en-us flite:slt); default: all installed")
    p.add_argument("--split", default=LibraryDefault(BUILD, "split"), metavar="TR,CV,TT",
                   help="fractions of underlying persons per split (default: %(default)s)")
    p.add_argument("-j", "--jobs", type=int, default=LibraryDefault(BUILD, "jobs"),
                   help="parallel synthesis processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a corpus")

    p = add_command(actions, "real", "extract real recorded speech from Debian data packages (FLAC + manifest)",
                    run_real,
                    description="Fetch Debian data packages that hold real recorded speech "
                                "(apt-get download, nothing installed), extract, trim, band-check "
                                "and join their clips, split speaker-disjointly into train/valid/test.",
                    epilog=examples("cocktail corpus real --out data/corpus-real16k --sample-rate 16000",
                                    "cocktail corpus real --out data/corpus-real8k --sample-rate 8000 "
                                    "--splits-like data/corpus-real16k"))
    _package_arguments(p, REAL)
    # The list is written out for a fast --help; tests/test_cli_help.py checks it is DEFAULT_SOURCES.
    p.add_argument("--sources", metavar="A,B", help="comma-separated sources (default: all: tuxpaint, klettres, "
                   "hedgewars, festvox-ru, nexuiz, megaglest, gcin, warzone, codec2). warzone and codec2 "
                   "are 11 and 8 kHz speech: corpora over 8 kHz skip them. Also: 0ad (7 more voices, 3 minutes; "
                   "a 1.4 GB download whose 3 GB zip is deleted once its voices are out). Also: queen (11 kHz game "
                   "speech for corpora at 8 kHz; needs pip install --no-deps resemblyzer). Also: sky (the same, "
                   "from Beneath a Steel Sky)")
    p.add_argument("--max-minutes", type=float, default=LibraryDefault(REAL, "max_minutes"),
                   help="speech kept per speaker (default: %(default)s)")
    p.add_argument("--splits-like", metavar="DIR", help="another real corpus whose speakers keep their split here "
                   "(e.g. the 16 kHz corpus, for an 8 kHz build that continues a 16 kHz model)")
    p.add_argument("--split", default=LibraryDefault(REAL, "split"), metavar="TR,CV,TT",
                   help="fractions of speakers per split (default: %(default)s)")

    p = add_command(actions, "real-noise", "extract real noise and music from the same Debian data packages (FLAC)",
                    run_real_noise,
                    description="Fetch the data packages of corpus real and keep their non-speech "
                                "sounds (tuxpaint stamp effects, hedgewars effects and music): mono "
                                "FLAC of at most 10 s at -25 dBFS in train/valid/test folders, split "
                                "by original recording, for data.noise in training.",
                    epilog=examples("cocktail corpus real-noise --out data/real-noise16k",
                                    "cocktail corpus real-noise --out data/real-noise8k --sample-rate 8000"))
    _package_arguments(p, REAL_NOISE)

    p = add_command(actions, "bandwidth", "measure each utterance's bandwidth into a corpus manifest", run_bandwidth,
                    description="Write bandwidth_hz (the highest frequency holding speech) for "
                                "every utterance of a corpus into its manifest.csv, so training "
                                "can leave out band-limited voices (data.min_bandwidth).",
                    epilog=examples("cocktail corpus bandwidth data/corpus-synth16k",
                                    "cocktail corpus bandwidth data/corpus-real8k --sample-rate 8000"))
    p.add_argument("corpus", metavar="DIR", help="a corpus folder with manifest.csv")
    p.add_argument("--sample-rate", type=int, default=16000,
                   help="name the voices narrower than 0.8 x this rate's Nyquist (default: %(default)s)")
    p.add_argument("-j", "--jobs", type=int, default=LibraryDefault(BANDWIDTH, "jobs"),
                   help="processes (default: all cores)")

    p = add_command(actions, "noise", "synthesize background noises for augmentation (FLAC)", run_noise,
                    description="Make seeded synthetic noises (colored, shaped, mains hum, "
                                "modulated, clicks, tones) in train/valid/test folders, for "
                                "data.noise in training or --noise in cocktail mix.",
                    epilog=examples("cocktail corpus noise --out data/noise16k",
                                    "cocktail corpus noise --out data/noise8k --sample-rate 8000 --seconds 4"))
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    writes(p, "--out")
    p.add_argument("--train", type=int, default=200, help="training noises (default: %(default)s)")
    p.add_argument("--valid", type=int, default=20, help="validation noises (default: %(default)s)")
    p.add_argument("--test", type=int, default=20, help="test noises (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz (default: %(default)s)")
    p.add_argument("--seed", type=int, default=LibraryDefault(NOISE, "seed"))
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds noises")

    p = add_command(actions, "rooms", "simulate rooms for reverberant training data (RIRs, .npy)", run_rooms,
                    description="Simulate random shoebox rooms (pyroomacoustics image sources) "
                                "with the talkers and one microphone in each, and store their "
                                "impulse responses in train/valid/test folders, for data.rooms in "
                                "training: reverberant mixtures with early-reflection targets "
                                "(WHAMR!-style).",
                    epilog=examples("cocktail corpus rooms --out data/rooms16k --rooms 1000 --sample-rate 16000 "
                                    "--rt60 0.1,1.0",
                                    "cocktail corpus rooms --out data/rooms8k --sample-rate 8000 --sources 3"))
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (new, empty, or a room bank to replace)")
    writes(p, "--out")
    p.add_argument("--rooms", type=int, default=1000,
                   help="rooms in all, split 80/10/10 %% train/valid/test (default: %(default)s)")
    p.add_argument("--sources", type=int, default=2,
                   help="talkers per room, at least the mixtures' talkers (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz, the training rate (default: %(default)s)")
    p.add_argument("--rt60", default=LibraryDefault(ROOMS, "rt60", lambda r: text_range(r, "")), metavar="LO,HI",
                   help="reverberation time range in seconds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--jobs", type=int, default=LibraryDefault(ROOMS, "jobs"),
                   help="simulation processes (default: all cores)")


def _package_arguments(p, target: str) -> None:
    """The arguments of the commands that extract audio from Debian data packages."""
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    writes(p, "--out")
    p.add_argument("--sample-rate", type=int, default=LibraryDefault(target, "sample_rate"),
                   help="output rate in Hz (default: %(default)s)")
    p.add_argument("--packages", metavar="DIR", help="where fetched packages are unpacked "
                   "(default: ~/.cache/cocktailparty/packages)")
    p.add_argument("--seed", type=int, default=LibraryDefault(target, "seed"))
    p.add_argument("-j", "--jobs", type=int, default=LibraryDefault(target, "jobs"),
                   help="decoding processes (default: all cores)")


def run_build(args) -> int:
    from ..core.progress import progress_enabled
    from ..data.corpus import build_corpus

    meta = build_corpus(
        args.out, speakers=args.speakers, utterances=args.utterances, sample_rate=args.sample_rate,
        seed=args.seed, voices=args.voices or None, split=args.split, jobs=args.jobs, force=args.force,
        progress=progress_enabled(args.quiet),
    )
    summary = ", ".join(f"{name} {c['speakers']} speakers / {c['persons']} persons / {c['hours']:.2f} h"
                        for name, c in meta["counts"].items())
    log.info("%s: corpus ready in %.0f s: %s", args.out, meta["build_seconds"], summary)
    return 0


def run_real(args) -> int:
    from ..core.progress import progress_enabled
    from ..data.real.build import DEFAULT_SOURCES, build_real_corpus

    meta = build_real_corpus(
        args.out, sources=args.sources.split(",") if args.sources else DEFAULT_SOURCES, sample_rate=args.sample_rate, seed=args.seed, split=args.split,
        max_minutes=args.max_minutes, packages=args.packages, jobs=args.jobs, progress=progress_enabled(args.quiet),
        splits_like=args.splits_like,
    )
    summary = ", ".join(f"{name} {c['speakers']} speakers / {c['hours']:.2f} h" for name, c in meta["counts"].items())
    log.info("%s: real-speech corpus ready in %.0f s: %s", args.out, meta["build_seconds"], summary)
    return 0


def run_real_noise(args) -> int:
    from ..core.progress import progress_enabled
    from ..data.real.noise import build_real_noise

    record = build_real_noise(args.out, sample_rate=args.sample_rate, seed=args.seed, packages=args.packages,
                              jobs=args.jobs, progress=progress_enabled(args.quiet))
    minutes = sum(f["seconds"] for f in record["files"].values()) / 60
    log.info("%s: real noise ready: %d files, %.1f min", args.out, len(record["files"]), minutes)
    return 0


def run_bandwidth(args) -> int:
    from ..core.progress import progress_enabled
    from ..data.real.build import annotate_bandwidth

    lowest = annotate_bandwidth(args.corpus, jobs=args.jobs, progress=progress_enabled(args.quiet))
    narrow = sorted(v for v, w in lowest.items() if w < 0.8 * args.sample_rate / 2) if args.sample_rate else []
    log.info("%s: bandwidth_hz written for %d voices%s", args.corpus, len(lowest),
             f"; narrower than 0.8 x Nyquist at {args.sample_rate} Hz: {', '.join(narrow) or 'none'}"
             if args.sample_rate else "")
    return 0


def run_noise(args) -> int:
    from pathlib import Path

    from ..core.errors import CocktailError
    from ..core.progress import progress_enabled
    from ..data.noise import build_noise_folder

    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    if any(c < 0 for c in counts.values()) or not any(counts.values()):
        raise CocktailError("--train/--valid/--test: counts must be 0 or more, and not all 0")
    if args.seconds <= 0:
        raise CocktailError(f"--seconds must be positive, got {args.seconds}")
    out = Path(args.out)
    if (out / "noise.json").exists() and not args.force:
        raise CocktailError(f"{out}: already holds a noise folder; add --force to rebuild it")
    build_noise_folder(out, {k: v for k, v in counts.items() if v}, args.seconds, args.sample_rate, args.seed,
                       progress=progress_enabled(args.quiet))
    return 0


def run_rooms(args) -> int:
    from ..core.errors import CocktailError
    from ..core.progress import progress_enabled
    from ..data.mixing import parse_range
    from ..data.rooms import SPLITS, RoomBank

    rt60 = parse_range(args.rt60, "--rt60", unit="seconds", example="0.1,1.0")
    if args.rooms < len(SPLITS):
        raise CocktailError(f"--rooms: need at least {len(SPLITS)} (one per split), got {args.rooms}")
    if args.sources < 1:
        raise CocktailError(f"--sources: need at least 1, got {args.sources}")
    if args.sample_rate < 1000:
        raise CocktailError(f"--sample-rate: expected Hz (e.g. 16000), got {args.sample_rate}")
    RoomBank.build(args.out, args.rooms, args.sources, args.sample_rate, args.seed, rt60=rt60,
                   jobs=args.jobs, progress=progress_enabled(args.quiet))
    return 0
