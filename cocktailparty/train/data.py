"""The training data: datasets as the ``data:`` section describes them, and the order and
batches of each epoch.

``data.corpus`` (a speaker-labelled corpus: mixtures are drawn on the fly by
:class:`~cocktailparty.data.mixing.DynamicMixer`, a new set every epoch) or
``data.train_set``/``data.valid_set`` (fixed mixture sets in any layout that
:func:`~cocktailparty.data.mixture_datasets.open_mixture_dataset` reads). The epoch's order is a
permutation drawn from ``(seed, epoch)`` and every item is a function of ``(seed, epoch,
index)``, so a resumed run sees exactly the batches the uninterrupted one would have, with
any number of DataLoader workers.

A batch holds ``mixture (B, T)``, ``sources (B, C, T)``, ``speaker_ids (B, C)`` int64 (only
for data from a speaker-labelled corpus), ``id`` (list of str), ``noise``/``music``
``(B, T)`` when the data has them, and ``enrollment (B, C, T_e)`` with
``data.enrollment_seconds`` (see :class:`WithEnrollment`).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..core.errors import CocktailError
from .config import DataConfig


def build_datasets(d: DataConfig, sample_rate: int, num_sources: int, training_seed: int,
                   source: str = "config") -> tuple[Dataset, Dataset, Optional[list[str]]]:
    """``(train, valid, speakers)`` as the ``data:`` section describes; ``speakers`` is the
    training speakers' list (``speaker_ids`` index it) for corpus data, else None."""
    from ..data.mixture_datasets import open_mixture_dataset
    from ..data.mixing import DynamicMixer

    if d.sample_rate is not None and int(d.sample_rate) != int(sample_rate):
        raise CocktailError(f"{source}: data.sample_rate is {d.sample_rate} but the model runs at "
                            f"{sample_rate} Hz; set model.sample_rate (or drop data.sample_rate)")
    dynamic = d.dynamic_mixing
    if dynamic is None:
        dynamic = bool(d.corpus) and not d.train_set
    if dynamic and not d.corpus:
        raise CocktailError(f"{source}: data.dynamic_mixing is on but data.corpus is not set; "
                            f"pass a speaker-labelled corpus folder: --set data.corpus=DIR")
    if not dynamic and not d.train_set:
        what = ("data.dynamic_mixing is false and data.train_set is not set"
                if d.corpus else "no training data: set data.corpus or data.train_set")
        raise CocktailError(f"{source}: {what} (e.g. --set data.train_set=DIR --set data.valid_set=DIR, "
                            f"or --set data.corpus=DIR for dynamic mixing)")
    seed = int(d.seed if d.seed is not None else training_seed)
    valid_seed = int(d.valid_seed)
    segment = d.segment_seconds
    valid_segment = d.valid_segment_seconds
    for key in ("corpus", "train_set", "valid_set", "noise", "music", "rooms"):
        given = getattr(d, key)
        for value in (given if isinstance(given, (list, tuple)) else [given]):
            if value and not Path(value).exists():
                raise CocktailError(f"{source}: data.{key}: {value} does not exist")
    speakers = None
    if dynamic:
        sir = d.sir if d.sir is not None else (d.mix_snr_db if d.mix_snr_db is not None else [0.0, 5.0])
        common = dict(num_speakers=int(d.num_speakers or num_sources), sample_rate=sample_rate,
                      mode=d.mode, sir=sir, level=d.level, noise=d.noise, snr=d.snr,
                      music=d.music, smr=d.smr, music_as_source=d.music_as_source,
                      rooms=d.rooms, reverb_probability=d.reverb_probability,
                      distinct_persons=d.distinct_persons, corpus_weights=d.corpus_weights,
                      min_bandwidth=d.min_bandwidth, seed=seed)
        # Speed and the channel effects are augmentations of the training mixtures only, so that
        # runs with and without them validate on the same items.
        train = DynamicMixer(d.corpus, split=d.train_split, segment=segment, speed=d.speed,
                             length=d.epoch_length, eq=d.eq, band_limit=d.band_limit, codec=d.codec, **common)
        speakers = list(train.speakers)
        if d.valid_set:
            valid = open_mixture_dataset(d.valid_set, d.valid_split, sample_rate=sample_rate,
                                         segment=valid_segment, seed=valid_seed, mode=d.mode)
        else:
            valid = DynamicMixer(d.corpus, split=d.valid_split, segment=valid_segment,
                                 **dict(common, seed=valid_seed))
        if d.enrollment_seconds:
            train = WithEnrollment(train, float(d.enrollment_seconds))
            if isinstance(valid, DynamicMixer):
                valid = WithEnrollment(valid, float(d.enrollment_seconds))
    elif d.enrollment_seconds:
        raise CocktailError(f"{source}: data.enrollment_seconds needs dynamic mixing from a speaker-labelled "
                            f"corpus (data.corpus): fixed mixture sets do not say who speaks")
    elif any(getattr(d, key) is not None for key in ("eq", "band_limit", "codec")):
        keys = ", ".join(f"data.{key}" for key in ("eq", "band_limit", "codec") if getattr(d, key) is not None)
        raise CocktailError(f"{source}: {keys}: the channel effects are drawn with each mixture, so they need "
                            f"dynamic mixing from data.corpus, not a fixed mixture set")
    else:
        train = open_mixture_dataset(d.train_set, d.train_split, sample_rate=sample_rate,
                                     segment=segment, seed=seed, mode=d.mode)
        if not d.valid_set:
            raise CocktailError(f"{source}: data.valid_set is not set; validation SI-SNRi drives the lr "
                                f"schedule and early stopping: --set data.valid_set=DIR")
        valid = open_mixture_dataset(d.valid_set, d.valid_split, sample_rate=sample_rate,
                                     segment=valid_segment, seed=valid_seed, mode=d.mode)
    return train, valid, speakers


