"""Scores for separated speech and for speaker verification, defined as the papers report them.

Separation (all take *estimates first, references second*, the torchmetrics order; mir_eval and
fast_bss_eval take references first, so :mod:`.bss_eval` swaps them when it calls fast_bss_eval):

- :func:`.signal_ratios.si_snr` / :func:`.permutations.si_snri`: scale-invariant SNR (= SI-SDR, Le Roux et al. 2019) with
  the zero-mean step of Tune-In's and TDANet's recipes, and its improvement over the mixture.
- :func:`.bss_eval.sdr` / :func:`.bss_eval.sdri`: SDR of BSS Eval v3 (mir_eval's ``bss_eval_sources``: 512-tap
  distortion filter, permutation chosen by the best mean SIR), computed with fast_bss_eval in
  float64, and its improvement over the mixture.
- :func:`.perceptual.pesq_score` / :func:`.perceptual.stoi_score`: optional perceptual scores (``pip install
  'cocktailparty[quality]'``).
- :func:`.utterance.utterance_scores`: everything for one separated utterance, for the evaluation command.

Band: :func:`.band.high_band_si_snr`, SI-SNR above half the Nyquist frequency.

Verification (:mod:`.detection`): :func:`~.detection.eer`, :func:`~.detection.auc`,
:func:`~.detection.min_dcf`, :func:`~.detection.plot_roc`.

Permutation convention, shared with :mod:`cocktailparty.train.losses`: ``perm[..., j]`` is the index
of the *estimate* that pairs with *reference* ``j`` (mir_eval's ``popt``), so
``permutations.permute(estimates, perm)[..., j, :]`` is the estimate of reference ``j``, and every
per-source score is returned in reference order.

Silence: SI-SNR stays finite on silent signals (``eps`` in numerator and denominator).
BSS Eval and PESQ are undefined on an all-zero reference or estimate (the libraries raise);
here such an utterance scores NaN and a ``RuntimeWarning`` names the reason, so that one bad
item does not stop an evaluation run. Aggregate with ``np.nanmean`` and report the NaN count.
"""

# The public scores, importable from here as well (``from cocktailparty.eval.metrics import
# si_snri``): a user scoring their own outputs should not need to know which file holds which.
from .band import high_band_si_snr  # noqa: E402
from .bss_eval import sdr, sdri  # noqa: E402
from .detection import auc, eer, min_dcf  # noqa: E402
from .perceptual import pesq_score, stoi_score  # noqa: E402
from .permutations import permute, pit_si_snr, si_snri  # noqa: E402
from .signal_ratios import si_snr, snr  # noqa: E402

__all__ = ["auc", "eer", "high_band_si_snr", "min_dcf", "permute", "pesq_score", "pit_si_snr", "sdr", "sdri",
           "si_snr", "si_snri", "snr", "stoi_score"]
