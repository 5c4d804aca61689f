"""``cocktail export``: a model to ONNX, checked against PyTorch."""

from __future__ import annotations

import logging

from .common import DEFAULT_MODEL_NAME, LibraryDefault, add_command, examples, model_arguments, writes

log = logging.getLogger("cocktailparty")

EXPORT = "cocktailparty.inference.export:export_model"


def register(subparsers) -> None:
    p = add_command(subparsers, "export", "export a model to ONNX, checked against PyTorch", run,
                    epilog=examples(f"cocktail export --onnx {DEFAULT_MODEL_NAME}.onnx    # the bundled default",
                                    "cocktail export --model runs/tdanet/best.safetensors --onnx tdanet.onnx --seconds 2"))
    model_arguments(p)
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    writes(p, "--onnx", folder=False)
    p.add_argument("--opset", type=int, default=LibraryDefault(EXPORT, "opset"), help="ONNX opset (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=LibraryDefault(EXPORT, "example_seconds"),
                   help="length of the example input traced (default: %(default)s)")


def run(args) -> int:
    from ..core.progress import progress_enabled
    from ..inference.export import export_model

    if args.device not in (None, "cpu"):
        log.info("exporting on the CPU (an ONNX graph does not depend on the device it was traced on)")
    path, model = export_model(args.model, args.onnx, opset=args.opset, example_seconds=args.seconds,
                               progress=progress_enabled(args.quiet))
    if not args.quiet:
        print(f"{args.model or 'default model'} -> {path} (opset {args.opset}, "
              f"{model.config.sample_rate} Hz, {model.config.num_sources} sources)")
    return 0
