"""The toy architectures the tests run, registered under test-only names.

This module is the one place tests register architectures, the way the package's model
files register theirs: on import. ``tests/conftest.py`` imports it, so every test sees the
same registry whichever files run and in whatever order, and no test module registers
anything itself. A subprocess that must know a toy by name (the serve command, the
peak-memory worker of ``cocktail profile``) imports this module too.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from cocktailparty.models import register

RATE = 8000


# --- The 'oracle' separator of tone mixtures (test_separate, test_evaluate, test_serve, test_demo, ...) ---


@dataclasses.dataclass
class BandSplitConfig:
    sample_rate: int = 8000
    num_sources: int = 2
    cutoff_hz: float = 1000.0  # band k ends at (k + 1) * cutoff_hz; the last band takes the rest
    dummy: int = 1  # one parameter so the model can be saved as a checkpoint


@register("band-split-test", BandSplitConfig)
class BandSplit(nn.Module):
    """An 'oracle' separator for tone mixtures: one frequency band per source, louder first.

    Putting the louder band first makes the output order change whenever the louder talker
    changes, which is exactly what chunk stitching must undo.
    """

    def __init__(self, config: BandSplitConfig):
        super().__init__()
        self.config = config
        self.scale = nn.Parameter(torch.full((1,), 0.5))  # arbitrary output scale, like SI-SNR models

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(mixture)
        freqs = torch.fft.rfftfreq(mixture.shape[-1], 1 / self.config.sample_rate)
        edges = [0.0] + [(k + 1) * self.config.cutoff_hz for k in range(self.config.num_sources - 1)] + [math.inf]
        bands = torch.stack([torch.fft.irfft(spectrum * ((freqs >= lo) & (freqs < hi)), n=mixture.shape[-1])
                             for lo, hi in zip(edges, edges[1:])], 1)
        louder_first = bands.pow(2).sum(-1).argsort(dim=1, descending=True)
        return torch.gather(bands, 1, louder_first[..., None].expand_as(bands)) * self.scale


# --- A model to save, load and build by name (test_checkpoint) ---


@dataclasses.dataclass
class TinyConfig:
    sample_rate: int = 8000
    num_sources: int = 2
    channels: int = 4


@register("tiny-test-model", TinyConfig)
class TinyModel(nn.Module):
    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.conv = nn.Conv1d(1, config.channels * config.num_sources, 3, padding=1)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        batch, time = mixture.shape
        out = self.conv(mixture.unsqueeze(1)).view(batch, self.config.num_sources, -1, time)
        return out.mean(2)


# --- A model whose costs are counted by hand (test_profile; its peak memory is measured in a subprocess, which imports this module to rebuild it by name) ---


@dataclasses.dataclass
class ProfileTinyConfig:
    sample_rate: int = 8000
    num_sources: int = 2
    channels: int = 64


@register("profile-test-tiny", ProfileTinyConfig)
class ProfileTiny(nn.Module):
    """``(batch, time) -> (batch, num_sources, time)``; activations of ``channels x time``."""

    def __init__(self, config: ProfileTinyConfig):
        super().__init__()
        self.config = config
        self.encoder = nn.Conv1d(1, config.channels, 17, padding=8, bias=False)
        self.lstm = nn.LSTM(config.channels, 8, batch_first=True)
        self.decoder = nn.Conv1d(config.channels, config.num_sources, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.encoder(x.unsqueeze(1)))
        frames = h[..., ::80].transpose(1, 2)
        _ = self.lstm(frames)
        return self.decoder(h)


# --- A stand-in separator for odd inputs (test_bad_inputs) ---


@dataclasses.dataclass
class HalvesConfig:
    sample_rate: int = RATE
    num_sources: int = 2
    channels: int = 3


@register("bad-input-test", HalvesConfig)
class Halves(nn.Module):
    """A tiny stand-in model: source 1 is a smoothed copy of the mixture, source 2 the rest."""

    def __init__(self, config: HalvesConfig):
        super().__init__()
        self.config = config
        self.conv = nn.Conv1d(1, config.channels, 5, padding=2)
        # A moving average, not a random init: with a random kernel and bias, "smooth" could
        # be several times louder than the mixture, and the separator's rescaling then (by
        # design) stops making the tracks add up to the mixture, failing a test by chance.
        nn.init.constant_(self.conv.weight, 1 / 5)
        nn.init.zeros_(self.conv.bias)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        smooth = self.conv(mixture[:, None]).mean(1)
        return torch.stack([smooth, mixture - smooth], 1)


# --- A talker-aware stand-in whose speaker vectors are known (test_verification) ---


@dataclasses.dataclass
class KnownSteeringConfig:
    sample_rate: int = RATE
    num_sources: int = 2
    mode: str = "online"


@register("known-steering-test", KnownSteeringConfig)
class KnownSteering(nn.Module):
    """A talker-aware model (models/conditioning.py) whose speaker vector j is a bump on a
    frequency grid at the j-th strongest spectral peak: the f0 of the j-th loudest talker of
    the test corpus, so same talker -> cosine ~1."""

    GRID = torch.linspace(80.0, 420.0, 69)

    def __init__(self, config: KnownSteeringConfig):
        super().__init__()
        self.config = config
        self.scale = nn.Parameter(torch.ones(1))  # so that it saves as a checkpoint

    def require_speaker_space(self, what):
        pass

    def extractor(self, enrollment, chunk_seconds=10.0):
        raise NotImplementedError

    def speaker_vectors(self, mixture):
        spectrum = torch.fft.rfft(mixture).abs()
        freqs = torch.fft.rfftfreq(mixture.shape[-1], 1.0 / self.config.sample_rate)
        spectrum = spectrum * ((freqs > 80) & (freqs < 420))
        vectors = []
        for _ in range(self.config.num_sources):
            peak = freqs[spectrum.argmax(dim=-1)]  # (batch,)
            spectrum = spectrum * ((freqs[None] - peak[:, None]).abs() > 15)
            vectors.append(torch.exp(-(((self.GRID[None] - peak[:, None]) / 6.0) ** 2)))
        return torch.stack(vectors, 1) * self.scale

    def forward(self, mixture):
        return mixture.unsqueeze(1).repeat(1, self.config.num_sources, 1)
