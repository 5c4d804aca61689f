"""GALR blocks and Tune-In: segmentation, shapes in every mode, enrollment handling, the
Autopilot equivalence, gradients, the Tune-In losses on hand-made cases, and the Table 1
parameter counts.

Behaviour tests use tiny configs; only the parameter-count tests build full-size models
(no forward pass).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from cocktailparty.models import common
from cocktailparty.models.tunein.galr import GALRBlock


def segment(x, size):
    """GALR's segmentation: frames on axis 1, no extra hop at the ends."""
    return common.segment(x, size, dim=1, edges=False)


def overlap_add(segments, frames):
    return common.overlap_add(segments, frames, dim=-2, edges=False)


# --- GALR ---------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 7, 8, 9, 64, 101])
def test_segment_overlap_add_round_trip(frames):
    x = torch.randn(2, frames, 3)
    segs = segment(x, 16)
    assert segs.shape[2:] == (16, 3)
    # Half overlap: the second half of segment s is the first half of segment s + 1.
    assert torch.equal(segs[:, :-1, 8:], segs[:, 1:, :8])
    assert torch.equal(overlap_add(segs, frames), x)


def test_segment_count_has_no_edge_padding():
    # 4001 frames (1 s at 8 kHz, window 4) with K = 256: 4096 padded frames, 31 segments.
    assert segment(torch.zeros(1, 4001, 1), 256).shape[1] == 31
    assert segment(torch.zeros(1, 256, 1), 256).shape[1] == 1


def test_galr_block_shapes_and_steering_identity():
    torch.manual_seed(0)
    block = GALRBlock(dim=8, hidden=6, segment_size=10, low_dim=3, heads=2, dropout=0.1).eval()
    x = torch.randn(2, 5, 10, 8)
    with torch.no_grad():
        y = block(x)
        assert y.shape == x.shape
        # r = 1, h = 0 is self-attention (the Autopilot definition), in both output forms.
        ones, zeros = torch.ones(2, 3, 8), torch.zeros(2, 3, 8)
        torch.testing.assert_close(block(x, (ones, zeros)), y)
        streams = block(x, (ones, zeros), keep_streams=True)
        assert streams.shape == (2, 3, 5, 10, 8)
        torch.testing.assert_close(streams, y.unsqueeze(1).expand_as(streams))
        # Different steering vectors give different streams.
        r = torch.randn(2, 3, 8)
        streams = block(x, (r, zeros), keep_streams=True)
        assert not torch.allclose(streams[:, 0], streams[:, 1])


def test_galr_block_batch_items_independent():
    torch.manual_seed(0)
    block = GALRBlock(dim=8, hidden=6, segment_size=10, low_dim=3, heads=2, dropout=0.0).eval()
    x = torch.randn(3, 4, 10, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x)[1:2], block(x[1:2]))


# --- Tune-In model ------------------------------------------------------------------------

import dataclasses  # noqa: E402
import math  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from cocktailparty.core.config import CONFIG_DIR, load_config  # noqa: E402
from cocktailparty.core.errors import CocktailError  # noqa: E402
from cocktailparty.models.tunein.objective import (  # noqa: E402
    TuneIDLoss,
    TuneInCELoss,
    TuneInObjective,
    ema_bank_update,
    embedding_permutation,
    output_speakers,
)
from cocktailparty.models import build_model  # noqa: E402
from cocktailparty.models.tunein import SpeakerMemory, TuneInOutput  # noqa: E402

TINY = dict(num_filters=16, kernel_size=4, stride=2, feature_dim=8, hidden=6, segment_size=10, low_dim=3,
            num_heads=2, generic_blocks=1, speaker_blocks=1, speech_blocks=2)


