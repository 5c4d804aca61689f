"""Scores for separated speech and for speaker verification, defined as the papers report them.

Separation (all take *estimates first, references second*, the torchmetrics order; mir_eval and
fast_bss_eval take references first, so this module swaps them when it calls fast_bss_eval):

- :func:`si_snr` / :func:`si_snri`: scale-invariant SNR (= SI-SDR, Le Roux et al. 2019) with
  the zero-mean step of Tune-In's and TDANet's recipes, and its improvement over the mixture.
- :func:`sdr` / :func:`sdri`: SDR of BSS Eval v3 (mir_eval's ``bss_eval_sources``: 512-tap
  distortion filter, permutation chosen by the best mean SIR), computed with fast_bss_eval in
  float64, and its improvement over the mixture.
- :func:`pesq_score` / :func:`stoi_score`: optional perceptual scores (``pip install
  'cocktailparty[quality]'``).
- :func:`utterance_scores`: everything for one separated utterance, for the evaluation command.

Verification: :func:`eer`, :func:`auc`, :func:`min_dcf`, :func:`plot_roc`.

Permutation convention, shared with :mod:`cocktailparty.train.losses`: ``perm[..., j]`` is the index
of the *estimate* that pairs with *reference* ``j`` (mir_eval's ``popt``), so
``permute(estimates, perm)[..., j, :]`` is the estimate of reference ``j``, and every
per-source score is returned in reference order.

Silence: SI-SNR stays finite on silent signals (``eps`` in numerator and denominator).
BSS Eval and PESQ are undefined on an all-zero reference or estimate (the libraries raise);
here such an utterance scores NaN and a ``RuntimeWarning`` names the reason, so that one bad
item does not stop an evaluation run. Aggregate with ``np.nanmean`` and report the NaN count.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..core.errors import CocktailError

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Added to both energies of every SNR ratio, so that silent signals give finite values and
#: finite gradients. 1e-8 is what the losses use (float32 training); with ``eps=None`` the
#: metrics pick it by dtype, and float64 (all numpy input) gets :data:`EPS_FLOAT64`, small
#: enough that even a -60 dBFS utterance moves by less than 1e-10 dB.
EPS = 1e-8
EPS_FLOAT64 = 1e-16

#: Number of sources up to which the best permutation is found by trying them all (C! <= 6);
#: above it the Hungarian algorithm is used, which gives the same optimum in O(C^3).
EXHAUSTIVE_MAX_SOURCES = 3

#: BSS Eval v3's distortion filter length (mir_eval hard-codes 512 taps).
BSS_EVAL_FILTER_LENGTH = 512

PESQ_RATES = (8000, 16000)


# --------------------------------------------------------------------------------------------
# SI-SNR and SNR
# --------------------------------------------------------------------------------------------


def _as_torch(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    """Tensor view of ``x``; numpy input becomes float64 (the precision metrics are reported in)."""
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def _check_same_time(estimate: torch.Tensor, reference: torch.Tensor) -> None:
    if estimate.shape[-1] != reference.shape[-1]:
        raise ValueError(
            f"estimate and reference differ in length: {estimate.shape[-1]} vs {reference.shape[-1]} samples"
        )


def _si_snr(est: torch.Tensor, ref: torch.Tensor, zero_mean: bool, eps: float) -> torch.Tensor:
    # Tune-In and TDANet (appendix A, Eq. 8-9), after removing each signal's mean:
    #   s_target = <s_hat, s> s / ||s||^2,   e_noise = s_hat - s_target,
    #   SI-SNR   = 10 log10(||s_target||^2 / ||e_noise||^2)
    # eps sits in both energies (and in the projection's denominator) so that a silent
    # reference or estimate gives a finite value (0 dB when both are silent) and a finite
    # gradient, instead of 0/0. The target and noise are formed explicitly rather than as
    # ||s_hat||^2 - <s_hat,s>^2/||s||^2, which cancels catastrophically at high SI-SNR.
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / (ref.pow(2).sum(dim=-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(dim=-1) + eps) / (noise.pow(2).sum(dim=-1) + eps))


def _snr(est: torch.Tensor, ref: torch.Tensor, eps: float) -> torch.Tensor:
    # Plain SNR = 10 log10(||s||^2 / ||s - s_hat||^2): no projection, so it also punishes
    # a wrong gain (TDANet's released code trains on this one).
    return 10 * torch.log10((ref.pow(2).sum(dim=-1) + eps) / ((ref - est).pow(2).sum(dim=-1) + eps))


def _eps(eps: Optional[float], dtype: torch.dtype) -> float:
    if eps is not None:
        return eps
    return EPS_FLOAT64 if dtype == torch.float64 else EPS


def _out(value: torch.Tensor, was_numpy: bool):
    return value.detach().cpu().numpy() if was_numpy else value


def si_snr(estimate: ArrayLike, reference: ArrayLike, zero_mean: bool = True, eps: Optional[float] = None):
    """Scale-invariant SNR in dB, source by source (no permutation search).

    Args:
        estimate: ``(..., time)``, torch or numpy.
        reference: ``(..., time)``, broadcastable against ``estimate``.
        zero_mean: subtract each signal's mean first, as the papers define it.
        eps: added to both energies; ``None`` picks it by dtype (see :data:`EPS`).

    Returns:
        ``(...)``: a tensor in the input's dtype (differentiable) for torch input, a float64
        array for numpy input.
    """
    est, np_in = _as_torch(estimate)
    ref, np_ref = _as_torch(reference)
    _check_same_time(est, ref)
    if np_in or np_ref:
        est, ref = est.double(), ref.double()
    return _out(_si_snr(est, ref, zero_mean, _eps(eps, est.dtype)), np_in or np_ref)


def snr(estimate: ArrayLike, reference: ArrayLike, eps: Optional[float] = None):
    """Plain (not scale-invariant) SNR in dB; shapes and types as :func:`si_snr`."""
    est, np_in = _as_torch(estimate)
    ref, np_ref = _as_torch(reference)
    _check_same_time(est, ref)
    if np_in or np_ref:
        est, ref = est.double(), ref.double()
    return _out(_snr(est, ref, _eps(eps, est.dtype)), np_in or np_ref)


def pairwise_si_snr(estimates: torch.Tensor, references: torch.Tensor, zero_mean: bool = True, eps: Optional[float] = None) -> torch.Tensor:
    """SI-SNR of every estimate against every reference.

    Args:
        estimates: ``(..., C_est, time)``.
        references: ``(..., C_ref, time)``.

    Returns:
        ``(..., C_est, C_ref)``; entry ``[..., i, j]`` scores estimate ``i`` against reference ``j``.
    """
    _check_same_time(estimates, references)
    return _si_snr(estimates.unsqueeze(-2), references.unsqueeze(-3), zero_mean, _eps(eps, estimates.dtype))


def pairwise_snr(estimates: torch.Tensor, references: torch.Tensor, eps: Optional[float] = None) -> torch.Tensor:
    """Plain SNR of every estimate against every reference: ``(..., C_est, C_ref)``."""
    _check_same_time(estimates, references)
    return _snr(estimates.unsqueeze(-2), references.unsqueeze(-3), _eps(eps, estimates.dtype))


HIGH_BAND_TAPS = 63  # the high-pass FIR's length: a ~0.1 x Nyquist transition band (Hamming)
HIGH_BAND_FROM = 0.5  # evaluation's high band: above half the Nyquist frequency (4 kHz at 16 kHz)


@functools.lru_cache(maxsize=None)
def _high_pass_taps(cutoff: float, device: torch.device) -> torch.Tensor:
    """(Cached: made once per device, so a captured CUDA-graph step copies nothing from the host.)
    A linear-phase FIR high-pass, ``(1, 1, HIGH_BAND_TAPS)`` float32: a unit impulse minus
    a Hamming-windowed sinc low-pass at ``cutoff`` (a fraction of the Nyquist frequency)."""
    n = torch.arange(HIGH_BAND_TAPS, dtype=torch.float64) - (HIGH_BAND_TAPS - 1) / 2
    low = cutoff * torch.sinc(cutoff * n) * torch.hamming_window(HIGH_BAND_TAPS, periodic=False, dtype=torch.float64)
    low = low / low.sum()  # exactly 0 dB at DC, so the high-pass removes DC completely
    taps = -low
    taps[(HIGH_BAND_TAPS - 1) // 2] += 1.0
    return taps.to(device=device, dtype=torch.float32).view(1, 1, -1)


def high_band(signals: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``signals`` ``(..., time)`` high-passed above ``cutoff`` x Nyquist (same shape, float32,
    zero-phase: the FIR's delay is removed by centring it)."""
    flat = signals.float().reshape(-1, 1, signals.shape[-1])
    taps = _high_pass_taps(cutoff, signals.device)
    pad = (HIGH_BAND_TAPS - 1) // 2
    return torch.nn.functional.conv1d(flat, taps, padding=pad).reshape(signals.shape)


