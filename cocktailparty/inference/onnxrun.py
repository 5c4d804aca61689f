"""Run an exported ``.onnx`` model with onnxruntime: numpy in, numpy out, no torch.

:class:`OnnxRunner` has the interface :class:`~cocktailparty.inference.separate.Separator` needs from
a model (``sample_rate``, ``num_sources`` and a call from a ``(time,)`` mixture to
``(num_sources, time)`` estimates), so chunking, stitching and scaling are shared with the
PyTorch backend. The rate and source count come from the metadata that
:func:`cocktailparty.inference.export.export_onnx` writes into the file.

    >>> runner = OnnxRunner("tdanet.onnx", threads=2)
    >>> sources = runner(mixture)                       # (C, time) from (time,), float32
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..core.errors import CocktailError

# Keys of the ONNX file's metadata_props written by export_onnx.
FORMAT = "cocktailparty/onnx/1"
META_KEYS = ("format", "architecture", "config", "sample_rate", "num_sources")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise CocktailError("the onnx backend needs onnxruntime: pip install 'cocktailparty[export]'") from None
    return onnxruntime


class OnnxRunner:
    """An exported separation model in an onnxruntime session (CPU).

    Args:
        path: a ``.onnx`` file written by ``cocktail export``.
        threads: intra-op threads (``None``: onnxruntime's default, all cores).

    Attributes:
        sample_rate, num_sources, architecture, config: from the file's metadata.
        extra_inputs: the graph's inputs after ``mixture``, in order: the extra inputs of a
            conditional separator (:mod:`cocktailparty.models.conditioning`), e.g.
            ``enrollment`` ``(batch, C, time_e)``; empty for a plain separator.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        ort = _onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise CocktailError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # onnxruntime's warnings are about its internals, not the user's input
        # Idle intra-op threads sleep instead of spinning. At low load (~1.4) this cost ~4%
        # (1.28 -> 1.33 s, 7 alternating runs); with another process busy on a 2-core machine, spinning threads take turns
        # with it for nothing: the default model's 10-s forward (2 threads, 5 alternating
        # runs each, load average ~4) took 3.99 s median spinning and 2.51 s without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own (unexported) exception types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CocktailError(f"{self.path}: not a readable ONNX model (corrupted or truncated? {first[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != FORMAT:
            raise CocktailError(f"{self.path}: an ONNX model, but not one exported by 'cocktail export' "
                                f"(no '{FORMAT}' metadata); re-export it with cocktail export")
        self.architecture = meta["architecture"]
        self.config = json.loads(meta["config"])
        self.sample_rate = int(meta["sample_rate"])
        self.num_sources = int(meta["num_sources"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.extra_inputs = self.input_names[1:]

    def forward(self, mixture: np.ndarray, *extras: np.ndarray) -> np.ndarray:
        """The model itself: ``(batch, time)`` float32 -> ``(batch, C, time)``.

        ``extras``: one array per name in :attr:`extra_inputs`, in that order (a conditional
        separator's, e.g. ``enrollment`` ``(batch or 1, C, time_e)``).
        """
        if len(extras) != len(self.extra_inputs):
            names = ", ".join(repr(n) for n in self.extra_inputs[len(extras):]) or "none"
            raise CocktailError(f"{self.path}: the model takes {len(self.extra_inputs)} input(s) besides the "
                                f"mixture, {len(extras)} given (missing: {names}); plain separation needs a "
                                f"model that takes the mixture alone, e.g. one exported in another mode")
        feeds = {"mixture": np.ascontiguousarray(mixture, dtype=np.float32)}
        for name, value in zip(self.extra_inputs, extras):
            feeds[name] = np.ascontiguousarray(value, dtype=np.float32)
        return self.session.run(["sources"], feeds)[0]

    def __call__(self, mixture: np.ndarray) -> np.ndarray:
        """``(time,)`` -> ``(num_sources, time)`` float32: the Separator's model call."""
        return self.forward(mixture[None])[0]
