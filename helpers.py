"""The assignment's own code (KTH DD2424 Assignment 3), in the order of the spec:

    1. convolution  the patchify convolution (stride f): loops, MX, matmul, einsum, the fast path
    2. network      He init, forward pass, loss and cost (with label smoothing), gradients
    3. training     cyclic / doubling learning rates, TrainConfig, History, train, evaluate,
                    predict, augmentation on MX, checkpoints

Everything around it (data sources, the synthetic stand-in, the torch oracle, experiments,
widgets, plots) lives in the package ``workbook``.

Layout at every public boundary (the assignment's names and shapes):

    X        (3072, n)          one image per column, CIFAR-10's order (R, G, B planes)
    X_ims    (32, 32, 3, n)     X_ims[row, col, channel, i]
    Fs       (f, f, 3, nf)      filters;  Fs_flat = Fs.reshape((f*f*3, nf), order='C')
    MX       (n_p, f*f*3, n)    patch p of image i, flattened in order='C';  n_p = (32/f)**2
    W1       (nh, n_p*nf),  b1 (nh, 1),  W2 (K, nh),  b2 (K, 1),  b0 (nf, 1) the conv bias
    Y        (K, n)             one-hot (or smoothed) targets;  y (n,) int labels

Inside, training keeps MX batch-first, (n, n_p, f*f*3): a mini-batch is one contiguous gather
and every layer is one BLAS GEMM. The tests prove the fast path equals the spec-layout code.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbook.checks import (_check_eps, _check_f, _check_finite, _check_Fs, _check_ims,
                             _check_mx_filters, _check_X, _check_Y, _positive_int, check_config,
                             check_labels, check_like)
from workbook import fastsgd, whitening
from workbook.runtime import blas_threads, prefetch_batches, progress_bar, thread_tuner


# =====================================================================================
# 1. convolution
# =====================================================================================


def to_images(X: np.ndarray) -> np.ndarray:
    """X (3072, n) -> X_ims (32, 32, 3, n), the spec's
    ``np.transpose(X.reshape((32, 32, 3, n), order='F'), (1, 0, 2, 3))`` (a view)."""
    X = _check_X(X)
    return np.transpose(X.reshape((32, 32, 3, X.shape[1]), order="F"), (1, 0, 2, 3))


def to_columns(X_ims: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_images`: X_ims (32, 32, 3, n) -> X (3072, n)."""
    X_ims = _check_ims(X_ims)
    return np.transpose(X_ims, (1, 0, 2, 3)).reshape((3072, X_ims.shape[3]), order="F")


def flatten_filters(Fs: np.ndarray) -> np.ndarray:
    """Fs (f, f, 3, nf) -> Fs_flat (f*f*3, nf) = ``Fs.reshape((f*f*3, nf), order='C')``."""
    Fs = _check_Fs(Fs)
    return Fs.reshape((Fs.shape[0] * Fs.shape[1] * 3, Fs.shape[3]), order="C")


def conv_loops(X_ims: np.ndarray, Fs: np.ndarray) -> np.ndarray:
    """The definition, one dot product per image, patch and filter (slow; the reference).

    X_ims (32, 32, 3, n), Fs (f, f, 3, nf) -> conv_outputs (32/f, 32/f, nf, n) with
    conv_outputs[r, c, k, i] = sum(X_ims[r*f:(r+1)*f, c*f:(c+1)*f, :, i] * Fs[:, :, :, k]).
    """
    X_ims, Fs = _check_ims(X_ims), _check_Fs(Fs)
    f, nf, n = Fs.shape[0], Fs.shape[3], X_ims.shape[3]
    g = 32 // f
    out = np.zeros((g, g, nf, n), dtype=np.result_type(X_ims.dtype, Fs.dtype))
    for i in range(n):
        for r in range(g):
            for c in range(g):
                patch = X_ims[r * f:(r + 1) * f, c * f:(c + 1) * f, :, i]
                for k in range(nf):
                    out[r, c, k, i] = np.sum(np.multiply(patch, Fs[:, :, :, k]))
    return out


def build_mx_naive(X_ims: np.ndarray, f: int) -> np.ndarray:
    """The spec's loop construction of MX: X_ims (32, 32, 3, n) -> MX (n_p, f*f*3, n).
    Patches are visited with the column index changing first."""
    X_ims = _check_ims(X_ims)
    n_p = _check_f(f)
    g, n = 32 // f, X_ims.shape[3]
    MX = np.zeros((n_p, f * f * 3, n), dtype=X_ims.dtype)
    for i in range(n):
        p = 0
        for r in range(g):
            for c in range(g):
                X_patch = X_ims[r * f:(r + 1) * f, c * f:(c + 1) * f, :, i]
                MX[p, :, i] = X_patch.reshape((1, f * f * 3), order="C")
                p += 1
    return MX


def build_mx(X_ims: np.ndarray, f: int) -> np.ndarray:
    """MX without a Python loop: X_ims (32, 32, 3, n) -> MX (n_p, f*f*3, n), C-contiguous.
    MX[p, :, i] is patch p = r*(32/f) + c of image i, flattened (dy, dx, channel)."""
    X_ims = _check_ims(X_ims)
    n_p = _check_f(f)
    g, n = 32 // f, X_ims.shape[3]
    v = X_ims.reshape(g, f, g, f, 3, n).transpose(0, 2, 1, 3, 4, 5)   # (r, c, dy, dx, ch, i)
    return np.ascontiguousarray(v).reshape(n_p, f * f * 3, n)