def tiny(mode: str = "online", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tunein", **{**TINY, "mode": mode, **overrides})


@pytest.mark.parametrize("mode", ["autopilot", "online"])
@pytest.mark.parametrize("length", [803, 40, 3, 1])
def test_output_shape_any_length(mode, length):
    model = tiny(mode).eval()
    with torch.no_grad():
        out = model(torch.randn(2, length))
    assert out.shape == (2, 2, length)
    assert torch.isfinite(out).all()


def test_details_in_online_mode():
    model = tiny().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 403), return_details=True)
    assert isinstance(out, TuneInOutput)
    segments = out.cross_attention.shape[2]
    assert out.sources.shape == (2, 2, 403)
    assert out.steering.shape == (2, 2, 8)
    assert out.memory.features.shape == (2, 2, segments, 8)  # S_j = S
    assert out.cross_attention.shape == (2, 2, segments, segments)
    torch.testing.assert_close(out.cross_attention.sum(-1), torch.ones(2, 2, segments))


def test_three_sources():
    model = tiny(num_sources=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 300), return_details=True)
    assert out.sources.shape == (1, 3, 300) and out.steering.shape == (1, 3, 8)


def test_offline_enrollment_of_another_length_and_reuse():
    model = tiny("offline").eval()
    mixture, enrollment = torch.randn(2, 403), torch.randn(2, 2, 1111)
    with torch.no_grad():
        direct = model(mixture, enrollment, return_details=True)
        memory = model.embed_enrollment(enrollment)
        reused = model(mixture, memory)
        model.enroll(enrollment)
        stored = model(mixture)
    # Each source's memory pools the C feature sequences of its own enrollment.
    segments_e = model.embed_enrollment(enrollment[:, 0]).features.shape[2]
    assert memory.features.shape == (2, 2, 2 * segments_e, 8)
    assert direct.cross_attention.shape[-1] == 2 * segments_e != direct.cross_attention.shape[-2]
    assert torch.equal(reused, direct.sources) and torch.equal(stored, direct.sources)
    # One memory (batch 1) serves a batch of mixtures.
    with torch.no_grad():
        single = model(mixture, model.embed_enrollment(enrollment[:1]))
        torch.testing.assert_close(single[:1], direct.sources[:1])


def test_offline_enrollments_of_different_lengths_are_masked():
    model = tiny("offline").eval()
    mixture = torch.randn(1, 300)
    short, long = torch.randn(1, 350), torch.randn(1, 900)
    with torch.no_grad():
        memory = model.embed_enrollment([short, long])
        out = model(mixture, memory, return_details=True)
        # The padded positions get no attention, and source 0 is as if enrolled alone.
        n_short = model.embed_enrollment(short).features.shape[2] * 2
        assert memory.valid[0, 0].sum() == n_short and memory.valid[0, 1].all()
        assert out.cross_attention[0, 0, :, n_short:].abs().max() == 0
        alone = model.steering_vectors(mixture, [short, short])[0]
        torch.testing.assert_close(out.steering[0, 0], alone[0, 0])


