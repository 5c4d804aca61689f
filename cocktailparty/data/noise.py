"""Synthetic background noise for augmentation: ``cocktail corpus noise``.

No noise recordings ship with the project, and none can be downloaded at run time, so the
default model's noise augmentation draws from noises made here from seeded random numbers.
Each file mixes one to three of these kinds, each a stand-in for a common real background:

* ``colored``: Gaussian noise with a power spectrum falling as ``1/f^a``, ``a`` in [0, 2]
  (white to brown: fans, air conditioning, rain, distant traffic);
* ``shaped``: Gaussian noise through a random smooth spectral envelope of a few resonances
  on a log-frequency axis (engines, appliances, room rumble);
* ``hum``: a 50 or 60 Hz mains fundamental and random harmonics over a low noise floor;
* ``modulated``: colored noise under a slow random amplitude envelope (0.2-4 Hz: passing
  cars, wind, crowd swell);
* ``clicks``: sparse decaying impulses (keyboard, dishes, crackle);
* ``tones``: beeps of random pitch and length (phones, machines).

The folder has ``train/``, ``valid/`` and ``test/`` subfolders drawn from different seeds,
so ``data.noise=DIR`` picks the split that matches the speech. Files are FLAC at
-25 dBFS RMS; the mixer rescales them to its SNR anyway.

:class:`NoiseFolder` reads such a folder (or WHAM!'s noise, or one of music) for the mixer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import audio
from ..core.errors import DatasetLayoutError
from .layouts import pick_split, split_subfolders
from .levels import peak_limit

log = logging.getLogger("cocktailparty")

PathLike = audio.PathLike

KINDS = ("colored", "shaped", "hum", "modulated", "clicks", "tones")
SPLITS = {"train": 0, "valid": 1, "test": 2}
RMS_DBFS = -25.0
NOISE_FORMAT = "cocktailparty-noise/1"  # noise.json; `cocktail corpus real-noise` writes it too


def _spectral_noise(rng: np.random.Generator, n: int, gain: np.ndarray) -> np.ndarray:
    """Gaussian noise whose rfft bins are scaled by ``gain`` ``(n // 2 + 1,)``."""
    spectrum = np.fft.rfft(rng.standard_normal(n)) * gain
    return np.fft.irfft(spectrum, n)


def colored(rng: np.random.Generator, n: int, rate: int, exponent: Optional[float] = None) -> np.ndarray:
    """``1/f^a`` power spectrum (amplitude ``f^(-a/2)``), flat below 20 Hz."""
    a = float(rng.uniform(0.0, 2.0)) if exponent is None else exponent
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    return _spectral_noise(rng, n, np.maximum(freqs, 20.0) ** (-a / 2))


def shaped(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / rate), 1.0)
    log_f = np.log2(freqs)
    gain = np.full(freqs.shape, 0.05)
    for _ in range(int(rng.integers(1, 5))):
        centre = rng.uniform(np.log2(60.0), np.log2(rate / 2 * 0.9))
        width = rng.uniform(0.2, 1.5)  # octaves
        gain += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((log_f - centre) / width) ** 2)
    return _spectral_noise(rng, n, gain)


def hum(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    mains = float(rng.choice([50.0, 60.0])) * rng.uniform(0.99, 1.01)
    out = np.zeros(n)
    for k in range(1, int(rng.integers(2, 12))):
        if k * mains >= rate / 2:
            break
        out += rng.uniform(0.0, 1.0) / k ** rng.uniform(0.0, 1.0) * np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 2 * np.pi))
    return out + 0.05 * np.std(out) * rng.standard_normal(n)


