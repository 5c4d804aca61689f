"""Every score of one separated utterance, for the evaluation command."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .band import HIGH_BAND_FROM, high_band
from .bss_eval import _as_float64_sources, sdr, sdri
from .perceptual import _as_signal_batch, pesq_score, stoi_score
from .permutations import permute, pit_si_snr, si_snri
from .signal_ratios import ArrayLike, si_snr


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
