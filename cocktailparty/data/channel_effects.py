"""What the recording and transmission channel does to speech: random equalisation (EQ) of each
talker, band-limiting, and lossy codec round trips: the ``data:`` section's ``eq``,
``band_limit`` and ``codec`` switches (all off by default), drawn per item by
:class:`~cocktailparty.data.mixing.DynamicMixer` and recorded in its
:class:`~cocktailparty.data.mixture_plan.MixturePlan`.

Definitions:

* **EQ** (per talker: each talker's microphone and room colour its recording differently).
  With ``probability``, a talker's recording passes through ``bands`` biquads in series, each
  a low shelf, a peaking filter or a high shelf (drawn alike), its frequency log-uniform in
  80 Hz .. 0.8 x Nyquist, its gain uniform in +-``gain_db``; a peaking filter's Q is
  log-uniform in 0.5 .. 2, a shelf's Q 1/sqrt(2) (no overshoot). The filters are the
  bilinear-transform designs of analogue prototypes (the usual "audio EQ cookbook"
  biquads): exactly ``gain_db`` at a peaking filter's centre, at DC for a low shelf and at
  Nyquist for a high shelf. The equalised talker is the talker: the target is equalised too
  (the model is not asked to undo how someone was recorded), and the mixer's level rule
  sets its level after EQ, so EQ changes the spectrum's shape, not the talkers' levels.
* **Band limit** (the whole mixture alike: the channel, e.g. a telephone line or a recording
  resampled from a lower rate, carries every talker, the noise and the music through the
  same band). With ``probability``, every talker, the noise and the music are low-passed at a
  cutoff drawn uniformly from ``cutoff_hz``: a 6th-order elliptic filter, at most 0.5 dB down
  up to the cutoff and at least 60 dB down from 1.32 x the cutoff (as steep as a resampler's
  anti-alias filter). Targets carry the same band, so a model is never asked to invent a band
  its input lacks; and since no talker keeps a band the other lost, it is never taught that
  one talker's top band may be dropped while it is in the input.
* **Codec** (the mixture only: the recording was coded after the talkers met). With
  ``probability``, the finished mixture is encoded and decoded in memory by libsndfile (via
  soundfile): a codec drawn from ``codecs`` (Opus in Ogg, or MP3 at an average bitrate) at a
  whole number of kbps drawn from ``kbps``. The targets stay the clean talkers: the model
  learns to separate coded audio. Both decoders drop the encoder's delay and padding
  (Opus's pre-skip, LAME's gapless tag), so the coded mixture has exactly the input's length
  and alignment (the length is checked on every round trip). Bitrates 10-64 kbps are allowed:
  every codec takes them at 8-24 kHz; above 64 kbps both are close to transparent for speech,
  and below 10 kbps Opus codes 16 kHz audio as narrowband through an internal resampler whose
  fractional delay (0.7 of a sample) would shift the mixture against its targets.

CPU time per 2-s item at 16 kHz (one core; about half of it at 8 kHz): EQ 0.2 ms a talker
(3 bands), the band limit 0.7 ms a signal (talkers, noise, music), a codec round trip 15 ms
for MP3 and 30-50 ms for Opus (libsndfile runs the Opus encoder at its highest complexity and
has no setting for it): ``probability`` is also the knob for the codec's cost.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import numpy as np
from scipy.signal import ellip, sosfilt

from ..core.errors import CocktailError

EQ_KINDS = ("low_shelf", "peaking", "high_shelf")
EQ_LOWEST_HZ = 80.0
EQ_HIGHEST = 0.8  # x Nyquist
PEAKING_Q = (0.5, 2.0)
SHELF_Q = 1.0 / math.sqrt(2.0)
MAX_EQ_GAIN_DB = 24.0

LOW_PASS_ORDER = 6
LOW_PASS_RIPPLE_DB = 0.5
LOW_PASS_STOP_DB = 60.0

CODECS = ("opus", "mp3")
KBPS_LIMITS = (10, 64)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


# --------------------------------------------------------------------------------------
# The filters and the codec round trip
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EqBand:
    """One biquad of a talker's EQ: ``kind`` (one of :data:`EQ_KINDS`), its centre (peaking)
    or corner (shelf) frequency, its gain and Q."""

    kind: str
    frequency_hz: float
    gain_db: float
    q: float


def biquad(band: EqBand, rate: int) -> np.ndarray:
    """The band's filter as one second-order section ``[b0, b1, b2, 1, a1, a2]`` (6,) float64."""
    amplitude = 10.0 ** (band.gain_db / 40.0)  # the square root of the linear gain
    w0 = 2.0 * math.pi * band.frequency_hz / rate
    cos_w0, alpha = math.cos(w0), math.sin(w0) / (2.0 * band.q)
    if band.kind == "peaking":
        b = [1.0 + alpha * amplitude, -2.0 * cos_w0, 1.0 - alpha * amplitude]
        a = [1.0 + alpha / amplitude, -2.0 * cos_w0, 1.0 - alpha / amplitude]
    elif band.kind in ("low_shelf", "high_shelf"):
        # A high shelf is a low shelf mirrored in frequency (w -> pi - w): the same formulas
        # with cos(w0) and the signs of b1 and a1 flipped.
        sign = 1.0 if band.kind == "low_shelf" else -1.0
        A, c, k = amplitude, sign * cos_w0, 2.0 * math.sqrt(amplitude) * alpha
        b = [A * ((A + 1) - (A - 1) * c + k), sign * 2.0 * A * ((A - 1) - (A + 1) * c), A * ((A + 1) - (A - 1) * c - k)]
        a = [(A + 1) + (A - 1) * c + k, sign * -2.0 * ((A - 1) + (A + 1) * c), (A + 1) + (A - 1) * c - k]
    else:
        raise CocktailError(f"unknown EQ band kind {band.kind!r}; known: {', '.join(EQ_KINDS)}")
    return np.array(b + a, dtype=np.float64) / a[0]


