"""Reading, resampling, validating and writing sound: the only module that touches audio files.

Everything that comes out of here is float32 numpy, shaped ``(time,)`` for one channel or
``(channels, time)`` for several, in the range libsndfile gives (about -1..1). Anything
libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis, Opus, MP3 with libsndfile >= 1.1, AIFF,
...), at any rate, bit depth and channel count. Problems with a file become one-line
:class:`~cocktailparty.core.errors.AudioError` messages that name the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import soundfile
import soxr

from . import atomic
from .errors import AudioError

log = logging.getLogger("cocktailparty")

PathLike = Union[str, os.PathLike]

# Peak below this (about -90 dBFS) counts as silence: quieter than 16-bit dither.
SILENCE_PEAK = 3e-5

# A 2-D waveform's axis with at most this many entries (and the other longer) is its channels.
MAX_CHANNELS = 8

# Extensions treated as audio when a folder is searched; libsndfile is asked what it reads.
AUDIO_EXTENSIONS = frozenset(
    {"." + ext.lower() for ext in soundfile.available_formats()}
    | {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64"}
)


def info(path: PathLike) -> soundfile._SoundFileInfo:
    """Header of a sound file (rate, channels, frames) without reading the samples."""
    path = _existing_file(path)
    try:
        return soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: not a sound file that can be read ({_short(err)})") from None


def read(
    path: PathLike,
    sample_rate: int | None = None,
    channel: Union[str, int] = "mean",
    min_seconds: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Read a sound file, optionally pick or mix down channels and resample.

    Args:
        path: the file.
        sample_rate: resample to this rate; ``None`` keeps the file's own.
        channel: ``"mean"`` averages all channels to mono, an integer picks that channel
            (0-based), ``"all"`` keeps every channel.
        min_seconds: refuse files shorter than this (after resampling).

    Returns:
        ``(samples, rate)``: float32 ``(time,)`` for mono, ``(channels, time)`` for ``"all"``.
    """
    path = _existing_file(path)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"{path}: not a sound file that can be read ({_short(err)})") from None
    samples = select_channels(data.T, channel, path)
    if sample_rate is not None and sample_rate != rate:
        samples = resample(samples, rate, sample_rate)
        rate = sample_rate
    validate(samples, rate, path, min_seconds=min_seconds)
    return samples, rate


def select_channels(data: np.ndarray, channel: Union[str, int], path: PathLike = "<audio>") -> np.ndarray:
    """Pick channels from ``(channels, time)`` data: ``"mean"``, ``"all"`` or an index."""
    if channel == "all":
        return np.ascontiguousarray(data)
    if channel == "mean":
        return data.mean(axis=0) if data.shape[0] > 1 else data[0]
    if isinstance(channel, int) and not isinstance(channel, bool):
        if not -data.shape[0] <= channel < data.shape[0]:
            raise AudioError(
                f"{path}: has {data.shape[0]} channel(s), so channel {channel} does not exist "
                f"(channels are numbered from 0)"
            )
        return np.ascontiguousarray(data[channel])
    raise ValueError(f"channel must be 'mean', 'all' or an integer, not {channel!r}")


def as_mono(waveform, channels_first: bool | None = None, what: str = "waveform") -> np.ndarray:
    """Any in-memory recording as float32 mono ``(time,)``; channels are averaged.

    Takes numpy arrays or torch tensors shaped as the usual readers return them: ``(time,)``;
    ``(frames, channels)`` (``soundfile.read``); ``(channels, frames)`` (``torchaudio.load``,
    ``librosa.load(mono=False)``). In 2-D audio the channels are the axis of at most
    ``MAX_CHANNELS`` entries when the other axis is longer; ``channels_first`` (True:
    ``(channels, time)``, False: ``(time, channels)``) overrides that and is needed when both
    axes are that short or both longer. Anything else is refused with a one-line
    :class:`~cocktailparty.core.errors.AudioError` naming ``what``.
    """
    if hasattr(waveform, "detach"):  # a torch tensor (this module does not import torch)
        waveform = waveform.detach().cpu().float().numpy()
    samples = np.asarray(waveform, dtype=np.float32)
    accepted = (f"pass (time,), (frames, channels) or (channels, frames) audio with at most {MAX_CHANNELS} "
                f"channels")
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"{what}: got shape {tuple(samples.shape)}; {accepted}")
    if channels_first is None:
        short = [size <= MAX_CHANNELS for size in samples.shape]
        if short[0] == short[1]:
            raise AudioError(f"{what}: shape {tuple(samples.shape)} does not tell channels from time; {accepted} "
                             f"and more than {MAX_CHANNELS} samples, or give the layout with channels_first=True "
                             f"(channels, time) or channels_first=False (time, channels)")
        channels_first = short[0]
    return select_channels(samples if channels_first else samples.T, "mean")


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample along the last axis with soxr (high quality); float32 in, float32 out."""
    if from_rate == to_rate:
        return samples
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    # soxr wants (time, channels).
    out = soxr.resample(np.ascontiguousarray(samples.T), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def validate(samples: np.ndarray, sample_rate: int, path: PathLike = "<audio>", min_seconds: float = 0.0) -> None:
    """Refuse empty, too short or non-finite audio; warn (and go on) when it is silent."""
    length = samples.shape[-1]
    if length == 0:
        raise AudioError(f"{path}: contains no samples (zero length)")
    if length < min_seconds * sample_rate:
        raise AudioError(
            f"{path}: is {length / sample_rate:.3f} s long; at least {min_seconds:g} s is needed "
            f"(it holds {length} sample{'s' if length > 1 else ''})"
        )
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError(f"{path}: contains {bad} NaN or infinite sample(s); the file is damaged")
    if np.abs(samples).max() < SILENCE_PEAK:
        log.warning("%s: is silent (peak below -90 dBFS); processing it anyway", path)


def write(
    path: PathLike,
    samples: np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
    compression_level: float | None = None,
) -> Path:
    """Write ``(time,)`` or ``(channels, time)`` audio atomically (temporary file, then rename).

    The format follows the extension. Integer subtypes (the default PCM_16 for WAV and FLAC)
    clip at full scale, so samples beyond it are clipped with a warning; pass
    ``subtype="FLOAT"`` (WAV) to keep them. ``compression_level`` (0-1) is libsndfile's: the
    bitrate of Opus and MP3, the effort of FLAC.
    """
    return write_all([path], [samples], sample_rate, subtype, compression_level)[0]


def write_all(
    paths: Iterable[PathLike],
    signals: Iterable[np.ndarray],
    sample_rate: int,
    subtype: str | None = None,
    compression_level: float | None = None,
) -> list[Path]:
    """Write several files as one set: either all of them appear, or none changes.

    Every file is first written in full to a temporary file beside its target; only when all
    are written (and no target name is taken by a folder) are they renamed into place. So a
    failure (full disk, a name taken by a folder, a bad value) never leaves a lone
    ``_s1.wav`` that a rerun would skip as done, and never replaces an existing output with
    a new one whose siblings are missing. Arguments as for :func:`write`.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, samples in zip(paths, signals):
            path = Path(path)
            staged.append((_write_temporary(path, samples, sample_rate, subtype, compression_level), path))
        for _, path in staged:
            if path.is_dir():
                raise AudioError(f"{path}: could not be written (a folder has that name)")
        created: list[Path] = []
        for tmp_name, path in staged:
            existed = path.exists()
            try:
                atomic.replace(tmp_name, path)
            except OSError as err:
                # Renames within one folder hardly ever fail; if one does, take back the new
                # files of this set so that no incomplete set looks finished.
                for done in created:
                    done.unlink(missing_ok=True)
                raise AudioError(f"{path}: could not be written ({_short(err)})") from None
            if not existed:
                created.append(path)
    finally:
        for tmp_name, _ in staged:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    return [path for _, path in staged]


