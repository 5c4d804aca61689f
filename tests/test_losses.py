"""PIT losses: planted permutations, Hungarian vs. exhaustive, values, gradients on silence."""

import itertools

import numpy as np
import pytest
import torch

from cocktailparty.eval.metrics import band as band_metrics, bss_eval, permutations, signal_ratios
from cocktailparty.train import losses


def si_snr_np(est, ref):
    """Zero-mean SI-SNR in float64 through the projection, written out for one pair."""
    est = est - est.mean()
    ref = ref - ref.mean()
    target = ref * (est @ ref) / (ref @ ref)
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


def shuffled_batch(c, batch=3, n=800, noise=0.1, seed=0):
    """References, and estimates with est[b, i] = ref[b, sigma_b[i]] + noise."""
    g = torch.Generator().manual_seed(seed)
    refs = torch.randn(batch, c, n, generator=g, dtype=torch.float64)
    sigmas = [torch.randperm(c, generator=g) for _ in range(batch)]
    for b in range(batch):  # make sure at least one item is not the identity
        if c > 1 and torch.equal(sigmas[b], torch.arange(c)):
            sigmas[b] = torch.roll(sigmas[b], 1)
    est = torch.stack([refs[b, sigmas[b]] for b in range(batch)])
    est = est + noise * torch.randn(est.shape, generator=g, dtype=torch.float64)
    return est, refs, torch.stack(sigmas)


@pytest.mark.parametrize("c", [2, 3, 4, 5])
def test_pit_finds_planted_permutation(c):
    est, refs, sigma = shuffled_batch(c, seed=c)
    loss, perm = losses.pit_si_snr_loss(est, refs)
    assert perm.dtype == torch.long and perm.shape == (3, c)
    # Convention: estimates[b, perm[b, j]] pairs with references[b, j], i.e. perm = sigma^-1.
    np.testing.assert_array_equal(perm.numpy(), np.argsort(sigma.numpy(), axis=1))
    for b in range(3):
        for j in range(c):
            assert torch.allclose(est[b, perm[b, j]], refs[b, j], atol=1.0)
    assert torch.equal(permutations.permute(est, perm), est.gather(1, perm[..., None].expand(-1, -1, est.shape[-1])))

    expected = -np.mean(
        [[si_snr_np(est[b, perm[b, j]].numpy(), refs[b, j].numpy()) for j in range(c)] for b in range(3)]
    )
    assert loss.item() == pytest.approx(expected, abs=1e-8)


def test_loss_is_the_minimum_over_all_permutations():
    est, refs, _ = shuffled_batch(3, batch=4, noise=2.0, seed=9)  # noisy: pairings are close calls
    per_utt, perm = losses.pit_si_snr_loss(est, refs, reduction="none")
    assert per_utt.shape == (4,)
    for b in range(4):
        costs = {
            p: -np.mean([si_snr_np(est[b, p[j]].numpy(), refs[b, j].numpy()) for j in range(3)])
            for p in itertools.permutations(range(3))
        }
        best = min(costs, key=costs.get)
        assert tuple(perm[b].tolist()) == best
        assert per_utt[b].item() == pytest.approx(costs[best], abs=1e-8)


@pytest.mark.parametrize("c", [4, 5])
def test_hungarian_equals_exhaustive(c):
    g = torch.Generator().manual_seed(c)
    scores = torch.randn(50, c, c, generator=g, dtype=torch.float64)
    fast = permutations.best_permutation(scores)  # Hungarian for C > 3
    perms = list(itertools.permutations(range(c)))
    for b in range(50):
        totals = [sum(scores[b, p[j], j].item() for j in range(c)) for p in perms]
        assert tuple(fast[b].tolist()) == perms[int(np.argmax(totals))]
    low = permutations.best_permutation(scores, maximize=False)
    for b in range(50):
        totals = [sum(scores[b, p[j], j].item() for j in range(c)) for p in perms]
        assert tuple(low[b].tolist()) == perms[int(np.argmin(totals))]


def test_hungarian_and_exhaustive_paths_agree(monkeypatch):
    scores = torch.randn(40, 3, 3, generator=torch.Generator().manual_seed(1))
    exhaustive = permutations.best_permutation(scores)
    monkeypatch.setattr(permutations, "EXHAUSTIVE_MAX_SOURCES", 0)
    assert torch.equal(permutations.best_permutation(scores), exhaustive)


def test_permutation_convention_matches_bss_eval():
    est, refs, _ = shuffled_batch(3, batch=1, n=1500, noise=0.3, seed=4)
    _, perm = losses.pit_si_snr_loss(est, refs)
    _, sdr_perm = bss_eval.sdr(est[0].numpy(), refs[0].numpy())
    np.testing.assert_array_equal(perm[0].numpy(), sdr_perm)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["both silent", "silent references", "silent estimates", "one silent source"])
@pytest.mark.parametrize("loss_fn", [losses.pit_si_snr_loss, losses.pit_snr_loss])
def test_finite_loss_and_gradients_on_silence(dtype, case, loss_fn):
    g = torch.Generator().manual_seed(0)
    est = torch.randn(2, 3, 400, generator=g, dtype=dtype)
    refs = torch.randn(2, 3, 400, generator=g, dtype=dtype)
    if case in ("both silent", "silent estimates"):
        est.zero_()
    if case in ("both silent", "silent references"):
        refs.zero_()
    if case == "one silent source":
        est[0, 1].zero_()
        refs[1, 2].zero_()
    est.requires_grad_(True)
    refs.requires_grad_(True)
    loss, perm = loss_fn(est, refs)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(est.grad).all() and torch.isfinite(refs.grad).all()
    assert sorted(perm[0].tolist()) == [0, 1, 2]
    if case == "both silent":
        assert loss.item() == 0.0  # (0 + eps) / (0 + eps)