def conv_matmul(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """One matrix product per image (the spec's loop): MX (n_p, f*f*3, n), Fs_flat (f*f*3, nf)
    -> conv_outputs_mat (n_p, nf, n)."""
    MX, Fs_flat = _check_mx_filters(MX, Fs_flat)
    out = np.empty((MX.shape[0], Fs_flat.shape[1], MX.shape[2]), np.result_type(MX, Fs_flat))
    for i in range(MX.shape[2]):
        out[:, :, i] = np.matmul(MX[:, :, i], Fs_flat)
    return out


def conv_einsum(MX: np.ndarray, Fs_flat: np.ndarray, optimize=True) -> np.ndarray:
    """``np.einsum('ijn,jl->iln', MX, Fs_flat)``: MX (n_p, f*f*3, n) -> (n_p, nf, n)."""
    MX, Fs_flat = _check_mx_filters(MX, Fs_flat)
    return np.einsum("ijn,jl->iln", MX, Fs_flat, optimize=optimize)


def conv_fast(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """The training path: one GEMM (n*n_p, d) @ (d, nf) on batch-first MX.
    MX (n_p, f*f*3, n) -> conv_outputs_mat (n_p, nf, n) (a transposed view)."""
    MX, Fs_flat = _check_mx_filters(MX, Fs_flat)
    n_p, d, n = MX.shape
    return (as_batch_first(MX).reshape(n * n_p, d) @ Fs_flat).reshape(n, n_p, -1).transpose(1, 2, 0)


# ---- the fast layout: batch-first MX, built straight from X ----

def mx_batch_first(X: np.ndarray, f: int, dtype=np.float32, chunk: int = 1024,
                   workers: int | None = None) -> np.ndarray:
    """X (3072, n) -> MXb (n, n_p, f*f*3) C-contiguous ``dtype``, ``MXb[i] == build_mx(...)[:, :, i]``;
    ``MXb.transpose(1, 2, 0)`` is the spec MX as a view. Built in chunks on up to 4 threads."""
    X = _check_X(X)
    n_p = _check_f(f)
    g, n, d = 32 // f, X.shape[1], f * f * 3
    out = np.empty((n, n_p, d), dtype=dtype)

    def job(s):
        xb = X[:, s:s + chunk].T                      # (b, 3072): channel planes, row-major
        b = xb.shape[0]
        v = xb.reshape(b, 3, g, f, g, f).transpose(0, 2, 4, 3, 5, 1)   # (b, r, c, dy, dx, ch)
        np.copyto(out[s:s + b].reshape(b, g, g, f, f, 3), v, casting="unsafe")

    starts = range(0, n, chunk)
    workers = min(workers or os.cpu_count() or 1, 4, len(starts))
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(job, starts))
    else:
        for s in starts:
            job(s)
    return out


def as_batch_first(MX: np.ndarray) -> np.ndarray:
    """Spec MX (n_p, d, n) -> batch-first (n, n_p, d), C-contiguous (free for a view of one)."""
    MX = np.asarray(MX)
    if MX.ndim != 3:
        raise ValueError(f"MX must have shape (n_p, f*f*3, n); got {MX.shape}")
    return np.ascontiguousarray(MX.transpose(2, 0, 1))


# =====================================================================================
# 2. network
# =====================================================================================
#   conv_outputs_mat = MX (x) Fs_flat + b0      (n_p, nf, n)
#   conv_flat = max(0, conv_outputs_mat.reshape((n_p*nf, n), order='C'))
#   X1 = max(0, W1 conv_flat + b1),  S = W2 X1 + b2,  P = softmax(S)
#   loss = -1/n sum_i y_smooth_i . log p_i,   cost = loss + lam (|Fs|^2 + |W1|^2 + |W2|^2)
# Multi-size filters (bonus): keys Fs_f{f}, b0_f{f} per branch, their conv_flat stacked in
# increasing f before W1. One branch uses the plain keys Fs and b0.

def one_hot(y, K: int = 10, dtype=np.float32) -> np.ndarray:
    """y (n,) int labels in 0..K-1 -> Y (K, n) one-hot, Y[y[i], i] = 1."""
    y = check_labels(y, K)
    Y = np.zeros((K, y.size), dtype=dtype)
    Y[y, np.arange(y.size)] = 1
    return Y


def _branches(params: dict) -> list:
    """[(f, Fs key, b0 key), ...] in the order their outputs are stacked before W1."""
    if "Fs" in params:
        return [(params["Fs"].shape[0], "Fs", "b0")]
    out = sorted((params[k].shape[0], k, "b0" + k[2:]) for k in params if k.startswith("Fs_f"))
    if not out:
        raise ValueError("params has no filters: expected key 'Fs' (or 'Fs_f4', 'Fs_f8', ...)")
    return out


def filter_sizes(params: dict) -> tuple:
    """The filter widths f of every branch, e.g. (4,) or (4, 8)."""
    return tuple(f for f, _, _ in _branches(params))


def check_params(params: dict) -> dict:
    """Validate keys and shapes; returns params. Raises ValueError naming the bad array."""
    for k in ("W1", "b1", "W2", "b2"):
        if k not in params:
            raise ValueError(f"params is missing {k!r}; expected keys Fs, b0, W1, b1, W2, b2")
    width = 0
    for f, kF, kb in _branches(params):
        Fs, n_p = params[kF], _check_f(f)
        if Fs.ndim != 4 or Fs.shape[:3] != (f, f, 3):
            raise ValueError(f"{kF} must have shape (f, f, 3, nf); got {Fs.shape}")
        if kb not in params or params[kb].shape != (Fs.shape[3], 1):
            raise ValueError(f"{kb} must have shape ({Fs.shape[3]}, 1) to match {kF} {Fs.shape}")
        width += n_p * Fs.shape[3]
    nh, K = params["W1"].shape[0], params["W2"].shape[0]
    for k, shape in (("W1", (nh, width)), ("b1", (nh, 1)), ("W2", (K, nh)), ("b2", (K, 1))):
        if params[k].shape != shape:
            raise ValueError(f"{k} must have shape {shape} for this architecture; got {params[k].shape}")
    return params


def init_params(f, nf, nh: int, K: int = 10, seed: int = 0, dtype=np.float32) -> dict:
    """He-initialised parameters in the spec layout (biases zero), std = sqrt(2 / fan_in).

    f, nf: ints, or equal-length tuples for multi-size filters (bonus: keys Fs_f{f}, b0_f{f}).
    Returns Fs (f, f, 3, nf), b0 (nf, 1), W1 (nh, n_p*nf), b1 (nh, 1), W2 (K, nh), b2 (K, 1).
    """
    rng = np.random.default_rng(seed)
    multi = isinstance(f, (tuple, list))
    fs = tuple(f) if multi else (f,)
    nfs = tuple(nf) if isinstance(nf, (tuple, list)) else (nf,) * len(fs)
    if len(nfs) != len(fs) or len(set(fs)) != len(fs):
        raise ValueError(f"need one nf per distinct filter size; got f={f}, nf={nf}")
    for fi, nfi in zip(fs, nfs):
        _check_f(fi), _positive_int(nfi, "nf")
    nh, K = _positive_int(nh, "nh"), _positive_int(K, "K")
    if K < 2:
        raise ValueError(f"K is the number of classes and must be >= 2; got {K}")
    p, width = {}, 0
    for fi, nfi in sorted(zip(fs, nfs)):
        kF, kb = ("Fs", "b0") if not multi else (f"Fs_f{fi}", f"b0_f{fi}")
        p[kF] = (rng.standard_normal((fi, fi, 3, nfi)) * np.sqrt(2.0 / (fi * fi * 3))).astype(dtype)
        p[kb] = np.zeros((nfi, 1), dtype)
        width += _check_f(fi) * nfi
    p["W1"] = (rng.standard_normal((nh, width)) * np.sqrt(2.0 / width)).astype(dtype)
    p["b1"] = np.zeros((nh, 1), dtype)
    p["W2"] = (rng.standard_normal((K, nh)) * np.sqrt(2.0 / nh)).astype(dtype)
    p["b2"] = np.zeros((K, 1), dtype)
    return p


def smooth_targets(Y: np.ndarray, eps: float) -> np.ndarray:
    """Label smoothing (eq. 23): one-hot Y (K, n) -> 1-eps on the true class, eps/(K-1) elsewhere."""
    if _check_eps(eps) == 0:
        return Y
    return Y * (1.0 - eps) + (1.0 - Y) * (eps / (Y.shape[0] - 1))


def forward(params: dict, MX) -> dict:
    """Forward pass in the spec layout. MX (n_p, f*f*3, n) (or {f: MX_f} for several sizes).

    Returns conv_outputs_mat (n_p, nf, n) before ReLU (one branch only), conv_flat
    (n_p*nf, n) after ReLU, X1 (nh, n), S (K, n), P (K, n).
    """
    check_params(params)
    mxs = _as_branch_list(params, MX)
    fw = _forward_core(params, mxs)
    out = {"conv_flat": fw["H"].T, "X1": fw["X1"].T, "S": fw["S"].T, "P": fw["P"].T}
    if len(mxs) == 1:
        f, kF, kb = _branches(params)[0]
        out["conv_outputs_mat"] = conv_fast(MX if not isinstance(MX, dict) else MX[f],
                                            flatten_filters(params[kF])) + params[kb][None]
    return out


def compute_loss(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0):
    """(loss, cost): mean cross-entropy against smoothed targets, and loss + lam * sum |W|^2.
    MX (n_p, f*f*3, n), Y (K, n) one-hot."""
    check_params(params)
    mxs = _as_branch_list(params, MX)
    Y = _check_Y(Y, mxs[0].shape[0], params["W2"].shape[0])
    fw = _forward_core(params, mxs)
    Ys = smooth_targets(Y.astype(fw["logP"].dtype), eps)
    loss = float(-np.sum(Ys.T * fw["logP"], dtype=np.float64) / Y.shape[1])
    return loss, loss + lam * _reg(params)


def grads_spec_layout(params: dict, MX: np.ndarray, Y: np.ndarray, lam: float = 0.0,
                      eps: float = 0.0) -> dict:
    """The backward pass written out in the spec layout (one filter size), for reading:

    G = (P - Y_smooth)/n;  grad W2 = G X1^T, grad b2 = G 1;  G1 = W2^T G * (X1 > 0);
    grad W1 = G1 conv_flat^T, grad b1 = G1 1;  G_batch = W1^T G1 * (conv_flat > 0);
    grad Fs_flat = einsum('ijn,jln->il', MXt, G_batch as (n_p, nf, n));  + 2 lam W.
    Returns params' keys and shapes, plus Fs_flat (f*f*3, nf) and G_batch (n_p*nf, n).
    """
    check_params(params)
    if "Fs" not in params:
        raise ValueError("grads_spec_layout handles one filter size; use compute_grads")
    MX = np.asarray(MX)
    n_p, d, n = MX.shape
    nf = params["Fs"].shape[3]
    fw = forward(params, MX)
    Y = _check_Y(Y, n, params["W2"].shape[0])
    G = (fw["P"] - smooth_targets(Y.astype(fw["P"].dtype), eps)) / n
    g = {"W2": G @ fw["X1"].T, "b2": G.sum(axis=1, keepdims=True)}
    G1 = (params["W2"].T @ G) * (fw["X1"] > 0)
    g["W1"] = G1 @ fw["conv_flat"].T
    g["b1"] = G1.sum(axis=1, keepdims=True)
    G_batch = (params["W1"].T @ G1) * (fw["conv_flat"] > 0)
    g["Fs_flat"] = grad_Fs_einsum(MX, G_batch, nf)
    g["b0"] = G_batch.reshape((n_p, nf, n), order="C").sum(axis=(0, 2)).reshape(nf, 1)
    if lam:
        g["Fs_flat"] = g["Fs_flat"] + 2 * lam * flatten_filters(params["Fs"])
        g["W1"] = g["W1"] + 2 * lam * params["W1"]
        g["W2"] = g["W2"] + 2 * lam * params["W2"]
    g["Fs"] = g["Fs_flat"].reshape(params["Fs"].shape, order="C")
    g["G_batch"] = G_batch
    return g


def grad_Fs_einsum(MX: np.ndarray, G_batch: np.ndarray, nf: int) -> np.ndarray:
    """The spec's filter gradient: MX (n_p, f*f*3, n), G_batch (n_p*nf, n) ->
    (f*f*3, nf) = einsum('ijn,jln->il', MXt, GG), GG = G_batch.reshape((n_p, nf, n))."""
    n_p, d, n = MX.shape
    GG = G_batch.reshape((n_p, nf, n), order="C")
    return np.einsum("ijn,jln->il", np.transpose(MX, (1, 0, 2)), GG, optimize=True)


def compute_grads(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0) -> dict:
    """Gradients of the cost with params' keys and shapes, computed on the fast path (one GEMM
    per layer; equal to grads_spec_layout, tested). MX (n_p, f*f*3, n), Y (K, n) one-hot."""
    check_params(params)
    mxs = _as_branch_list(params, MX)
    Y = _check_Y(Y, mxs[0].shape[0], params["W2"].shape[0])
    fw = _forward_core(params, mxs)
    T = np.ascontiguousarray(smooth_targets(Y.astype(fw["P"].dtype), eps).T)
    return _backward_core(params, mxs, fw, T, lam)


def _as_branch_list(params: dict, MX) -> list:
    """Spec MX (n_p, d, n) or {f: MX} -> list of batch-first arrays, one per branch."""
    br = _branches(params)
    if isinstance(MX, dict):
        if any(f not in MX for f, _, _ in br):
            raise ValueError(f"MX dict needs one MX per filter size {filter_sizes(params)}")
        mxs = [MX[f] for f, _, _ in br]
    elif len(br) == 1:
        mxs = [MX]
    else:
        raise ValueError(f"filter sizes {filter_sizes(params)}: pass MX as a dict {{f: MX_f}}")
    out = []
    for (f, kF, _), m in zip(br, mxs):
        m = np.asarray(m)
        if m.ndim != 3 or m.shape[:2] != (_check_f(f), f * f * 3):
            raise ValueError(f"MX for f={f} must have shape ({_check_f(f)}, {f * f * 3}, n); got {m.shape}")
        if m.dtype != params[kF].dtype:
            raise ValueError(f"MX is {m.dtype} but the parameters are {params[kF].dtype}; "
                             f"convert one of them (e.g. MX.astype(np.{params[kF].dtype}))")
        out.append(as_batch_first(m))
    return out


# ---- the batch-first core that forward, compute_grads and train share ----

def _targets(y: np.ndarray, K: int, eps: float, dtype) -> np.ndarray:
    """int labels (n,) -> smoothed targets (n, K)."""
    T = np.full((y.shape[0], K), eps / (K - 1) if eps else 0.0, dtype=dtype)
    T[np.arange(y.shape[0]), y] = 1.0 - eps
    return T


def _forward_core(params: dict, mxs: list, drop_mask=None, ws=None) -> dict:
    """mxs: (n, n_p, d) per branch -> H (n, sum n_p*nf) after ReLU, X1 (n, nh) after ReLU (and
    dropout), S, P, logP (n, K). ws: a dict of buffers reused across updates (train's), or None."""
    hs = []
    for (f, kF, kb), mx in zip(_branches(params), mxs):
        n, n_p, d = mx.shape
        nf = params[kF].shape[3]
        c = fastsgd.matmul_rows(mx.reshape(n * n_p, d), params[kF].reshape(d, nf),
                                out=fastsgd.scratch(ws, kF, (n * n_p, nf), mx.dtype)).reshape(n, n_p * nf)
        c += np.tile(params[kb].reshape(nf), n_p)   # a broadcast over an inner nf is ~5x slower
        np.maximum(c, 0, out=c)
        hs.append(c)
    H = hs[0] if len(hs) == 1 else np.concatenate(
        hs, axis=1, out=fastsgd.scratch(ws, "H", (n, sum(h.shape[1] for h in hs)), hs[0].dtype))
    X1 = (params["W1"] @ H.T).T     # = H @ W1.T; this GEMM form is ~25% faster in OpenBLAS
    X1 += params["b1"].T
    np.maximum(X1, 0, out=X1)
    if drop_mask is not None:
        X1 *= drop_mask
    S = X1 @ params["W2"].T
    S += params["b2"].T
    Z = S - S.max(axis=1, keepdims=True)
    E = np.exp(Z)
    se = E.sum(axis=1, keepdims=True)
    return {"H": H, "X1": X1, "S": S, "P": E / se, "logP": Z - np.log(se)}


def _reg(params: dict) -> float:
    return float(sum(np.sum(params[k] * params[k], dtype=np.float64)
                     for k in params if k.startswith(("Fs", "W"))))


def _backward_core(params: dict, mxs: list, fw: dict, T: np.ndarray, lam: float,
                   drop_mask=None, scale: float = 1.0, decay: float | None = None, ws=None) -> dict:
    """Gradients for the forward ``fw`` and targets T (n, K). Every gradient is linear in
    G = P - T, so ``scale`` (the step eta) is applied once, to the small (n, K) matrix G. With
    ``decay`` (train_step): W <- decay W - grad in place instead (workbook/fastsgd.py); returns {}."""
    n = T.shape[0]
    G = fw["P"] - T
    G *= scale / n
    X1, H = fw["X1"], fw["H"]
    out = fastsgd.Sink(params, decay, l2=2.0 * lam * scale)   # grad W = A.T @ B + l2 W, b: sums
    G1 = G @ params["W2"]
    out.weight("W2", G, X1)
    out.bias("b2", G)
    if drop_mask is not None:
        G1 *= drop_mask
    G1 *= X1 > 0
    GH = np.matmul(G1, params["W1"], out=fastsgd.scratch(ws, "GH", H.shape, H.dtype))
    out.weight("W1", G1, H)
    out.bias("b1", G1)
    GH *= np.greater(H, 0, out=fastsgd.scratch(ws, "mask", H.shape, bool))
    off = 0
    for (f, kF, kb), mx in zip(_branches(params), mxs):
        _, n_p, d = mx.shape
        nf = params[kF].shape[3]
        Gc = np.ascontiguousarray(GH[:, off:off + n_p * nf]).reshape(n * n_p, nf)
        off += n_p * nf
        out.weight(kF, mx.reshape(n * n_p, d), Gc)
        out.bias(kb, Gc, n)
    return out.g


# =====================================================================================
# 3. training
# =====================================================================================

MAX_UPDATES = 10 ** 8      # a schedule longer than this is a typo (it would need years here)


def n_updates(n_cycles: int, step: int, increasing: bool = False) -> int:
    """Total updates: 2*step*n_cycles, or 2*step*(2**n_cycles - 1) with doubling cycles."""
    return 2 * step * ((2 ** n_cycles - 1) if increasing else n_cycles)


def cyclic_eta(t, eta_min: float, eta_max: float, n_s: int, increasing: bool = False,
               decay: float = 1.0):
    """Triangular cyclic learning rate (Assignment 2), optionally with doubling cycles.

    Cycle i has step n_s (n_s * 2**i when ``increasing``) and peak eta_max * decay**i: eta
    rises linearly from eta_min to the peak in one step and falls back in the next.
    t: int or (T,) int array of update indices (from 0) -> float or (T,) float64.
    """
    t_arr = np.asarray(t, dtype=np.float64)
    if np.any(t_arr < 0):
        raise ValueError("update index t must be >= 0")
    if increasing:
        # cycle i covers [2 n_s (2^i - 1), 2 n_s (2^(i+1) - 1)); guard the exact boundaries
        i = np.floor(np.log2(t_arr / (2.0 * n_s) + 1.0))
        i = np.where(t_arr < 2.0 * n_s * (2.0 ** i - 1.0), i - 1, i)
        i = np.where(t_arr >= 2.0 * n_s * (2.0 ** (i + 1) - 1.0), i + 1, i)
        start, step = 2.0 * n_s * (2.0 ** i - 1.0), n_s * 2.0 ** i
    else:
        i = np.floor(t_arr / (2.0 * n_s))
        start, step = 2.0 * n_s * i, np.full_like(t_arr, float(n_s))
    top = eta_max * decay ** i
    u = (t_arr - start) / step            # in [0, 2)
    eta = np.where(u <= 1.0, eta_min + u * (top - eta_min), top - (u - 1.0) * (top - eta_min))
    return float(eta) if np.ndim(t) == 0 else eta


@dataclass
class TrainConfig:
    """Everything that defines a training run (the defaults are the spec's arch2 protocol).

    Cyclic LR: n_cycles, step (n_s; step_1 when ``increasing``), eta_min, eta_max, eta_decay
    (peak multiplier per cycle). batch_size, lam (L2), eps (label smoothing). Metrics every
    ``eval_every`` updates (default step//2) on ``eval_train_n`` training images and the test
    data. Bonus, off by default: flip, translate (max shift, px), dropout (hidden layer), tta
    (average with the mirror image at evaluation), whiten (filters learn on ZCA-whitened patches,
    this regulariser: workbook/whitening.py). threads: BLAS threads (None: runtime.thread_tuner picks).
    """
    n_cycles: int = 3
    step: int = 800
    eta_min: float = 1e-5
    eta_max: float = 1e-1
    batch_size: int = 100
    lam: float = 0.003
    eps: float = 0.0
    increasing: bool = False
    eval_every: int | None = None
    seed: int = 0
    eval_train_n: int = 10000
    eta_decay: float = 1.0
    flip: bool = False
    translate: int = 0
    dropout: float = 0.0
    tta: bool = False
    progress: bool = True
    threads: int | None = None
    whiten: float = 0.0

    @property
    def n_updates(self) -> int:
        return n_updates(self.n_cycles, self.step, self.increasing)

    @property
    def eval_period(self) -> int:
        return int(self.eval_every or max(1, self.step // 2))

    def etas(self) -> np.ndarray:
        """(n_updates,) the learning rate of every update."""
        return cyclic_eta(np.arange(self.n_updates), self.eta_min, self.eta_max, self.step,
                          self.increasing, self.eta_decay)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)

    def validate(self) -> "TrainConfig":
        """Self, or a ValueError naming the bad field and the allowed values."""
        check_config(self, n_updates, MAX_UPDATES)
        return self


@dataclass
class History:
    """What a run measured; metric lists are aligned with ``t`` (update index).

    loss: cross-entropy against the hard labels; loss_ls: against the smoothed targets the run
    optimised; cost: loss_ls + lam*|W|^2; acc in [0, 1]. eta: the schedule. time_train /
    time_eval: wall seconds in updates / evaluation. interrupted: stopped early by Ctrl-C.
    """
    t: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_loss_ls: list = field(default_factory=list)
    train_cost: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_loss_ls: list = field(default_factory=list)
    test_cost: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    eta: list = field(default_factory=list)
    time_train: float = 0.0
    time_eval: float = 0.0
    updates_done: int = 0
    interrupted: bool = False
    data: str = ""
    config: dict = field(default_factory=dict)

    @property
    def final_test_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    @property
    def time_total(self) -> float:
        return self.time_train + self.time_eval

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or inf. ``.history`` holds the partial run."""

    def __init__(self, msg: str, history: "History"):
        super().__init__(msg)
        self.history = history


# ---- augmentation on MX: every flip/shift is a precomputed gather on the flat MX row ----

def aug_transforms(flip: bool = False, max_shift: int = 0) -> list:
    """The (flip, dy, dx) of every row of ``aug_tables``: identity first, then the other shifts
    in row-major order, for flip=False and then (if ``flip``) flip=True."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1)
              for dx in range(-max_shift, max_shift + 1)]
    shifts.sort(key=lambda s: (s != (0, 0)))
    return [(fl, dy, dx) for fl in ((False, True) if flip else (False,)) for dy, dx in shifts]


def aug_tables(f: int, flip: bool = False, max_shift: int = 0) -> np.ndarray:
    """Gather tables (n_t, 3072) int32, read-only and cached, that transform batch-first MX rows.

    For a batch's rows (b, 3072) padded with one zero column, ``padded[i, idx[k]]`` is the MX
    row of image i mirrored (if asked) and shifted by (dy, dx) with zero fill (zero = the
    training mean), transform k of ``aug_transforms``. Tested equal to MX of shifted images.
    """
    _check_f(f)
    return _aug_tables(int(f), bool(flip), int(max_shift))


@functools.lru_cache(maxsize=64)
def _aug_tables(f: int, flip: bool, max_shift: int) -> np.ndarray:
    ident = np.arange(3072, dtype=np.float64)[:, None]
    x_of_q = mx_batch_first(ident, f, dtype=np.float64)[0].ravel().astype(np.int64)  # MX -> X index
    q_of_x = np.empty(3072, np.int64)
    q_of_x[x_of_q] = np.arange(3072)
    ch, rem = np.divmod(x_of_q, 1024)
    r, c = np.divmod(rem, 32)
    tables = []
    for fl, dy, dx in aug_transforms(flip, max_shift):
        rr, cc = r - dy, c - dx                           # out[r, c] = in[r - dy, c - dx] ...
        ok = (rr >= 0) & (rr < 32) & (cc >= 0) & (cc < 32)
        if fl:
            cc = 31 - cc                                  # ... of the mirrored image
        src = q_of_x[ch * 1024 + np.clip(rr, 0, 31) * 32 + np.clip(cc, 0, 31)]
        tables.append(np.where(ok, src, 3072).astype(np.int32))
    out = np.stack(tables)
    out.setflags(write=False)
    return out


def augment_mx(mxb: np.ndarray, tables: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Transform ``choice[i]`` applied to image i: mxb (b, n_p, d), tables (n_t, 3072) -> (b, n_p, d)."""
    b = mxb.shape[0]
    padded = np.empty((b, 3073), dtype=mxb.dtype)
    padded[:, :3072] = mxb.reshape(b, 3072)
    padded[:, 3072] = 0              # one flat gather: 2x faster than take_along_axis
    return padded.ravel().take(tables[choice] + np.arange(0, b * 3073, 3073)[:, None]).reshape(mxb.shape)


# ---- evaluation ----

def mx_for(params: dict, X: np.ndarray) -> list:
    """Batch-first MX for every filter size of ``params``: X (3072, n) -> [(n, n_p, d), ...]."""
    return [mx_batch_first(X, f, dtype=params["W1"].dtype) for f in filter_sizes(params)]


def evaluate(params: dict, mxs: list, y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
             chunk: int = 2500, tta: bool = False, P_out: bool = False) -> dict:
    """Metrics on a whole split, in chunks: loss (hard labels), loss_ls (smoothed), cost, acc,
    and P (K, n) if ``P_out``. mxs from mx_for; y (n,) int. ``tta`` averages each image's
    probabilities with its mirror image's."""
    n, K = y.shape[0], params["W2"].shape[0]
    flips = [aug_tables(f, flip=True)[1] for f in filter_sizes(params)] if tta else None
    hard = soft = 0.0
    correct, Ps = 0, []
    for s in range(0, n, chunk):
        mb = [m[s:s + chunk] for m in mxs]
        P = _forward_core(params, mb)["P"]
        if tta:
            mf = [augment_mx(m, fl[None], np.zeros(len(m), int)) for m, fl in zip(mb, flips)]
            P = 0.5 * (P + _forward_core(params, mf)["P"])
        if not np.isfinite(P).all():
            raise ValueError("the network produced NaN probabilities: the images hold NaN/inf "
                             "or the parameters have diverged")
        logP = np.log(np.maximum(P, np.finfo(P.dtype).tiny))
        yb = y[s:s + chunk]
        hard -= float(logP[np.arange(len(yb)), yb].sum(dtype=np.float64))
        soft -= float(np.sum(_targets(yb, K, eps, logP.dtype) * logP, dtype=np.float64))
        correct += int(np.sum(P.argmax(axis=1) == yb))
        if P_out:
            Ps.append(P)
    out = {"loss": hard / n, "loss_ls": soft / n, "acc": correct / n}
    out["cost"] = out["loss_ls"] + lam * _reg(params)
    if P_out:
        out["P"] = np.concatenate(Ps).T
    return out


def predict(params: dict, X: np.ndarray, tta: bool = False) -> np.ndarray:
    """Class probabilities: X (3072, n) normalised -> P (K, n)."""
    X = _check_finite(_check_X(X), "X")
    if X.shape[1] == 0:
        return np.zeros((check_params(params)["W2"].shape[0], 0), params["W2"].dtype)
    y0 = np.zeros(X.shape[1], dtype=np.int64)
    return evaluate(check_params(params), mx_for(params, X), y0, tta=tta, P_out=True)["P"]


# ---- one SGD update, and the loop ----

def train_step(params: dict, mxs: list, y: np.ndarray, eta: float, lam: float = 0.0,
               eps: float = 0.0, drop_mask=None, ws: dict | None = None) -> float:
    """One SGD update in place. mxs: batch-first MX per branch (b, n_p, d); y (b,) int.
    Returns the batch loss (smoothed targets, before the update). ws: an empty dict to keep
    the big intermediates in across calls (train does), instead of fresh memory each update."""
    K = params["W2"].shape[0]
    fw = _forward_core(params, mxs, drop_mask, ws)
    T = _targets(y, K, eps, fw["P"].dtype)
    loss = -float(np.sum(T * fw["logP"], dtype=np.float64)) / len(y)
    # W <- W - eta (g + 2 lam W) = (1 - 2 eta lam) W - eta g: eta is folded into G in the
    # backward pass, which then updates every parameter in place (workbook/fastsgd.py).
    _backward_core(params, mxs, fw, T, 0.0, drop_mask, eta, 1.0 - 2.0 * eta * lam, ws)
    return loss


def train(params: dict, X_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig | None = None,
          X_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *,
          data_name: str = "", callback=None):
    """Mini-batch SGD with cyclic learning rates on a copy of ``params`` -> (params, History).

    X_train (3072, n) normalised, y_train (n,) int; X_test/y_test likewise (optional, both or
    neither). Batches come from a seeded shuffle every epoch (the remainder is dropped). Every
    ``cfg.eval_period`` updates and at the end, metrics on the first ``cfg.eval_train_n``
    training images and on the test set; then ``callback(history)``. A NaN/inf loss raises
    TrainingDiverged (with the partial history); Ctrl-C returns the partial history.
    """
    cfg = (cfg or TrainConfig()).validate()
    params = {k: v.copy() for k, v in check_params(params).items()}
    K = params["W2"].shape[0]
    X_train = _check_finite(_check_X(X_train, "X_train"), "X_train")
    y_train = check_labels(y_train, K, X_train.shape[1], "y_train")
    if (X_test is None) != (y_test is None):
        raise ValueError("pass X_test and y_test together (or neither)")
    if X_test is not None:
        X_test = _check_finite(_check_X(X_test, "X_test"), "X_test")
        y_test = check_labels(y_test, K, X_test.shape[1], "y_test")
    if cfg.batch_size > X_train.shape[1]:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set "
                         f"({X_train.shape[1]} images)")
    with blas_threads(cfg.threads or os.cpu_count() or 1):   # restored afterwards
        return _train(params, X_train, y_train, cfg, X_test, y_test, data_name, callback)


def _train(params, X_train, y_train, cfg: TrainConfig, X_test, y_test, data_name, callback):
    """The body of :func:`train` (inputs validated), under its BLAS thread limit."""
    dt = params["W1"].dtype
    n, B = X_train.shape[1], cfg.batch_size
    rng = np.random.default_rng(cfg.seed)
    mx_tr = mx_for(params, X_train.astype(dt, copy=False))
    n_ev = min(cfg.eval_train_n, n)                # metrics on a fixed training chunk (a view)
    mx_ev, y_ev = [m[:n_ev] for m in mx_tr], y_train[:n_ev]
    mx_te = mx_for(params, X_test.astype(dt, copy=False)) if X_test is not None else None
    etas = cfg.etas()
    hist = History(eta=etas.tolist(), data=data_name, config=cfg.to_dict())
    tables = None
    if cfg.flip or cfg.translate:
        tables = [aug_tables(f, cfg.flip, cfg.translate) for f in filter_sizes(params)]
    keep, nh = 1.0 - cfg.dropout, params["W1"].shape[0]
    Ws = whitening.patch_whitening(X_train, filter_sizes(params), cfg.whiten) if cfg.whiten else {}
    whitening.start(params, Ws)                    # filters learn in whitened coordinates
    threads = thread_tuner(params, B, cfg.threads)   # BLAS threads per update: workbook/runtime.py

    def do_eval(t):
        t0 = time.perf_counter()
        with blas_threads(threads.eval_threads()):
            tr = evaluate(params, mx_ev, y_ev, cfg.lam, cfg.eps, tta=cfg.tta)
            te = evaluate(params, mx_te, y_test, cfg.lam, cfg.eps, tta=cfg.tta) if mx_te else None
        hist.t.append(int(t))
        for k in ("loss", "loss_ls", "cost", "acc"):
            getattr(hist, "train_" + k).append(tr[k])
            if te is not None:
                getattr(hist, "test_" + k).append(te[k])
        hist.time_eval += time.perf_counter() - t0
        if callback is not None:
            callback(hist)

    per_epoch, order, T = n // B, None, len(etas)

    def draw(t):
        """Update t's random choices (batch, transforms, dropout), always drawn in update order
        in this thread, so a seed gives the same run with or without prefetching."""
        nonlocal order
        j = t % per_epoch
        if j == 0:
            order = rng.permutation(n)
        idx = np.sort(order[j * B:(j + 1) * B])
        choice = rng.integers(0, len(tables[0]), size=B) if tables is not None else None
        mask = None
        if cfg.dropout:
            mask = (rng.random((B, nh), dtype=np.float32) < keep).astype(dt)
            mask *= 1.0 / keep
        return idx, choice, mask

    ring, k = [[np.empty((B,) + m.shape[1:], dt) for m in mx_tr] for _ in range(2)], [0]

    def fetch(idx, choice):       # into ring slot k % 2: batch k is in use while k + 1 is filled
        mb = [np.take(m, idx, 0, o, "clip") for m, o in zip(mx_tr, ring[k[0] % 2])]  # (raise: 2x slower)
        k[0] += 1
        return mb if choice is None else [augment_mx(m, tb, choice) for m, tb in zip(mb, tables)]

    cores = os.cpu_count() or 1
    batches = prefetch_batches(draw, fetch, T, background=lambda: (threads.current or 1) < cores)
    bar = progress_bar(T, cfg.progress, data_name or "train")
    ws = {}                                      # big intermediates, reused by every update
    t = 0
    try:
        t_start = time.perf_counter()
        for t in range(T):
            if t % cfg.eval_period == 0:
                t_ev = hist.time_eval
                do_eval(t)
                t_start += hist.time_eval - t_ev
            threads.before(t)                  # (its timing includes fetching the batch)
            idx, mask, mb = next(batches)
            old = {k: params[k].copy() for k in params if k.startswith("Fs")} if Ws else None
            loss = train_step(params, mb, y_train[idx], float(etas[t]), cfg.lam, cfg.eps, mask, ws)
            if Ws:
                whitening.precondition(params, old, Ws, 1.0 - 2.0 * float(etas[t]) * cfg.lam)
            threads.after(t)
            if not np.isfinite(loss):
                hist.updates_done, hist.time_train = t, time.perf_counter() - t_start
                raise TrainingDiverged(
                    f"training diverged: the loss became {loss} at update {t} (eta={etas[t]:.3g}). "
                    f"Lower eta_max (now {cfg.eta_max:g}), e.g. to {cfg.eta_max / 3:.2g}", hist)
            if bar is not None and (t + 1) % 50 == 0:
                bar.update(50)
        hist.updates_done, hist.time_train = T, time.perf_counter() - t_start
        do_eval(T)
    except KeyboardInterrupt:
        hist.interrupted = True
        if hist.updates_done < T:      # (else it came during the final evaluation)
            hist.updates_done, hist.time_train = t, time.perf_counter() - t_start
        print(f"interrupted at update {hist.updates_done}/{T}: returning the partial history")
    finally:
        if bar is not None:
            bar.close()
        batches.close()
    return params, hist


# ---- checkpoints ----

def _checkpoint_path(path) -> Path:
    """'arch5.seed0' -> 'arch5.seed0.npz' (a dot in the name is kept, never replaced)."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def save_checkpoint(path, params: dict, cfg: TrainConfig | None = None,
                    history: History | None = None) -> Path:
    """Write params + config + history to one .npz, atomically (temp file, then rename).
    An existing file is replaced only if it is a checkpoint itself; returns the path."""
    check_params(params)
    path = _checkpoint_path(path)
    if path.exists():
        try:
            load_checkpoint(path)
        except (ValueError, OSError) as e:
            raise FileExistsError(f"{path} exists and is not a checkpoint; it is not overwritten. "
                                  "Choose another name or move that file") from e
    meta = {"config": cfg.to_dict() if cfg else None,
            "history": history.to_dict() if history else None, "format": 1}
    _atomic_savez(path, meta=np.array(json.dumps(meta)), **{"param_" + k: v for k, v in params.items()})
    return path


def load_checkpoint(path, like: dict | None = None):
    """Read a checkpoint of save_checkpoint -> (params, cfg or None, history or None).

    Keys and shapes are validated; with ``like`` (e.g. init_params(...) of the architecture you
    expect) every array must match its shape and dtype. Raises ValueError saying which.
    """
    path = Path(path)
    if not path.exists() and _checkpoint_path(path).exists():
        path = _checkpoint_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            params = {k[6:]: z[k] for k in z.files if k.startswith("param_")}
            meta = json.loads(str(z["meta"])) if "meta" in z.files else None
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e}); was it written by "
                         "save_checkpoint?") from e
    if not isinstance(meta, dict) or not params:
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint (no meta/params)")
    try:
        check_params(params)
    except ValueError as e:
        raise ValueError(f"checkpoint {path} has inconsistent parameters: {e}") from e
    if like is not None:
        check_like(path, params, like)
    try:
        cfg = TrainConfig.from_dict(meta["config"]) if meta.get("config") else None
        hist = History.from_dict(meta["history"]) if meta.get("history") else None
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {path} has an unreadable config/history: {e}") from e
    return params, cfg, hist


def _atomic_savez(path, **arrays) -> None:
    """np.savez to a temp file in the same folder, then rename: a written file is whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