def equalise(signal: np.ndarray, bands: list[EqBand], rate: int) -> np.ndarray:
    """``signal`` (time,) through ``bands`` in series (causal, from rest): (time,) float32."""
    sections = np.stack([biquad(band, rate) for band in bands])
    return sosfilt(sections, signal.astype(np.float64)).astype(np.float32)


def low_pass(signal: np.ndarray, cutoff_hz: float, rate: int) -> np.ndarray:
    """``signal`` (time,) low-passed at ``cutoff_hz`` (the band-limit filter of the module
    docstring; causal, from rest): (time,) float32."""
    sections = ellip(LOW_PASS_ORDER, LOW_PASS_RIPPLE_DB, LOW_PASS_STOP_DB, cutoff_hz, fs=rate, output="sos")
    return sosfilt(sections, signal.astype(np.float64)).astype(np.float32)


@dataclass(frozen=True)
class CodecPlan:
    """A codec round trip: ``name`` (one of :data:`CODECS`) at ``kbps``."""

    name: str
    kbps: int


def codec_round_trip(signal: np.ndarray, rate: int, codec: CodecPlan) -> np.ndarray:
    """``signal`` (time,) encoded by ``codec`` and decoded again, in memory: (time,) float32 of
    the same length and alignment."""
    import soundfile as sf

    if codec.name == "opus":
        options = dict(format="OGG", subtype="OPUS")
    elif codec.name == "mp3":
        options = dict(format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="AVERAGE")
    else:
        raise CocktailError(f"unknown codec {codec.name!r}; known: {', '.join(CODECS)}")
    level = compression_level(codec.name, codec.kbps, rate)
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(signal, dtype=np.float32), rate, compression_level=level, **options)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    if decoded.shape != signal.shape:
        raise CocktailError(f"a {codec.name} round trip at {rate} Hz, {codec.kbps} kbps returned {decoded.shape[0]} "
                            f"samples for {signal.shape[-1]}: this libsndfile does not trim the codec's delay "
                            f"and padding; set data.codec.codecs to the other codec")
    return decoded


