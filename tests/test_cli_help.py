"""The command line's help and wording: examples in every --help, -q after
the subcommand, each --model choice named once, one wording for a missing CUDA."""

import argparse
import re
import shlex

import numpy as np
import pytest
import soundfile
import torch

from cocktailparty.cli import build_parser, main
from cocktailparty.cli.common import (DEFAULT_EMBEDDER_NAME, DEFAULT_ENROLLED_MODEL_NAME, DEFAULT_MODEL_NAME,
                                      DEFAULT_NARROWBAND_MODEL_NAME, LibraryDefault)
from cocktailparty.core import checkpoint
from tests.toys import BandSplit, BandSplitConfig


def subcommands(parser: argparse.ArgumentParser, path=()):
    """(path, parser) of every subcommand and subcommand group, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommands(sub, (*path, name))


ALL = list(subcommands(build_parser()))


def test_all_subcommands_are_found():
    names = {" ".join(path) for path, _ in ALL}
    assert {"separate", "extract", "verify", "corpus", "corpus build", "corpus real", "corpus real-noise", "corpus bandwidth",
            "corpus noise", "corpus rooms", "mix", "train", "evaluate", "profile", "export", "demo"} <= names


@pytest.mark.parametrize("path,parser", ALL, ids=[" ".join(path) for path, _ in ALL])
def test_every_help_ends_with_examples_that_parse(path, parser):
    text = parser.format_help()
    assert "\nexamples:\n" in text
    examples = [line.strip() for line in text.split("\nexamples:\n", 1)[1].splitlines() if line.strip()]
    assert 2 <= len(examples) <= 3, examples
    for example in examples:
        words = shlex.split(example, comments=True)
        assert words[:1 + len(path)] == ["cocktail", *path], example
        # Each example is a valid command line (argparse exits on a wrong one).
        args = build_parser().parse_args(words[1:])
        assert args.handler


@pytest.fixture()
def model_path(tmp_path):
    return str(checkpoint.save(BandSplit(BandSplitConfig()), tmp_path / "band.safetensors"))


def test_quiet_is_accepted_after_the_subcommand(tmp_path, model_path, capsys):
    wav = tmp_path / "x.wav"
    soundfile.write(wav, 0.1 * np.sin(np.arange(4000) / 5.0).astype(np.float32), 8000)
    assert main(["separate", str(wav), "-o", str(tmp_path / "a"), "--model", model_path]) == 0
    assert "x_s1.wav" in capsys.readouterr().out  # not quiet: names what it wrote
    for argv in (["separate", str(wav), "-o", str(tmp_path / "b"), "--model", model_path, "-q"],
                 ["-q", "separate", str(wav), "-o", str(tmp_path / "c"), "--model", model_path],
                 ["separate", "--quiet", str(wav), "-o", str(tmp_path / "d"), "--model", model_path]):
        assert main(argv) == 0
        assert capsys.readouterr().out == ""
        assert (tmp_path / argv[argv.index("-o") + 1] / "x_s2.wav").is_file()


def test_model_choices_name_each_model_once(capsys):
    assert main(["profile", "--model", "no-such-model"]) == 1
    err = capsys.readouterr().err
    choices = err.split("choose from: ", 1)[1].strip().split(", ")
    assert len(choices) == len(set(choices)), sorted(c for c in choices if choices.count(c) > 1)
    bundled = checkpoint.bundled_models()
    assert bundled and set(bundled) <= set(choices)
    assert {"tdanet-lrs2", "dprnn-wsj0", "tdanet", "convtasnet"} <= set(choices)  # configs, architectures


def test_one_wording_for_cuda_not_available(tmp_path, model_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    wav = tmp_path / "x.wav"
    soundfile.write(wav, np.zeros(800, np.float32), 8000)
    commands = [
        ["separate", str(wav), "-o", str(tmp_path / "o"), "--model", model_path],
        ["profile", "--model", model_path],
        ["evaluate", "--model", model_path, "--data", str(tmp_path), "--out", str(tmp_path / "r.csv")],
        ["train", "--config", "tdanet-lrs2", "--set", "training.batch_size=2", "--out", str(tmp_path / "run")],
    ]
    messages = set()
    for argv in commands:
        assert main([*argv, "--device", "cuda:1"]) == 1, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        messages.add(lines[0])
    assert messages == {"cocktail: error: --device cuda:1: CUDA is not available (no GPU, or a torch build "
                        "without CUDA); use --device cpu"}
    assert not re.search(r"has no CUDA|not available on this machine", "".join(messages))


def test_corpus_real_help_names_every_source(capsys):
    from cocktailparty.data.real.build import DEFAULT_SOURCES, SOURCES
    with pytest.raises(SystemExit):
        main(["corpus", "real", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("default: all: ", 1)[1].split(")", 1)[0].split(", ")
    assert listed == list(DEFAULT_SOURCES)
    opt_in = [name for name in SOURCES if name not in DEFAULT_SOURCES]
    assert opt_in and all(f"Also: {name} (" in text for name in opt_in)


def test_help_names_the_real_default_models():
    """The help texts name the default models by hand (core.checkpoint imports torch)."""
    assert DEFAULT_MODEL_NAME == checkpoint.DEFAULT_MODEL
    assert DEFAULT_ENROLLED_MODEL_NAME == checkpoint.DEFAULT_ENROLLED_MODEL
    assert DEFAULT_NARROWBAND_MODEL_NAME == checkpoint.DEFAULT_NARROWBAND_MODEL
    helps = {" ".join(path): " ".join(parser.format_help().split()) for path, parser in ALL}
    for command in ("separate", "evaluate", "profile", "export", "serve", "demo"):
        ending = f"; {checkpoint.DEFAULT_NARROWBAND_MODEL} when every input" if command == "separate" else ")"
        assert f"(default: the bundled default, {checkpoint.DEFAULT_MODEL}{ending}" in helps[command], command
    from cocktailparty.inference.voice_select import DEFAULT_EMBEDDER

    assert DEFAULT_EMBEDDER_NAME == DEFAULT_EMBEDDER
    for command in ("extract", "verify"):
        assert f"(default: the bundled {checkpoint.DEFAULT_MODEL}, keeping the output closest" in helps[command]
        assert f"(default: {DEFAULT_EMBEDDER}, for any --model but a Tune-In one)" in helps[command], command


LIBRARY_DEFAULTS = [(" ".join(path), action) for path, parser in ALL for action in parser._actions
                    if isinstance(action.default, LibraryDefault)]


@pytest.mark.parametrize("command,action", LIBRARY_DEFAULTS,
                         ids=[f"{c} {a.option_strings[-1]}" for c, a in LIBRARY_DEFAULTS])
def test_help_shows_the_library_default_that_runs(command, action):
    """--help reads a library default from the source, main() from the imported signature."""
    default = action.default
    assert default.written() == default.value()
    assert type(default.written()) is type(default.value())


def test_an_option_left_out_runs_with_the_library_default(tmp_path, monkeypatch):
    import functools
    import inspect

    from cocktailparty.data import mixture_sets

    defaults = {name: p.default for name, p in inspect.signature(mixture_sets.write_mixture_set).parameters.items()}
    seen = {}

    @functools.wraps(mixture_sets.write_mixture_set)  # keeps the signature main() reads the defaults from
    def record(corpus, out, **kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(mixture_sets, "write_mixture_set", record)
    assert main(["-q", "mix", "--corpus", str(tmp_path), "--out", str(tmp_path / "set")]) == 0
    for name in ("split", "num_mixtures", "num_speakers", "seconds", "mode", "sir", "snr", "smr", "seed"):
        assert seen[name] == defaults[name], name
