"""Label smoothing as a loss on scores (written independently of the network) and calibration:
reliability diagrams and the expected calibration error (ECE)."""
from __future__ import annotations


import numpy as np

from helpers import one_hot, smooth_targets


def _check_eps(eps) -> float:
    """eps as a float in [0, 1), else a ValueError naming it."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)) or not 0.0 <= eps < 1.0:
        raise ValueError(f"label smoothing eps must be a number in [0, 1); got {eps!r}")
    return float(eps)


def _check_scores_labels(S: np.ndarray, y: np.ndarray, what: str = "S") -> tuple:
    S = np.asarray(S)
    if S.ndim != 2 or S.shape[0] < 2:
        raise ValueError(f"{what} must have shape (K, n) with K >= 2 classes; got {S.shape}")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != S.shape[1]:
        raise ValueError(f"y must be (n,) int labels with n = {S.shape[1]} (the columns of "
                         f"{what}); got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= S.shape[0]):
        raise ValueError(f"y must hold int labels in [0, {S.shape[0]}); got dtype {y.dtype}, "
                         f"range [{y.min()}, {y.max()}]")
    return S, y.astype(np.int64)


def ls_targets(y: np.ndarray, K: int, eps: float, dtype=np.float64) -> np.ndarray:
    """Label-smoothed targets in the spec layout: (K, n) ``dtype``, 1-eps on the true class and
    eps/(K-1) on every other class (eq. 23). y: (n,) int labels. eps=0 gives one-hot."""
    y = np.asarray(y).astype(np.int64).ravel()
    if K < 2 or (y.size and (y.min() < 0 or y.max() >= K)):
        raise ValueError(f"need K >= 2 and labels in [0, K); got K={K}")
    return smooth_targets(one_hot(y, K, dtype), eps)


def ls_cross_entropy(S: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
    """The spec's label-smoothed loss on class scores, written out independently of the network:
    mean over the n columns of  -sum_k y_smooth[k] * log softmax(S)[k].

    S: (K, n) float scores (logits);  y: (n,) int labels;  eps in [0, 1).
    Returns a Python float (computed in float64). eps=0 is the plain cross-entropy.
    """
    S, y = _check_scores_labels(S, y)
    eps = _check_eps(eps)
    Z = S.astype(np.float64) - S.max(axis=0, keepdims=True)
    logP = Z - np.log(np.exp(Z).sum(axis=0, keepdims=True))
    return float(-np.sum(ls_targets(y, S.shape[0], eps) * logP) / S.shape[1])


def ls_grad_scores(S: np.ndarray, y: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Gradient of ls_cross_entropy w.r.t. the scores: -(y_smooth - p) / n  (eq. 24).

    S: (K, n) float;  y: (n,) int  ->  (K, n) float64.
    """
    S, y = _check_scores_labels(S, y)
    Z = S.astype(np.float64) - S.max(axis=0, keepdims=True)
    E = np.exp(Z)
    P = E / E.sum(axis=0, keepdims=True)
    return -(ls_targets(y, S.shape[0], eps) - P) / S.shape[1]


def ls_optimal_margin(eps: float, K: int = 10) -> float:
    """The score gap s_true - s_other at which the label-smoothed loss of one example is
    minimal (p = y_smooth): log((1-eps)(K-1)/eps); infinite for eps=0."""
    eps = _check_eps(eps)
    return float("inf") if eps == 0 else float(np.log((1.0 - eps) * (K - 1) / eps))


def _check_probs(P: np.ndarray, y: np.ndarray) -> tuple:
    P, y = _check_scores_labels(P, y, "P")
    if P.size and (P.min() < 0 or not np.allclose(P.sum(axis=0), 1.0, atol=1e-3)):
        raise ValueError("P must hold class probabilities, (K, n) with columns summing to 1; "
                         "if you have scores S, pass softmax(S) (e.g. predict(params, X))")
    return P, y


def reliability(P: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Confidence-binned statistics for a reliability diagram.

    P: (K, n) float class probabilities (columns sum to 1);  y: (n,) int labels.
    The confidence of a prediction is max_k P[k, i]; it goes to bin b when
    edges[b] < conf <= edges[b+1] (bin 0 also takes conf = 0), edges = linspace(0, 1, n_bins+1).
    Returns edges (n_bins+1,) float64, count (n_bins,) int64, frac (n_bins,) float64
    (= count / n), conf (n_bins,) float64 mean confidence and acc (n_bins,) float64 accuracy
    per bin (NaN for empty bins), and the per-sample confidence (n,) and correct (n,) bool.
    """
    P, y = _check_probs(P, y)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    n_bins = int(n_bins)
    conf = P.max(axis=0).astype(np.float64)
    correct = P.argmax(axis=0) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mconf = np.bincount(b, weights=conf, minlength=n_bins) / count
        macc = np.bincount(b, weights=correct.astype(np.float64), minlength=n_bins) / count
    return {"edges": edges, "count": count, "frac": count / max(1, conf.size),
            "conf": mconf, "acc": macc, "confidence": conf, "correct": correct}


def ece(P: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of (count_b / n) * |acc_b - conf_b|, with the
    bins of ``reliability``. P: (K, n) float probabilities (columns sum to 1), y: (n,) int
    labels -> Python float in [0, 1]."""
    r = reliability(P, y, n_bins)
    used = r["count"] > 0
    return float(np.sum(r["frac"][used] * np.abs(r["acc"][used] - r["conf"][used])))
