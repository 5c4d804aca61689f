"""``cocktail extract``: keep only the enrolled talker of each recording."""

from __future__ import annotations

from .common import DEFAULT_ENROLLED_MODEL_NAME, add_command, examples, talker_arguments, writes


def register(subparsers) -> None:
    p = add_command(subparsers, "extract", "keep only the enrolled talker's voice", run,
                    epilog="Output names: DIR/NAME_E.wav, with NAME as in 'cocktail separate --help' (subfolders "
                           "kept, same-named inputs told apart) and E the enrollment's stem.\n\n"
                           + examples("cocktail extract --enroll alice.wav meeting.wav -o extracted/   "
                                      "# extracted/meeting_alice.wav",
                                      "cocktail extract --enroll alice.wav recordings/ --embedder resemblyzer",
                                      "cocktail extract --enroll alice.wav recordings/ "
                                      f"--model {DEFAULT_ENROLLED_MODEL_NAME}"))
    p.add_argument("--enroll", required=True, metavar="E.wav", help="a recording of the talker to keep")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("-o", "--out", default="extracted", metavar="DIR", help="output folder (default: %(default)s)")
    writes(p, "--out")
    talker_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def run(args) -> int:
    from ..core.progress import progress_enabled
    from ..inference.separate import extract_files

    return extract_files(args.enroll, args.inputs, args.out, model=args.model, device=args.device, force=args.force,
                         quiet=args.quiet, progress=progress_enabled(args.quiet), embedder=args.embedder)
