"""Fixed mixture sets, read in the layouts their authors released them in.

Each is a torch Dataset whose item is a dict::

    {"mixture": (time,) float32, "sources": (C, time) float32, "id": str}

(plus ``"noise": (time,)`` when asked for and the set has it). Batched by a DataLoader this
becomes ``mixture (batch, time)`` and ``sources (batch, C, time)``. Supported layouts:

============  ====================================================================
wsj0-2mix/3mix ``wav8k/min/{tr,cv,tt}/{mix,s1,s2[,s3]}/<id>.wav`` (:class:`Wsj0Mix`)
cocktail mix  ``OUT/{mix,s1,s2,...}/<id>.wav`` + ``metadata.csv`` (:class:`Wsj0Mix`)
LRS2-2Mix     ``lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/{mix,s1,s2}/<id>.wav`` (:class:`Lrs2Mix`)
WHAM!         ``wav8k/min/{tr,cv,tt}/{mix_clean,mix_both,mix_single,s1,s2,noise}/`` (:class:`WhamMix`)
LibriMix      ``Libri2Mix/wav8k/min/metadata/mixture_<subset>_<mix_type>.csv`` (:class:`LibriMix`)
============  ====================================================================

How a set's files are found on disk is :mod:`cocktailparty.data.layouts`; the clean speech
that on-the-fly mixing draws from is :class:`~cocktailparty.data.speaker_corpus.SpeakerCorpus`,
and WHAM!'s noise (``wham_noise/{tr,cv,tt}/*.wav``) is
:class:`~cocktailparty.data.noise.NoiseFolder`.

A folder that does not have the expected layout raises
:class:`~cocktailparty.core.errors.DatasetLayoutError` saying what was expected and what was found.
Random crops are a function of ``(seed, epoch, index)`` only, so a resumed run sees the
same data; call ``set_epoch`` at the start of each epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core import audio
from ..core.errors import DatasetLayoutError
from .layouts import MixtureEntry, find_librimix_csv, find_split_folder, folder_entries, librimix_entries

log = logging.getLogger("cocktailparty")

PathLike = audio.PathLike

LIBRIMIX_TASKS = {"sep_clean": "mix_clean", "sep_noisy": "mix_both", "enh_single": "mix_single"}
WSJ0_LAYOUT = "wsj0-2mix layout: {tr,cv,tt}/ each holding mix/, s1/, s2/ [, s3/] (also under wav8k/min/)"
LRS2_LAYOUT = ("LRS2-2Mix layout: {tr,cv,tt}/ each holding mix/, s1/, s2/ "
               "(also under lrs2_rebuild/audio/wav16k/min/)")
WHAM_LAYOUT = ("WHAM! layout: {tr,cv,tt}/ each holding mix_clean/, mix_both/, s1/, s2/, noise/ "
               "(also under wav8k/min/)")


# --------------------------------------------------------------------------------------
# Fixed mixture sets
# --------------------------------------------------------------------------------------


class MixtureDataset(Dataset):
    """Fixed mixtures read from files; the base of every layout-specific loader.

    Item ``i`` is ``{"mixture": (time,), "sources": (C, time), "id": str}`` as float32
    tensors (``"noise": (time,)`` added when ``return_noise`` and the set has noise files).

    Args:
        entries: the mixtures.
        sample_rate: resample to this rate; ``None`` keeps the rate of the set's files.
        segment: seconds; when set, every item is cut to exactly this length: a random
            window of a longer mixture (the same window in mixture, sources and noise), or
            the whole mixture zero-padded at the end. ``None`` gives whole mixtures.
        seed: random crops are a function of ``(seed, epoch, index)``.
        return_noise: also return the noise signal.
    """

    def __init__(
        self,
        entries: Sequence[MixtureEntry],
        *,
        sample_rate: Optional[int] = None,
        segment: Optional[float] = None,
        seed: int = 0,
        return_noise: bool = False,
        name: str = "mixtures",
    ):
        if not entries:
            raise DatasetLayoutError(f"{name}: holds no mixtures")
        self.entries = list(entries)
        self.name = name
        self._sample_rate = sample_rate
        self.segment = segment
        self.seed = int(seed)
        self.epoch = 0
        self.return_noise = return_noise
        if return_noise and any(e.noise is None for e in self.entries):
            raise DatasetLayoutError(f"{name}: return_noise was asked for, but this set has no noise files")

    @property
    def sample_rate(self) -> int:
        if self._sample_rate is None:
            self._sample_rate = int(audio.info(self.entries[0].mixture).samplerate)
        return self._sample_rate

    @property
    def num_sources(self) -> int:
        return len(self.entries[0].sources)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def set_epoch(self, epoch: int) -> None:
        """Choose the random crops of this epoch (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        rate = self.sample_rate
        mixture, _ = audio.read(entry.mixture, sample_rate=rate)
        paths = list(entry.sources)
        signals = [audio.read(p, sample_rate=rate)[0] for p in entry.sources]
        if self.return_noise:
            paths.append(entry.noise)
            signals.append(audio.read(entry.noise, sample_rate=rate, channel=0)[0])
        for path, signal in zip(paths, signals):
            if signal.shape[-1] != mixture.shape[-1]:
                raise DatasetLayoutError(
                    f"{path}: has {signal.shape[-1]} samples but its mixture {entry.mixture} has "
                    f"{mixture.shape[-1]}; the set is damaged or mixes 'min' and 'max' versions"
                )
        mixture, stacked = self._crop(index, mixture, np.stack(signals))
        num = len(entry.sources)
        item = {
            "mixture": torch.from_numpy(np.ascontiguousarray(mixture)),
            "sources": torch.from_numpy(np.ascontiguousarray(stacked[:num])),
            "id": entry.id,
        }
        if self.return_noise:
            item["noise"] = torch.from_numpy(np.ascontiguousarray(stacked[num]))
        return item

    def _crop(self, index: int, mixture: np.ndarray, stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.segment is None:
            return mixture, stacked
        length = int(round(self.segment * self.sample_rate))
        have = mixture.shape[-1]
        if have >= length:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, have - length + 1))
            return mixture[start:start + length], stacked[:, start:start + length]
        pad = length - have
        return np.pad(mixture, (0, pad)), np.pad(stacked, ((0, 0), (0, pad)))