def compression_level(codec: str, kbps: float, rate: int) -> float:
    """libsndfile's ``compression_level`` in [0, 1] that codes at ``kbps`` with ``codec``
    ("opus" or "mp3") at ``rate`` Hz."""
    # libsndfile sets the bitrate from the level by a fixed linear map per codec (Opus: 256
    # kbps at 0 down to 6 at 1; MP3 at an average bitrate: the MPEG version's highest down to
    # its lowest), which this inverts. It truncates the bitrate it derives, so the level asks
    # for half a kbps more (and a level of 1 is refused for MP3).
    top, bottom = (256.0, 6.0) if codec == "opus" else _mp3_bitrate_range(rate)
    return min(max((top - kbps - 0.5) / (top - bottom), 0.0), 1.0)


def _mp3_bitrate_range(rate: int) -> tuple[float, float]:
    """The (highest, lowest) kbps of the MPEG version that codes ``rate``: MPEG-1 at 32 kHz
    and up, MPEG-2 at 16-24 kHz, MPEG-2.5 below."""
    if rate >= 32000:
        return 320.0, 32.0
    return (160.0, 8.0) if rate >= 16000 else (64.0, 8.0)


# --------------------------------------------------------------------------------------
# The switches: their settings, checks and draws
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Switch:
    """What the three switches share: ``probability``, read from a config mapping whose
    missing keys take the defaults, checked with messages that name the key."""

    probability: float = 0.5
    EXAMPLE: ClassVar[str] = ""

    @classmethod
    def from_config(cls, value: Any, name: str):
        """The settings of a config value (a mapping, the settings themselves, or None: off);
        raises a one-line :class:`CocktailError` naming ``name`` (e.g. ``data.eq``)."""
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise CocktailError(f"{name} must be a mapping such as {cls.EXAMPLE}, or null (off); got {value!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise CocktailError(f"{name}: unknown key(s) {', '.join(map(str, unknown))}; valid: {', '.join(known)}")
        settings = cls(**{k: _tuple(v) for k, v in value.items()})
        if not _is_number(settings.probability) or not 0.0 <= settings.probability <= 1.0:
            raise CocktailError(f"{name}.probability must be a number in [0, 1], got {settings.probability!r}")
        settings.check(name)
        return settings

    def to_config(self) -> dict[str, Any]:
        """The settings as ``RUN_DIR/config.yaml`` records them (every key, lists for ranges)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    def check(self, name: str) -> None:
        """Raise a :class:`CocktailError` naming ``name`` for a value out of its range."""

    def check_rate(self, rate: int, name: str) -> None:
        """Raise a :class:`CocktailError` when these settings cannot run at ``rate`` Hz."""


@dataclass(frozen=True)
class EqSettings(_Switch):
    """``data.eq``: with ``probability``, a talker gets ``bands`` random biquads within
    +-``gain_db`` (module docstring)."""

    probability: float = 0.5
    bands: int = 3
    gain_db: float = 6.0
    EXAMPLE: ClassVar[str] = "{probability: 0.5, bands: 3, gain_db: 6}"

    def check(self, name: str) -> None:
        if not _is_int(self.bands) or self.bands < 1:
            raise CocktailError(f"{name}.bands must be a positive integer, got {self.bands!r}")
        if not _is_number(self.gain_db) or not 0.0 <= self.gain_db <= MAX_EQ_GAIN_DB:
            raise CocktailError(f"{name}.gain_db must be a number from 0 to {MAX_EQ_GAIN_DB:g} dB (bands are drawn "
                                f"within +-gain_db), got {self.gain_db!r}")

    def draw(self, rng: np.random.Generator, rate: int) -> list[EqBand]:
        """One talker's bands; empty when this talker is left as recorded."""
        if not rng.random() < self.probability:
            return []
        bands = []
        low, high = math.log(EQ_LOWEST_HZ), math.log(EQ_HIGHEST * rate / 2)
        for _ in range(self.bands):
            kind = EQ_KINDS[int(rng.integers(0, len(EQ_KINDS)))]
            frequency = math.exp(rng.uniform(low, high))
            gain = float(rng.uniform(-self.gain_db, self.gain_db))
            q = math.exp(rng.uniform(*np.log(PEAKING_Q))) if kind == "peaking" else SHELF_Q
            bands.append(EqBand(kind, float(frequency), gain, float(q)))
        return bands

    def check_rate(self, rate: int, name: str) -> None:
        if EQ_LOWEST_HZ >= EQ_HIGHEST * rate / 2:
            raise CocktailError(f"{name}: {rate} Hz is too low a sample rate for EQ bands from {EQ_LOWEST_HZ:g} Hz")


@dataclass(frozen=True)
class BandLimitSettings(_Switch):
    """``data.band_limit``: with ``probability``, a mixture's talkers, noise and music are
    low-passed at a cutoff drawn from ``cutoff_hz`` (module docstring)."""

    probability: float = 0.5
    cutoff_hz: tuple[float, float] = (3400.0, 7000.0)
    EXAMPLE: ClassVar[str] = "{probability: 0.5, cutoff_hz: [3400, 7000]}"

    def check(self, name: str) -> None:
        lo, hi = _pair(self.cutoff_hz, f"{name}.cutoff_hz", "Hz")
        if not 0.0 < lo <= hi:
            raise CocktailError(f"{name}.cutoff_hz must be [low, high] with 0 < low <= high, in Hz, "
                                f"got [{lo:g}, {hi:g}]")

    def draw(self, rng: np.random.Generator) -> Optional[float]:
        """A mixture's cutoff in Hz, or None when it keeps its full band."""
        return float(rng.uniform(*self.cutoff_hz)) if rng.random() < self.probability else None

    def check_rate(self, rate: int, name: str) -> None:
        nyquist = rate / 2
        if self.cutoff_hz[1] >= nyquist:
            raise CocktailError(f"{name}.cutoff_hz {list(self.cutoff_hz)} must stay below the Nyquist frequency, "
                                f"{nyquist:g} Hz at {rate} Hz (e.g. [{0.625 * nyquist:g}, {0.9 * nyquist:g}])")


@dataclass(frozen=True)
class CodecSettings(_Switch):
    """``data.codec``: with ``probability``, the mixture goes through one of ``codecs`` at a
    bitrate drawn from ``kbps`` and back (module docstring)."""

    probability: float = 0.5
    codecs: tuple[str, ...] = CODECS
    kbps: tuple[int, int] = (12, 32)
    EXAMPLE: ClassVar[str] = "{probability: 0.5, codecs: [opus, mp3], kbps: [12, 32]}"

    def check(self, name: str) -> None:
        if not isinstance(self.codecs, tuple) or not self.codecs:
            raise CocktailError(f"{name}.codecs must be a list of codecs out of {', '.join(CODECS)}, "
                                f"got {self.codecs!r}")
        for codec in self.codecs:
            if codec not in CODECS:
                raise CocktailError(f"{name}.codecs: unknown codec {codec!r}; known: {', '.join(CODECS)}")
        lo, hi = _pair(self.kbps, f"{name}.kbps", "kbps")
        if not (_is_int(lo) and _is_int(hi) and KBPS_LIMITS[0] <= lo <= hi <= KBPS_LIMITS[1]):
            raise CocktailError(f"{name}.kbps must be [low, high], whole kbps with {KBPS_LIMITS[0]} <= low <= high "
                                f"<= {KBPS_LIMITS[1]}, got {list(self.kbps)}")

    def draw(self, rng: np.random.Generator) -> Optional[CodecPlan]:
        """A mixture's codec round trip, or None when it stays uncoded."""
        if not rng.random() < self.probability:
            return None
        name = self.codecs[int(rng.integers(0, len(self.codecs)))]
        return CodecPlan(name, int(rng.integers(self.kbps[0], self.kbps[1] + 1)))

    def check_rate(self, rate: int, name: str) -> None:
        for codec, rates in (("opus", OPUS_RATES), ("mp3", MP3_RATES)):
            if codec in self.codecs and rate not in rates:
                raise CocktailError(f"{name}: {codec} does not code {rate} Hz audio (it takes "
                                    f"{', '.join(str(r) for r in rates)} Hz); leave it out of {name}.codecs")


def _pair(value: Any, name: str, unit: str) -> tuple:
    if not isinstance(value, tuple) or len(value) != 2 or not all(_is_number(v) for v in value):
        raise CocktailError(f"{name} must be two numbers [low, high] in {unit}, got {value!r}")
    return value


def _tuple(value: Any) -> Any:
    # Ranges and lists arrive from YAML as lists; the frozen settings hold tuples.
    return tuple(value) if isinstance(value, list) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
