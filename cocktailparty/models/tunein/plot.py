"""Tune-In's cross-attention maps ``a_crs,j`` (Eq. 1), computed and plotted over the
mixture's spectrogram: what part of the speaker memory each part of the mixture retrieved.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ...core import audio
from ...core.errors import CocktailError


class AttentionPlot(NamedTuple):
    path: Path
    panels: list  # panel titles, top to bottom


@torch.inference_mode()
def cross_attention_maps(model: nn.Module, mixture, sample_rate: int | None = None, enrollment=None) -> np.ndarray:
    """``a_crs,j`` (Eq. 1) for one recording: ``(C, S, S_m)`` numpy.

    Args:
        mixture: audio at ``sample_rate`` (default the model's), as the
            :class:`~cocktailparty.inference.separate.Separator` takes it: ``(time,)``,
            ``(frames, channels)`` or ``(channels, frames)``, numpy or torch.
        enrollment: Offline mode's enrollment (anything :meth:`TuneIn.embed_enrollment`
            takes, at the model's rate); without one the map is Online mode's, where the
            mixture's segments attend over the mixture's own speaker features.
    """
    if not callable(getattr(model, "steering_vectors", None)):
        raise CocktailError(f"the cross-attention map is Tune-In's; this model is a "
                            f"{getattr(model, 'architecture', type(model).__name__)}")
    model.require_speaker_space("the cross-attention map")
    x = audio.resample(audio.as_mono(mixture), sample_rate or model.config.sample_rate, model.config.sample_rate)
    device = next(model.parameters()).device
    wav = torch.from_numpy(np.ascontiguousarray(x)).to(device).unsqueeze(0)
    mode = "online" if enrollment is None else "offline"
    attn = model.eval().steering_vectors(wav, enrollment, mode=mode)[1]
    return attn[0].float().cpu().numpy()


def plot_cross_attention(model: nn.Module, mixture, path: PathLike, sample_rate: int | None = None,
                         enrollment=None, title: str | None = None) -> AttentionPlot:
    """Plot the mixture's spectrogram over one cross-attention map per steering vector.

    Panel 1: the spectrogram, time on x. Panel ``1 + j``: ``a_crs,j`` with the mixture's
    segments (the queries, in time order) on x, aligned with the spectrogram, and the speaker
    features attended over on y (Online: the mixture's own segments, in time too, so a
    talker's parts show as bright rows; Offline: the enrollment's pooled features).
    Where a column lights up a few rows, that part of the mixture retrieved speaker knowledge
    from a few places: the selective attention of the paper's appendix.

    Expect mostly horizontal lines (the same rows lit in every column) from a trained model:
    Eq. 2 averages the weighted values over the S query segments, so ``Z_j`` depends only on
    each row's mean attention, and nothing in the loss rewards a query-dependent map. Our
    trained models (8 kHz synthetic voices) show exactly that; it is not a plotting error.

    Returns:
        :class:`AttentionPlot` (the PNG's path and the panel titles).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot's import
    import matplotlib.pyplot as plt

    rate = int(sample_rate or model.config.sample_rate)
    x = audio.as_mono(mixture)
    maps = cross_attention_maps(model, x, rate, enrollment)
    seconds = x.shape[-1] / rate
    titles = ["mixture"] + [f"a_crs,{j + 1}: steering vector {j + 1}" for j in range(maps.shape[0])]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(titles), 1, figsize=(8, 2.2 + 2.4 * maps.shape[0]), squeeze=False,
                             gridspec_kw={"height_ratios": [1] + [1.4] * maps.shape[0]})
    axes = axes[:, 0]
    fig.subplots_adjust(hspace=0.45)
    try:
        nfft = max(64, int(2 ** round(np.log2(0.032 * rate))))
        axes[0].specgram(x + 1e-9, NFFT=nfft, Fs=rate, noverlap=nfft // 2, cmap="magma")
        axes[0].set_xlim(0, seconds)
        axes[0].set_ylabel("Hz")
        for j, ax in enumerate(axes[1:]):
            # Transposed so that the queries (mixture segments) run along time, like panel 1.
            # No colour bar: it would narrow these panels out of line with the spectrogram;
            # each column is a distribution (sums to 1), so brightness is relative anyway.
            # Online: the keys are the mixture's own segments, so both axes are mixture time.
            top = seconds if enrollment is None else maps.shape[2]
            ax.imshow(maps[j].T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                      extent=(0, seconds, 0, top))
            ax.set_ylabel("attended (s)" if enrollment is None else "enrollment feature")
        for ax, name in zip(axes, titles):
            ax.set_title(name, fontsize="small", loc="left")
        axes[-1].set_xlabel("mixture time (s); one column per segment")
        if title:
            fig.suptitle(title)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return AttentionPlot(path, titles)
