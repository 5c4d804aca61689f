"""The ``cocktail`` command: argument parsing only.

Each subcommand names the library function that does its work as ``"module:function"``; the
module is imported only when that subcommand runs, so ``cocktail --help`` stays fast and a
subcommand never pays for another's imports. Handlers take the parsed arguments and return
an exit status. A :class:`~cocktailparty.core.errors.CocktailError` becomes a one-line message.
The output locations a subcommand names (``_writes``) are checked before its handler starts,
so a folder it cannot write into is reported at once, not after minutes of work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from .. import __version__
from ..core.atomic import ensure_writable_dir, ensure_writable_file
from ..core.errors import CocktailError

PROG = "cocktail"


class _Formatter(argparse.HelpFormatter):
    """argparse's wrapping of prose, but indented lines (an epilog's examples) stay as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            lines.append(line if not line.strip() or line.startswith(" ") else super()._fill_text(line, width, indent))
        return "\n".join(lines)


def _examples(*lines: str) -> str:
    """An epilog section of command lines, one per line (``# ...`` says what one does)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _writes(p: argparse.ArgumentParser, flag: str, folder: bool = True) -> None:
    """Mark ``flag``'s value as an output folder (or file) that main() checks before the work."""
    p.set_defaults(outputs=[*(p.get_default("outputs") or ()), (flag, folder)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Separate overlapping talkers, and pick out one known voice.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    quiet_help = "print warnings and errors only, no progress"
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    # -q also after the subcommand (cocktail separate x.wav -q); SUPPRESS keeps the one before it.
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=quiet_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def subcommand(parent, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
        kwargs.setdefault("description", help)
        return parent.add_parser(name, help=help, formatter_class=_Formatter, parents=[quiet], **kwargs)

    def command(name: str, handler: str, help: str, parent=sub, **kwargs) -> argparse.ArgumentParser:
        p = subcommand(parent, name, help, **kwargs)
        p.set_defaults(handler=handler)
        return p

    # --- separation --------------------------------------------------------------------
    p = command("separate", "cocktailparty.inference.separate:cli_separate",
                "separate every talker in audio files or folders into one file each",
                epilog="Output names: each input's talkers go to DIR/NAME_s1.wav, NAME_s2.wav, ...; NAME is "
                       "a file's stem, or, for a file found in a folder IN, its path relative to IN without "
                       "the extension (IN/x/a.wav -> DIR/x/a_s1.wav), so the folder structure is kept. Inputs "
                       "of one run that would share a NAME keep their extension in it (a.mp3 and a.ogg -> "
                       "a-mp3_s1.wav and a-ogg_s1.wav); any still alike are numbered in input order "
                       "(a-wav_s1.wav, a-wav-2_s1.wav). One run never writes two inputs to one file.\n\n"
                       + _examples("cocktail separate meeting.wav -o separated/     "
                                   "# separated/meeting_s1.wav and meeting_s2.wav",
                                   "cocktail separate recordings/ -o separated/ --model tdanet-synth16k --device cuda",
                                   "cocktail separate meeting.wav --backend onnx --model tdanet.onnx"))
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders (searched recursively)")
    p.add_argument("-o", "--out", default="separated", metavar="DIR",
                   help="output folder; a folder input's subfolders are kept under it (default: %(default)s)")
    _writes(p, "--out")
    _model_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the model with PyTorch, or an exported .onnx (--model X.onnx) with onnxruntime")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the onnx backend (default: all)")

    p = command("extract", "cocktailparty.inference.separate:cli_extract",
                "keep only the enrolled talker's voice (a Tune-In model)",
                epilog="Output names: DIR/NAME_E.wav, with NAME as in 'cocktail separate --help' (subfolders "
                       "kept, same-named inputs told apart) and E the enrollment's stem.\n\n"
                       + _examples("cocktail extract --enroll alice.wav meeting.wav -o extracted/   "
                                   "# extracted/meeting_alice.wav",
                                   "cocktail extract --enroll alice.wav recordings/ "
                                   "--model runs/tunein/best.safetensors"))
    p.add_argument("--enroll", required=True, metavar="E.wav", help="a recording of the talker to keep")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("-o", "--out", default="extracted", metavar="DIR", help="output folder (default: %(default)s)")
    _writes(p, "--out")
    _model_arguments(p, "the bundled tunein-online-synth8k")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")

    p = command("verify", "cocktailparty.inference.separate:cli_verify",
                "score whether the enrolled talker speaks in each recording",
                epilog=_examples("cocktail verify --enroll alice.wav calls/ --json",
                                 "cocktail verify --enroll alice.wav call1.wav call2.wav --threshold 0.6"))
    p.add_argument("--enroll", required=True, metavar="E.wav")
    p.add_argument("inputs", nargs="+", metavar="IN")
    _model_arguments(p, "the bundled tunein-online-synth8k")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the model's calibrated one)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    # --- data ---------------------------------------------------------------------------
    corpus = subcommand(sub, "corpus", "build a speaker-labelled speech corpus from TTS voices",
                        description="Speech corpora made from the packaged TTS voices or from real "
                                    "recordings, and the noises and rooms training mixes in.",
                        epilog=_examples("cocktail corpus build --out data/corpus-synth16k --speakers 96 "
                                         "--utterances 32",
                                         "cocktail corpus real --out data/corpus-real16k",
                                         "cocktail corpus noise --out data/noise16k"))
    corpus_sub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION")
    corpus_sub.required = True
    p = command("build", "cocktailparty.data.corpus:cli_build", parent=corpus_sub,
                help="synthesize a speaker-labelled corpus (FLAC + manifest)",
                description="Synthesize a speaker-labelled multi-speaker corpus from the "
                            "Debian TTS voices, split speaker-disjointly into train/valid/test.",
                epilog=_examples("cocktail corpus build --out data/corpus --speakers 120 --utterances 50",
                                 "cocktail corpus build --out data/corpus-us --speakers 8 --utterances 4 "
                                 "--voices 'mb-us*'"))
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _writes(p, "--out")
    p.add_argument("--speakers", type=int, default=120, help="number of speaker identities (default: %(default)s)")
    p.add_argument("--utterances", type=int, default=50, help="utterances per speaker (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voices", nargs="*", metavar="VOICE",
                   help="restrict to these base voices (e.g. mb-us1 en-us flite:slt); default: all installed")
    p.add_argument("--split", default="0.8,0.1,0.1", metavar="TR,CV,TT",
                   help="fractions of underlying persons per split (default: %(default)s)")
    p.add_argument("-j", "--jobs", type=int, default=0, help="parallel synthesis processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a corpus")

    p = command("real", "cocktailparty.data.real.build:cli_real", parent=corpus_sub,
                help="extract real recorded speech from Debian data packages (FLAC + manifest)",
                description="Fetch Debian data packages that hold real recorded speech "
                            "(apt-get download, nothing installed), extract, trim, band-check "
                            "and join their clips, split speaker-disjointly into train/valid/test.",
                epilog=_examples("cocktail corpus real --out data/corpus-real16k --sample-rate 16000",
                                 "cocktail corpus real --out data/corpus-real8k --sample-rate 8000 "
                                 "--splits-like data/corpus-real16k"))
    _package_arguments(p)
    p.add_argument("--sources", metavar="A,B", help="comma-separated sources (default: all: tuxpaint, klettres, "
                   "hedgewars, festvox-ru, nexuiz, megaglest, gcin). Also: queen (11 kHz game speech "
                   "for corpora at 8 kHz; needs pip install --no-deps resemblyzer)")
    p.add_argument("--max-minutes", type=float, default=8.0, help="speech kept per speaker (default: %(default)s)")
    p.add_argument("--splits-like", metavar="DIR", help="another real corpus whose speakers keep their split here "
                   "(e.g. the 16 kHz corpus, for an 8 kHz build that continues a 16 kHz model)")
    p.add_argument("--split", default="0.75,0.1,0.15", metavar="TR,CV,TT",
                   help="fractions of speakers per split (default: %(default)s)")

    p = command("real-noise", "cocktailparty.data.real.noise:cli_real_noise", parent=corpus_sub,
                help="extract real noise and music from the same Debian data packages (FLAC)",
                description="Fetch the data packages of corpus real and keep their non-speech "
                            "sounds (tuxpaint stamp effects, hedgewars effects and music): mono "
                            "FLAC of at most 10 s at -25 dBFS in train/valid/test folders, split "
                            "by original recording, for data.noise in training.",
                epilog=_examples("cocktail corpus real-noise --out data/real-noise16k",
                                 "cocktail corpus real-noise --out data/real-noise8k --sample-rate 8000"))
    _package_arguments(p)

    p = command("bandwidth", "cocktailparty.data.real.build:cli_bandwidth", parent=corpus_sub,
                help="measure each utterance's bandwidth into a corpus manifest",
                description="Write bandwidth_hz (the highest frequency holding speech) for "
                            "every utterance of a corpus into its manifest.csv, so training "
                            "can leave out band-limited voices (data.min_bandwidth).",
                epilog=_examples("cocktail corpus bandwidth data/corpus-synth16k",
                                 "cocktail corpus bandwidth data/corpus-real8k --sample-rate 8000"))
    p.add_argument("corpus", metavar="DIR", help="a corpus folder with manifest.csv")
    p.add_argument("--sample-rate", type=int, default=16000,
                   help="name the voices narrower than 0.8 x this rate's Nyquist (default: %(default)s)")
    p.add_argument("-j", "--jobs", type=int, default=0, help="processes (default: all cores)")

    p = command("noise", "cocktailparty.data.noise:cli_noise", parent=corpus_sub,
                help="synthesize background noises for augmentation (FLAC)",
                description="Make seeded synthetic noises (colored, shaped, mains hum, "
                            "modulated, clicks, tones) in train/valid/test folders, for "
                            "data.noise in training or --noise in cocktail mix.",
                epilog=_examples("cocktail corpus noise --out data/noise16k",
                                 "cocktail corpus noise --out data/noise8k --sample-rate 8000 --seconds 4"))
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    _writes(p, "--out")
    p.add_argument("--train", type=int, default=200, help="training noises (default: %(default)s)")
    p.add_argument("--valid", type=int, default=20, help="validation noises (default: %(default)s)")
    p.add_argument("--test", type=int, default=20, help="test noises (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds noises")

    p = command("rooms", "cocktailparty.data.rooms:cli_rooms", parent=corpus_sub,
                help="simulate rooms for reverberant training data (RIRs, .npy)",
                description="Simulate random shoebox rooms (pyroomacoustics image sources) "
                            "with the talkers and one microphone in each, and store their "
                            "impulse responses in train/valid/test folders, for data.rooms in "
                            "training: reverberant mixtures with early-reflection targets "
                            "(WHAMR!-style).",
                epilog=_examples("cocktail corpus rooms --out data/rooms16k --rooms 1000 --sample-rate 16000 "
                                 "--rt60 0.1,1.0",
                                 "cocktail corpus rooms --out data/rooms8k --sample-rate 8000 --sources 3"))
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (new, empty, or a room bank to replace)")
    _writes(p, "--out")
    p.add_argument("--rooms", type=int, default=1000,
                   help="rooms in all, split 80/10/10 %% train/valid/test (default: %(default)s)")
    p.add_argument("--sources", type=int, default=2,
                   help="talkers per room, at least the mixtures' talkers (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz, the training rate (default: %(default)s)")
    p.add_argument("--rt60", default="0.1,1.0", metavar="LO,HI",
                   help="reverberation time range in seconds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--jobs", type=int, default=0, help="simulation processes (default: all cores)")

    p = command("mix", "cocktailparty.data.mixture_sets:cli_mix",
                "write a fixed, seeded set of mixtures (wsj0-2mix layout + metadata CSV)",
                epilog=_examples("cocktail mix --corpus data/corpus --split test --out data/test-2mix "
                                 "--num-mixtures 500 --seed 0",
                                 "cocktail mix --corpus data/corpus --out data/test-3mix --speakers 3 --mode max",
                                 "cocktail mix --corpus data/corpus --out data/test-noisy --noise data/noise16k "
                                 "--snr=-6,3"))
    p.add_argument("--corpus", required=True, metavar="DIR", help="a speaker-labelled corpus folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty; --force replaces a set)")
    _writes(p, "--out")
    p.add_argument("--split", default="test", help="which corpus split to draw speakers from (default: %(default)s)")
    p.add_argument("--num-mixtures", "-n", type=int, default=500)
    p.add_argument("--speakers", "-c", type=int, default=2, choices=(2, 3, 4), help="talkers per mixture")
    p.add_argument("--sample-rate", type=int, default=None, help="default: the corpus's rate")
    p.add_argument("--seconds", type=float, default=4.0, help="mixture length (default: %(default)s)")
    p.add_argument("--mode", choices=("min", "max"), default="min",
                   help="'min' crops to the shortest source, 'max' pads to the longest (wsj0-2mix terms)")
    p.add_argument("--sir", default="0,5", metavar="LO,HI", help="relative level range in dB (default: %(default)s)")
    p.add_argument("--noise", metavar="DIR", help="a folder of noise recordings to add (WHAM!-like)")
    p.add_argument("--snr", default="-6,3", metavar="LO,HI",
                   help="speech-to-noise range in dB when --noise is given (a negative LO needs --snr=LO,HI)")
    p.add_argument("--music", metavar="DIR", help="a folder of music to add (speech vs music, like WSJ0-music)")
    p.add_argument("--smr", default="-5,5", metavar="LO,HI",
                   help="speech-to-music range in dB when --music is given (write --smr=LO,HI)")
    p.add_argument("--music-as-source", action="store_true",
                   help="make the music a target source (written as the last sK/) instead of interference")
    p.add_argument("--speed", metavar="LO,HI", help="speed perturbation range, e.g. 0.95,1.05 (default: none)")
    p.add_argument("--from-metadata", metavar="SET", help="rebuild the set described by SET/metadata.csv and "
                   "SET/mixing.json from --corpus (and --noise/--music); the other mixing options are ignored")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")

    # --- training, evaluation, profiling ------------------------------------------------
    p = command("train", "cocktailparty.train.engine:cli_train", "train a model from a YAML config",
                epilog=_examples("cocktail train --config tdanet-lrs2 --out runs/tdanet --set data.corpus=data/corpus "
                                 "--set training.batch_size=4",
                                 "cocktail train --config my-recipe.yaml --out runs/mine --device cuda:1",
                                 "cocktail train --resume runs/tdanet     # after Ctrl-C or a crash: continues"))
    p.add_argument("--config", metavar="FILE",
                   help="a bundled config's name (e.g. tdanet-lrs2; they are in cocktailparty/configs/) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder of a new run (default: runs/<config>-<time>)")
    _writes(p, "--out")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    p.add_argument("--stop-after", type=float, metavar="SECONDS",
                   help="end a fixed-length slot: after SECONDS (set-up included), save mid-epoch as SIGTERM "
                   "would and exit with status 75; --resume continues. It is checked between steps, so "
                   "leave the time of one step, one checkpoint and one epoch's validation")

    p = command("evaluate", "cocktailparty.eval.evaluate:cli_evaluate",
                "SI-SNRi and SDRi of a model on a test set, per utterance and on average",
                epilog=_examples("cocktail evaluate --data data/test-real16k     # the default model: "
                                 "results-tdanet-rooms16k.csv",
                                 "cocktail evaluate --model runs/tdanet/best.safetensors --data data/test-2mix "
                                 "--out results.csv --stoi"))
    _model_arguments(p)
    p.add_argument("--data", required=True, metavar="DIR", help="a test set (wsj0-2mix layout or a standard corpus)")
    p.add_argument("--split", default="test", help="split to score when DIR holds several (default: %(default)s)")
    p.add_argument("--out", metavar="CSV", help="per-utterance results, with a .json summary beside it (default: "
                   "results-NAME.csv in the current folder, NAME being --model's name or file stem)")
    p.add_argument("--pesq", action="store_true", help="also compute PESQ")
    p.add_argument("--stoi", action="store_true", help="also compute STOI")
    p.add_argument("--high-band", action="store_true",
                   help="also score the band above half the Nyquist frequency on its own "
                        "(high_band_si_snri: negative when the output keeps less of it than the mixture)")
    p.add_argument("--limit", type=int, help="evaluate the first N mixtures only")

    p = command("profile", "cocktailparty.eval.profile:cli_profile",
                "parameters, MACs, peak memory and real-time factor of a model",
                epilog=_examples("cocktail profile --model tdanet --seconds 1",
                                 "cocktail profile --model dprnn-wsj0 --device cuda --json"))
    _model_arguments(p)
    p.add_argument("--sample-rate", type=int, help="default: the model's own")
    p.add_argument("--seconds", type=float, default=1.0, help="input length (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for timing (default: 1, like the papers' reference figures)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("export", "cocktailparty.inference.export:cli_export",
                "export a model to ONNX, checked against PyTorch",
                epilog=_examples("cocktail export --onnx tdanet-rooms16k.onnx    # the bundled default",
                                 "cocktail export --model runs/tdanet/best.safetensors --onnx tdanet.onnx --seconds 2"))
    _model_arguments(p)
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    _writes(p, "--onnx", folder=False)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=1.0, help="length of the example input traced (default: %(default)s)")

    p = command("serve", "cocktailparty.serve.server:cli_serve",
                "a local web page to separate, listen and extract",
                description="Start a web server for a page that separates a recording (each talker "
                            "to listen to, see and download) or extracts one enrolled talker. It "
                            "listens on this machine only unless --host says otherwise; uploads and "
                            "results stay in a private temporary folder and are removed after "
                            "--keep-minutes and at exit.",
                epilog=_examples("cocktail serve     # then open http://127.0.0.1:8000/",
                                 "cocktail serve --port 8080 --model tdanet-synth16k --device cuda"))
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    _model_arguments(p)
    p.add_argument("--max-mb", type=float, default=50.0, help="largest upload in MB (default: %(default)g)")
    p.add_argument("--max-minutes", type=float, default=10.0,
                   help="longest recording in minutes (default: %(default)g)")
    p.add_argument("--keep-minutes", type=float, default=30.0,
                   help="results are removed this long after they are ready (default: %(default)g)")
    p.add_argument("--queue", type=int, default=8,
                   help="most jobs waiting or running at once; more are refused (default: %(default)s)")

    p = command("demo", "cocktailparty.cli.demo:cli_demo",
                "synthesize two talkers, mix them, separate them, and show the result",
                epilog=_examples("cocktail demo     # writes demo-output/",
                                 "cocktail demo --out demo-synth --model tdanet-synth16k --seed 1"))
    p.add_argument("-o", "--out", default="demo-output", metavar="DIR", help="output folder (default: %(default)s)")
    _writes(p, "--out")
    _model_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    return parser


def _package_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of the commands that extract audio from Debian data packages."""
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    _writes(p, "--out")
    p.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz (default: %(default)s)")
    p.add_argument("--packages", metavar="DIR", help="where fetched packages are unpacked "
                   "(default: ~/.cache/cocktailparty/packages)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--jobs", type=int, default=0, help="decoding processes (default: all cores)")


def _model_arguments(p: argparse.ArgumentParser, default: str = "the bundled default, tdanet-rooms16k") -> None:
    p.add_argument("--model", "-m", default=None, metavar="M",
                   help=f"bundled model name, architecture name or checkpoint path (default: {default})")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default: cuda if present)")


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    from ..core.progress import LogHandler  # here, not at the top: it imports tqdm, --help does not need it

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"{PROG}: %(levelname)s: %(message)s",
        handlers=[LogHandler(sys.stderr)],  # a line logged while a progress bar shows goes above it
    )
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    logging.addLevelName(logging.INFO, "info")
    module_name, function_name = args.handler.split(":")
    try:
        for flag, folder in getattr(args, "outputs", ()):
            value = getattr(args, flag.lstrip("-").replace("-", "_"))
            if value is not None:
                (ensure_writable_dir if folder else ensure_writable_file)(value, flag)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            raise CocktailError(f"'{args.command}' is not available in this version yet") from None
        return int(getattr(module, function_name)(args) or 0)
    except CocktailError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130

