"""Speaker-verification scores from trial scores and 0/1 labels: equal error rate, ROC AUC,
minimum detection cost, and the ROC plot."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from .signal_ratios import ArrayLike


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
