"""The engine's layout: MX batch-first, (n, n_p, f*f*3), built straight from X.

The spec's MX is (n_p, f*f*3, n): a mini-batch of it is a gather along its LAST axis, strided
and slow. Batch-first, a mini-batch is one contiguous block of rows, and the convolution of a
whole batch is one GEMM (GEMM: a General Matrix-Matrix multiply, the BLAS routine that does
``C <- alpha A B + beta C``): (n*n_p, f*f*3) @ (f*f*3, nf). ``mxb.transpose(1, 2, 0)`` is the
spec's MX again, as a view, equal to ``helpers.build_mx`` (tested).
"""
from __future__ import annotations

import os

import numpy as np

from helpers import check_f, check_shape


def mx_batch_first(X: np.ndarray, f: int, dtype=np.float32, chunk: int = 1024,
                   workers: int | None = None) -> np.ndarray:
    """X (3072, n) -> MXb (n, n_p, f*f*3) C-contiguous ``dtype``, with
    ``MXb[i] == helpers.build_mx(to_images(X), f)[:, :, i]``. Built in chunks of images on up
    to 4 threads (numpy releases the GIL while it copies)."""
    X = check_shape(X, (3072, None), "X")
    n_p = check_f(f)
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
    MX = check_shape(MX, (None, None, None), "MX")
    return np.ascontiguousarray(MX.transpose(2, 0, 1))
