"""The parts models share (models/common.py, models/tasnet.py) and the interfaces a model
declares (models/conditioning.py): chunking in both paddings, the positional code, the
masking base class, extra inputs, talker-aware models, and that no module outside the
Tune-In package names Tune-In in its code.
"""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest
import torch

from cocktailparty.core.errors import CocktailError
from cocktailparty.models import build_model
from cocktailparty.models.common import overlap_add, positions, segment, sinusoidal_encoding
from cocktailparty.models.conditioning import ExtraInput, extra_arguments, extra_inputs, require_talkers

TINY_TUNEIN = dict(num_filters=16, kernel_size=4, stride=2, feature_dim=8, hidden=6, segment_size=10, low_dim=3,
                   num_heads=2, generic_blocks=1, speaker_blocks=1, speech_blocks=2)


def tunein(mode: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tunein", **TINY_TUNEIN, mode=mode).eval()


# --- chunking -----------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 7, 8, 9, 64, 101])
def test_segment_with_edges_puts_every_frame_in_two_chunks(frames):
    x = torch.randn(2, 3, frames)  # DPRNN's layout: (batch, channels, frames)
    chunks = segment(x, 16)
    assert chunks.shape[:2] == (2, 3) and chunks.shape[-1] == 16
    assert torch.equal(chunks[:, :, :-1, 8:], chunks[:, :, 1:, :8])
    assert torch.equal(chunks[:, :, 0, :8], torch.zeros(2, 3, 8))  # the extra hop on the left
    assert torch.equal(overlap_add(chunks, frames), 2 * x)  # summed over its two chunks


@pytest.mark.parametrize("frames", [1, 9, 101])
def test_mean_overlap_add_in_place_path_equals_the_traced_one(frames):
    x = torch.randn(2, frames, 3)  # GALR's layout: (batch, frames, D)
    chunks = segment(x, 16, dim=1, edges=False)
    streams = torch.stack([chunks, 2 * chunks], 1)  # (batch, streams, S, K, D), as Tune-In's last block
    traced = overlap_add(streams, frames, dim=-2, edges=False)
    with torch.no_grad():
        in_place = overlap_add(streams.clone(), frames, dim=-2, edges=False)
    assert torch.equal(traced, in_place)
    assert torch.equal(traced[:, 0], x) and torch.equal(traced[:, 1], 2 * x)


def test_counted_positions_give_the_arange_code():
    like = torch.randn(37, 4, 5)
    counted = sinusoidal_encoding(positions(like), 16)
    assert torch.equal(counted, sinusoidal_encoding(torch.arange(37.0)[:, None], 16))
    assert counted.shape == (37, 16) and torch.equal(counted[:, 0], torch.arange(37.0).sin())


# --- the encoder -> masker -> decoder base ------------------------------------------------

@pytest.mark.parametrize("arch", ["convtasnet", "dprnn", "tunein"])
def test_masking_models_decode_the_same_in_place_and_out_of_place(arch):
    torch.manual_seed(0)
    small = {"convtasnet": dict(num_filters=16, bottleneck=8, hidden=16, skip=8, num_layers=2, num_repeats=1),
             "dprnn": dict(num_filters=16, kernel_size=4, stride=2, bottleneck=8, hidden=6, chunk_size=10,
                           num_blocks=1),
             "tunein": TINY_TUNEIN}[arch]
    model = build_model(arch, **small).eval()
    x = torch.randn(2, 517)
    with torch.no_grad():
        in_place = model(x)
    assert torch.equal(model(x).detach(), in_place)  # with gradients: out of place
    # Masks in bfloat16 on float32 features (autocast): the product is float32, not rounded
    # into the masks' dtype by an in-place multiply.
    feats, masks = torch.rand(2, 16, 30), torch.rand(2, 2, 16, 30).bfloat16()
    with torch.no_grad():
        assert torch.equal(model.decode(feats, masks, 59), model.decode(feats, masks.float(), 59))


# --- conditional separators ---------------------------------------------------------------

def test_only_an_offline_model_declares_an_enrollment():
    (enrollment,) = extra_inputs(tunein("offline"))
    assert enrollment.name == "enrollment" and enrollment.per_source and enrollment.shape == "(batch, C, time_e)"
    assert extra_inputs(tunein("online")) == extra_inputs(tunein("autopilot")) == ()
    assert extra_inputs(build_model("convtasnet")) == ()


def test_extra_arguments_come_from_the_batch_or_are_refused_in_words():
    model = tunein("offline")
    batch = {"mixture": torch.randn(2, 400), "enrollment": torch.randn(2, 2, 300)}
    assert extra_arguments(model, batch).keys() == {"enrollment"}
    assert extra_arguments(tunein("online"), batch) == {}
    with pytest.raises(CocktailError, match=r"'enrollment' \(batch, C, time_e\)"):
        extra_arguments(model, {"mixture": batch["mixture"]})
    with torch.no_grad():
        torch.testing.assert_close(model(batch["mixture"], **extra_arguments(model, batch)),
                                   model(batch["mixture"], batch["enrollment"], mode="offline"), rtol=0, atol=0)


def test_extra_input_describes_itself():
    mono = ExtraInput("reference", per_source=False, what="a reference microphone")
    assert mono.shape == "(batch, time_e)"


# --- talker-aware models ------------------------------------------------------------------

def test_require_talkers_says_what_is_missing():
    require_talkers(tunein("online"), "'verify'")
    with pytest.raises(CocktailError, match="model 'x'.*autopilot"):
        require_talkers(tunein("autopilot"), "'verify'", "x")
    with pytest.raises(CocktailError, match="knows talkers by their voice.*tunein.*is a convtasnet"):
        require_talkers(build_model("convtasnet"), "'extract'")


def test_speaker_vectors_are_online_steering_vectors_and_the_extractor_keeps_one_talker():
    model = tunein("offline")
    x = torch.randn(1, 800)
    with torch.no_grad():
        torch.testing.assert_close(model.speaker_vectors(x), model.steering_vectors(x, mode="online")[0],
                                   rtol=0, atol=0)
        talker = model.extractor(torch.randn(900).numpy(), chunk_seconds=0.05)
        assert talker.config.num_sources == 1 and talker(x).shape == (1, 1, 800)
    with pytest.raises(CocktailError, match="autopilot"):
        tunein("autopilot").extractor(torch.randn(900).numpy())


def test_no_module_outside_the_tunein_package_names_it_in_code():
    """The conditional-separator and talker-aware interfaces are how the rest of the library
    reaches Tune-In: no identifier naming it, and no test of its modes, outside its package
    (user-facing text and bundled model names are strings, which may)."""
    root = Path(__file__).resolve().parents[1] / "cocktailparty"
    offenders = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[:2] == ("models", "tunein"):
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for tok in tokens:
            named = tok.type == tokenize.NAME and "tunein" in tok.string.lower().replace("_", "")
            mode = tok.type == tokenize.STRING and tok.string.strip("'\"") == "offline"
            if named or mode:
                offenders.append(f"{path.relative_to(root)}:{tok.start[0]}: {tok.string}")
    assert not offenders, "\n".join(offenders)