def modulated(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    carrier = colored(rng, n, rate)
    # A slow envelope: low-passed noise at a few Hz, made positive.
    cutoff = rng.uniform(0.2, 4.0)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    envelope = _spectral_noise(rng, n, (freqs <= cutoff).astype(float))
    envelope = (envelope - envelope.min()) / (np.ptp(envelope) + 1e-12)
    return carrier * (0.1 + envelope)


def clicks(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    out = np.zeros(n)
    count = max(1, int(n / rate * rng.uniform(0.5, 20.0)))
    for start in rng.integers(0, n, count):
        length = int(rate * rng.uniform(0.002, 0.05))
        stop = min(n, start + length)
        decay = np.exp(-np.arange(stop - start) / (length / 5 + 1))
        out[start:stop] += rng.uniform(0.2, 1.0) * rng.standard_normal(stop - start) * decay
    return out


def tones(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    out = np.zeros(n)
    position = 0
    while position < n:
        gap, length = int(rate * rng.uniform(0.1, 1.5)), int(rate * rng.uniform(0.05, 0.8))
        start, stop = position + gap, min(n, position + gap + length)
        if start >= n:
            break
        t = np.arange(stop - start) / rate
        pitch = rng.uniform(300.0, min(4000.0, rate / 2 * 0.8))
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
        out[start:stop] += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * pitch * t) * ramp
        position = stop
    return out


GENERATORS = {"colored": colored, "shaped": shaped, "hum": hum, "modulated": modulated,
              "clicks": clicks, "tones": tones}


def make_noise(rng: np.random.Generator, seconds: float, rate: int,
               kinds: Optional[list[str]] = None) -> tuple[np.ndarray, list[str]]:
    """One noise of ``seconds`` at ``rate``: ``(samples (T,) float32 at -25 dBFS RMS, kinds)``.
    ``kinds`` default: one to three drawn at random, always with a stationary bed (colored
    or shaped) so that no file is mostly silence."""
    n = int(round(seconds * rate))
    if kinds is None:
        bed = str(rng.choice(["colored", "shaped"]))
        extra = rng.choice([k for k in KINDS if k != bed], size=int(rng.integers(0, 3)), replace=False)
        kinds = [bed, *[str(k) for k in extra]]
    out = np.zeros(n)
    for kind in kinds:
        part = GENERATORS[kind](rng, n, rate)
        rms = np.sqrt(np.mean(part ** 2)) + 1e-12
        out += part / rms * 10 ** (rng.uniform(-12.0, 0.0) / 20)
    out *= 10 ** (RMS_DBFS / 20) / (np.sqrt(np.mean(out ** 2)) + 1e-12)
    out *= peak_limit([out], 0.99)
    return out.astype(np.float32), kinds


def build_noise_folder(out: Path, files: dict[str, int], seconds: float, sample_rate: int, seed: int = 0,
                       progress: bool = True) -> dict:
    """Write ``out/<split>/noise-NNNN.flac`` for each ``split: count`` in ``files`` plus
    ``out/noise.json`` (what each file holds); returns that record. Deterministic in ``seed``."""
    out = Path(out)
    record = {"format": NOISE_FORMAT, "sample_rate": sample_rate, "seconds": seconds,
              "seed": seed, "files": {}}
    for split, count in files.items():
        rng = np.random.default_rng([seed, SPLITS[split]])
        (out / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            samples, kinds = make_noise(rng, seconds, sample_rate)
            name = f"{split}/noise-{i:04d}.flac"
            audio.write(out / name, samples, sample_rate)
            record["files"][name] = kinds
        if progress:
            log.info("%s: %d noises of %.1f s", out / split, count, seconds)
    (out / "noise.json").write_text(json.dumps(record, indent=1))
    return record


class NoiseFolder:
    """Noise (or music) recordings for the mixer: a folder searched recursively.

    WHAM!'s noise release is ``wham_noise/{tr,cv,tt}/*.wav`` (16 kHz, two channels; the
    mixer uses the first channel, as the WHAM! and LibriMix scripts do) plus
    ``wham_noise/metadata/``. When ``root`` has split folders (``tr/cv/tt`` or
    ``train/valid/test``) and ``split`` is given, only that split is used; otherwise every
    audio file under ``root``. Files are sorted, so an index always names the same file.
    """

    def __init__(self, root: PathLike, split: Optional[str] = None, kind: str = "noise"):
        root = Path(root)
        expected = (f"expected a folder of {kind} recordings, e.g. the WHAM! noise layout "
                    f"wham_noise/{{tr,cv,tt}}/*.wav")
        if not root.is_dir():
            raise DatasetLayoutError(f"{root}: no such folder; {expected}")
        folder = root
        splits = split_subfolders(root)
        if split is not None and splits:
            folder = pick_split(root, splits, split, expected)
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS and not p.name.startswith("."))
        if not files:
            raise DatasetLayoutError(f"{folder}: holds no audio files; {expected}")
        self.root = root
        self.folder = folder
        self.files: list[Path] = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Path:
        return self.files[index]

    def relative_path(self, path: PathLike) -> str:
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(Path(path).resolve())