def high_band_si_snr(estimates: torch.Tensor, references: torch.Tensor, cutoff: float = 0.5,
                     eps: float = EPS) -> torch.Tensor:
    """SI-SNR (dB) of the high band (above ``cutoff`` x Nyquist) of each estimate against its
    reference, ``(batch, C)``; both ``(batch, C, time)``, already paired.

    Why: SI-SNR weights frequencies by their energy, and speech above ~4 kHz holds a few
    percent of it, so a separator trained on SI-SNR alone can drop the top band of its output
    (a muffled voice) at almost no cost: TDANet's 33-filter learned decoder ended with almost
    no response above 6 kHz. Scoring the high band on its own makes it count.
    """
    return si_snr(high_band(estimates, cutoff), high_band(references, cutoff), zero_mean=True, eps=eps)


# --------------------------------------------------------------------------------------------
# Permutations
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _permutation_table(c: int, device: torch.device) -> torch.Tensor:
    """All permutations of ``range(c)`` ``(c!, c)`` on ``device``. Cached: a host-to-device copy
    at every call would also stop a training step from being captured as a CUDA graph."""
    return torch.tensor(list(itertools.permutations(range(c))), dtype=torch.long, device=device)


def best_permutation(scores: torch.Tensor, maximize: bool = True) -> torch.Tensor:
    """The one-to-one pairing of estimates and references with the best total score.

    Args:
        scores: ``(..., C, C)``, ``scores[..., i, j]`` pairs estimate ``i`` with reference ``j``
            (as :func:`pairwise_si_snr` returns it). It is not differentiated through.
        maximize: ``True`` for scores (dB), ``False`` for losses.

    Returns:
        ``perm``: ``(..., C)`` int64 on the input's device; ``perm[..., j]`` is the estimate
        paired with reference ``j``. Ties go to the permutation that comes first in
        ``itertools.permutations`` order, as in mir_eval.
    """
    scores = scores.detach()
    c = scores.shape[-1]
    if scores.shape[-2] != c:
        raise ValueError(f"need as many estimates as references, got a {tuple(scores.shape[-2:])} score matrix")
    if not maximize:
        scores = -scores
    if c <= EXHAUSTIVE_MAX_SOURCES:
        perms = _permutation_table(c, scores.device)
        # totals[..., p] = sum_j scores[..., perms[p, j], j]
        totals = scores[..., perms, torch.arange(c, device=scores.device)].sum(dim=-1)
        return perms[totals.argmax(dim=-1)]
    from scipy.optimize import linear_sum_assignment

    flat = scores.reshape(-1, c, c).cpu().double().numpy()
    out = np.empty((flat.shape[0], c), dtype=np.int64)
    for n, matrix in enumerate(flat):
        if not np.all(np.isfinite(matrix)):
            raise ValueError("cannot pick a permutation from scores that contain NaN or inf")
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        out[n, cols] = rows
    return torch.from_numpy(out).reshape(scores.shape[:-1]).to(scores.device)