class Wsj0Mix(MixtureDataset):
    """wsj0-2mix / wsj0-3mix, and the output of ``cocktail mix`` (the same layout).

    ``root`` may be the folder holding ``tr/ cv/ tt/`` (e.g. ``.../2speakers/wav8k/min``), a
    folder above it holding ``wav8k/min`` (pick with ``sample_rate``/``mode``), or one split
    folder holding ``mix/ s1/ s2/ ...`` directly (a ``cocktail mix`` output). Mixture and
    source files are paired by file name. ``num_sources`` defaults to the number of ``sK/``
    folders.
    """

    layout = WSJ0_LAYOUT
    mixture_dir = "mix"
    layout_prefixes: tuple[str, ...] = ("",)

    def __init__(
        self,
        root: PathLike,
        split: Optional[str] = None,
        *,
        num_sources: Optional[int] = None,
        sample_rate: Optional[int] = None,
        mode: str = "min",
        segment: Optional[float] = None,
        seed: int = 0,
        return_noise: bool = False,
    ):
        folder = find_split_folder(root, split, self.mixture_dir, self.layout,
                                   sample_rate=sample_rate, mode=mode, prefixes=self.layout_prefixes)
        entries = folder_entries(folder, self.mixture_dir, num_sources, with_noise=return_noise)
        self.folder = folder
        super().__init__(entries, sample_rate=sample_rate, segment=segment, seed=seed,
                         return_noise=return_noise, name=str(folder))


class Lrs2Mix(Wsj0Mix):
    """LRS2-2Mix (TDANet's set): 16 kHz, 2-second mixtures of two LRS2 talkers, -5..5 dB.

    The released archive unpacks to ``lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/{mix,s1,s2}/``
    with 20000/5000/3000 mixtures; a file is named ``<utt1>_<g1>_<utt2>_<g2>.wav`` where
    ``<uttK>`` is an LRS2 clip (``<video id>_<clip number>``) and ``gK`` its level in dB
    (``g2 = -g1``). Any of those folders can be given as ``root``.
    """

    layout = LRS2_LAYOUT
    layout_prefixes = ("", "audio", "lrs2_rebuild/audio")

    def __init__(self, root: PathLike, split: Optional[str] = None, **kwargs):
        kwargs.setdefault("num_sources", 2)
        super().__init__(root, split, **kwargs)


