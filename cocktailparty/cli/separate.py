"""``cocktail separate``: every talker of each recording into a file of its own."""

from __future__ import annotations

import logging
from pathlib import Path

from .common import DEFAULT_MODEL_NAME, DEFAULT_NARROWBAND_MODEL_NAME, add_command, examples, model_arguments, writes


def register(subparsers) -> None:
    p = add_command(subparsers, "separate", "separate every talker in audio files or folders into one file each", run,
                    epilog="Output names: each input's talkers go to DIR/NAME_s1.wav, NAME_s2.wav, ...; NAME is "
                           "a file's stem, or, for a file found in a folder IN, its path relative to IN without "
                           "the extension (IN/x/a.wav -> DIR/x/a_s1.wav), so the folder structure is kept. Inputs "
                           "of one run that would share a NAME keep their extension in it (a.mp3 and a.ogg -> "
                           "a-mp3_s1.wav and a-ogg_s1.wav); any still alike are numbered in input order "
                           "(a-wav_s1.wav, a-wav-2_s1.wav). One run never writes two inputs to one file.\n\n"
                           + examples("cocktail separate meeting.wav -o separated/     "
                                      "# separated/meeting_s1.wav and meeting_s2.wav",
                                      "cocktail separate recordings/ -o separated/ --model tdanet-synth16k --device cuda",
                                      "cocktail separate meeting.wav --backend onnx --model tdanet.onnx"))
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders (searched recursively)")
    p.add_argument("-o", "--out", default="separated", metavar="DIR",
                   help="output folder; a folder input's subfolders are kept under it (default: %(default)s)")
    writes(p, "--out")
    model_arguments(p, f"the bundled default, {DEFAULT_MODEL_NAME}; {DEFAULT_NARROWBAND_MODEL_NAME} when every "
                       "input is at 8 kHz or less (telephone audio)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the model with PyTorch, or an exported .onnx (--model X.onnx) with onnxruntime")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the onnx backend (default: all)")


def run(args) -> int:
    from ..core.errors import CocktailError
    from ..core.progress import progress_enabled
    from ..inference.separate import Separator, output_names, process_files

    names = output_names(args.inputs)
    if args.backend == "onnx":
        if not args.model or not str(args.model).endswith(".onnx"):
            raise CocktailError("--backend onnx needs --model FILE.onnx (make one with 'cocktail export')")
        if args.device not in (None, "cpu"):
            raise CocktailError("--backend onnx runs on the CPU; drop --device or use --device cpu")
        separator = Separator.from_onnx(args.model, threads=args.threads)
    else:
        separator = Separator.from_pretrained(args.model or _default_model(names), device=args.device)
    return process_files(names, separator, Path(args.out), [f"_s{i + 1}.wav" for i in range(separator.num_sources)],
                         desc="separating", force=args.force, quiet=args.quiet,
                         progress=progress_enabled(args.quiet))


def _default_model(names) -> str:
    """The bundled default for these inputs: the 8 kHz model when all are telephone-band."""
    from ..core import audio
    from ..core.checkpoint import DEFAULT_MODEL, default_model_for
    from ..core.errors import AudioError

    rates = []
    for path in names:
        try:
            rates.append(audio.info(path).samplerate)
        except AudioError:
            pass  # process_files reports it, in its turn
    model = default_model_for(rates)
    if model != DEFAULT_MODEL:
        logging.getLogger("cocktailparty").info("every input is at 8 kHz or less: separating with %s, the 8 kHz "
                                                "model (--model %s for the 16 kHz one)", model, DEFAULT_MODEL)
    return model
