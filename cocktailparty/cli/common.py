"""What the subcommand modules share: help formatting, the common options, library defaults.

Nothing here imports the library: ``cocktail --help`` builds every subcommand's parser, and
importing torch for it would cost seconds.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

PROG = "cocktail"
QUIET_HELP = "print warnings and errors only, no progress"
# The bundled models' names as the help texts give them; core.checkpoint's DEFAULT_MODEL,
# DEFAULT_ENROLLED_MODEL and DEFAULT_NARROWBAND_MODEL (and inference.voice_select's
# DEFAULT_EMBEDDER) are the real ones (importing them here would import torch), and
# tests/test_cli_help.py checks that they agree.
DEFAULT_MODEL_NAME = "tdanet-rooms16k"
DEFAULT_ENROLLED_MODEL_NAME = "tunein-online-synth8k"
DEFAULT_NARROWBAND_MODEL_NAME = "tdanet-real8k"
DEFAULT_EMBEDDER_NAME = "tunein"

# -q also after the subcommand (cocktail separate x.wav -q); SUPPRESS keeps the one before it.
_quiet = argparse.ArgumentParser(add_help=False)
_quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)


class Formatter(argparse.HelpFormatter):
    """argparse's wrapping of prose, but indented lines (an epilog's examples) stay as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            lines.append(line if not line.strip() or line.startswith(" ") else super()._fill_text(line, width, indent))
        return "\n".join(lines)


def examples(*lines: str) -> str:
    """An epilog section of command lines, one per line (``# ...`` says what one does)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_command(subparsers, name: str, help: str, handler: Callable[[argparse.Namespace], int] | None = None,
                **kwargs) -> argparse.ArgumentParser:
    """A subcommand's parser; ``handler(args)`` runs it and returns the exit status (a group of
    subcommands, like ``corpus``, has none)."""
    kwargs.setdefault("description", help)
    parser = subparsers.add_parser(name, help=help, formatter_class=Formatter, parents=[_quiet], **kwargs)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def writes(p: argparse.ArgumentParser, flag: str, folder: bool = True) -> None:
    """Mark ``flag``'s value as an output folder (or file) that main() checks before the work."""
    p.set_defaults(outputs=[*(p.get_default("outputs") or ()), (flag, folder)])


def model_arguments(p: argparse.ArgumentParser, default: str = f"the bundled default, {DEFAULT_MODEL_NAME}") -> None:
    p.add_argument("--model", "-m", default=None, metavar="M",
                   help=f"bundled model name, architecture name or checkpoint path (default: {default})")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default: cuda if present)")


def talker_arguments(p: argparse.ArgumentParser) -> None:
    """extract / verify: the model and the speaker embedder that picks the enrolled talker."""
    model_arguments(p, f"the bundled {DEFAULT_MODEL_NAME}, keeping the output closest to the enrollment's voice; "
                       f"a Tune-In model such as {DEFAULT_ENROLLED_MODEL_NAME} uses its own speaker vectors")
    p.add_argument("--embedder", default=None, metavar="E",
                   help=f"separate with --model, then keep the output whose voice embedding is closest (cosine) to "
                        f"the enrollment's: 'tunein' (the bundled {DEFAULT_ENROLLED_MODEL_NAME}'s speaker vectors), "
                        f"'resemblyzer' (Resemblyzer's encoder; pip install --no-deps resemblyzer) or a talker-aware "
                        f"model (default: {DEFAULT_EMBEDDER_NAME}, for any --model but a Tune-In one)")


class LibraryDefault:
    """An option's default that is a library function's default: ``target``
    (``"module:function"``, ``"module:Class.method"``, or ``"module:Class"`` for its
    constructor or dataclass fields) names it and ``parameter`` the argument. The signature is
    the one place the value is written.

    The library imports torch, which takes seconds, so a subcommand's ``--help`` does not
    import it: :meth:`written` reads the default from the module's source (a literal, or a
    module-level name bound to one), and tests/test_cli_help.py checks that this agrees with
    the imported signature, :meth:`value`, which main() fills in before the handler runs.

    ``convert`` turns the library's value into the option's (a tuple into ``"LO,HI"``, bytes
    into MB); ``show`` writes that for help texts (``%(default)s``).
    """

    def __init__(self, target: str, parameter: str, convert: Callable[[Any], Any] | None = None,
                 show: Callable[[Any], str] = str):
        self.target, self.parameter, self.convert, self.show = target, parameter, convert, show

    def _converted(self, value: Any) -> Any:
        return self.convert(value) if self.convert else value

    def value(self) -> Any:
        """The default, from the imported library's signature."""
        import importlib
        import inspect

        module_name, _, path = self.target.partition(":")
        owner = importlib.import_module(module_name)
        for name in path.split("."):
            owner = getattr(owner, name)
        return self._converted(inspect.signature(owner).parameters[self.parameter].default)

    def written(self) -> Any:
        """The default as the library's source writes it, without importing the library."""
        import ast
        import importlib.util
        from pathlib import Path

        module_name, _, path = self.target.partition(":")
        tree = ast.parse(Path(importlib.util.find_spec(module_name).origin).read_text(encoding="utf-8"))
        constants = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                constants[node.targets[0].id] = node.value
        scope = tree.body
        for name in path.split("."):
            node = next((n for n in scope if getattr(n, "name", None) == name), None)
            if node is None:  # e.g. imported there from another module: name that one instead
                raise LookupError(f"{self.target}: {name} is not defined in {module_name}'s source")
            scope = node.body
        if isinstance(node, ast.ClassDef):
            init = [n for n in node.body if getattr(n, "name", None) == "__init__"]
            if init:
                node = init[0]
            else:  # a dataclass: its fields are the constructor's parameters
                expr = next(n.value for n in node.body if isinstance(n, ast.AnnAssign)
                            and n.target.id == self.parameter)
                return self._converted(ast.literal_eval(expr))
        arguments = node.args
        positional = arguments.posonlyargs + arguments.args
        pairs = list(zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults))
        pairs += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults) if d is not None]
        expr = next(d for a, d in pairs if a.arg == self.parameter)
        if isinstance(expr, ast.Name):
            expr = constants[expr.id]
        return self._converted(ast.literal_eval(expr))

    def __str__(self) -> str:
        return self.show(self.written())

    def __repr__(self) -> str:
        return f"LibraryDefault({self.target!r}, {self.parameter!r})"


def fill_library_defaults(args: argparse.Namespace) -> None:
    """Replace each :class:`LibraryDefault` left in ``args`` (an option not given) by its value."""
    for name, value in vars(args).items():
        if isinstance(value, LibraryDefault):
            setattr(args, name, value.value())


def text_range(values, spec: str = "g") -> str:
    """``(0.0, 5.0)`` -> ``"0,5"``: a library's range as the command line writes it."""
    return ",".join(format(v, spec) for v in values)