def _write_temporary(path: Path, samples: np.ndarray, sample_rate: int, subtype: str | None,
                     compression_level: float | None = None) -> str:
    """Write ``samples`` to a new hidden ``.part`` file beside ``path``; returns its name."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim not in (1, 2):
        raise ValueError(f"expected (time,) or (channels, time) samples, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    fmt = _format_for(path)
    subtype = subtype or soundfile.default_subtype(fmt)
    if not subtype.startswith(("FLOAT", "DOUBLE", "VORBIS", "OPUS")):
        peak = float(np.abs(samples).max(initial=0.0))
        if peak > 1.0:
            log.warning("%s: peak %.2f exceeds full scale; clipping (use a float WAV to keep it)", path, peak)
            samples = np.clip(samples, -1.0, 1.0)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp_name = atomic.temporary_beside(path)
    except OSError as err:
        # mkdir says "File exists" when a file stands where a folder is needed: say it plainly.
        reason = "a file is in the way" if isinstance(err, (FileExistsError, NotADirectoryError)) else err.strerror
        raise AudioError(f"{directory}: cannot write output there ({reason})") from None
    try:
        soundfile.write(tmp_name, samples.T, sample_rate, subtype=subtype, format=fmt,
                        compression_level=compression_level)
    except BaseException as err:
        os.unlink(tmp_name)
        if isinstance(err, (OSError, RuntimeError, soundfile.LibsndfileError)):
            raise AudioError(f"{path}: could not be written ({_short(err)})") from None
        raise
    return tmp_name


def find_audio_files(inputs: Iterable[PathLike]) -> list[Path]:
    """Expand files and folders (recursively) into a list of audio files, each folder's sorted.

    Files named explicitly are kept whatever their extension (reading them reports any
    problem); inside folders only files with an audio extension are taken. A file reached
    twice (named twice, or named and inside a folder named) is listed once, where first met.
    """
    return [path for path, _ in find_audio_inputs(inputs)]


def find_audio_inputs(inputs: Iterable[PathLike]) -> list[tuple[Path, Path]]:
    """:func:`find_audio_files` with each file's name relative to the input that named it:
    the path inside the folder for a file found in a folder, the file's name for a file."""
    found: dict[Path, tuple[Path, Path]] = {}
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            pairs = [(p, p.relative_to(item)) for p in sorted(item.rglob("*"))
                     if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]
        elif item.exists():
            pairs = [(item, Path(item.name))]
        else:
            raise AudioError(f"{item}: no such file or folder")
        for path, relative in pairs:
            found.setdefault(path.resolve(), (path, relative))
    return list(found.values())


def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not a sound file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: is empty (0 bytes)")
    return path


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    aliases = {"aif": "AIFF", "oga": "OGG", "opus": "OGG"}
    fmt = aliases.get(ext, ext.upper())
    if fmt not in soundfile.available_formats():
        raise AudioError(f"{path}: cannot write '.{ext}' files; use .wav or .flac")
    return fmt


def _short(err: Exception) -> str:
    """libsndfile's message without the repeated file name."""
    text = str(err).strip()
    if ": " in text and text.startswith("Error opening"):
        text = text.rsplit(": ", 1)[-1]
    return text.rstrip(".")
