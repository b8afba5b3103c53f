"""Fused SGD updates for train_step: one BLAS call does gradient, L2 decay and step at once.

The SGD update of a weight matrix whose gradient is a product ``A.T @ B`` (A (N, rows),
B (N, cols), the mini-batch along N) is

    W <- W - eta (A.T @ B / n + 2 lam W)  =  (1 - 2 eta lam) W - (eta / n) A.T @ B.

BLAS's GEMM computes ``C <- alpha op(A) op(B) + beta C`` in place, so with alpha = -1 (eta/n
is already folded into A or B by the caller), beta = 1 - 2 eta lam and C = W this is ONE pass
over W instead of three (the gradient temporary, the decay, the subtraction): on the bonus
net's W1 (800 x 6400) the update costs what the gradient alone costs, ~35% less than unfused.
The GEMM is numpy's own OpenBLAS, called through ctypes as row-major cblas (so C-ordered W,
A, B go in as they are, no copies); if that library is not found, scipy.linalg.blas's
Fortran ?gemm on the transposed views (W.T <- beta W.T - B.T @ A); else numpy.

Only weights of FUSE_MIN or more elements are fused (on small ones it saves nothing), and
anything unusual (not float32/float64, mixed dtypes, non-contiguous, read-only or aliased
arrays) takes the plain numpy expressions, which give the same numbers up to float
rounding (a read-only W raises). Also here, the same kind of speed-only helpers: ``scratch``
(buffers reused across updates), ``matmul_rows`` / ``gradient`` (tall, skinny products in row
pieces). Nothing here changes what is computed, only how.
"""
from __future__ import annotations

import numpy as np


def _numpy_cblas():
    """{dtype: cblas_?gemm} from the OpenBLAS that numpy itself uses (numpy's wheels bundle
    scipy-openblas64; the symbols carry a ``scipy_`` prefix and ``64_`` suffix), called through
    ctypes, or {} when numpy was built against another BLAS. Same kernels and the same thread
    pool as numpy's own ``@``: scipy.linalg.blas is a SECOND OpenBLAS with its own threads,
    which spin-wait against numpy's when calls alternate (slow on 2 cores)."""
    import ctypes
    import glob
    import os
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre, suf, it in (("scipy_cblas_", "64_", ctypes.c_int64), ("cblas_", "64_", ctypes.c_int64),
                             ("cblas_", "", ctypes.c_int)):
            try:
                fns = {np.dtype(np.float32): (getattr(lib, f"{pre}sgemm{suf}"), ctypes.c_float),
                       np.dtype(np.float64): (getattr(lib, f"{pre}dgemm{suf}"), ctypes.c_double)}
            except AttributeError:
                continue
            out = {}
            for dt, (fn, ct) in fns.items():
                fn.restype = None
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, it, it, it, ct,
                               ctypes.c_void_p, it, ctypes.c_void_p, it, ct, ctypes.c_void_p, it]
                out[dt] = fn
            return out
    return {}


def _scipy_blas():
    """{dtype: ?gemm} from scipy.linalg.blas (the fallback when numpy's BLAS is not reachable)."""
    try:
        from scipy.linalg import blas
    except Exception:  # pragma: no cover - exercised only without scipy
        return {}
    return {np.dtype(np.float32): blas.sgemm, np.dtype(np.float64): blas.dgemm}


try:
    _CBLAS = _numpy_cblas()
except Exception:  # pragma: no cover - a strange install: use scipy or numpy instead
    _CBLAS = {}
_GEMM = _CBLAS or _scipy_blas()
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _blas_update(W2: np.ndarray, A: np.ndarray, B: np.ndarray, decay: float) -> None:
    """W2 (rows, cols) C-ordered <- decay W2 - A.T @ B, one GEMM, in place."""
    (N, rows), cols = A.shape, B.shape[1]
    if _CBLAS:                        # row-major cblas: C = -1 * op(A)=A.T @ B + decay C
        _CBLAS[W2.dtype](_ROW_MAJOR, _TRANS, _NO_TRANS, rows, cols, N, -1.0, A.ctypes.data, rows,
                         B.ctypes.data, cols, float(decay), W2.ctypes.data, cols)
        return
    Wt = W2.T                         # Fortran BLAS: the (cols, rows) Fortran view W2.T
    out = _GEMM[W2.dtype](-1.0, B.T, A.T, beta=float(decay), c=Wt, trans_b=True, overwrite_c=True)
    if out.ctypes.data != Wt.ctypes.data:     # the wrapper wrote a copy: never silently lose it
        Wt[...] = out