def _saved_activation_bytes(model, step) -> int:
    """Bytes of the tensors autograd keeps for backward while ``step()`` runs, parameters
    left out, each storage counted once."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = max(kept.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(kept.values())


@pytest.mark.slow
def test_activation_checkpointing_gives_the_same_gradients_and_keeps_less():
    """Offline training with checkpointed GALR blocks: the gradients of a plain run (dropout
    included, so the recomputation must replay its RNG), while autograd keeps the blocks'
    activations no longer (checkpoint keeps only each block's input, outside these hooks)."""
    model = tiny("offline", dropout=0.3).train()
    mixture, enrollment = torch.randn(2, 400), torch.randn(2, 2, 1600)
    grads, kept = {}, {}
    for on in (False, True):
        model.set_activation_checkpointing(on)
        model.zero_grad()
        torch.manual_seed(1)
        kept[on] = _saved_activation_bytes(model, lambda: model(mixture, enrollment).square().mean().backward())
        grads[on] = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(grads[True]) == len(grads[False]) > 0
    for plain, recomputed in zip(grads[False], grads[True]):
        torch.testing.assert_close(recomputed, plain)
    assert kept[True] < kept[False] / 3
    # Without gradients nothing changes: inference never recomputes.
    model.eval()
    with torch.no_grad():
        on = model(mixture, enrollment)
        model.set_activation_checkpointing(False)
        torch.testing.assert_close(model(mixture, enrollment), on)


def test_offline_needs_an_enrollment_and_autopilot_has_no_speaker_space():
    with pytest.raises(CocktailError, match="enrollment"):
        tiny("offline")(torch.randn(1, 100))
    with pytest.raises(CocktailError, match="speaker space"):
        tiny("autopilot")(torch.randn(1, 100), mode="online")


def test_autopilot_equals_a_model_without_speaker_space():
    online = tiny("online").eval()
    plain = tiny("autopilot").eval()
    missing, unexpected = plain.load_state_dict(online.state_dict(), strict=False)
    assert not missing
    assert {k.split(".")[0] for k in unexpected} == {
        "speaker_blocks", "embedder", "cross_attention", "steer_scale", "steer_shift"}
    x = torch.randn(2, 517)
    with torch.no_grad():
        torch.testing.assert_close(online(x, mode="autopilot"), plain(x), rtol=0, atol=0)
        # and r = 1, h = 0 through the dual-attention path gives the same (Autopilot's definition)
        z = torch.zeros(2, 2, 8)
        feats, h = online._encode(x)
        for lin, value in ((online.steer_scale, 1.0), (online.steer_shift, 0.0)):
            lin.weight.zero_()
            lin.bias.fill_(value)
        steered = online.decode(feats, online._masks(online._speech_space(h, z), feats.shape[-1]), x.shape[-1])
    torch.testing.assert_close(steered, plain(x))


@pytest.mark.slow
def test_gradients_reach_every_parameter_in_online_mode():
    model = tiny("online", dropout=0.0).train()
    objective = TuneInObjective(num_speakers=5, dim=8, weight=1.0, step=0.1)
    torch.manual_seed(1)
    batch = {"mixture": torch.randn(2, 400), "sources": torch.randn(2, 2, 400),
             "speaker_ids": torch.tensor([[0, 3], [4, 1]])}
    terms = objective(model, batch)
    assert set(terms) >= {"loss", "si_snr", "ince", "reg", "speaker"}
    terms["loss"].backward()
    for name, p in list(model.named_parameters()) + list(objective.named_parameters()):
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_embedding_noise_only_at_training_time():
    x = torch.randn(1, 300)
    model = tiny("online", dropout=0.0)  # no other train/eval difference left
    with torch.no_grad():
        clean = model.eval()(x, return_details=True)
        assert torch.equal(model(x), clean.sources)
        torch.manual_seed(0)
        noisy = model.train()(x, return_details=True)
        # The returned Z is the clean one; the noise only reaches the speech space.
        torch.testing.assert_close(noisy.steering, clean.steering)
        assert not torch.allclose(noisy.sources, clean.sources)
        model.config.embedding_regularizer = "none"
        torch.testing.assert_close(model(x), clean.sources)
        model.config.embedding_regularizer = "dropout"
        assert model(x).shape == (1, 2, 300)


def test_training_stages_freeze_the_other_spaces():
    model = tiny("online")
    groups = model.parameter_groups()
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    model.set_training_stage("speaker")
    assert all(p.requires_grad for p in groups["speaker"])
    assert not any(p.requires_grad for p in groups["generic"] + groups["speech"])
    model.set_training_stage("speech")
    assert all(p.requires_grad for p in groups["speech"]) and not any(p.requires_grad for p in groups["speaker"])
    info = SimpleNamespace(stage=None, speakers=["a", "b", "c"], options={"weight": 0.5})
    objective = model.training_objective(info)
    assert all(p.requires_grad for p in model.parameters()) and objective.weight == 0.5
    assert tiny("autopilot").training_objective(info) is None


# --- Tune-In losses -----------------------------------------------------------------------

def test_ema_update_by_hand():
    bank = torch.tensor([[0.0, 0.0], [1.0, 1.0], [4.0, -2.0]])
    z = torch.tensor([[[2.0, 0.0], [3.0, 3.0]], [[0.0, 4.0], [0.0, 0.0]]])
    ids = torch.tensor([[0, 1], [0, 2]])
    new = ema_bank_update(bank, z, ids, step=0.5)
    # Speaker 0: (0,0) -> (0,0) + .5((2,0) - (0,0)) = (1,0) -> (1,0) + .5((0,4) - (1,0)) = (.5, 2).
    # Speaker 1: (1,1) + .5((3,3) - (1,1)) = (2,2).  Speaker 2: (4,-2) + .5((0,0) - (4,-2)) = (2,-1).
    torch.testing.assert_close(new, torch.tensor([[0.5, 2.0], [2.0, 2.0], [2.0, -1.0]]))
    assert torch.equal(bank[0], torch.zeros(2))  # not in place


def test_tune_ince_two_speakers_by_hand():
    loss = TuneInCELoss(num_speakers=2, dim=2, step=0.5, gamma=1.0, alpha=1.0)
    loss.bank.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z = torch.tensor([[[0.5, 0.0], [1.0, 0.5]]], requires_grad=True)
    ids = torch.tensor([[0, 1]])
    terms = loss(z, ids)  # training mode: the bank moves afterwards
    # Z_1 = (.5, 0): squared distances .25 to E_0 (its speaker), 1.25 to E_1, so
    # -log(e^-.25 / (e^-.25 + e^-1.25)) = log(1 + e^-1); Z_2 is the mirror case.
    assert terms["ince"].item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    # After the EMA step E_0 = (.25, 0), E_1 = (1, .75): L1 distance 1.5 for both j.
    assert terms["reg"].item() == pytest.approx(-math.log(1.5), abs=1e-6)
    torch.testing.assert_close(loss.bank, torch.tensor([[0.25, 0.0], [1.0, 0.75]]))
    (terms["ince"] + terms["reg"]).backward()
    assert z.grad.abs().sum() > 0 and loss.log_alpha.grad is not None
    # Eval mode leaves the bank alone.
    loss.eval()
    loss(z.detach(), ids)
    torch.testing.assert_close(loss.bank, torch.tensor([[0.25, 0.0], [1.0, 0.75]]))


def test_tune_id_and_embedding_permutation():
    tid = TuneIDLoss(3, 2)
    tid.tokens.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z = torch.tensor([[[0.0, 2.0], [1.0, 0.0]]])
    ids = torch.tensor([[1, 0]])
    expected = (torch.logsumexp(torch.tensor([0.0, 2.0, 0.0]), 0) - 2.0
                + torch.logsumexp(torch.tensor([1.0, 0.0, -1.0]), 0) - 1.0) / 2
    assert tid(z, ids)["id"].item() == pytest.approx(expected.item(), abs=1e-6)
    # Output 0 is steered towards speaker 1, which is reference 1's speaker here.
    refs = torch.tensor([[0, 1]])
    perm = embedding_permutation(z, tid.bank, refs)
    assert perm.tolist() == [[1, 0]]
    assert output_speakers(perm, refs).tolist() == [[1, 0]]


@pytest.mark.slow
@pytest.mark.parametrize("setting", [dict(), dict(permutation="embedding"), dict(supervision="tune-id"),
                                     dict(stage="speaker"), dict(stage="speech")])
def test_objective_variants_run(setting):
    model = tiny("online").train()
    objective = TuneInObjective(num_speakers=4, dim=8, **setting)
    batch = {"mixture": torch.randn(2, 300), "sources": torch.randn(2, 2, 300),
             "speaker_ids": torch.tensor([[0, 1], [2, 3]])}
    terms = objective(model, batch)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()


@pytest.mark.slow
def test_objective_offline_and_music_labels():
    model = tiny("offline").train()
    objective = TuneInObjective(num_speakers=4, dim=8)
    batch = {"mixture": torch.randn(2, 300), "sources": torch.randn(2, 2, 300),
             "speaker_ids": torch.tensor([[0, 1], [2, 3]]), "enrollment": torch.randn(2, 2, 500)}
    assert torch.isfinite(objective(model, batch)["ince"])
    # Speech vs music: only the first reference has a speaker.
    batch = {"mixture": torch.randn(2, 300), "sources": torch.randn(2, 2, 300), "speaker_ids": torch.tensor([[0], [2]])}
    assert torch.isfinite(objective(tiny("online").train(), batch)["ince"])


@pytest.mark.slow
def test_objective_enrolled_permutation_scores_output_j_against_reference_j():
    # Offline extraction relies on output j being enrollment j's talker: the "enrolled"
    # permutation scores it so, where PIT would accept the swapped outputs as well.
    model = tiny("offline").train()
    torch.manual_seed(0)
    sources = torch.randn(2, 2, 300)
    batch = {"mixture": sources.sum(1), "sources": sources, "speaker_ids": torch.tensor([[0, 1], [2, 3]]),
             "enrollment": torch.randn(2, 2, 500)}

    class Swapped(torch.nn.Module):  # a model whose outputs are the references, swapped
        has_speaker_space = True

        def forward(self, mixture, enrollment=None, mode=None, return_details=False):
            out = model(mixture, enrollment, mode=mode, return_details=True)
            out.sources = sources.flip(1) + 0 * out.sources
            return out

    pit = TuneInObjective(num_speakers=4, dim=8)(Swapped(), batch)
    enrolled = TuneInObjective(num_speakers=4, dim=8, permutation="enrolled")(Swapped(), batch)
    assert pit["si_snr"].item() < -50  # PIT finds the swap: a perfect separation
    assert enrolled["si_snr"].item() > 0  # the enrolled order does not
    assert torch.isfinite(enrolled["ince"])
    enrolled["loss"].backward()
    with pytest.raises(CocktailError, match="needs enrollments"):
        TuneInObjective(num_speakers=4, dim=8, permutation="enrolled")(
            tiny("online").train(), {k: v for k, v in batch.items() if k != "enrollment"})


# --- paper settings -------------------------------------------------------------------------

TABLE1 = {"autopilot": 2.3e6, "offline": 2.4e6, "online": 3.2e6}


@pytest.mark.parametrize("name", ["tunein-autopilot-wsj0", "tunein-online-wsj0", "tunein-offline-wsj0",
                                  "tunein-online-wsj0music"])
def test_paper_configs_match_table1_parameter_counts(name):
    fields = dict(load_config(CONFIG_DIR / f"{name}.yaml")["model"])
    assert fields.pop("architecture") == "tunein"
    model = build_model("tunein", **fields)
    assert dataclasses.asdict(model.config) == {**dataclasses.asdict(model.config), **fields}
    count = sum(p.numel() for p in model.parameters_in_use())
    assert abs(count / TABLE1[model.config.mode] - 1) < 0.05, count


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["autopilot", "online"])
def test_trace_at_one_length_runs_at_others(mode):
    model = tiny(mode).eval()
    with torch.no_grad():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic
            traced = torch.jit.trace(model, torch.randn(1, 800), check_trace=False)
        for length in (1234, 5):  # longer, and shorter than one segment
            x = torch.randn(2, length)
            torch.testing.assert_close(traced(x), model(x))


def test_offline_real16k_config_warm_starts_from_the_bundled_online_model():
    # training.init_from loads strictly: Online and Offline Tune-In have the same parameters
    # (the speaker space, cross attention and r/h exist in both), at any sample rate.
    from safetensors.torch import load_file

    from cocktailparty.core.checkpoint import PRETRAINED_DIR

    cfg = load_config(CONFIG_DIR / "tunein-offline-real16k.yaml")
    fields = dict(cfg["model"])
    fields.pop("architecture")
    model = build_model("tunein", **fields)
    assert model.config.mode == "offline" and model.config.sample_rate == 16000
    source = PRETRAINED_DIR / "tunein-online-synth8k.safetensors"
    assert cfg["training"]["init_from"].endswith(source.name)
    model.load_state_dict(load_file(str(source)))  # strict: no missing or unexpected keys
    assert cfg["training"]["objective"]["permutation"] == "enrolled"
