"""Cost figures: MACs against hand counts (LSTM and attention included), parameters, memory,
speed, and the ``cocktail profile --json`` output."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cocktailparty.cli import main
from cocktailparty.eval import macs, memory_speed
from tests.toys import ProfileTiny, ProfileTinyConfig


class HandCounted(nn.Module):
    """Every kind of layer the separation models use; input ``(batch, time)``, output
    ``(batch, 2, time)``. ``hand_count`` below is the same network counted with pencil rules."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Conv1d(1, 16, kernel_size=8, stride=4, bias=False)
        self.depthwise = nn.Conv1d(16, 16, kernel_size=3, padding=1, groups=16)
        self.norm = nn.GroupNorm(1, 16)
        self.linear = nn.Linear(16, 32)
        self.lstm = nn.LSTM(32, 24, num_layers=2, bidirectional=True, batch_first=True)
        self.mha = nn.MultiheadAttention(48, 4, batch_first=True)
        self.gru = nn.GRU(48, 16, batch_first=True)
        self.decoder = nn.ConvTranspose1d(16, 2, kernel_size=8, stride=4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.depthwise(self.encoder(x.unsqueeze(1))))  # (B, 16, L)
        h = self.linear(h.transpose(1, 2))  # (B, L, 32)
        h, _ = self.lstm(h)  # (B, L, 48)
        h = h + self.mha(h, h, h)[0]
        b, length, _ = h.shape
        q = h.view(b, length, 2, 24).transpose(1, 2)  # two heads of 24
        h = h + F.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(b, length, 48)
        h, _ = self.gru(h)  # (B, L, 16)
        y = self.decoder(h.transpose(1, 2))
        return F.pad(y, (0, x.shape[-1] - y.shape[-1]))


def hand_count(batch: int, samples: int) -> int:
    frames = (samples - 8) // 4 + 1
    per_frame = (
        16 * 1 * 8  # encoder conv: C_out x C_in x kernel per output frame
        + 16 * 1 * 3  # depthwise conv: one input channel per output channel
        + 16 * 32  # linear
        + 2 * 4 * 24 * (32 + 24)  # LSTM layer 1, both directions
        + 2 * 4 * 24 * (48 + 24)  # LSTM layer 2 reads both directions of layer 1
        + 3 * 48 * 48 + 48 * 48  # MHA in- and out-projections
        + 3 * 16 * (48 + 16)  # GRU
        + 16 * 2 * 8  # transposed conv: per INPUT frame, not per output sample
    )
    attention = 2 * frames * frames * 48  # MHA: QK^T and AV over 4 heads x 12
    attention += 2 * frames * frames * 48  # SDPA: 2 heads x 24
    return batch * (frames * per_frame + attention)


def hand_params() -> int:
    lstm = 2 * (4 * 24 * (32 + 24) + 2 * 4 * 24) + 2 * (4 * 24 * (48 + 24) + 2 * 4 * 24)
    return (16 * 8 + (16 * 3 + 16) + 2 * 16 + (16 * 32 + 32) + lstm
            + (3 * 48 * 48 + 3 * 48 + 48 * 48 + 48) + (3 * 16 * (48 + 16) + 2 * 3 * 16) + 16 * 2 * 8)


@pytest.mark.slow
@pytest.mark.parametrize("batch,samples", [(1, 204), (2, 1000)])
def test_macs_equal_hand_count(batch, samples):
    model = HandCounted()
    assert macs.count_macs(model, seconds=samples / 8000, sample_rate=8000, batch=batch) == hand_count(batch, samples)


def test_torch_alone_misses_lstm_and_fused_attention():
    # The reason the custom formulas exist: if torch ever counts these itself, revisit them.
    model = HandCounted().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as plain:
        model(torch.randn(1, 204))
    assert plain.get_total_flops() // 2 < hand_count(1, 204)