def permute(estimates: ArrayLike, perm: ArrayLike):
    """Reorder estimates into reference order.

    Args:
        estimates: ``(..., C, time)``.
        perm: ``(..., C)`` as returned by :func:`best_permutation`.

    Returns:
        ``(..., C, time)`` with ``out[..., j, :] = estimates[..., perm[..., j], :]``.
    """
    if isinstance(estimates, torch.Tensor):
        index = torch.as_tensor(perm, device=estimates.device, dtype=torch.long)
        index = index.unsqueeze(-1).expand(*index.shape, estimates.shape[-1])
        return estimates.gather(-2, index)
    index = np.asarray(perm, dtype=np.int64)[..., None]
    return np.take_along_axis(np.asarray(estimates), index, axis=-2)


def _resolve_permutation(pairwise: torch.Tensor, permutation) -> torch.Tensor:
    c = pairwise.shape[-1]
    if isinstance(permutation, str):
        if permutation != "best":
            raise ValueError(f"permutation must be 'best', None or an index array, got {permutation!r}")
        return best_permutation(pairwise, maximize=True)
    if permutation is None:
        return torch.arange(c, device=pairwise.device).expand(pairwise.shape[:-1])
    perm = torch.as_tensor(np.asarray(permutation) if not isinstance(permutation, torch.Tensor) else permutation)
    return perm.to(device=pairwise.device, dtype=torch.long).expand(pairwise.shape[:-1])


