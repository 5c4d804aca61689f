"""Label unlabelled recordings by voice: speaker embeddings and clustering.

Some packages hold hours of real speech with no speaker labels (adventure-game voice
acting). :func:`embed_clips` embeds each clip with Resemblyzer's pretrained GE2E encoder
(a 3-layer LSTM over 40 mel bands; the weights ship in the ``resemblyzer`` wheel, ``pip
install --no-deps resemblyzer``): the network is rebuilt here and only the weights file is
read, so neither librosa nor webrtcvad is needed. The mel front end is computed here with
numpy, so embeddings differ slightly from ``resemblyzer.VoiceEncoder``'s (no VAD, no
librosa padding details); they are only compared with each other.

:func:`agglomerate` groups embeddings (agglomerative, average linkage on cosine
distance); :func:`label_by_voice` labels clips from the groups that a package's names or
scripts tell (one hero's lines, each other party's lines) and leaves out what it cannot label
confidently. The readers that use them (queen, sky in :mod:`.real.archives`) say what the
groups are.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.audio import resample
from ..core.errors import CocktailError
from .speech_audio import trim_silence

ENCODER_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40        # 25 ms windows, 10 ms steps, as the encoder was trained
PARTIAL_FRAMES = 160                     # 1.6 s windows, half-overlapping, averaged
TARGET_DBFS = -30.0                      # input level (RMS) the encoder was trained at
PAUSE_DB = 40.0                          # frames this far under the loudest are left out


def _mel_filters(rate: int = ENCODER_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters on the Slaney mel scale (linear under
    1 kHz, logarithmic above), each scaled to unit area (2 / bandwidth)."""
    def to_mel(hz):
        hz = np.asarray(hz, dtype=np.float64)
        log_part = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(hz < 1000.0, hz / (200.0 / 3), log_part)

    def to_hz(mel):
        mel = np.asarray(mel, dtype=np.float64)
        return np.where(mel < 15.0, mel * (200.0 / 3), 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0)))

    edges = to_hz(np.linspace(to_mel(0.0), to_mel(rate / 2), n_mels + 2))
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    filters = np.maximum(0.0, np.minimum(lower, upper))
    return (filters * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def mel_frames(wav: np.ndarray) -> np.ndarray:
    """``(frames, 40)`` mel power spectrogram of 16 kHz ``(time,)`` audio (not logged: the
    encoder was trained on power)."""
    pad = N_FFT // 2
    wav = np.pad(wav.astype(np.float32), pad, mode="reflect" if len(wav) > pad else "constant")
    count = 1 + (len(wav) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(count)[:, None]
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(wav[index] * window, axis=1)) ** 2
    return (power @ _mel_filters().T).astype(np.float32)


class VoiceEmbedder:
    """Resemblyzer's GE2E encoder on CPU: :meth:`embed` gives a unit 256-vector per clip."""

    def __init__(self, weights: Optional[Path] = None, device: str = "cpu"):
        import torch

        if weights is None:
            spec = importlib.util.find_spec("resemblyzer")
            if spec is None or spec.origin is None:
                raise CocktailError("labelling voices needs Resemblyzer's weights: pip install --no-deps resemblyzer")
            weights = Path(spec.origin).parent / "pretrained.pt"
        state = torch.load(weights, map_location="cpu", weights_only=False)
        state = state.get("model_state", state)
        self.lstm = torch.nn.LSTM(N_MELS, 256, num_layers=3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.to(device).eval()
        self.linear.to(device)
        self.device, self._torch = device, torch

    def partials(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """``(windows, 160, 40)`` mel windows of one clip (trimmed, peak-normalised; a clip
        under 1.6 s is zero-padded to one window)."""
        wav = trim_silence(resample(np.asarray(samples, dtype=np.float32), sample_rate, ENCODER_RATE), ENCODER_RATE)
        rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if len(wav) else 0.0
        # The encoder reads mel power (not logged), so the level matters: it was trained on
        # speech at -30 dBFS RMS with the pauses cut out; frames 40 dB under the loudest
        # stand in for those pauses.
        frames = mel_frames(wav * (10 ** (TARGET_DBFS / 20) / rms) if rms > 0 else wav)
        energy = frames.sum(axis=1)
        if len(frames) and energy.max() > 0:
            frames = frames[energy >= energy.max() * 10 ** (-PAUSE_DB / 10)]
        if len(frames) < PARTIAL_FRAMES:
            frames = np.pad(frames, ((0, PARTIAL_FRAMES - len(frames)), (0, 0)))
        starts = range(0, len(frames) - PARTIAL_FRAMES + 1, PARTIAL_FRAMES // 2)
        return np.stack([frames[s:s + PARTIAL_FRAMES] for s in starts])

    def embed_many(self, clips, batch: int = 256) -> np.ndarray:
        """Unit ``(clips, 256)`` embeddings of ``(samples, sample_rate)`` pairs: the mean of
        each clip's window embeddings, windows of many clips run together."""
        torch = self._torch
        out, pending, owners = [], [], []

        def flush():
            with torch.no_grad():
                x = torch.from_numpy(np.concatenate(pending)).to(self.device)
                _, (hidden, _) = self.lstm(x)
                e = torch.relu(self.linear(hidden[-1]))
                e = (e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)).cpu().numpy()
            start = 0
            for index, count in owners:
                mean = e[start:start + count].mean(axis=0)
                out.append((index, mean / max(float(np.linalg.norm(mean)), 1e-8)))
                start += count
            pending.clear()
            owners.clear()

        for index, (samples, rate) in enumerate(clips):
            windows = self.partials(samples, rate)
            pending.append(windows)
            owners.append((index, len(windows)))
            if sum(len(p) for p in pending) >= batch:
                flush()
        if pending:
            flush()
        out.sort(key=lambda item: item[0])
        return np.stack([e for _, e in out]).astype(np.float32) if out else np.zeros((0, 256), np.float32)

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Unit 256-vector of one clip."""
        return self.embed_many([(samples, sample_rate)])[0]


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows (or one vector) scaled to unit length."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def agglomerate(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Agglomerative clustering of ``(n, dim)`` vectors, average linkage on cosine distance,
    cut at ``threshold``: a cluster number per row, 0, 1, ... in order of first row."""
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = np.asarray(vectors, dtype=np.float64)
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=int)
    raw = fcluster(linkage(vectors, method="average", metric="cosine"), t=threshold, criterion="distance")
    order = {c: i for i, c in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[c] for c in raw.tolist()])


def label_by_voice(names: Sequence[str], groups: Sequence[Optional[str]], embeddings: np.ndarray,
                   hero: Optional[str],
                   threshold: float, min_member: float, min_similarity: float, min_margin: float,
                   min_group: int, min_size: int) -> dict[str, str]:
    """Speaker labels for clips (name -> label) from the group each clip's name or script
    tells (``groups``, None where it tells nothing) and their unit voice embeddings (one
    row per name); clips that cannot be labelled confidently are left out.

    1. Groups first: a member whose cosine similarity to its group's mean voice is under
       ``min_member`` is left out (a group that the voice does not bear out: an
       interjecting third party); groups left with under ``min_group`` clips are left out.
    2. Voices: the groups' mean voices are clustered (:func:`agglomerate`, cosine distance
       ``threshold``): the groups of one character, or of one actor playing several, become
       one voice. Groups that fall in the ``hero``'s cluster are left out (the hero's actor
       doubling a part, or a voice too close to the hero's to tell); with no hero (None),
       every cluster is a voice.
    3. Clips whose group is None join the nearest voice when its similarity is at least
       ``min_similarity`` and ``min_margin`` above the next.
    4. Voices with under ``min_size`` clips are left out. Labels: ``hero``, then ``v01``,
       ``v02``, ... by decreasing clip count (ties by first name).
    """
    embeddings = unit(embeddings)
    members_of: dict[str, list[int]] = {}
    unnamed = []
    for index, group in enumerate(groups):
        (members_of.setdefault(group, []) if group else unnamed).append(index)
    kept: dict[str, list[int]] = {}
    for group, members in sorted(members_of.items()):
        centre = unit(embeddings[members].mean(axis=0))
        members = [m for m in members if embeddings[m] @ centre >= min_member]
        if len(members) >= min_group:
            kept[group] = members
    if hero is not None and hero not in kept or not kept:
        return {}
    order = ([hero] if hero else []) + sorted(g for g in kept if g != hero)
    centres = np.stack([unit(embeddings[kept[g]].mean(axis=0)) for g in order])
    cluster = agglomerate(centres, threshold)
    voices: dict[int, list[int]] = {}
    for group, c in zip(order, cluster):
        if not hero or group == hero or c != cluster[0]:
            voices.setdefault(int(c), []).extend(kept[group])
    keys = sorted(voices)
    if unnamed:
        voice_centres = np.stack([unit(embeddings[voices[k]].mean(axis=0)) for k in keys])
        scores = embeddings[unnamed] @ voice_centres.T
        for row, index in zip(scores, unnamed):
            best = np.argsort(row)[::-1]
            margin = row[best[0]] - (row[best[1]] if len(best) > 1 else -1.0)
            if row[best[0]] >= min_similarity and margin >= min_margin:
                voices[keys[best[0]]].append(index)
    first = int(cluster[0]) if hero else None
    others = sorted((k for k in keys if k != first and len(voices[k]) >= min_size),
                    key=lambda k: (-len(voices[k]), min(names[i] for i in voices[k])))
    label_of = {k: f"v{i + 1:02d}" for i, k in enumerate(others)}
    if hero and len(voices[first]) >= min_size:
        label_of[first] = hero
    return {names[i]: label_of[k] for k in label_of for i in voices[k]}