def _c2d(a: np.ndarray, shape=None):
    """``a`` as a C-contiguous 2-D view of shape ``shape`` (default a.shape), or None if that
    would need a copy."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
        return None
    return a.reshape(shape if shape is not None else a.shape)


def fused_ok(W: np.ndarray, A: np.ndarray, B: np.ndarray) -> bool:
    """Whether :func:`gemm_update` can update W in place with one BLAS call."""
    return (W.dtype in _GEMM and A.dtype == W.dtype and B.dtype == W.dtype
            and W.flags.c_contiguous and W.flags.writeable and W.size > 0
            and A.ndim == 2 and B.ndim == 2 and A.shape[0] == B.shape[0] > 0
            and A.flags.c_contiguous and B.flags.c_contiguous
            and not np.may_share_memory(W, A) and not np.may_share_memory(W, B))


# below this many weights the fused GEMM saves nothing measurable (and on a tall, skinny
# product like arch2's filter gradient (48 x 6400) @ (6400 x 10) it is ~8% slower)
FUSE_MIN = 16384


def gemm_update(W: np.ndarray, A: np.ndarray, B: np.ndarray, decay: float = 1.0,
                fuse: bool = True) -> np.ndarray:
    """In place: W <- decay * W - (A.T @ B).reshape(W.shape); returns W.

    A (N, rows), B (N, cols) with rows * cols == W.size (W is e.g. Fs (f, f, 3, nf) with
    rows = f*f*3, cols = nf). One BLAS GEMM when ``fuse`` and :func:`fused_ok`, else numpy.
    """
    rows, cols = A.shape[1], B.shape[1]
    if rows * cols != W.size:
        raise ValueError(f"A.T @ B is ({rows}, {cols}) but W has shape {W.shape}")
    if fuse and fused_ok(W, A, B):
        _blas_update(W.reshape(rows, cols), A, B, decay)
        return W
    if not W.flags.writeable:
        raise ValueError("gemm_update: W is read-only")
    g = gradient(A, B, W.shape)
    if decay != 1.0:
        W *= decay
    W -= g
    return W


def colsum(G: np.ndarray, n: int | None = None) -> np.ndarray:
    """G.sum(axis=0) for G (N, c), N = n * groups (a conv layer's rows: n images x n_p patches):
    a GEMV ones(n) @ G.reshape(n, groups * c) (several times faster than ``G.sum(axis=0)``),
    then the small sum over the groups. The GEMV runs over only n rows, so its result does not
    depend on the BLAS thread count (a GEMV over all N rows does: threads split the sum)."""
    N, c = G.shape
    n = N if n is None or N % n else n
    s = np.ones(n, G.dtype) @ G.reshape(n, (N // n) * c)
    return s if N == n else s.reshape(N // n, c).sum(axis=0)


def bias_update(b: np.ndarray, G: np.ndarray, n: int | None = None) -> np.ndarray:
    """In place: b <- b - G.sum(axis=0) as a column (b (c, 1), G (N, c), see colsum); returns b."""
    b -= colsum(G, n).reshape(b.shape)
    return b


def scratch(ws: dict | None, key, shape, dtype) -> np.ndarray | None:
    """A buffer ``ws[key]`` of this shape and dtype, made on first use (None when ws is None:
    the caller's ``out=None`` then allocates). Why: glibc hands a freed block of a few MB back to
    the kernel, so an update that allocates its big intermediates afresh (a wide net's conv
    output, its gradient and the ReLU mask, ~6 MB for the bonus net) page-faults them in again
    every time: ~1,500 page faults per update, measured with getrusage; 0 with buffers."""
    if ws is None:
        return None
    buf = ws.get(key)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != np.dtype(dtype):
        buf = ws[key] = np.empty(shape, dtype)
    return buf


# A tall, skinny product (many rows, few columns: arch2's conv, (6400 x 48) @ (48 x 10)) runs
# ~25-35% faster on one OpenBLAS thread in pieces of CHUNK rows (measured: 0.16 vs 0.21 ms
# forward, 0.15 vs 0.22 ms gradient; no gain with nf above ~16 or with patches of 12 values).
CHUNK, SKINNY = 2048, 16


def _skinny(A: np.ndarray, cols: int) -> bool:
    return A.shape[0] > CHUNK and cols <= SKINNY and A.shape[1] >= 32


def matmul_rows(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A @ B (A (N, d), B (d, c)), in pieces of CHUNK rows when the product is tall and skinny
    (each row's dot products are the same either way)."""
    if not _skinny(A, B.shape[1]):
        return np.matmul(A, B, out=out)
    out = np.empty((A.shape[0], B.shape[1]), np.result_type(A, B)) if out is None else out
    for s in range(0, A.shape[0], CHUNK):
        np.matmul(A[s:s + CHUNK], B, out=out[s:s + CHUNK])
    return out


def gradient(A: np.ndarray, B: np.ndarray, shape) -> np.ndarray:
    """The unfused product A.T @ B reshaped to ``shape`` (what gemm_update subtracts); a sum over
    pieces of CHUNK rows when tall and skinny (see matmul_rows)."""
    if not _skinny(A, B.shape[1]):
        return (A.T @ B).reshape(shape)
    g = A[:CHUNK].T @ B[:CHUNK]
    for s in range(CHUNK, A.shape[0], CHUNK):
        g += A[s:s + CHUNK].T @ B[s:s + CHUNK]
    return g.reshape(shape)


class Sink:
    """Where the backward pass sends each gradient, as its two factors (weights: A.T @ B) or
    its rows to sum (biases). ``Sink(params, l2=2 lam)`` collects the gradients, with the L2
    term ``l2 * W`` on the weights, in ``.g`` (compute_grads);
    ``Sink(params, decay)`` applies SGD in place instead, W <- decay W - A.T @ B, b <- b - sum
    (train_step; eta already folded into the factors). The caller must send a parameter only
    after its last use in the backward pass."""

    def __init__(self, params: dict, decay: float | None = None, l2: float = 0.0):
        self.params, self.decay, self.l2, self.g = params, decay, l2, {}

    def weight(self, k: str, A: np.ndarray, B: np.ndarray) -> None:
        """Weight k's gradient is A.T @ B (+ l2 * W, the L2 term, when collecting)."""
        if self.decay is None:
            self.g[k] = gradient(A, B, self.params[k].shape)
            if self.l2:
                self.g[k] += self.l2 * self.params[k]
        else:
            W = self.params[k]
            gemm_update(W, A, B, self.decay, fuse=W.size >= FUSE_MIN)

    def bias(self, k: str, G: np.ndarray, n: int | None = None) -> None:
        if self.decay is None:
            self.g[k] = colsum(G, n).reshape(-1, 1)
        else:
            bias_update(self.params[k], G, n)
