"""Simulated rooms for reverberant training data (WHAMR!-style): ``cocktail corpus rooms``.

All talkers of a mixture stand in the same random shoebox room, heard by one microphone.
Each talker's *reverberant image* (its dry speech convolved with its room impulse response,
RIR) goes into the mixture; the separation target is its *early image*: the dry speech
convolved with the direct path and the first 50 ms of the RIR only.

Definitions:

* **Room**: a shoebox ``x`` by ``y`` by ``z`` metres, ``x`` and ``y`` drawn uniformly from
  3-10 m and the height ``z`` from 2.5-4 m, every wall of one energy absorption coefficient.
* **RT60**: drawn uniformly from ``rt60`` (default 0.1-1.0 s). The
  wall absorption that gives it is Sabine's (:func:`pyroomacoustics.inverse_sabine`); a
  room too large for a very short RT60 (Sabine absorption over 1) is drawn again, so short
  RT60s come in smaller rooms and the RT60 stays uniform. Sabine's formula assumes a diffuse
  field; the image-source decay of a shoebox is not quite exponential, so a generated RIR's
  measured RT60 can differ from the asked one by ~20% (shorter in dead rooms, where
  Eyring's formula is closer; longer in flat, live rooms).
* **Placement**: the microphone at least 0.5 m from every wall, floor and ceiling, 1.0-1.8 m
  high; each talker 0.5-3 m from the microphone (3-D distance, uniform), at head height
  (1.2-1.8 m: seated to standing), at least 0.5 m from every wall and from the other talkers.
* **Direct-path arrival** of a source: the first sample of its RIR whose magnitude reaches
  half the RIR's peak. Nothing arrives before the direct sound, and in a free-standing
  placement no reflection is stronger (it travels further and loses energy at the wall),
  so this is the direct path, whatever its fractional delay.
* **Early part**: the RIR up to the direct-path arrival + 50 ms, then a 5 ms half-cosine
  fade to zero (a hard cut would put a click into the target), zero after that.
  RIRs keep the propagation delay: sample ``n`` is ``n / rate`` seconds after the talker
  spoke, so the early and reverberant images of a talker are aligned with each other.
* **Why the early image is the target**: reflections within ~50 ms fuse with the direct
  sound and make speech louder without hurting intelligibility (the C50 "clarity" boundary
  of room acoustics), while later ones smear it. Asking a model to remove the early
  reflections too (an anechoic target) asks it to invert the room, which is much harder
  and removes what listeners hear as part of the voice anyway; the late tail is what it
  should remove.
* **Level**: each RIR is scaled so that its early part has unit energy (sum of squares 1),
  so an early image has about the level of the dry talker it came from, whatever the
  distance: the mixer's talker levels and SIR still roughly describe the targets. Exactly so
  on average for white noise; a voice's energy sits in harmonics that the room's comb-like
  response raises or lowers, so its early image can be a few dB off (-6..+4 dB for a steady
  synthetic vowel over 50 rooms). The late tail adds energy on top, more in live rooms.

The image-source method costs grow with the cube of the reflection order, and a live small
room needs order ~180 (8 s at 16 kHz), so the order is capped (:data:`MAX_ORDER`): see
:func:`impulse_responses` for what the cap costs. Training reads precomputed rooms from a
:class:`RoomBank` folder instead of simulating per item.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from scipy.signal import fftconvolve

from ..core.errors import CocktailError

log = logging.getLogger("cocktailparty")

PathLike = Union[str, os.PathLike]

ROOM_X = (3.0, 10.0)
ROOM_Y = (3.0, 10.0)
ROOM_Z = (2.5, 4.0)
WALL_MARGIN = 0.5
MIC_HEIGHT = (1.0, 1.8)
SOURCE_HEIGHT = (1.2, 1.8)
SOURCE_DISTANCE = (0.5, 3.0)
SOURCE_SPACING = 0.5
EARLY_MS = 50.0
FADE_MS = 5.0
# Image-source order cap: order 40 takes ~0.05 s for two talkers at 16 kHz (the cost grows
# with the order cubed), and is exact through >= 0.2 s even in the smallest room.
MAX_ORDER = 40
# The level of the diffuse tail is measured over this window just before it starts.
TAIL_WINDOW_MS = 20.0
SPLITS = ("train", "valid", "test")
SPLIT_SHARES = {"valid": 0.1, "test": 0.1}  # train gets the rest
RECORD_FILE = "rooms.json"
FORMAT_NAME = "cocktailparty-rooms"
FORMAT_VERSION = 1
MAX_DRAWS = 10000


@dataclass
class RoomPlan:
    """One room: what :func:`impulse_responses` needs to simulate it (metres, seconds).

    ``dims`` is ``[x, y, z]``, ``mic`` ``[x, y, z]``, ``sources`` one ``[x, y, z]`` per talker;
    ``seed`` seeds the noise of the diffuse tail (used only when the order is capped).
    Plain floats and ints, so ``dataclasses.asdict(plan)`` is JSON.
    """

    dims: list[float]
    rt60: float
    mic: list[float]
    sources: list[list[float]]
    seed: int = 0


def draw_room(rng: np.random.Generator, num_sources: int, rt60: tuple[float, float] = (0.1, 1.0)) -> RoomPlan:
    """A random room with ``num_sources`` talkers and a microphone (see the module docstring)."""
    target = float(rng.uniform(*_check_rt60(rt60)))
    for _ in range(MAX_DRAWS):
        dims = [float(rng.uniform(*ROOM_X)), float(rng.uniform(*ROOM_Y)), float(rng.uniform(*ROOM_Z))]
        if _sabine_absorption(dims, target) > 1.0:
            continue  # too large a room for so short an RT60: draw another
        mic = [float(rng.uniform(WALL_MARGIN, dims[0] - WALL_MARGIN)),
               float(rng.uniform(WALL_MARGIN, dims[1] - WALL_MARGIN)),
               float(rng.uniform(MIC_HEIGHT[0], min(MIC_HEIGHT[1], dims[2] - WALL_MARGIN)))]
        sources = _place_sources(rng, dims, mic, num_sources)
        if sources is not None:
            return RoomPlan(dims, target, mic, sources, seed=int(rng.integers(0, 2 ** 31)))
    raise CocktailError(f"could not place {num_sources} talkers 0.5-3 m from the microphone in "
                        f"{MAX_DRAWS} random rooms; use fewer talkers")


def _check_rt60(rt60) -> tuple[float, float]:
    lo, hi = float(rt60[0]), float(rt60[1])
    if not 0.0 < lo <= hi:
        raise CocktailError(f"rt60: expected 0 < low <= high seconds, got {lo:g}, {hi:g}")
    if _sabine_absorption((ROOM_X[0], ROOM_Y[0], ROOM_Z[0]), lo) > 1.0:
        raise CocktailError(f"rt60: {lo:g} s is too short for even the smallest room "
                            f"({ROOM_X[0]:g} x {ROOM_Y[0]:g} x {ROOM_Z[0]:g} m); use a low bound of 0.1 s or more")
    return lo, hi


def _place_sources(rng: np.random.Generator, dims: list[float], mic: list[float], count: int
                   ) -> Optional[list[list[float]]]:
    """``count`` talker positions, or None when this room and mic position leave no room."""
    placed: list[list[float]] = []
    for _ in range(count):
        for _ in range(100):
            distance = rng.uniform(*SOURCE_DISTANCE)
            height = rng.uniform(*SOURCE_HEIGHT)
            azimuth = rng.uniform(0.0, 2.0 * np.pi)
            rise = height - mic[2]
            if abs(rise) >= distance:
                continue
            flat = math.sqrt(distance ** 2 - rise ** 2)
            spot = [float(mic[0] + flat * math.cos(azimuth)), float(mic[1] + flat * math.sin(azimuth)),
                    float(height)]
            inside = all(WALL_MARGIN <= spot[k] <= dims[k] - WALL_MARGIN for k in range(3))
            if inside and all(math.dist(spot, other) >= SOURCE_SPACING for other in placed):
                placed.append(spot)
                break
        else:
            return None
    return placed


def _sabine_absorption(dims, rt60: float, c: float = 343.0) -> float:
    # Sabine: RT60 = 24 ln(10) V / (c S a); the same formula as pra.inverse_sabine, but one
    # that returns the value instead of raising, to reject rooms before building them.
    x, y, z = dims
    return 24.0 * math.log(10.0) * x * y * z / (c * 2.0 * (x * y + x * z + y * z) * rt60)


def impulse_responses(plan: RoomPlan, sample_rate: int) -> np.ndarray:
    """The RIRs from each talker to the microphone: ``(num_sources, taps)`` float32.

    ``taps`` is ``ceil(rt60 * sample_rate)`` (the sound has decayed by ~60 dB by then; the
    last 5 ms fade out). Sample ``n`` is ``n / sample_rate`` s after the talker spoke (pra's
    fractional-delay filter latency is removed), and each row is scaled so that its
    :func:`early_part` has unit energy (module docstring: **Level**).

    The image-source order that ``rt60`` needs is capped at :data:`MAX_ORDER`. What the cap
    costs: image sources are complete only up to the time their order still covers every
    direction (>= 0.2 s in the smallest room, more in larger ones); after that a plain
    capped simulation thins out and falls silent far too early (in the smallest room, a
    measured RT60 of about half the asked 1 s). So from that time on the RIR is a diffuse
    tail instead: Gaussian noise (seeded by ``plan.seed``) at the level the image sources
    reached, decaying at exactly ``rt60`` (Polack's statistical model of late reverberation).
    The tail has the right energy decay but no specular structure (no flutter echoes, no
    exact late arrivals). The early part, the target, always comes from the image sources.
    """
    import pyroomacoustics as pra

    try:
        absorption, full_order = pra.inverse_sabine(plan.rt60, plan.dims)
    except ValueError:
        raise CocktailError(f"room {plan.dims} m: too large for an RT60 of {plan.rt60:g} s (Sabine absorption "
                            f"over 1); use a smaller room or a longer RT60") from None
    order = min(full_order, MAX_ORDER)
    room = pra.ShoeBox(plan.dims, fs=sample_rate, materials=pra.Material(absorption), max_order=order)
    for source in plan.sources:
        room.add_source(source)
    room.add_microphone(plan.mic)
    threads = pra.constants.get("num_threads")
    # pra sums the image sources in float32 split over its threads, so the result depends on
    # the thread count; one thread makes a room the same bit for bit on every machine.
    pra.constants.set("num_threads", 1)
    try:
        room.compute_rir()
    finally:
        pra.constants.set("num_threads", threads)
    latency = pra.constants.get("frac_delay_length") // 2
    taps = int(math.ceil(plan.rt60 * sample_rate))
    rirs = np.zeros((len(plan.sources), taps), dtype=np.float64)
    for k, rir in enumerate(room.rir[0]):
        # The first `latency` samples are the left half of the fractional-delay filter of a
        # direct path that cannot arrive earlier than 0.5 m / 343 m/s: cutting them drops
        # only the filter's small leading ripple.
        rir = np.asarray(rir[latency:latency + taps], dtype=np.float64)
        rirs[k, :rir.shape[-1]] = rir
    if order < full_order:
        c = pra.constants.get("c")
        # pra's own bound: images up to order N fill a sphere of radius (N + 1) * r_min around
        # the room; the mic may sit a room diagonal from its centre.
        r_min = min(a * b / math.hypot(a, b) for a, b in itertools.combinations(plan.dims, 2))
        exact = ((order + 1) * r_min - math.hypot(*plan.dims)) / c
        rng = np.random.default_rng(plan.seed)
        for row in rirs:
            _diffuse_tail(row, int(exact * sample_rate), plan.rt60, sample_rate, rng)
    fade = _fade(sample_rate)
    rirs[:, taps - fade.shape[-1]:] *= fade[max(0, fade.shape[-1] - taps):]
    energy = np.sqrt(np.sum(early_part(rirs, sample_rate) ** 2, axis=-1, keepdims=True))
    return (rirs / np.maximum(energy, 1e-12)).astype(np.float32)


def _diffuse_tail(row: np.ndarray, start: int, rt60: float, sample_rate: int, rng: np.random.Generator) -> None:
    """Replace ``row[start:]`` (in place) by noise at the level ``row`` has just before
    ``start``, decaying by 60 dB per ``rt60`` seconds."""
    decay = 3.0 * math.log(10.0) / rt60  # amplitude exp(-decay t): energy down 60 dB at rt60
    window = max(1, int(TAIL_WINDOW_MS / 1000.0 * sample_rate))
    before = np.arange(start - window, start)
    # Each sample's energy carried forward to `start` at the target decay: the level there.
    level = math.sqrt(float(np.mean(row[before] ** 2 * np.exp(2.0 * decay * (before - start) / sample_rate))))
    t = np.arange(row.shape[-1] - start) / sample_rate
    row[start:] = level * np.exp(-decay * t) * rng.standard_normal(t.shape[-1])


def _fade(sample_rate: int) -> np.ndarray:
    """A half-cosine from just under 1 down to just over 0, :data:`FADE_MS` long."""
    n = max(1, int(round(FADE_MS / 1000.0 * sample_rate)))
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n + 1) / (n + 1)))


def direct_arrival(rir: np.ndarray) -> int:
    """Index of the direct path of a ``(taps,)`` RIR: its first sample reaching half its peak."""
    magnitude = np.abs(np.asarray(rir))
    peak = float(magnitude.max()) if magnitude.size else 0.0
    return int(np.argmax(magnitude >= 0.5 * peak)) if peak > 0 else 0


def early_part(rirs: np.ndarray, sample_rate: int, early_ms: float = EARLY_MS) -> np.ndarray:
    """``rirs (S, taps)`` kept up to each row's direct-path arrival + ``early_ms``, faded out
    over the next 5 ms, zero after: same shape and dtype."""
    rirs = np.asarray(rirs)
    out = np.zeros_like(rirs)
    fade = _fade(sample_rate)
    keep = int(round(early_ms / 1000.0 * sample_rate))
    for row, rir in zip(out, rirs):
        cut = min(direct_arrival(rir) + keep, rir.shape[-1])
        stop = min(cut + fade.shape[-1], rir.shape[-1])
        row[:cut] = rir[:cut]
        row[cut:stop] = rir[cut:stop] * fade[:stop - cut]
    return out


def reverberate(sources: np.ndarray, rirs: np.ndarray, sample_rate: int,
                early_ms: float = EARLY_MS) -> tuple[np.ndarray, np.ndarray]:
    """Put talkers into a room: ``sources (C, T)`` and ``rirs (C, taps)`` (row ``c`` is
    talker ``c``'s RIR) -> ``(reverberant (C, T), early (C, T))`` float32.

    Both are the full convolution cut to the first ``T`` samples, not shifted: the
    propagation delay stays in both, so they stay aligned with each other. Computed in
    float64 by FFT.
    """
    sources = np.asarray(sources, dtype=np.float64)
    rirs = np.asarray(rirs, dtype=np.float64)
    if sources.ndim != 2 or rirs.ndim != 2 or rirs.shape[0] != sources.shape[0]:
        raise CocktailError(f"reverberate: expected sources (C, T) and rirs (C, taps) with the same C, "
                            f"got {sources.shape} and {rirs.shape}")
    length = sources.shape[-1]
    reverberant = fftconvolve(sources, rirs, axes=-1)[:, :length]
    early = fftconvolve(sources, early_part(rirs, sample_rate, early_ms), axes=-1)[:, :length]
    return reverberant.astype(np.float32), early.astype(np.float32)


# --------------------------------------------------------------------------------------
# A folder of precomputed rooms
# --------------------------------------------------------------------------------------


class RoomBank:
    """Precomputed rooms: ``DIR/<split>/room-NNNNN.npy`` (float32 ``(num_sources, taps)``
    RIRs, :func:`impulse_responses`) for the splits train/valid/test, and ``DIR/rooms.json``
    (the build parameters and each room's file, split and plan).

    ``RoomBank(folder, split)`` opens one split (``tr``/``cv``/``tt`` are understood too);
    ``split=None`` opens every room. ``bank[i]`` is ``(rirs (num_sources, taps) float32,
    plan dict)``; :meth:`path` names room ``i``'s file. Rooms are sorted by file name, so an
    index always names the same room.
    """

    def __init__(self, folder: PathLike, split: Optional[str] = None):
        folder = Path(folder)
        record = _read_record(folder)
        rooms = record["rooms"]
        if split is not None:
            from .layouts import canonical_split

            name = canonical_split(split)
            rooms = [room for room in rooms if room["split"] == name]
            if not rooms:
                raise CocktailError(f"{folder}: holds no {name} rooms; rebuild it with more: "
                                    f"cocktail corpus rooms --out {folder} --rooms N")
        self.folder = folder
        self.split = split
        self.sample_rate = int(record["sample_rate"])
        self.num_sources = int(record["num_sources"])
        self.rooms = sorted(rooms, key=lambda room: room["file"])

    def __len__(self) -> int:
        return len(self.rooms)

    def path(self, index: int) -> Path:
        return self.folder / self.rooms[index]["file"]

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict]:
        path = self.path(index)
        try:
            rirs = np.load(path)
        except (OSError, ValueError) as err:
            raise CocktailError(f"{path}: cannot be read ({err}); rebuild the bank: "
                                f"cocktail corpus rooms --out {self.folder}") from None
        return rirs, dict(self.rooms[index]["plan"])

    @classmethod
    def build(cls, out: PathLike, count: int, num_sources: int, sample_rate: int, seed: int,
              rt60: tuple[float, float] = (0.1, 1.0), jobs: int = 0, progress: bool = True) -> "RoomBank":
        """Simulate ``count`` rooms into ``out`` (80/10/10 % train/valid/test, at least one
        each) and return the whole bank. Room ``i`` comes from ``(seed, i)`` alone, so the
        bank is the same whatever ``jobs`` (processes; 0: all cores). ``out`` must be new,
        empty or a room bank (which is replaced)."""
        out = Path(out)
        count, num_sources, sample_rate = int(count), int(num_sources), int(sample_rate)
        if count < len(SPLITS):
            raise CocktailError(f"{out}: a room bank needs at least {len(SPLITS)} rooms (one per split), "
                                f"got {count}")
        if num_sources < 1 or sample_rate < 1:
            raise CocktailError(f"{out}: need at least one source and a positive sample rate, "
                                f"got {num_sources} and {sample_rate}")
        rt60 = _check_rt60(rt60)
        _prepare_output(out)
        tasks = []
        for index, split in enumerate(_split_names(count)):
            (out / split).mkdir(parents=True, exist_ok=True)
            tasks.append((index, seed, num_sources, sample_rate, rt60, str(out / split / f"room-{index:05d}.npy")))
        workers = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
        started = time.monotonic()
        if workers == 1:
            # One process: no pool to start (a pool costs more than a handful of rooms).
            results = [_build_room(task) for task in _progress(tasks, progress)]
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(_progress(pool.map(_build_room, tasks, chunksize=4), progress, len(tasks)))
        rooms = [{"file": Path(task[-1]).relative_to(out).as_posix(), "split": Path(task[-1]).parent.name,
                  "taps": taps, "plan": plan} for task, (plan, taps) in zip(tasks, results)]
        record = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "count": count, "num_sources": num_sources,
                  "sample_rate": sample_rate, "seed": seed, "rt60": list(rt60), "early_ms": EARLY_MS,
                  "max_order": MAX_ORDER, "splits": {s: sum(r["split"] == s for r in rooms) for s in SPLITS},
                  "rooms": rooms}
        # Written last: a folder whose build was interrupted is not mistaken for a bank.
        (out / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        log.info("%s: %d rooms (%s) in %.1f s", out, count,
                 ", ".join(f"{n} {s}" for s, n in record["splits"].items()), time.monotonic() - started)
        return cls(out)


def _build_room(task: tuple) -> tuple[dict, int]:
    """One room of a bank (in a worker process): draw it, simulate it, save its RIRs."""
    index, seed, num_sources, sample_rate, rt60, path = task
    plan = draw_room(np.random.default_rng([seed, index]), num_sources, rt60)
    rirs = impulse_responses(plan, sample_rate)
    np.save(path, rirs)
    return asdict(plan), int(rirs.shape[-1])


def _split_names(count: int) -> list[str]:
    """The split of each room index: train first, then valid, then test."""
    sizes = {s: max(1, int(round(count * share))) for s, share in SPLIT_SHARES.items()}
    return ["train"] * (count - sum(sizes.values())) + ["valid"] * sizes["valid"] + ["test"] * sizes["test"]


def _read_record(folder: Path) -> dict:
    how = f"build one with: cocktail corpus rooms --out {folder}"
    if not folder.is_dir():
        raise CocktailError(f"{folder}: no such folder; {how}")
    path = folder / RECORD_FILE
    if not path.is_file():
        raise CocktailError(f"{folder}: is not a room bank (no {RECORD_FILE}); {how}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CocktailError(f"{path}: cannot be read ({err}); {how}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise CocktailError(f"{path}: was not written by 'cocktail corpus rooms'; {how}")
    if int(record.get("version", 0)) > FORMAT_VERSION:
        raise CocktailError(f"{path}: format version {record['version']} is newer than this cocktailparty")
    return record


def _prepare_output(out: Path) -> None:
    """Make ``out`` ready: new or empty is fine; an old bank loses its rooms; else refuse."""
    if out.exists() and not out.is_dir():
        raise CocktailError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / RECORD_FILE).is_file():
            raise CocktailError(f"{out}: is not empty and not a room bank (no {RECORD_FILE}); "
                                f"choose a new or empty folder for --out")
        # Only what a previous build wrote goes, so nothing else in the folder is lost.
        (out / RECORD_FILE).unlink()
        for split in SPLITS:
            for old in (out / split).glob("room-*.npy"):
                old.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _progress(items, enabled: bool, total: Optional[int] = None):
    from tqdm import tqdm

    return tqdm(items, total=total, desc="rooms", unit="room", leave=False, disable=not enabled)


__all__ = [
    "RoomPlan", "draw_room", "impulse_responses", "direct_arrival", "early_part", "reverberate",
    "RoomBank",
]
