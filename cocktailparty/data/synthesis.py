"""Synthesizing one corpus utterance: the engine request for a speaker's pitch, rate and
formant shift, the resampling that moves the formants, trimming and level; and the worker
processes that synthesize batches of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.audio import resample, write
from ..core.errors import CocktailError
from . import tts
from .speech_audio import normalise, trim_silence

FESTIVAL_BATCH = 10


FADE_S = 0.003


def _engine_request(voice: tts.Voice, text: str, text_language: str, pitch: float, rate: float,
                    formant: float) -> tuple[str, str, float, float]:
    """What to ask the engine for so that, after the formant resampling, pitch and rate come
    out as asked (see the module docstring)."""
    return text, text_language, (pitch / formant if voice.pitch_control else 1.0), rate / formant


def _finish(samples: np.ndarray, rate_hz: int, formant: float, sample_rate: int, what: str) -> np.ndarray:
    """Formant-shift, resample, trim and normalise engine output: float32 ``(time,)``."""
    # Declaring the engine's samples to be at formant * rate_hz scales all frequencies by
    # `formant`; soxr does that and the change to the output rate in one pass.
    samples = resample(samples, rate_hz * formant, sample_rate)
    samples = trim_silence(samples, sample_rate)
    if len(samples) < 0.3 * sample_rate:
        raise tts.SynthesisError(f"{what} produced no speech")
    fade = int(FADE_S * sample_rate)
    if fade and len(samples) > 4 * fade:
        # A few ms of fade keep the hard trim cut from clicking without making the edges silent.
        ramp = np.sin(np.linspace(0, np.pi / 2, fade, dtype=np.float32)) ** 2
        samples = samples.copy()
        samples[:fade] *= ramp
        samples[-fade:] *= ramp[::-1]
    return normalise(samples)


def render(voice: tts.Voice, text: str, text_language: str, pitch: float, rate: float,
           formant: float, sample_rate: int) -> np.ndarray:
    """One utterance, synthesized and post-processed: float32 ``(time,)`` at ``sample_rate``."""
    request = _engine_request(voice, text, text_language, pitch, rate, formant)
    samples, rate_hz, _ = tts.synthesize(voice, *request)
    return _finish(samples, rate_hz, formant, sample_rate, f"{voice.key} on {text[:60]!r}")


_VOICES: dict[str, tts.Voice] = {}


def init_worker(voices: dict[str, tts.Voice]) -> None:
    _VOICES.update(voices)
    # Worker processes must not take the terminal's Ctrl-C: the parent stops them.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def synthesize_batch(batch: list[dict]) -> list[tuple[dict, str | None]]:
    """Render and write utterances of one speaker; returns (task, error message or None) each."""
    voice = _VOICES[batch[0]["voice_key"]]
    requests = [_engine_request(voice, t["text"], t["text_language"], t["pitch"], t["rate"], t["formant"])
                for t in batch]
    try:
        outputs = tts.synthesize_many(voice, requests)
    except CocktailError:
        if len(batch) == 1:
            outputs = None
        else:  # find out which sentence failed: one by one
            return [r for t in batch for r in synthesize_batch([t])]
    results = []
    for i, task in enumerate(batch):
        try:
            if outputs is None:
                outputs = [tts.synthesize(voice, *requests[0])[:2]]
            samples, rate_hz = outputs[i]
            samples = _finish(samples, rate_hz, task["formant"], task["sample_rate"],
                              f"{voice.key} on {task['text'][:60]!r}")
            write(Path(task["out"]) / task["path"], samples, task["sample_rate"])
            results.append((task, None))
        except CocktailError as err:
            results.append((task, str(err)))
        except Exception as err:  # noqa: BLE001 - reported per utterance with its id, never swallowed
            results.append((task, f"{type(err).__name__}: {err}"))
    return results


def batches(tasks: list[dict], voices: list[tts.Voice]) -> list[list[dict]]:
    """Consecutive utterances of one speaker in groups: large for festival (one process per
    group saves reloading its voice), small otherwise (keeps both cores busy to the end)."""
    engines = {v.key: v.engine for v in voices}
    batches: list[list[dict]] = []
    for task in tasks:
        size = FESTIVAL_BATCH if engines[task["voice_key"]] == "festival" else 4
        last = batches[-1] if batches else None
        if last and last[0]["speaker"] == task["speaker"] and len(last) < size:
            last.append(task)
        else:
            batches.append([task])
    # Slow batches first, so the last minutes are not one core finishing festival alone.
    cost = {"festival": 0, "rhvoice": 1}
    batches.sort(key=lambda b: cost.get(engines[b[0]["voice_key"]], 2))
    return batches