def _mixture_like(mixture: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    # A mixture of shape (..., time) is the same input for every source: give it the C axis.
    if mixture.dim() == references.dim() - 1:
        mixture = mixture.unsqueeze(-2)
    return mixture.expand_as(references)


def pit_si_snr(estimates: ArrayLike, references: ArrayLike, permutation="best", zero_mean: bool = True, eps: Optional[float] = None):
    """SI-SNR per reference after pairing estimates with references.

    Args:
        estimates: ``(..., C, time)``.
        references: ``(..., C, time)``.
        permutation: ``"best"`` (highest mean SI-SNR), ``None`` (as given) or ``(..., C)`` indices.

    Returns:
        ``(scores, perm)``: ``scores`` ``(..., C)`` in reference order, ``perm`` ``(..., C)``
        (torch in, torch out; numpy in, numpy out).
    """
    est, np_in = _as_torch(estimates)
    ref, np_ref = _as_torch(references)
    if np_in or np_ref:
        est, ref = est.double(), ref.double()
    pairwise = pairwise_si_snr(est, ref, zero_mean, eps)
    perm = _resolve_permutation(pairwise, permutation)
    scores = pairwise.gather(-2, perm.unsqueeze(-2)).squeeze(-2)
    return _out(scores, np_in or np_ref), _out(perm, np_in or np_ref)


def si_snri(estimates: ArrayLike, references: ArrayLike, mixture: ArrayLike, permutation="best", zero_mean: bool = True, eps: Optional[float] = None):
    """SI-SNR improvement: ``SI-SNR(estimate, reference) - SI-SNR(mixture, reference)``.

    Args:
        estimates: ``(..., C, time)``.
        references: ``(..., C, time)``.
        mixture: ``(..., time)`` or ``(..., C, time)``.
        permutation: as :func:`pit_si_snr`.

    Returns:
        ``(improvement, perm)``, both ``(..., C)`` in reference order.
    """
    was_numpy = not isinstance(estimates, torch.Tensor)
    est, _ = _as_torch(estimates)
    ref, _ = _as_torch(references)
    mix, _ = _as_torch(mixture)
    if was_numpy:
        est, ref, mix = est.double(), ref.double(), mix.double()
    scores, perm = pit_si_snr(est, ref, permutation, zero_mean, eps)
    baseline = _si_snr(_mixture_like(mix.to(ref.dtype), ref), ref, zero_mean, _eps(eps, ref.dtype))
    return _out(scores - baseline, was_numpy), _out(perm, was_numpy)


# --------------------------------------------------------------------------------------------
# SDR (BSS Eval v3)
# --------------------------------------------------------------------------------------------


def _bss_eval_batch(est: np.ndarray, ref: np.ndarray, compute_permutation: bool):
    """fast_bss_eval on ``(N, C, time)`` float64; NaN rows where a signal is silent."""
    import fast_bss_eval

    n, c, _ = ref.shape
    sdr_out = np.full((n, c), np.nan)
    perm_out = np.tile(np.arange(c), (n, 1))
    silent = ~np.any(ref, axis=-1).all(axis=-1) | ~np.any(est, axis=-1).all(axis=-1)
    if silent.any():
        warnings.warn(
            f"{int(silent.sum())} of {n} utterance(s) have an all-zero reference or estimate; "
            "BSS Eval is undefined there (mir_eval raises), so their SDR is NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    keep = ~silent
    if keep.any():
        # The torch backend in float64, not the numpy one: with numpy >= 2 fast_bss_eval 0.1.4's
        # numpy path breaks when compute_permutation=False (np.linalg.solve no longer treats a
        # stacked right-hand side as vectors). Both agree with mir_eval to ~1e-13 dB in float64;
        # float32 would be off by up to 1e-3 dB. Note the argument order: reference first.
        def evaluate():
            return fast_bss_eval.bss_eval_sources(torch.from_numpy(ref[keep]), torch.from_numpy(est[keep]),
                                                  filter_length=BSS_EVAL_FILTER_LENGTH,
                                                  compute_permutation=compute_permutation)

        try:
            result = evaluate()
        except RuntimeError as err:
            if "Pivots" not in str(err):
                raise
            # torch's CPU build with oneMKL (2.13 here): once torch.set_num_threads has changed
            # the thread count in this process (profiling, a test's one-thread fixture), a
            # batched float64 solve on more than one thread fails ("Pivots given to lu_solve
            # must all be greater or equal to 1"). On one thread it is right: solve there.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                result = evaluate()
            finally:
                torch.set_num_threads(threads)
        sdr_out[keep] = result[0].numpy()
        if compute_permutation:
            # fast_bss_eval's perm[j] is the estimate that matches reference j, as in mir_eval.
            perm_out[keep] = result[3].numpy()
    return sdr_out, perm_out


def _as_float64_sources(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., sources, time), got {x.shape}")
    return x


def sdr(estimates: ArrayLike, references: ArrayLike, permutation="best") -> tuple[np.ndarray, np.ndarray]:
    """SDR in dB as BSS Eval v3's ``bss_eval_sources`` computes it.

    Equals ``mir_eval.separation.bss_eval_sources(references, estimates)`` (note mir_eval's
    reference-first order) to ~1e-12 dB; no mean is removed, as in mir_eval.

    Args:
        estimates: ``(..., C, time)``, numpy or torch (converted to float64 numpy).
        references: ``(..., C, time)``.
        permutation: ``"best"`` (mir_eval's choice: the permutation with the highest mean SIR),
            ``None`` (estimate ``j`` is for reference ``j``) or ``(..., C)`` indices in the
            module's convention.

    Returns:
        ``(sdr, perm)``: float64 ``(..., C)`` in reference order and int64 ``(..., C)``.
        Utterances with an all-zero reference or estimate score NaN (with a RuntimeWarning).
    """
    est = _as_float64_sources(estimates, "estimates")
    ref = _as_float64_sources(references, "references")
    if est.shape != ref.shape:
        raise ValueError(f"estimates {est.shape} and references {ref.shape} must have the same shape")
    lead, (c, t) = est.shape[:-2], est.shape[-2:]
    est, ref = est.reshape(-1, c, t), ref.reshape(-1, c, t)
    if isinstance(permutation, str):
        if permutation != "best":
            raise ValueError(f"permutation must be 'best', None or an index array, got {permutation!r}")
        values, perm = _bss_eval_batch(est, ref, compute_permutation=True)
    else:
        if permutation is None:
            perm = np.tile(np.arange(c), (est.shape[0], 1))
        else:
            perm_in = permutation.cpu().numpy() if isinstance(permutation, torch.Tensor) else permutation
            perm = np.broadcast_to(np.asarray(perm_in, dtype=np.int64), lead + (c,)).reshape(-1, c)
        values, _ = _bss_eval_batch(permute(est, perm), ref, compute_permutation=False)
    return values.reshape(lead + (c,)), perm.reshape(lead + (c,))


def sdri(estimates: ArrayLike, references: ArrayLike, mixture: ArrayLike, permutation="best") -> tuple[np.ndarray, np.ndarray]:
    """SDR improvement: ``SDR(estimate, reference) - SDR(mixture, reference)``, BSS Eval v3.

    Args:
        estimates: ``(..., C, time)``.
        references: ``(..., C, time)``.
        mixture: ``(..., time)`` or ``(..., C, time)``; the baseline pairs the mixture with
            every reference (``compute_permutation=False`` in mir_eval terms).
        permutation: as :func:`sdr`.

    Returns:
        ``(improvement, perm)``, ``(..., C)`` each, in reference order.
    """
    ref = _as_float64_sources(references, "references")
    mix = np.asarray(mixture.detach().cpu().numpy() if isinstance(mixture, torch.Tensor) else mixture, dtype=np.float64)
    if mix.ndim == ref.ndim - 1:
        mix = mix[..., None, :]
    mix = np.broadcast_to(mix, ref.shape)
    values, perm = sdr(estimates, ref, permutation)
    baseline, _ = sdr(mix, ref, permutation=None)
    return values - baseline, perm


# --------------------------------------------------------------------------------------------
# PESQ and STOI (optional)
# --------------------------------------------------------------------------------------------


def _require(module: str, what: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise CocktailError(
            f"{what} needs the '{module}' package, which is not installed; "
            "install it with: pip install 'cocktailparty[quality]'"
        ) from err


def _as_signal_batch(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _nearest_pesq_rate(rate: int) -> int:
    # Ties go up: resampling up loses nothing.
    return min(PESQ_RATES, key=lambda r: (abs(r - rate), -r))


def pesq_score(estimate: ArrayLike, reference: ArrayLike, sample_rate: int, mode: Optional[str] = None):
    """PESQ (ITU-T P.862) MOS-LQO with the ``pesq`` package.

    P.862 accepts only 8 and 16 kHz; other rates are resampled (soxr, via
    :func:`cocktailparty.core.audio.resample`) to the nearest of the two. ``mode="nb"``
    (narrow-band) runs at 8 or 16 kHz, ``mode="wb"`` (wide-band, P.862.2) needs 16 kHz, so it
    refuses audio sampled below 16 kHz rather than scoring an upsampled narrow band. The
    default is ``"wb"`` when the audio ends up at 16 kHz and ``"nb"`` at 8 kHz.

    pesq 0.0.4 raises on silent audio (and on too-short audio); such items score NaN with a
    RuntimeWarning that repeats the library's reason.

    Args:
        estimate: ``(..., time)``.
        reference: ``(..., time)``, same shape.
        sample_rate: of both signals, in Hz.
        mode: ``"nb"``, ``"wb"`` or ``None``.

    Returns:
        A float for 1-D input, else a float64 array ``(...)``.
    """
    pesq_lib = _require("pesq", "PESQ")
    if mode not in (None, "nb", "wb"):
        raise CocktailError(f"PESQ mode must be 'nb' (narrow-band) or 'wb' (wide-band), got {mode!r}")
    if mode == "wb" and sample_rate < 16000:
        raise CocktailError(
            f"wide-band PESQ needs audio sampled at 16 kHz or more, this is {sample_rate} Hz; use mode='nb'"
        )
    est, ref = _as_signal_batch(estimate), _as_signal_batch(reference)
    if est.shape != ref.shape:
        raise ValueError(f"estimate {est.shape} and reference {ref.shape} must have the same shape")
    rate = 16000 if mode == "wb" else _nearest_pesq_rate(sample_rate)
    if rate != sample_rate:
        from ..core.audio import resample

        est = resample(est.astype(np.float32), sample_rate, rate).astype(np.float64)
        ref = resample(ref.astype(np.float32), sample_rate, rate).astype(np.float64)
    mode = mode or ("wb" if rate == 16000 else "nb")
    lead = est.shape[:-1]
    est, ref = est.reshape(-1, est.shape[-1]), ref.reshape(-1, ref.shape[-1])
    out = np.full(est.shape[0], np.nan)
    for n in range(est.shape[0]):
        if not ref[n].any() or not est[n].any():
            reason = "an all-zero signal"
        else:
            try:
                out[n] = pesq_lib.pesq(rate, ref[n], est[n], mode)  # reference first
                continue
            except pesq_lib.PesqError as err:
                reason = f"{type(err).__name__}: {err}"
            except ValueError as err:  # pesq 0.0.4 fails this way on some near-silent input
                reason = str(err)
        warnings.warn(f"PESQ is undefined for item {n} ({reason}); scoring it NaN", RuntimeWarning, stacklevel=2)
    return float(out[0]) if not lead else out.reshape(lead)


def stoi_score(estimate: ArrayLike, reference: ArrayLike, sample_rate: int, extended: bool = False):
    """STOI (Taal et al. 2011) with ``pystoi``; ``extended=True`` gives ESTOI.

    pystoi resamples to its internal 10 kHz itself, so any rate works (8 and 16 kHz checked).

    Args:
        estimate: ``(..., time)``.
        reference: ``(..., time)``, same shape.

    Returns:
        A float for 1-D input, else a float64 array ``(...)``.
    """
    pystoi = _require("pystoi", "STOI")
    est, ref = _as_signal_batch(estimate), _as_signal_batch(reference)
    if est.shape != ref.shape:
        raise ValueError(f"estimate {est.shape} and reference {ref.shape} must have the same shape")
    lead = est.shape[:-1]
    est, ref = est.reshape(-1, est.shape[-1]), ref.reshape(-1, ref.shape[-1])
    out = np.array([pystoi.stoi(r, e, sample_rate, extended=extended) for e, r in zip(est, ref)], dtype=np.float64)
    return float(out[0]) if not lead else out.reshape(lead)


# --------------------------------------------------------------------------------------------
# One utterance, everything
# --------------------------------------------------------------------------------------------


def utterance_scores(
    estimates: ArrayLike,
    references: ArrayLike,
    mixture: ArrayLike,
    sample_rate: Optional[int] = None,
    compute_sdr: bool = True,
    compute_pesq: bool = False,
    compute_stoi: bool = False,
    pesq_mode: Optional[str] = None,
    compute_high_band: bool = False,
) -> dict:
    """All separation scores of one utterance, per source in reference order.

    SI-SNR(i) use the permutation with the best mean SI-SNR; SDR(i) use mir_eval's own choice
    (best mean SIR), as the papers' tables do; PESQ and STOI follow the SI-SNR pairing.

    Args:
        estimates: ``(C, time)``.
        references: ``(C, time)``.
        mixture: ``(time,)``.
        sample_rate: needed for PESQ and STOI.

    Returns:
        dict of float64 arrays ``(C,)``: ``si_snr``, ``si_snri``, ``sdr``, ``sdri``, ``pesq``,
        ``stoi``, ``high_band_si_snri`` (those asked for), and int64 ``(C,)`` ``perm_si_snr``
        and ``perm_sdr``. ``high_band_si_snri``: the SI-SNR improvement over the mixture of
        the band above half the Nyquist frequency (4 kHz at 16 kHz, :func:`high_band_si_snr`),
        negative when a model's output keeps less of the top band than the mixture has.
    """
    est = _as_float64_sources(estimates, "estimates")
    ref = _as_float64_sources(references, "references")
    mix = _as_signal_batch(mixture)
    if est.ndim != 2 or est.shape != ref.shape or mix.shape != ref.shape[-1:]:
        raise ValueError(
            f"expected estimates and references (C, time) and mixture (time,), got {est.shape}, {ref.shape}, {mix.shape}"
        )
    if (compute_pesq or compute_stoi) and not sample_rate:
        raise ValueError("PESQ and STOI need the sample rate")
    scores, perm = pit_si_snr(est, ref)
    out = {"si_snr": scores, "si_snri": si_snri(est, ref, mix, permutation=perm)[0], "perm_si_snr": perm}
    if compute_sdr:
        out["sdri"], out["perm_sdr"] = sdri(est, ref, mix)
        out["sdr"], _ = sdr(est, ref, permutation=out["perm_sdr"])
    paired = permute(est, perm)
    if compute_pesq:
        out["pesq"] = np.atleast_1d(pesq_score(paired, ref, sample_rate, pesq_mode))
    if compute_stoi:
        out["stoi"] = np.atleast_1d(stoi_score(paired, ref, sample_rate))
    if compute_high_band:
        # Each signal high-passed once; the mixture is scored against every reference.
        est_hb, ref_hb = (high_band(torch.from_numpy(np.ascontiguousarray(x)), HIGH_BAND_FROM) for x in (paired, ref))
        mix_hb = high_band(torch.from_numpy(np.ascontiguousarray(mix)), HIGH_BAND_FROM).expand_as(ref_hb)
        out["high_band_si_snri"] = (si_snr(est_hb, ref_hb) - si_snr(mix_hb, ref_hb)).double().numpy()
    return out


# --------------------------------------------------------------------------------------------
# Speaker verification
# --------------------------------------------------------------------------------------------


def _scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64).ravel()
    y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if not set(np.unique(y).tolist()) <= {0, 1, False, True}:
        raise ValueError("labels must be 1 (target trial, same speaker) or 0 (non-target trial)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("verification metrics need both target (1) and non-target (0) trials")
    if not np.all(np.isfinite(s)):
        raise ValueError("verification scores contain NaN or inf")
    return s, y


def _roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    s, y = _scores_labels(scores, labels)
    # Keep every threshold: the EER interpolation must see the curve's real corners.
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr, thresholds


def eer(scores: ArrayLike, labels: ArrayLike) -> float:
    """Equal error rate: where the miss rate (1 - TPR) meets the false-alarm rate (FPR).

    Trials are accepted when ``score >= threshold`` (higher = more likely the same speaker).
    The ROC from sklearn is a polyline; the EER is read where it crosses ``miss = false alarm``,
    interpolating linearly between the two ROC points on either side of the crossing.

    Args:
        scores: ``(N,)`` trial scores.
        labels: ``(N,)`` 1 for target (same speaker), 0 for non-target.

    Returns:
        EER as a fraction in [0, 1].
    """
    fpr, tpr, _ = _roc(scores, labels)
    gap = (1.0 - tpr) - fpr  # decreases from 1 (reject all) to -1 (accept all)
    i = int(np.nonzero(gap <= 0)[0][0])
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (sklearn ``roc_auc_score``); ``(N,)`` scores and 0/1 labels."""
    from sklearn.metrics import roc_auc_score

    s, y = _scores_labels(scores, labels)
    return float(roc_auc_score(y, s))


def min_dcf(scores: ArrayLike, labels: ArrayLike, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Minimum normalised detection cost over all thresholds (NIST SRE definition).

    ``DCF(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)``, divided by
    ``C_default = min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better of
    the two trivial systems (accept all, reject all); so 1.0 means "no better than not
    listening". Thresholds include accept-all and reject-all.

    Args:
        scores: ``(N,)``; labels: ``(N,)`` 1 target, 0 non-target.

    Returns:
        minDCF, a float in [0, 1].
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie strictly between 0 and 1, got {p_target}")
    fpr, tpr, _ = _roc(scores, labels)
    cost = c_miss * (1.0 - tpr) * p_target + c_fa * fpr * (1.0 - p_target)
    c_default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(cost.min() / c_default)


def plot_roc(
    scores: Union[ArrayLike, Sequence[ArrayLike]],
    labels: Union[ArrayLike, Sequence[ArrayLike]],
    path: Union[str, Path],
    label: Union[str, Sequence[str], None] = None,
    title: str = "ROC",
) -> Path:
    """Write a ROC plot (false-alarm rate vs. hit rate) as a PNG.

    Args:
        scores: ``(N,)`` for one curve, or a list of ``(N_k,)`` arrays for several.
        labels: the matching ``(N,)`` 0/1 labels, or a list of them.
        path: the PNG to write (parent folders are created).
        label: legend name, or a list of names (one per curve); EER and AUC are appended.
        title: the plot's title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot's import
    import matplotlib.pyplot as plt

    several = isinstance(scores, (list, tuple)) and len(scores) > 0 and np.ndim(scores[0]) == 1
    curves = list(zip(scores, labels)) if several else [(scores, labels)]
    names = list(label) if isinstance(label, (list, tuple)) else [label] * len(curves)
    if len(names) != len(curves):
        raise ValueError(f"{len(curves)} curves but {len(names)} labels")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        for (s, y), name in zip(curves, names):
            fpr, tpr, _ = _roc(s, y)
            stats = f"EER {eer(s, y):.3f}, AUC {auc(s, y):.3f}"
            ax.plot(fpr, tpr, label=f"{name} ({stats})" if name else stats)
        ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize="small")
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