@pytest.mark.parametrize("context", ["no_grad", "inference_mode", "train_with_grad"])
def test_every_execution_path_counts_the_same(context):
    # Eval/no_grad runs oneDNN LSTM and fused MHA; inference_mode hands composite ops (aten.lstm,
    # scaled_dot_product_attention) to the counter; training runs MHA as plain matmuls.
    model = HandCounted()
    for m in model.modules():
        m.dropout = 0.0 if isinstance(m, nn.MultiheadAttention) else getattr(m, "dropout", 0.0)
    x = torch.randn(2, 400)
    if context == "train_with_grad":
        model.train()
        with FlopCounterMode(display=False, custom_mapping=macs.FLOP_FORMULAS) as counter:
            model(x)
    else:
        model.eval()
        ctx = torch.no_grad() if context == "no_grad" else torch.inference_mode()
        with ctx, FlopCounterMode(display=False, custom_mapping=macs.FLOP_FORMULAS) as counter:
            model(x)
    assert counter.get_total_flops() == 2 * hand_count(2, 400)


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_variants_and_backward():
    x = torch.randn(3, 7, 10)
    lstm = nn.LSTM(10, 6, batch_first=True)
    assert macs.count_macs(lstm, inputs=x) == 3 * 7 * 4 * 6 * (10 + 6)
    # With a projection the oneDNN path is not taken (torch warns); the products are plain matmuls.
    proj = nn.LSTM(10, 6, proj_size=4, batch_first=True)
    assert macs.count_macs(proj, inputs=x) == 3 * 7 * (4 * 6 * (10 + 4) + 4 * 6)
    rnn = nn.RNN(10, 6, num_layers=2, batch_first=True)
    assert macs.count_macs(rnn, inputs=x) == 3 * 7 * (6 * (10 + 6) + 6 * (6 + 6))
    # Training: backward has two products (input and weight gradients) per forward product.
    xg = x.clone().requires_grad_()
    with FlopCounterMode(display=False, custom_mapping=macs.FLOP_FORMULAS) as counter:
        lstm(xg)[0].sum().backward()
    assert counter.get_total_flops() == 3 * 2 * (3 * 7 * 4 * 6 * (10 + 6))


def test_conv_transpose_not_overcounted_by_stride():
    deconv = nn.ConvTranspose1d(4, 3, kernel_size=16, stride=8)
    assert macs.count_macs(deconv, inputs=torch.randn(1, 4, 10)) == 10 * 4 * 3 * 16


def test_fused_transformer_layer_and_cross_attention():
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True).eval()
    x = torch.randn(2, 9, 32)
    expected = 2 * (9 * (4 * 32 * 32 + 2 * 32 * 64) + 2 * 9 * 9 * 32)
    assert macs.count_macs(layer, inputs=x) == expected
    mha = nn.MultiheadAttention(32, 4, batch_first=True)
    query, memory = torch.randn(2, 5, 32), torch.randn(2, 11, 32)

    class Cross(nn.Module):
        def forward(self, q, kv):
            return mha(q, kv, kv)[0]

    expected = 2 * ((5 + 2 * 11) * 32 * 32 + 5 * 32 * 32 + 2 * 5 * 11 * 32)
    assert macs.count_macs(Cross(), inputs=(query, memory)) == expected


def test_breakdown_by_module_and_op():
    model = HandCounted()
    counted = macs.mac_breakdown(model, seconds=1000 / 8000, sample_rate=8000, depth=1)
    frames = (1000 - 8) // 4 + 1
    assert counted.total == hand_count(1, 1000)
    assert counted.by_module[""] == counted.total
    assert counted.by_module["lstm"] == frames * 2 * 4 * 24 * (32 + 24 + 48 + 24)
    assert counted.by_module["decoder"] == frames * 16 * 2 * 8
    assert counted.by_op["aten.mkldnn_rnn_layer"] == counted.by_module["lstm"]
    assert sum(counted.by_op.values()) == counted.total


def test_parameters_counted_once_when_shared():
    assert macs.count_parameters(HandCounted()) == hand_params()
    shared = nn.Linear(5, 5)
    assert macs.count_parameters(nn.Sequential(shared, nn.ReLU(), shared)) == 30


# --- tests.toys.ProfileTiny, by name: the command line and the subprocess ---------------------


