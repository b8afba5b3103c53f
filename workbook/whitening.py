"""Patch whitening for training (Exercise 5.1 bonus): SGD on the filters in ZCA-whitened
coordinates of the f*f*3 patch vectors, kept exactly foldable into the spec's network.

Training on whitened patches ``mx @ W`` with filters Fs' is the same network as the plain one
with Fs = W Fs' (W is symmetric), so the parameters are kept in the plain form throughout and only
the filter update changes: SGD on Fs' is  Fs <- decay Fs - eta W W grad_Fs  in plain coordinates.
``train`` therefore (1) computes W per filter size from training patches, (2) starts from
Fs = W Fs_init (He-initialised in whitened coordinates), and (3) after every plain update replaces
the filter step by W W times it. Evaluation, TTA, checkpoints and predict need nothing: the
network is always the plain one. Cost: one eigendecomposition of a (d, d) matrix per filter size
and two (d, d) @ (d, nf) products per update.
"""
from __future__ import annotations

import numpy as np

from workbook.layout import mx_batch_first


def patch_whitening(X: np.ndarray, fs, reg: float, n_sample: int = 10000, seed: int = 123) -> dict:
    """ZCA matrices W (d, d) per filter size f, from ``n_sample`` training images.

    X: (3072, n) normalised images (per-pixel zero mean, so patches are not centred again);
    fs: filter sizes; reg: eigenvalue floor as a fraction of the largest eigenvalue (0.01 in the
    recipe). W = U diag(1/sqrt(s + reg*s_max)) U^T, scaled so that whitened coordinates have unit
    mean variance. Returns {f: W} in X's dtype (float32 for float32 data).
    """
    if not np.isfinite(reg) or reg <= 0:
        raise ValueError(f"whitening regulariser must be a positive number (e.g. 0.01); got {reg}")
    rng = np.random.default_rng(seed)
    n = X.shape[1]
    sub = X[:, np.sort(rng.choice(n, min(n_sample, n), replace=False))]
    out = {}
    for f in fs:
        P = mx_batch_first(sub, f, dtype=np.float64).reshape(-1, f * f * 3)
        s, U = np.linalg.eigh(P.T @ P / P.shape[0])
        if not s.max() > 0:
            raise ValueError(f"the training patches (f={f}) have no variance: the images are "
                             "constant, so there is nothing to whiten; train without whiten")
        W = (U * (1.0 / np.sqrt(s + reg * s.max()))) @ U.T
        W *= np.sqrt(1.0 / np.mean(np.sum((P @ W) ** 2, axis=1) / P.shape[1]))
        out[f] = W.astype(X.dtype if np.issubdtype(X.dtype, np.floating) else np.float32)
    return out


def _filters(params: dict, Ws: dict):
    """(key, f, (d, nf) view) of every filter array with a whitening matrix."""
    for k, v in params.items():
        if k.startswith("Fs") and v.shape[0] in Ws:
            yield k, v.shape[0], v.reshape(-1, v.shape[3])


def start(params: dict, Ws: dict) -> None:
    """In place: Fs <- W Fs, i.e. the He initialisation read as whitened-coordinate filters."""
    for k, f, F in _filters(params, Ws):
        F[...] = Ws[f].astype(F.dtype, copy=False) @ F


def precondition(params: dict, before: dict, Ws: dict, decay: float) -> None:
    """In place, after a plain SGD update of the filters from ``before`` (copies of them):
    Fs <- decay Fs_before + W W (Fs - decay Fs_before), i.e. the update done in whitened
    coordinates. ``decay`` = 1 - 2 eta lam, as in train_step."""
    for k, f, F in _filters(params, Ws):
        old = before[k].reshape(F.shape)
        W = Ws[f].astype(F.dtype, copy=False)
        F[...] = decay * old + W @ (W @ (F - decay * old))
