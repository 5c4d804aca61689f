"""SDR of BSS Eval v3 (mir_eval's ``bss_eval_sources``: 512-tap distortion filter, the
permutation of the best mean SIR), computed with fast_bss_eval in float64, and its
improvement over the mixture. fast_bss_eval takes references first; these functions take
estimates first, like the rest of the package, and swap them."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .permutations import permute
from .signal_ratios import ArrayLike


#: BSS Eval v3's distortion filter length (mir_eval hard-codes 512 taps).
BSS_EVAL_FILTER_LENGTH = 512


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
        # torch's CPU build with oneMKL (2.13 here): once torch.set_num_threads has changed the
        # thread count in this process (profiling, a test's one-thread fixture), a batched
        # float64 solve on more than one thread goes wrong: sometimes it raises ("Pivots given
        # to lu_solve must all be greater or equal to 1"), sometimes MKL prints DLASWP errors
        # and the process hangs for good (a CI run was killed at its time limit). On one thread
        # it is right, and these solves are small: always solve there.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            result = fast_bss_eval.bss_eval_sources(torch.from_numpy(ref[keep]), torch.from_numpy(est[keep]),
                                                    filter_length=BSS_EVAL_FILTER_LENGTH,
                                                    compute_permutation=compute_permutation)
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