@pytest.mark.slow
def test_cli_json(capsys):
    status = main(["profile", "--model", "profile-test-tiny", "--device", "cpu", "--seconds", "0.5", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("params", "macs", "peak_memory_mb", "rtf", "model", "sample_rate", "seconds", "device",
                "threads", "gmacs_per_second_of_audio"):
        assert key in result
    samples, frames = 4000, 50
    assert result["macs"] == samples * 64 * 17 + frames * 4 * 8 * (64 + 8) + samples * 2 * 64
    assert result["params"] == 64 * 17 + 4 * 8 * (64 + 8) + 2 * 4 * 8 + 2 * 64 + 2
    assert result["sample_rate"] == 8000 and result["threads"] == 1 and result["device"] == "cpu"
    assert result["peak_memory_mb"] > 0 and result["rtf"] > 0


@pytest.mark.slow
def test_cli_table_and_sample_rate_override(capsys):
    assert main(["profile", "-m", "profile-test-tiny", "--device", "cpu", "--sample-rate", "16000",
                 "--seconds", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "16000 Hz" in out and "parameters" in out and "RTF" in out and "MiB" in out


@pytest.mark.slow
def test_cli_shows_its_stages_on_a_terminal_only(run_cli):
    args = ["profile", "-m", "profile-test-tiny", "--device", "cpu", "--seconds", "0.25"]
    status, err = run_cli(args)
    assert status == 0
    for stage in ("1/4: loading the model", "2/4: counting MACs", "3/4: measuring peak memory",
                  "4/4: timing the forward"):
        assert f"profile {stage}" in err
    run_cli.assert_silent(args, "profile 1/4")


@pytest.mark.slow
def test_peak_memory_grows_with_input():
    model = ProfileTiny(ProfileTinyConfig(channels=256))
    short = memory_speed.peak_memory_mb(model, seconds=1.0, sample_rate=16000)
    long = memory_speed.peak_memory_mb(model, seconds=4.0, sample_rate=16000)
    activation_mib = 256 * 16000 * 4 / 2**20  # one (256, 16000) float32 map
    assert short >= activation_mib
    assert long > short + 2 * activation_mib


@pytest.mark.slow
def test_peak_memory_of_an_unregistered_module():
    # No architecture name or config: the subprocess gets the module itself.
    mib = memory_speed.peak_memory_mb(Waveform(), seconds=2.0, sample_rate=16000)
    assert mib >= 128 * 32000 * 4 / 2**20


class Waveform(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 128, 3, padding=1)

    def forward(self, x):
        return self.conv(x.unsqueeze(1))


def test_real_time_factor_positive():
    model = ProfileTiny(ProfileTinyConfig())
    speed = memory_speed.real_time_factor(model, seconds=0.5, repeats=3)
    assert speed["rtf"] > 0 and speed["forward_ms"] > 0
    assert torch.get_num_threads() >= 1


def test_real_time_factor_times_every_model_without_cuda_graphs():
    # A TDANet replays repeated CUDA inputs from a graph by itself; a cost table must not
    # time it that way while other models launch every kernel.
    from cocktailparty.core.cuda_graphs import graphs_allowed
    from tests.helpers import recording_graphs_allowed

    Watched, allowed = recording_graphs_allowed(ProfileTiny)
    memory_speed.real_time_factor(Watched(ProfileTinyConfig()), seconds=0.1, repeats=2)
    assert allowed and not any(allowed)
    assert graphs_allowed()


def _profile_table_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "profile_table.py"
    spec = importlib.util.spec_from_file_location("profile_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_table_checks_paper_targets(monkeypatch, capsys):
    table = _profile_table_module()
    monkeypatch.setitem(table.PAPER_RATES, "profile-test-tiny", 8000)
    macs = 8000 * 64 * 17 + 100 * 4 * 8 * (64 + 8) + 8000 * 2 * 64  # per 1 s at 8 kHz
    monkeypatch.setitem(table.TARGETS, "profile-test-tiny", {"gmacs": (0.99 * macs / 1e9, 1.01 * macs / 1e9)})
    assert table.main(["profile-test-tiny", "--no-memory", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "| profile-test-tiny" in out and "| ok" in out and "8 kHz" in out
    # Another rate is not the paper setting: reported, not judged.
    assert table.main(["profile-test-tiny@16000", "--no-memory", "--no-timing"]) == 0
    monkeypatch.setitem(table.TARGETS, "profile-test-tiny", {"params": (1e6, 2e6)})
    assert table.main(["profile-test-tiny", "--no-memory", "--no-timing"]) == 1
    assert "MISS: params" in capsys.readouterr().out