class WithEnrollment(Dataset):
    """Dynamic mixtures plus an enrollment recording per talker, for models that declare an
    ``enrollment`` extra input (:mod:`cocktailparty.models.conditioning`; Tune-In Offline).

    Adds ``"enrollment": (C, T_e)`` to each item of a
    :class:`~cocktailparty.data.mixing.DynamicMixer`: row ``j`` is other utterances of the
    speaker of ``sources[j]`` (not those in the mixture, when the speaker has others),
    concatenated to ``seconds``, mixed with another person's speech at a relative level drawn
    from the mixer's ``sir`` range ("the same SIR range but with different interferences").
    A function of ``(seed, epoch, index)`` like the mixture itself.
    """

    def __init__(self, mixer, seconds: float):
        self.mixer, self.seconds = mixer, seconds
        corpus = mixer.corpus
        self._persons = {s: {corpus[u].person for u in corpus.by_speaker[s]} for s in corpus.speakers}

    def set_epoch(self, epoch: int) -> None:
        self.mixer.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.mixer)

    def __getitem__(self, index: int) -> dict:
        from ..data.levels import mix_pair

        item = self.mixer[index]
        mixer, corpus = self.mixer, self.mixer.corpus
        rate = mixer.sample_rate
        total = int(round(self.seconds * rate))
        rng = np.random.default_rng([mixer.seed, mixer.epoch, index, 0xE7])
        rows = []
        for sid in item["speaker_ids"].tolist():
            speaker = corpus.speakers[sid]
            target = self._speech(rng, corpus.by_speaker[speaker], item["id"], total)
            others = [s for s in corpus.speakers if not self._persons[s] & self._persons[speaker]]
            other = others[int(rng.integers(0, len(others)))] if others else speaker
            interference = self._speech(rng, corpus.by_speaker[other], item["id"], total)
            rows.append(mix_pair(target, interference, rate, rng, mixer.sir, mixer.level))
        item["enrollment"] = torch.from_numpy(np.stack(rows))
        return item

    def _speech(self, rng: np.random.Generator, pool: list[int], mixture_id: str, total: int) -> np.ndarray:
        from ..data.mixture_plan import load_speech

        corpus = self.mixer.corpus
        fresh = [u for u in pool if corpus[u].id not in mixture_id] or list(pool)
        order = [fresh[int(i)] for i in rng.permutation(len(fresh))]
        pieces, have, k = [], 0, 0
        while have < total:
            x = load_speech(corpus[order[k % len(order)]].path, self.mixer.sample_rate)
            pieces.append(x)
            have += x.shape[-1]
            k += 1
        joined = np.concatenate(pieces)
        start = int(rng.integers(0, joined.shape[-1] - total + 1))
        return joined[start:start + total]


def epoch_order(seed: int, epoch: int, size: int, shuffle: bool = True) -> np.ndarray:
    """The order of an epoch's items: a permutation drawn from ``(seed, epoch)`` alone."""
    if not shuffle:
        return np.arange(size)
    # The trailing constants keep this stream apart from the datasets' (seed, epoch, index) ones.
    return np.random.default_rng([seed, epoch, 0xC0C7, 0x7A11]).permutation(size)


class EpochBatches(Sampler):
    """Index lists of one epoch's batches ``[start, stop)`` for one process.

    Global batch ``b`` is ``order[b * G : (b + 1) * G]``; process ``r`` of ``W`` takes the
    ``r``-th of its ``W`` equal slices, so the data seen per step does not depend on ``W``.
    """

    def __init__(self, order: np.ndarray, global_batch: int, start: int, stop: int, rank: int = 0, world: int = 1):
        self.order, self.global_batch = order, global_batch
        self.start, self.stop = start, stop
        per = global_batch // world
        self.lo, self.hi = rank * per, (rank + 1) * per

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start, self.stop):
            base = b * self.global_batch
            yield self.order[base + self.lo: base + self.hi].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _worker_init(_: int) -> None:
    # Ctrl-C, GNU timeout and cluster schedulers signal the whole process group; the workers
    # leave the signal to the main process, which finishes its step and saves before exiting
    # (a worker killed by SIGTERM would abort the run with a DataLoader error instead).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset: Dataset, batches, workers: int, seed: int, pin: bool) -> DataLoader:
    """A DataLoader over ``batches`` (index lists) whose workers leave stop signals to the
    trainer and whose own random stream comes from ``seed``."""
    # A private generator: creating a loader otherwise draws its workers' base seed from the
    # global torch RNG, which would make dropout depend on where an epoch was resumed.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin,
                      worker_init_fn=_worker_init if workers else None, generator=generator,
                      collate_fn=collate)


def collate(items: list[dict]) -> dict:
    """Items to a batch (stacked on a new first axis), without their reverberant images."""
    # Items put in a room (data.rooms) also carry their reverberant images; with
    # 0 < reverb_probability < 1 only some do, and default_collate fails on a key one item has
    # and another lacks. No objective trains on them yet, and a captured CUDA-graph step needs
    # every batch to hold the same keys: so batches never carry them.
    return default_collate([{k: v for k, v in item.items() if k != "reverberant"} for item in items])


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors moved to ``device`` (other entries, e.g. ``id``, as they are)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}