def test_gradcheck():
    g = torch.Generator().manual_seed(3)
    est = torch.randn(2, 2, 64, generator=g, dtype=torch.float64, requires_grad=True)
    refs = torch.randn(2, 2, 64, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e, r: losses.pit_si_snr_loss(e, r)[0], (est, refs))
    assert torch.autograd.gradcheck(lambda e, r: losses.pit_snr_loss(e, r)[0], (est, refs))
    silent = torch.zeros(1, 2, 32, dtype=torch.float64, requires_grad=True)
    quiet = (1e-3 * torch.randn(1, 2, 32, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: losses.pit_si_snr_loss(e, quiet)[0], (silent,))


def test_snr_loss_punishes_gain_but_si_snr_does_not():
    est, refs, _ = shuffled_batch(2, batch=2, noise=0.0, seed=5)
    si, _ = losses.pit_si_snr_loss(0.5 * est, refs)
    plain, perm = losses.pit_snr_loss(0.5 * est, refs)
    assert si.item() < -60  # only eps keeps it finite
    assert plain.item() == pytest.approx(-20 * np.log10(2), abs=1e-6)
    np.testing.assert_array_equal(perm.numpy(), losses.pit_si_snr_loss(est, refs)[1].numpy())


def test_pit_wrapper_with_a_custom_pairwise_loss():
    def pairwise_mse(e, r):
        return (e.unsqueeze(2) - r.unsqueeze(1)).pow(2).mean(-1)

    est, refs, sigma = shuffled_batch(4, seed=6)
    loss, perm = losses.PITLoss(pairwise_mse)(est, refs)
    np.testing.assert_array_equal(perm.numpy(), np.argsort(sigma.numpy(), axis=1))
    assert loss.item() == pytest.approx(0.01, rel=0.2)  # the planted noise variance
    default, _ = losses.PITLoss()(est, refs)
    assert default.item() == pytest.approx(losses.pit_si_snr_loss(est, refs)[0].item())


def test_shape_errors():
    with pytest.raises(ValueError, match="batch, sources, time"):
        losses.pit_si_snr_loss(torch.zeros(2, 100), torch.zeros(2, 100))
    with pytest.raises(ValueError, match="reduction"):
        losses.pit_si_snr_loss(torch.zeros(1, 2, 10), torch.zeros(1, 2, 10), reduction="max")


def _tone(freq_hz: float, rate: int = 16000, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    return torch.sin(2 * torch.pi * freq_hz * t).float()


def test_high_band_keeps_the_top_and_removes_the_bottom():
    # Cutoff 0.5 x Nyquist = 4 kHz at 16 kHz; scored away from the edges the FIR's padding touches.
    low, high = _tone(1000.0), _tone(6500.0)
    inner = slice(100, -100)
    assert band_metrics.high_band(low, 0.5)[inner].abs().max() < 2e-3           # > 50 dB down
    kept = band_metrics.high_band(high, 0.5)[inner]
    assert torch.allclose(kept, high[inner], atol=5e-3)                    # passband ~0 dB, no delay
    assert band_metrics.high_band(torch.ones(1000), 0.5)[100:-100].abs().max() < 1e-6   # DC removed exactly


def test_high_band_si_snr_sees_a_muffled_estimate_that_si_snr_forgives():
    torch.manual_seed(0)
    # A "voice": strong low band, a top band 20 dB quieter.
    low = sum(_tone(f) * a for f, a in ((300.0, 1.0), (700.0, 0.8), (1500.0, 0.5)))
    top = 0.1 * (_tone(5000.0) + _tone(6500.0))
    reference = (low + top).view(1, 1, -1)
    muffled = low.view(1, 1, -1)                                  # the top band dropped
    full = signal_ratios.si_snr(muffled, reference).item()
    band = band_metrics.high_band_si_snr(muffled, reference, 0.5).item()
    assert full > 15.0        # SI-SNR barely notices
    assert band < -20.0       # the high band's SI-SNR does
    assert band_metrics.high_band_si_snr(reference, reference, 0.5).item() > 60.0


def test_default_loss_adds_the_weighted_high_band_term_after_pairing():
    from cocktailparty.train.trainee import default_loss
    torch.manual_seed(1)
    refs = torch.randn(3, 2, 4000)
    est = refs.flip(1) + 0.1 * torch.randn(3, 2, 4000)          # outputs in the other order
    plain = default_loss(est, refs)
    both = default_loss(est, refs, high_band_weight=0.25)
    assert set(both) == {"loss", "si_snr", "high_band"}
    assert torch.allclose(both["si_snr"], plain["loss"])
    # Paired as PIT paired them: the flipped outputs score well in the high band too.
    expected = -band_metrics.high_band_si_snr(est.flip(1), refs, 0.5).mean()
    assert torch.allclose(both["high_band"], expected)
    assert both["high_band"] < -10.0
    assert torch.allclose(both["loss"], plain["loss"] + 0.25 * expected)
