"""The whole pipeline on one example, end to end (``cocktail demo``).

It synthesizes a small speaker corpus from the installed TTS voices, mixes two of its talkers
(the wsj0-2mix way, with a metadata CSV), separates the mixture with a model, and writes the
WAVs, a PNG of the spectrograms (mixture, references, estimates) and the SI-SNRi it reached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import audio
from ..data.corpus import build_corpus
from ..data.mixture_sets import write_mixture_set

SAMPLE_RATE = 16000
# English voices of distinct recorded persons: MBROLA's US voices (us1 female, us2 and us3
# male) and the British en1.
DEMO_VOICES = ["mb-us*", "mb-en1"]


def run_demo(out: str | Path, model: str | None = None, device: str | None = None, seed: int = 0,
             progress: bool = True) -> dict:
    """Build, mix, separate; returns paths and scores. See the module docstring."""
    out = Path(out)
    corpus_dir = out / "corpus"
    build_corpus(corpus_dir, speakers=4, utterances=2, sample_rate=SAMPLE_RATE, seed=seed,
                 voices=DEMO_VOICES, split="1,0,0", progress=progress)
    mix_dir = write_mixture_set(corpus_dir, out / "mixtures", split="train", num_mixtures=1,
                                num_speakers=2, seconds=None, mode="min", sir=(0.0, 0.0),
                                seed=seed, force=True, progress=False)
    mixture_path = next((mix_dir / "mix").glob("*.wav"))
    mixture, rate = audio.read(mixture_path)
    references = np.stack([audio.read(mix_dir / f"s{i}" / mixture_path.name)[0] for i in (1, 2)])
    result = {"corpus": corpus_dir, "mixture": mixture_path, "estimates": [], "si_snri": None}

    from ..eval.metrics.permutations import si_snri
    from ..inference.separate import Separator

    separator = Separator.from_pretrained(model, device=device)
    estimates = separator(mixture, rate)
    if estimates.shape[0] == references.shape[0]:
        improvement, order = si_snri(estimates.astype(np.float64), references, mixture)
        result["si_snri"] = float(np.mean(improvement))
        # The model's output order is arbitrary: estimate i is the one that best matches
        # reference i (the pairing of best SI-SNR), in its file name and its row of the figure.
        estimates = estimates[order]
    for i, estimate in enumerate(estimates):
        path = out / f"estimate_s{i + 1}.wav"
        audio.write(path, estimate, rate)
        result["estimates"].append(path)
    result["figure"] = plot_spectrograms(out / "spectrograms.png", rate, mixture, references, estimates)
    return result


# The colour scale's floor, in dB of frame power (spectrogram_db): below any recorded sound
# (about -140 dB per Hz at 16 kHz), above the -120 dB that digital silence reads as.
FLOOR_DB = -78


def plot_spectrograms(path: Path, rate: int, mixture: np.ndarray, references: np.ndarray,
                      estimates: np.ndarray | None) -> Path:
    """One row per signal: the mixture, each reference, each estimate (log-magnitude STFT)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .spectrogram import spectrogram_db

    rows = [("mixture", mixture)] + [(f"reference {i + 1}", r) for i, r in enumerate(references)]
    if estimates is not None:
        rows += [(f"estimate {i + 1}", e) for i, e in enumerate(estimates)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.8 * len(rows)), sharex=True, squeeze=False)
    for ax, (title, signal) in zip(axes[:, 0], rows):
        level = spectrogram_db(signal, rate)
        # A silent row lies wholly under the floor; matplotlib needs vmin <= its top.
        ax.imshow(level, origin="lower", aspect="auto", cmap="magma", vmin=min(FLOOR_DB, level.max()),
                  extent=(0, signal.shape[-1] / rate, 0, rate / 2))
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("Hz")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
