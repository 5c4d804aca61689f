"""The Debian packages that the real corpora come from: fetching them, what a speech source
is (:class:`Source`, its clips :class:`Clip`), and decoding one clip to the corpus rate."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import soundfile

from ...core.audio import resample
from ...core.errors import CocktailError
from ..speech_audio import bandwidth_hz, normalise, trim_silence

log = logging.getLogger("cocktailparty")


FETCH_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "fetch-speech-packages.sh"
DEFAULT_PACKAGE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cocktailparty" / "packages"
# Reserved for an independent test of the project: never fetched, read or trained on.
RESERVED_PACKAGES = ("fillets-ng-data", "asterisk-core-sounds-", "asterisk-prompt-", "ktuberling-data")


@dataclass(frozen=True)
class Clip:
    """One recording in a package: ``speaker`` is ``<source>-<label>``."""

    path: Path
    speaker: str
    language: str


@dataclass(frozen=True)
class Source:
    """A package of real speech and how to find its clips in the extracted tree."""

    name: str
    package: str
    licence: str
    find: Callable[[Path], list[Clip]]  # extracted package root -> clips
    # Speakers are split among themselves, group by group (see build_real_corpus): the four
    # first sources form one group, "v1", so their speakers (44; 43 since hedgewars-Classic
    # left, see split_placeholders) keep the splits of the first corpus; a later source is a
    # group of its own (None: its name), so adding it moves no one else.
    split_group: Optional[str] = None
    # Lower floor of usable speech per speaker for this source's (short) voices, in seconds;
    # None: build_real_corpus's min_seconds.
    min_seconds: Optional[float] = None
    # The rate the recordings were made at, when it is low (adventure games' 11025 Hz): a
    # source feeds only corpora at or under it (build_real_corpus skips it above), since a
    # resampled 11 kHz clip holds nothing over 5.5 kHz. None: full band (44.1/48 kHz).
    native_rate: Optional[int] = None
    # Built only when asked for by name (--sources): queen needs Resemblyzer's weights
    # (pip install --no-deps resemblyzer), which the project's install does not bring.
    opt_in: bool = False
    # Labels this source no longer keeps (see its finder) that still take their place in the
    # split draw, so that leaving them out moves no other speaker of the group to another split
    # (the benchmarks' test speakers stay the same people).
    split_placeholders: tuple[str, ...] = ()


def check_not_reserved(packages: Sequence[str]) -> None:
    """Refuse any package reserved for the independent test."""
    for package in packages:
        if any(package.startswith(r) for r in RESERVED_PACKAGES):
            raise CocktailError(f"{package}: is reserved for an independent test of the project and is never used")


def fetch_packages(packages: Sequence[str], cache: Path) -> dict[str, Path]:
    """Extracted roots of ``packages`` under ``cache``, fetching the missing ones."""
    check_not_reserved(packages)
    missing = [p for p in packages if not (cache / p / ".extracted").is_file()]
    if missing:
        if not FETCH_SCRIPT.is_file():
            raise CocktailError(f"{FETCH_SCRIPT}: missing; it fetches {', '.join(missing)} with apt-get")
        log.info("fetching %s into %s", ", ".join(missing), cache)
        done = subprocess.run(["bash", str(FETCH_SCRIPT), str(cache), *missing], capture_output=True, text=True)
        if done.returncode != 0:
            raise CocktailError(f"fetching {', '.join(missing)} failed: "
                                f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}")
    return {p: cache / p for p in packages}


def new_folder(out) -> Path:
    """``out`` as a Path, refused unless it is new or an empty folder (builds do not resume)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CocktailError(f"{out}: exists and is not an empty folder; choose a new --out")
    return out


def package_version(root: Path) -> str:
    version = root / ".version"
    return version.read_text().strip() if version.is_file() else "unknown"


MIN_CLIP_SECONDS = 0.25


def prepare_clip(job: tuple[str, int, float]) -> Optional[tuple[np.ndarray, float]]:
    """Decode, trim and check one clip: float32 ``(time,)`` at the corpus rate and its
    bandwidth, or None when it is too short, silent or band-limited."""
    path, sample_rate, min_bandwidth = job
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        log.warning("%s: unreadable, skipped (%s)", path, err)
        return None
    samples = resample(data.mean(axis=1), rate, sample_rate)
    if not np.any(np.abs(samples) > 1e-4):
        return None
    samples = trim_silence(samples, sample_rate)
    if len(samples) < MIN_CLIP_SECONDS * sample_rate:
        return None
    width = bandwidth_hz(samples, sample_rate)
    if width < min_bandwidth * sample_rate / 2:
        return None
    return normalise(samples), width