class WhamMix(Wsj0Mix):
    """WHAM!: wsj0-2mix with recorded café/restaurant/bar noise (SNR -6..3 dB).

    ``task="sep_noisy"`` reads ``mix_both/`` (speech + noise), ``"sep_clean"`` reads
    ``mix_clean/``; sources are ``s1/ s2/`` and ``noise/`` holds the noise
    (``return_noise=True``). ``root`` as for :class:`Wsj0Mix` (``.../wav8k/min`` or above).
    """

    layout = WHAM_LAYOUT

    def __init__(self, root: PathLike, split: Optional[str] = None, task: str = "sep_noisy", **kwargs):
        tasks = {"sep_noisy": "mix_both", "sep_clean": "mix_clean"}
        if task not in tasks:
            raise DatasetLayoutError(f"WHAM! task '{task}' is not one of {', '.join(tasks)}")
        self.mixture_dir = tasks[task]
        kwargs.setdefault("num_sources", 2)
        super().__init__(root, split, **kwargs)


class LibriMix(MixtureDataset):
    """LibriMix (Libri2Mix, Libri3Mix), read through its metadata CSVs.

    Layout (as generated by the LibriMix scripts)::

        Libri2Mix/wav{8k,16k}/{min,max}/metadata/mixture_<subset>_<mix_type>.csv
        Libri2Mix/wav{8k,16k}/{min,max}/<subset>/{mix_clean,mix_both,mix_single,s1,s2,noise}/<id>.wav

    with ``<subset>`` in train-360, train-100, dev, test and CSV columns ``mixture_ID,
    mixture_path, source_1_path, ..., source_C_path, [noise_path,] length`` (newer versions add
    ``original_mixture_ID``). The CSV paths are absolute paths of the machine that generated
    the set; when they do not exist, the same ``<subset>/<folder>/<file>`` is looked up under
    the folder holding ``metadata/``, so a moved dataset still loads.

    Args:
        root: a metadata CSV, the ``wav8k/min`` folder, or ``Libri2Mix`` itself.
        split: the subset (``train-360``, ``train-100``, ``dev``, ``test``; ``valid``/``cv``
            mean ``dev``, ``tt`` means ``test``). Ignored when ``root`` is a CSV.
        task: ``sep_clean`` (mix_clean), ``sep_noisy`` (mix_both) or ``enh_single``
            (mix_single: one speaker + noise, one source).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "test",
        task: str = "sep_clean",
        *,
        sample_rate: Optional[int] = None,
        mode: str = "min",
        segment: Optional[float] = None,
        seed: int = 0,
        return_noise: bool = False,
    ):
        if task not in LIBRIMIX_TASKS:
            raise DatasetLayoutError(f"LibriMix task '{task}' is not one of {', '.join(LIBRIMIX_TASKS)}")
        csv_path = find_librimix_csv(root, split, LIBRIMIX_TASKS[task], sample_rate=sample_rate, mode=mode)
        entries = librimix_entries(csv_path, with_noise=return_noise)
        self.metadata = csv_path
        super().__init__(entries, sample_rate=sample_rate, segment=segment, seed=seed,
                         return_noise=return_noise, name=str(csv_path))


def open_mixture_dataset(path: PathLike, split: Optional[str] = None, **kwargs) -> MixtureDataset:
    """Open any supported fixed mixture set, guessing its layout (for ``cocktail evaluate``).

    A ``.csv`` or a folder with LibriMix ``metadata/`` -> :class:`LibriMix`; folders with
    ``mix_both/`` -> :class:`WhamMix`; anything else -> :class:`Wsj0Mix` (which reports what
    it expected when the layout does not fit).
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return LibriMix(path, split or "test", **kwargs)
    if path.is_dir():
        # Shallow globs only: a real set has tens of thousands of files below these levels.
        if any(path.glob("metadata/mixture_*.csv")) or any(path.glob("wav*k/*/metadata/mixture_*.csv")):
            return LibriMix(path, split or "test", **kwargs)
        if any(path.glob("mix_both")) or any(path.glob("*/mix_both")) or any(path.glob("wav*k/*/*/mix_both")):
            return WhamMix(path, split, **kwargs)
    return Wsj0Mix(path, split, **kwargs)



__all__ = ["MixtureDataset", "Wsj0Mix", "Lrs2Mix", "WhamMix", "LibriMix", "open_mixture_dataset"]
