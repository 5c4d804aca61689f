"""``cocktail mix``: a fixed, seeded set of mixtures from a corpus (or one rebuilt from its record)."""

from __future__ import annotations

import logging

from .common import LibraryDefault, add_command, examples, text_range, writes

log = logging.getLogger("cocktailparty")

MIX = "cocktailparty.data.mixture_sets:write_mixture_set"


def register(subparsers) -> None:
    p = add_command(subparsers, "mix", "write a fixed, seeded set of mixtures (wsj0-2mix layout + metadata CSV)", run,
                    epilog=examples("cocktail mix --corpus data/corpus --split test --out data/test-2mix "
                                    "--num-mixtures 500 --seed 0",
                                    "cocktail mix --corpus data/corpus --out data/test-3mix --speakers 3 --mode max",
                                    "cocktail mix --corpus data/corpus --out data/test-noisy --noise data/noise16k "
                                    "--snr=-6,3"))
    p.add_argument("--corpus", required=True, metavar="DIR", help="a speaker-labelled corpus folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty; --force replaces a set)")
    writes(p, "--out")
    p.add_argument("--split", default=LibraryDefault(MIX, "split"),
                   help="which corpus split to draw speakers from (default: %(default)s)")
    p.add_argument("--num-mixtures", "-n", type=int, default=LibraryDefault(MIX, "num_mixtures"))
    p.add_argument("--speakers", "-c", type=int, default=LibraryDefault(MIX, "num_speakers"), choices=(2, 3, 4),
                   help="talkers per mixture")
    p.add_argument("--sample-rate", type=int, default=None, help="default: the corpus's rate")
    p.add_argument("--seconds", type=float, default=LibraryDefault(MIX, "seconds"),
                   help="mixture length (default: %(default)s)")
    p.add_argument("--mode", choices=("min", "max"), default=LibraryDefault(MIX, "mode"),
                   help="'min' crops to the shortest source, 'max' pads to the longest (wsj0-2mix terms)")
    p.add_argument("--sir", default=LibraryDefault(MIX, "sir", text_range), metavar="LO,HI",
                   help="relative level range in dB (default: %(default)s)")
    p.add_argument("--noise", metavar="DIR", help="a folder of noise recordings to add (WHAM!-like)")
    p.add_argument("--snr", default=LibraryDefault(MIX, "snr", text_range), metavar="LO,HI",
                   help="speech-to-noise range in dB when --noise is given (a negative LO needs --snr=LO,HI)")
    p.add_argument("--music", metavar="DIR", help="a folder of music to add (speech vs music, like WSJ0-music)")
    p.add_argument("--smr", default=LibraryDefault(MIX, "smr", text_range), metavar="LO,HI",
                   help="speech-to-music range in dB when --music is given (write --smr=LO,HI)")
    p.add_argument("--music-as-source", action="store_true",
                   help="make the music a target source (written as the last sK/) instead of interference")
    p.add_argument("--speed", metavar="LO,HI", help="speed perturbation range, e.g. 0.95,1.05 (default: none)")
    p.add_argument("--from-metadata", metavar="SET", help="rebuild the set described by SET/metadata.csv and "
                   "SET/mixing.json from --corpus (and --noise/--music); the other mixing options are ignored")
    p.add_argument("--seed", type=int, default=LibraryDefault(MIX, "seed"))
    p.add_argument("--force", action="store_true")


def run(args) -> int:
    from ..core.progress import progress_enabled
    from ..data.mixing import parse_range
    from ..data.mixture_sets import regenerate_from_metadata, write_mixture_set

    progress = progress_enabled(args.quiet)
    if args.from_metadata:
        regenerate_from_metadata(args.from_metadata, args.out, corpus=args.corpus, noise=args.noise,
                                 music=args.music, force=args.force, progress=progress)
        log.info("rebuilt the set of %s in %s", args.from_metadata, args.out)
        return 0
    write_mixture_set(
        args.corpus,
        args.out,
        split=args.split,
        num_mixtures=args.num_mixtures,
        num_speakers=args.speakers,
        sample_rate=args.sample_rate,
        seconds=args.seconds if args.seconds and args.seconds > 0 else None,  # 0: no fixed length
        mode=args.mode,
        sir=parse_range(args.sir, "--sir"),
        noise=args.noise,
        snr=parse_range(args.snr, "--snr"),
        music=args.music,
        smr=parse_range(args.smr, "--smr"),
        music_as_source=args.music_as_source,
        speed=parse_range(args.speed, "--speed") if args.speed else None,
        seed=args.seed,
        force=args.force,
        progress=progress,
    )
    return 0
