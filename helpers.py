"""Shared helpers for the NumPy ConvNet workbook (KTH DD2424 Assignment 3).

Every notebook imports this one module. It is flat and sectioned:

    1. data         CIFAR-10 download/cache/load, the synthetic stand-in, normalisation
    2. convolution  patchify convolution (stride f) three ways, MX construction, debug file
    3. network      He init, forward, loss, gradients (spec layout at the boundary)
    4. training     cyclic learning rates, TrainConfig, train(), checkpoints, augmentation
    5. plots        curves, schedules, bar charts (each saves a PNG to figures/)

Layout conventions (the assignment's names and shapes at every public boundary):

    X        (3072, n)          one image per column, CIFAR-10's row order (R, G, B planes)
    X_ims    (32, 32, 3, n)     X_ims[row, col, channel, i]
    Fs       (f, f, 3, nf)      the convolution filters;  Fs_flat = Fs.reshape((f*f*3, nf), order='C')
    MX       (n_p, f*f*3, n)    patch p of image i, flattened in order='C'; n_p = (32/f)**2
    W1       (nh, n_p*nf),  b1 (nh, 1),  W2 (K, nh),  b2 (K, 1),  b0 (nf, 1) the conv bias
    Y        (K, n)             one-hot (or label-smoothed) targets;  y (n,) int labels

Internally the training path keeps MX batch-first, (n, n_p, f*f*3), so a mini-batch is one
contiguous gather and every layer is a single BLAS GEMM; tests prove it equals the spec layout.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DATA_DIR = ROOT / "data"
FIG_DIR = ROOT / "figures"


def is_fast() -> bool:
    """True when WORKBOOK_FAST is set to 1/true/yes (CI sets it): small data, few updates."""
    return os.environ.get("WORKBOOK_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


# =====================================================================================
# 1. data
# =====================================================================================
# TEMPORARY during development: the data section is being written in _data_section.py
# and will be inlined here.
import sys as _sys  # noqa: E402  (TEMPORARY, removed when inlined)
_sys.path.insert(0, str(ROOT))
from _data_section import *  # noqa: E402,F401,F403

# =====================================================================================
# 2. convolution
# =====================================================================================

def _check_f(f: int) -> int:
    """Return n_p = (32/f)**2, or raise if f does not tile a 32x32 image."""
    if not isinstance(f, (int, np.integer)) or f < 1 or 32 % f != 0:
        raise ValueError(
            f"filter width f={f!r} must be a positive integer that divides 32 "
            "(the patchify convolution uses stride f with non-overlapping patches); "
            "use one of 1, 2, 4, 8, 16, 32")
    return (32 // int(f)) ** 2


def _check_X(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != 3072:
        raise ValueError(
            f"{name} must have shape (3072, n), one flattened 32x32x3 image per column; "
            f"got {X.shape}. If your images are (n, 3072), pass X.T")
    return X


def _check_ims(X_ims: np.ndarray) -> np.ndarray:
    X_ims = np.asarray(X_ims)
    if X_ims.ndim == 3:
        X_ims = X_ims[..., None]
    if X_ims.ndim != 4 or X_ims.shape[:3] != (32, 32, 3):
        raise ValueError(
            f"X_ims must have shape (32, 32, 3, n); got {X_ims.shape}. "
            "Build it from X (3072, n) with to_images(X)")
    return X_ims


def to_images(X: np.ndarray) -> np.ndarray:
    """Spec reshape of flattened images to image arrays.

    X: (3072, n) any dtype  ->  X_ims: (32, 32, 3, n), X_ims[row, col, channel, i].
    Exactly ``np.transpose(X.reshape((32, 32, 3, n), order='F'), (1, 0, 2, 3))`` (a view).
    """
    X = _check_X(X)
    n = X.shape[1]
    return np.transpose(X.reshape((32, 32, 3, n), order="F"), (1, 0, 2, 3))


def to_columns(X_ims: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_images`. X_ims: (32, 32, 3, n) -> X: (3072, n)."""
    X_ims = _check_ims(X_ims)
    n = X_ims.shape[3]
    return np.transpose(X_ims, (1, 0, 2, 3)).reshape((3072, n), order="F")


def flatten_filters(Fs: np.ndarray) -> np.ndarray:
    """Fs: (f, f, 3, nf) -> Fs_flat: (f*f*3, nf), ``Fs.reshape((f*f*3, nf), order='C')``."""
    Fs = np.asarray(Fs)
    if Fs.ndim != 4 or Fs.shape[0] != Fs.shape[1] or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    f, nf = Fs.shape[0], Fs.shape[3]
    return Fs.reshape((f * f * 3, nf), order="C")


def conv_loops(X_ims: np.ndarray, Fs: np.ndarray) -> np.ndarray:
    """Slow reference convolution with stride f: one dot product per image, patch, filter.

    X_ims: (32, 32, 3, n);  Fs: (f, f, 3, nf)  ->  conv_outputs: (32/f, 32/f, nf, n)
    conv_outputs[r, c, k, i] = sum(X_ims[r*f:(r+1)*f, c*f:(c+1)*f, :, i] * Fs[:, :, :, k]).
    """
    X_ims = _check_ims(X_ims)
    Fs = np.asarray(Fs)
    if Fs.ndim != 4 or Fs.shape[0] != Fs.shape[1] or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    f, nf, n = Fs.shape[0], Fs.shape[3], X_ims.shape[3]
    _check_f(f)
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
    """The spec's loop construction of MX (for checking): X_ims (32,32,3,n) -> MX (n_p, f*f*3, n).

    Patches are visited with the second image dimension (column) changing first.
    """
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
    """Vectorised MX (no Python loop): X_ims (32, 32, 3, n) -> MX (n_p, f*f*3, n).

    MX[p, :, i] is patch p = r*(32/f) + c of image i, flattened (dy, dx, channel) in order='C'.
    The result is C-contiguous in the spec layout.
    """
    X_ims = _check_ims(X_ims)
    n_p = _check_f(f)
    g, n = 32 // f, X_ims.shape[3]
    # X_ims[r*f + dy, c*f + dx, ch, i] -> (r, c, dy, dx, ch, i)
    v = X_ims.reshape(g, f, g, f, 3, n).transpose(0, 2, 1, 3, 4, 5)
    return np.ascontiguousarray(v).reshape(n_p, f * f * 3, n)


def mx_batch_first(X: np.ndarray, f: int, dtype=np.float32, chunk: int = 8192) -> np.ndarray:
    """MX straight from flattened images, stored batch-first for training.

    X: (3072, n)  ->  MXb: (n, n_p, f*f*3) C-contiguous ``dtype``, with
    ``MXb[i] == build_mx(to_images(X), f)[:, :, i]``. ``MXb.transpose(1, 2, 0)`` is the spec-layout
    MX (n_p, f*f*3, n) as a view, so no copy is needed to hand it to the public functions.
    Built in chunks of images to keep the temporary memory small.
    """
    X = _check_X(X)
    n_p = _check_f(f)
    g, n, d = 32 // f, X.shape[1], f * f * 3
    out = np.empty((n, n_p, d), dtype=dtype)
    for s in range(0, n, chunk):
        xb = X[:, s:s + chunk].T  # (b, 3072): channel planes, row-major pixels
        b = xb.shape[0]
        # x index = ch*1024 + (r*f + dy)*32 + c*f + dx  ->  (b, r, c, dy, dx, ch)
        v = xb.reshape(b, 3, g, f, g, f).transpose(0, 2, 4, 3, 5, 1)
        out[s:s + b] = v.reshape(b, n_p, d)
    return out


def as_batch_first(MX: np.ndarray) -> np.ndarray:
    """Spec MX (n_p, d, n) -> batch-first (n, n_p, d) C-contiguous (free if MX came from
    ``mx_batch_first(...).transpose(1, 2, 0)``)."""
    MX = np.asarray(MX)
    if MX.ndim != 3:
        raise ValueError(f"MX must have shape (n_p, f*f*3, n); got {MX.shape}")
    return np.ascontiguousarray(MX.transpose(2, 0, 1))


def _check_mx_filters(MX: np.ndarray, Fs_flat: np.ndarray) -> None:
    if MX.ndim != 3:
        raise ValueError(f"MX must have shape (n_p, f*f*3, n); got {MX.shape}")
    if Fs_flat.ndim != 2 or Fs_flat.shape[0] != MX.shape[1]:
        raise ValueError(
            f"Fs_flat must have shape (f*f*3, nf) = ({MX.shape[1]}, nf) to match MX {MX.shape}; "
            f"got {Fs_flat.shape}. Flatten filters with flatten_filters(Fs)")


def conv_matmul(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """Convolution as one matrix product per image (the spec's loop).

    MX: (n_p, f*f*3, n);  Fs_flat: (f*f*3, nf)  ->  conv_outputs_mat: (n_p, nf, n)
    """
    MX, Fs_flat = np.asarray(MX), np.asarray(Fs_flat)
    _check_mx_filters(MX, Fs_flat)
    n = MX.shape[2]
    out = np.empty((MX.shape[0], Fs_flat.shape[1], n), dtype=np.result_type(MX, Fs_flat))
    for i in range(n):
        out[:, :, i] = np.matmul(MX[:, :, i], Fs_flat)
    return out


def conv_einsum(MX: np.ndarray, Fs_flat: np.ndarray, optimize=True) -> np.ndarray:
    """Convolution with ``np.einsum('ijn,jl->iln', MX, Fs_flat)``.

    MX: (n_p, f*f*3, n);  Fs_flat: (f*f*3, nf)  ->  conv_outputs_mat: (n_p, nf, n)
    """
    MX, Fs_flat = np.asarray(MX), np.asarray(Fs_flat)
    _check_mx_filters(MX, Fs_flat)
    return np.einsum("ijn,jl->iln", MX, Fs_flat, optimize=optimize)


def conv_fast(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """The training path's convolution: one GEMM (n*n_p, d) @ (d, nf) on batch-first MX.

    MX: (n_p, f*f*3, n);  Fs_flat: (f*f*3, nf)  ->  conv_outputs_mat: (n_p, nf, n)
    (returned as a transposed view of the batch-first result).
    """
    MX, Fs_flat = np.asarray(MX), np.asarray(Fs_flat)
    _check_mx_filters(MX, Fs_flat)
    n_p, d, n = MX.shape
    mxb = as_batch_first(MX)
    return (mxb.reshape(n * n_p, d) @ Fs_flat).reshape(n, n_p, -1).transpose(1, 2, 0)

DEBUG_KEYS = ("X", "Fs", "conv_outputs", "conv_outputs_mat", "conv_flat", "W1", "W2", "b1", "b2",
              "X1", "P", "Y", "grad_Fs_flat", "grad_W1", "grad_W2", "grad_b1", "grad_b2")


def torch_available() -> bool:
    """True when torch can be imported (it is only the independent oracle)."""
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def _require_torch(what: str):
    try:
        import torch
    except Exception as e:  # pragma: no cover - exercised only without torch
        raise ImportError(
            f"{what} needs torch as an independent oracle, and torch is not installed. "
            "Install the CPU build with `pip install torch==2.13.0` (or `pip install -e .[oracle]`)"
        ) from e
    return torch


def make_debug_file(path, seed: int = 0, f: int = 4, nf: int = 2, nh: int = 50, n: int = 5) -> Path:
    """Write a debug npz with the course file's keys and shapes, computed by torch (the oracle).

    Keys (shapes): X (3072, n), Fs (f, f, 3, nf), conv_outputs (32/f, 32/f, nf, n),
    conv_outputs_mat (n_p, nf, n), conv_flat (n_p*nf, n), W1 (nh, n_p*nf), W2 (10, nh),
    b1 (nh, 1), b2 (10, 1), X1 (nh, n), P (10, n), Y (10, n), grad_Fs_flat (f*f*3, nf),
    grad_W1, grad_W2, grad_b1, grad_b2 (shapes of their parameters). All float64.
    The network has no conv bias and no regularisation (as in the course file); the loss is the
    mean cross-entropy. Nothing is computed with this module's numpy code: torch's conv2d with
    stride f and autograd give every number. X holds synthetic images, normalised.
    """
    torch = _require_torch("make_debug_file")
    n_p = _check_f(f)
    K = 10
    rng = np.random.default_rng(seed)
    Xraw, y = make_synthetic(n, seed=seed)
    X = Xraw.astype(np.float64) / 255.0
    X = (X - X.mean()) / X.std()
    Fs = rng.standard_normal((f, f, 3, nf)) * np.sqrt(2.0 / (f * f * 3))
    W1 = rng.standard_normal((nh, n_p * nf)) * np.sqrt(2.0 / (n_p * nf))
    W2 = rng.standard_normal((K, nh)) * np.sqrt(2.0 / nh)
    b1 = rng.standard_normal((nh, 1)) * 0.01
    b2 = rng.standard_normal((K, 1)) * 0.01
    Y = np.zeros((K, n))
    Y[y, np.arange(n)] = 1.0

    T = lambda a, g=False: torch.tensor(a, dtype=torch.float64, requires_grad=g)  # noqa: E731
    x_nchw = T(np.ascontiguousarray(to_images(X).transpose(3, 2, 0, 1)))
    tFs, tW1, tW2, tb1, tb2 = T(Fs, True), T(W1, True), T(W2, True), T(b1, True), T(b2, True)
    weight = tFs.permute(3, 2, 0, 1)                      # (nf, 3, f, f)
    conv = torch.nn.functional.conv2d(x_nchw, weight, stride=f)   # (n, nf, 32/f, 32/f)
    conv_outputs = conv.permute(2, 3, 1, 0)                # (32/f, 32/f, nf, n)
    conv_mat = conv_outputs.reshape(n_p, nf, n)            # row-major == order='C'
    conv_flat = torch.relu(conv_mat.reshape(n_p * nf, n))
    X1 = torch.relu(tW1 @ conv_flat + tb1)
    S = tW2 @ X1 + tb2
    P = torch.softmax(S, dim=0)
    loss = -(T(Y) * torch.log_softmax(S, dim=0)).sum() / n
    loss.backward()
    out = dict(X=X, Fs=Fs, conv_outputs=conv_outputs.detach().numpy(),
               conv_outputs_mat=conv_mat.detach().numpy(), conv_flat=conv_flat.detach().numpy(),
               W1=W1, W2=W2, b1=b1, b2=b2, X1=X1.detach().numpy(), P=P.detach().numpy(), Y=Y,
               grad_Fs_flat=tFs.grad.numpy().reshape(f * f * 3, nf), grad_W1=tW1.grad.numpy(),
               grad_W2=tW2.grad.numpy(), grad_b1=tb1.grad.numpy(), grad_b2=tb2.grad.numpy())
    path = Path(path)
    _atomic_savez(path, **{k: np.ascontiguousarray(v) for k, v in out.items()})
    return path


def _atomic_savez(path: Path, **arrays) -> None:
    """np.savez to a temp file in the same folder, then rename: a written file is a whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_debug_file(path=None, seed: int = 0):
    """The course's ``data/debug_conv_info.npz`` if present, else a generated one.

    Returns ``(dict of arrays, description)``; the description says which file it is.
    Generating needs torch; without it (and without the course file) this raises ImportError.
    """
    course = DATA_DIR / "debug_conv_info.npz"
    if path is None and course.exists():
        path, what = course, "the course's debug_conv_info.npz"
    elif path is None:
        path = DATA_DIR / "debug_conv_info_generated.npz"
        if not path.exists():
            make_debug_file(path, seed=seed)
        what = "a generated debug file (torch conv2d + autograd as the oracle; course file not found)"
    else:
        what = f"debug file {path}"
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    missing = [k for k in DEBUG_KEYS if k not in d]
    if missing:
        raise ValueError(f"{path} is not a debug file: keys {missing} are missing")
    return d, what


# ---- notebook 01 helpers (widgets call these; tests call them too) ----
# (end of notebook 01 helpers)


# =====================================================================================
# 3. network
# =====================================================================================
#   conv_outputs_mat = MX (x) Fs_flat + b0      (n_p, nf, n)
#   conv_flat = max(0, conv_outputs_mat.reshape((n_p*nf, n), order='C'))
#   X1 = max(0, W1 conv_flat + b1),  S = W2 X1 + b2,  P = softmax(S)
#   loss = -1/n sum_i y_smooth_i . log p_i,   cost = loss + lam (|Fs|^2 + |W1|^2 + |W2|^2)
# Multi-size filters (bonus): params holds Fs_f{f}, b0_f{f} per branch; the branches' conv_flat
# are stacked (in increasing f) before W1. A single branch uses the plain keys Fs and b0.

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
    need = ["W1", "b1", "W2", "b2"]
    for k in need:
        if k not in params:
            raise ValueError(f"params is missing {k!r}; expected keys Fs, b0, W1, b1, W2, b2")
    width = 0
    for f, kF, kb in _branches(params):
        Fs = params[kF]
        n_p = _check_f(f)
        if Fs.ndim != 4 or Fs.shape[:3] != (f, f, 3):
            raise ValueError(f"{kF} must have shape (f, f, 3, nf); got {Fs.shape}")
        nf = Fs.shape[3]
        if kb not in params or params[kb].shape != (nf, 1):
            raise ValueError(f"{kb} must have shape ({nf}, 1) to match {kF} {Fs.shape}")
        width += n_p * nf
    nh, K = params["W1"].shape[0], params["W2"].shape[0]
    for k, shape in (("W1", (nh, width)), ("b1", (nh, 1)), ("W2", (K, nh)), ("b2", (K, 1))):
        if params[k].shape != shape:
            raise ValueError(f"{k} must have shape {shape} for this architecture; got {params[k].shape}")
    return params


def init_params(f, nf, nh: int, K: int = 10, seed: int = 0, dtype=np.float32) -> dict:
    """He-initialised parameters in the spec layout (biases zero).

    f, nf: ints for one conv layer, or equal-length tuples for multi-size filters (bonus).
    Returns Fs (f, f, 3, nf), b0 (nf, 1), W1 (nh, n_p*nf), b1 (nh, 1), W2 (K, nh), b2 (K, 1);
    with tuples, Fs_f{f}/b0_f{f} per branch and W1 (nh, sum_b n_p_b*nf_b).
    He: std = sqrt(2 / fan_in), fan_in = f*f*3, n_p*nf and nh.
    """
    rng = np.random.default_rng(seed)
    multi = isinstance(f, (tuple, list))
    fs = tuple(f) if multi else (f,)
    nfs = tuple(nf) if isinstance(nf, (tuple, list)) else (nf,) * len(fs)
    if len(nfs) != len(fs) or len(set(fs)) != len(fs):
        raise ValueError(f"need one nf per distinct filter size; got f={f}, nf={nf}")
    p, width = {}, 0
    for fi, nfi in sorted(zip(fs, nfs)):
        n_p = _check_f(fi)
        kF, kb = ("Fs", "b0") if not multi else (f"Fs_f{fi}", f"b0_f{fi}")
        p[kF] = (rng.standard_normal((fi, fi, 3, nfi)) * np.sqrt(2.0 / (fi * fi * 3))).astype(dtype)
        p[kb] = np.zeros((nfi, 1), dtype)
        width += n_p * nfi
    p["W1"] = (rng.standard_normal((nh, width)) * np.sqrt(2.0 / width)).astype(dtype)
    p["b1"] = np.zeros((nh, 1), dtype)
    p["W2"] = (rng.standard_normal((K, nh)) * np.sqrt(2.0 / nh)).astype(dtype)
    p["b2"] = np.zeros((K, 1), dtype)
    return p


def smooth_targets(Y: np.ndarray, eps: float) -> np.ndarray:
    """Label smoothing of one-hot targets: 1-eps on the true class, eps/(K-1) elsewhere.

    Y: (K, n) one-hot  ->  (K, n) same dtype. eps=0 returns Y unchanged.
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label smoothing eps must be in [0, 1); got {eps}")
    if eps == 0:
        return Y
    K = Y.shape[0]
    return Y * (1.0 - eps) + (1.0 - Y) * (eps / (K - 1))


# ---- the batch-first core: every product is one GEMM; used by the spec functions and train ----

def _targets(y: np.ndarray, K: int, eps: float, dtype) -> np.ndarray:
    """int labels (n,) -> smoothed targets (n, K)."""
    T = np.full((y.shape[0], K), eps / (K - 1) if eps else 0.0, dtype=dtype)
    T[np.arange(y.shape[0]), y] = 1.0 - eps
    return T


def _forward_core(params: dict, mxs: list, drop_mask=None) -> dict:
    """Batch-first forward. mxs: one (n, n_p, d) array per branch. Returns H (n, sum n_p*nf)
    after ReLU, X1 (n, nh) after ReLU (and dropout), S (n, K), P (n, K), logP (n, K)."""
    hs = []
    for (f, kF, kb), mx in zip(_branches(params), mxs):
        n, n_p, d = mx.shape
        Fs = params[kF]
        nf = Fs.shape[3]
        c = mx.reshape(n * n_p, d) @ Fs.reshape(d, nf)
        c += params[kb].reshape(1, nf)
        np.maximum(c, 0, out=c)
        hs.append(c.reshape(n, n_p * nf))
    H = hs[0] if len(hs) == 1 else np.concatenate(hs, axis=1)
    X1 = H @ params["W1"].T
    X1 += params["b1"].T
    np.maximum(X1, 0, out=X1)
    if drop_mask is not None:
        X1 *= drop_mask
    S = X1 @ params["W2"].T
    S += params["b2"].T
    Z = S - S.max(axis=1, keepdims=True)
    E = np.exp(Z)
    se = E.sum(axis=1, keepdims=True)
    P = E / se
    logP = Z - np.log(se)
    return {"H": H, "X1": X1, "S": S, "P": P, "logP": logP}


def _reg(params: dict) -> float:
    return float(sum(np.sum(params[k] * params[k], dtype=np.float64)
                     for k in params if k.startswith(("Fs", "W"))))


def _backward_core(params: dict, mxs: list, fw: dict, T: np.ndarray, lam: float,
                   drop_mask=None) -> dict:
    """Gradients of the cost for the batch-first forward ``fw`` with targets T (n, K)."""
    n = T.shape[0]
    G = fw["P"] - T
    G *= 1.0 / n
    X1, H = fw["X1"], fw["H"]
    g = {"W2": G.T @ X1, "b2": G.sum(axis=0).reshape(-1, 1)}
    G1 = G @ params["W2"]
    if drop_mask is not None:
        G1 *= drop_mask
    G1 *= X1 > 0
    g["W1"] = G1.T @ H
    g["b1"] = G1.sum(axis=0).reshape(-1, 1)
    GH = G1 @ params["W1"]
    GH *= H > 0
    off = 0
    for (f, kF, kb), mx in zip(_branches(params), mxs):
        n_, n_p, d = mx.shape
        Fs = params[kF]
        nf = Fs.shape[3]
        Gc = GH[:, off:off + n_p * nf]
        off += n_p * nf
        Gc = np.ascontiguousarray(Gc).reshape(n * n_p, nf)
        g[kF] = (mx.reshape(n * n_p, d).T @ Gc).reshape(Fs.shape)
        g[kb] = Gc.sum(axis=0).reshape(-1, 1)
    if lam:
        for k in g:
            if k.startswith(("Fs", "W")):
                g[k] += (2.0 * lam) * params[k]
    return g


def _as_branch_list(params: dict, MX) -> list:
    """Spec MX (n_p, d, n) or {f: MX} -> list of batch-first arrays, one per branch."""
    br = _branches(params)
    if isinstance(MX, dict):
        try:
            mxs = [MX[f] for f, _, _ in br]
        except KeyError as e:
            raise ValueError(f"MX dict needs one MX per filter size {filter_sizes(params)}") from e
    elif len(br) == 1:
        mxs = [MX]
    else:
        raise ValueError(f"this network has filter sizes {filter_sizes(params)}: pass MX as a dict {{f: MX_f}}")
    out = []
    for (f, kF, _), m in zip(br, mxs):
        m = np.asarray(m)
        d = f * f * 3
        if m.ndim != 3 or m.shape[:2] != (_check_f(f), d):
            raise ValueError(f"MX for f={f} must have shape ({_check_f(f)}, {d}, n); got {m.shape}")
        if m.dtype != params[kF].dtype:
            raise ValueError(f"MX is {m.dtype} but the parameters are {params[kF].dtype}; "
                             f"convert one of them (e.g. MX.astype(np.{params[kF].dtype}))")
        out.append(as_batch_first(m))
    return out


def forward(params: dict, MX) -> dict:
    """Forward pass in the spec layout.

    params: see init_params.  MX: (n_p, f*f*3, n) (or {f: MX_f} for multi-size filters).
    Returns conv_outputs_mat (n_p, nf, n) before ReLU (single branch only),
    conv_flat (n_p*nf, n) after ReLU, X1 (nh, n), S (K, n), P (K, n).
    """
    check_params(params)
    mxs = _as_branch_list(params, MX)
    fw = _forward_core(params, mxs)
    out = {"conv_flat": fw["H"].T, "X1": fw["X1"].T, "S": fw["S"].T, "P": fw["P"].T}
    if len(mxs) == 1:
        f, kF, kb = _branches(params)[0]
        n, n_p, d = mxs[0].shape
        out["conv_outputs_mat"] = conv_fast(MX if not isinstance(MX, dict) else MX[f],
                                            flatten_filters(params[kF])) + params[kb][None]
    return out


def _check_Y(Y: np.ndarray, n: int, K: int) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.shape != (K, n):
        raise ValueError(f"Y must be one-hot with shape (K, n) = ({K}, {n}); got {Y.shape}. "
                         "Use one_hot(y) for int labels")
    return Y


def compute_loss(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0):
    """Mean cross-entropy against label-smoothed targets, and the L2-regularised cost.

    MX: (n_p, f*f*3, n);  Y: (K, n) one-hot.  Returns (loss, cost) as Python floats, with
    cost = loss + lam * (|Fs|^2 + |W1|^2 + |W2|^2).
    """
    check_params(params)
    mxs = _as_branch_list(params, MX)
    n, K = mxs[0].shape[0], params["W2"].shape[0]
    Y = _check_Y(Y, n, K)
    fw = _forward_core(params, mxs)
    Ys = smooth_targets(Y.astype(fw["logP"].dtype), eps)
    loss = float(-np.sum(Ys.T * fw["logP"], dtype=np.float64) / n)
    return loss, loss + lam * _reg(params)


def compute_grads(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0) -> dict:
    """Gradients of the cost, a dict with the same keys and shapes as params.

    MX: (n_p, f*f*3, n);  Y: (K, n) one-hot.  grad Fs is the spec's
    ``einsum('ijn,jln->il', MXt, GG)`` reshaped to Fs's shape, computed here as one GEMM.
    """
    check_params(params)
    mxs = _as_branch_list(params, MX)
    n, K = mxs[0].shape[0], params["W2"].shape[0]
    Y = _check_Y(Y, n, K)
    fw = _forward_core(params, mxs)
    T = np.ascontiguousarray(smooth_targets(Y.astype(fw["P"].dtype), eps).T)
    return _backward_core(params, mxs, fw, T, lam)


def grad_Fs_einsum(MX: np.ndarray, G_batch: np.ndarray, nf: int) -> np.ndarray:
    """The spec's gradient for the filters, for teaching and checking.

    MX: (n_p, f*f*3, n);  G_batch: (n_p*nf, n) gradient at conv_flat's input
    -> grad_Fs_flat: (f*f*3, nf) = einsum('ijn,jln->il', MXt, GG), GG = G_batch.reshape((n_p, nf, n)).
    """
    n_p, d, n = MX.shape
    GG = G_batch.reshape((n_p, nf, n), order="C")
    MXt = np.transpose(MX, (1, 0, 2))
    return np.einsum("ijn,jln->il", MXt, GG, optimize=True)

# =====================================================================================
# 4. training
# =====================================================================================
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402


def n_updates(n_cycles: int, step: int, increasing: bool = False) -> int:
    """Total updates: 2*step*n_cycles, or 2*step*(2**n_cycles - 1) with doubling cycles."""
    return 2 * step * ((2 ** n_cycles - 1) if increasing else n_cycles)


def cyclic_eta(t, eta_min: float, eta_max: float, n_s: int, increasing: bool = False,
               decay: float = 1.0):
    """Triangular cyclic learning rate (Assignment 2), optionally with doubling cycle lengths.

    t: int or (T,) int array of update indices (0-based).  Cycle i has step n_s (or n_s*2**i
    when ``increasing``) and peak eta_max * decay**i:  eta rises linearly from eta_min at the
    cycle start to the peak after one step, and falls back to eta_min after the second.
    Returns a float (scalar t) or a (T,) float64 array.
    """
    t_arr = np.asarray(t, dtype=np.float64)
    if np.any(t_arr < 0):
        raise ValueError("update index t must be >= 0")
    if increasing:
        # cycle i covers [2 n_s (2^i - 1), 2 n_s (2^(i+1) - 1))
        i = np.floor(np.log2(t_arr / (2.0 * n_s) + 1.0))
        # guard against floating error at the exact boundaries
        start = 2.0 * n_s * (2.0 ** i - 1.0)
        i = np.where(t_arr < start, i - 1, i)
        i = np.where(t_arr >= 2.0 * n_s * (2.0 ** (i + 1) - 1.0), i + 1, i)
        start = 2.0 * n_s * (2.0 ** i - 1.0)
        step = n_s * 2.0 ** i
    else:
        i = np.floor(t_arr / (2.0 * n_s))
        start = 2.0 * n_s * i
        step = np.full_like(t_arr, float(n_s))
    top = eta_max * decay ** i
    u = (t_arr - start) / step            # in [0, 2)
    eta = np.where(u <= 1.0, eta_min + u * (top - eta_min), top - (u - 1.0) * (top - eta_min))
    return float(eta) if np.ndim(t) == 0 else eta


@dataclass
class TrainConfig:
    """Everything that defines a training run (the defaults are the spec's arch2 protocol).

    Cyclic LR: n_cycles, step (n_s, or step_1 when ``increasing``), eta_min, eta_max,
    eta_decay (peak multiplier per cycle, 1 = off).  batch_size, lam (L2), eps (label smoothing).
    eval_every: metrics every this many updates (default step//2) on ``eval_train_n`` fixed
    training images and on the test data.  Bonus options, all off by default:
    flip (random horizontal flips), translate (max random shift in pixels), dropout (drop
    probability on the hidden layer), tta (average flip/no-flip at evaluation).
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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)

    def validate(self) -> "TrainConfig":
        if self.step < 1 or self.n_cycles < 1 or self.batch_size < 1:
            raise ValueError("step, n_cycles and batch_size must be >= 1")
        if not 0 < self.eta_min <= self.eta_max:
            raise ValueError(f"need 0 < eta_min <= eta_max; got {self.eta_min}, {self.eta_max}")
        if not 0 <= self.eps < 1 or not 0 <= self.dropout < 1 or self.lam < 0:
            raise ValueError("need 0 <= eps < 1, 0 <= dropout < 1 and lam >= 0")
        if self.translate < 0:
            raise ValueError("translate is a maximum shift in pixels and must be >= 0")
        return self


@dataclass
class History:
    """What a training run measured. Metric lists are aligned with ``t`` (update index).

    loss: cross-entropy against the hard labels; loss_ls: against the smoothed targets the
    run optimised (equal to loss when eps=0); cost: loss_ls + lam*|W|^2; acc in [0, 1].
    eta: (n_updates,) the schedule. time_train / time_eval: wall seconds spent in updates and
    in evaluation. interrupted: True when stopped early by Ctrl-C.
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
    """Raised when the training loss becomes NaN or inf. ``.history`` holds the partial run."""

    def __init__(self, msg: str, history: "History"):
        super().__init__(msg)
        self.history = history


# ---- augmentation on MX: every flip/shift is a precomputed gather on the flat MX row ----

def aug_tables(f: int, flip: bool = False, max_shift: int = 0) -> np.ndarray:
    """Gather tables that apply an image transform directly to batch-first MX rows.

    Returns idx: (n_t, 3072) int32. For a batch MXb (b, n_p, d) flattened to rows (b, 3072) and
    padded with one zero column, ``padded[i, idx[k]]`` is the MX row of image i transformed by
    transform k: a horizontal flip (if ``flip``) and/or a shift by (dy, dx) in
    [-max_shift, max_shift]^2 pixels with zero fill (zero = the training mean after
    normalisation). Row 0 is the identity. Tests check it equals ``mx_batch_first`` of the
    transformed images exactly.
    """
    n_p = _check_f(f)
    ident = np.arange(3072, dtype=np.float64)[:, None]
    x_of_q = mx_batch_first(ident, f, dtype=np.float64)[0].ravel().astype(np.int64)  # MX pos -> X index
    q_of_x = np.empty(3072, np.int64)
    q_of_x[x_of_q] = np.arange(3072)
    ch, rem = np.divmod(x_of_q, 1024)
    r, c = np.divmod(rem, 32)
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1)
              for dx in range(-max_shift, max_shift + 1)]
    shifts.sort(key=lambda s: (s != (0, 0)))           # identity first
    tables = []
    for fl in ((False, True) if flip else (False,)):
        for dy, dx in shifts:
            rr, cc = r - dy, c - dx                       # out[r, c] = in[r - dy, c - dx] ...
            ok = (rr >= 0) & (rr < 32) & (cc >= 0) & (cc < 32)
            if fl:
                cc = 31 - cc                              # ... of the mirrored image
            src = q_of_x[ch * 1024 + np.clip(rr, 0, 31) * 32 + np.clip(cc, 0, 31)]
            tables.append(np.where(ok, src, 3072).astype(np.int32))
    return np.stack(tables)


def augment_mx(mxb: np.ndarray, tables: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Apply transform ``choice[i]`` (row of ``tables``) to image i of batch-first MX.

    mxb: (b, n_p, d);  tables: (n_t, 3072) from aug_tables;  choice: (b,) ints  ->  (b, n_p, d).
    """
    b = mxb.shape[0]
    padded = np.empty((b, 3073), dtype=mxb.dtype)
    padded[:, :3072] = mxb.reshape(b, 3072)
    padded[:, 3072] = 0
    return np.take_along_axis(padded, tables[choice], axis=1).reshape(mxb.shape)


def shift_images(X: np.ndarray, dy: int, dx: int, flip: bool = False) -> np.ndarray:
    """Reference transform in image space: X (3072, n) -> (3072, n), optionally mirrored
    left-right, then shifted down by dy and right by dx pixels with zero fill."""
    ims = to_images(_check_X(X))
    if flip:
        ims = ims[:, ::-1]
    out = np.zeros_like(ims)
    H = W = 32
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = ims[ys, xs]
    return to_columns(out)

def mx_for(params: dict, X: np.ndarray) -> list:
    """Batch-first MX for every filter size of ``params``: X (3072, n) -> [(n, n_p, d), ...]."""
    dt = params["W1"].dtype
    return [mx_batch_first(X, f, dtype=dt) for f in filter_sizes(params)]


def evaluate(params: dict, mxs: list, y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
             chunk: int = 2500, tta: bool = False, P_out: bool = False) -> dict:
    """Metrics on a whole split, in chunks. mxs: batch-first MX per branch (see mx_for);
    y: (n,) int labels. Returns loss (hard labels), loss_ls (smoothed), cost, acc, and P (K, n)
    if ``P_out``. ``tta`` averages the probabilities of each image and its mirror image."""
    n, K = y.shape[0], params["W2"].shape[0]
    flips = [aug_tables(f, flip=True)[1] for f in filter_sizes(params)] if tta else None
    hard = soft = 0.0
    correct = 0
    Ps = []
    for s in range(0, n, chunk):
        mb = [m[s:s + chunk] for m in mxs]
        P = _forward_core(params, mb)["P"]
        if tta:
            mf = [augment_mx(m, fl[None], np.zeros(len(m), int)) for m, fl in zip(mb, flips)]
            P = 0.5 * (P + _forward_core(params, mf)["P"])
        logP = np.log(np.maximum(P, np.finfo(P.dtype).tiny))
        yb = y[s:s + chunk]
        ar = np.arange(len(yb))
        hard -= float(logP[ar, yb].sum(dtype=np.float64))
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
    """Class probabilities. X: (3072, n) normalised -> P: (K, n)."""
    y0 = np.zeros(_check_X(X).shape[1], dtype=np.int64)
    return evaluate(params, mx_for(params, X), y0, tta=tta, P_out=True)["P"]


def train_step(params: dict, mxs: list, y: np.ndarray, eta: float, lam: float = 0.0,
               eps: float = 0.0, drop_mask=None) -> float:
    """One SGD update in place on a batch. mxs: batch-first MX per branch, (b, n_p, d);
    y: (b,) int labels. Returns the batch loss (smoothed targets, before the update)."""
    K = params["W2"].shape[0]
    fw = _forward_core(params, mxs, drop_mask)
    T = _targets(y, K, eps, fw["P"].dtype)
    loss = -float(np.sum(T * fw["logP"], dtype=np.float64)) / len(y)
    g = _backward_core(params, mxs, fw, T, lam, drop_mask)
    for k, gk in g.items():
        gk *= eta
        params[k] -= gk
    return loss


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except Exception:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)


def train(params: dict, X_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig | None = None,
          X_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *,
          data_name: str = "", callback=None):
    """Mini-batch SGD with cyclic learning rates. Updates a copy of ``params``.

    X_train: (3072, n) float32 normalised, y_train: (n,) int;  X_test/y_test likewise (optional).
    Mini-batches come from a seeded shuffle every epoch (the remainder of an epoch is dropped).
    Every ``cfg.eval_period`` updates and at the end, metrics are computed on a fixed chunk of
    ``cfg.eval_train_n`` training images and on the whole test set. ``callback(history)`` is
    called after each evaluation (the widgets use it to redraw).
    Returns ``(params, history)``. A NaN/inf loss raises TrainingDiverged (with the partial
    history); Ctrl-C returns the partial history with ``history.interrupted = True``.
    """
    cfg = (cfg or TrainConfig()).validate()
    params = {k: v.copy() for k, v in check_params(params).items()}
    dt = params["W1"].dtype
    X_train = _check_X(X_train, "X_train")
    y_train = np.asarray(y_train).astype(np.int64).ravel()
    if y_train.shape[0] != X_train.shape[1]:
        raise ValueError(f"y_train has {y_train.shape[0]} labels for {X_train.shape[1]} images")
    n, B = X_train.shape[1], cfg.batch_size
    if B > n:
        raise ValueError(f"batch_size {B} is larger than the training set ({n} images)")
    rng = np.random.default_rng(cfg.seed)
    mx_tr = mx_for(params, X_train.astype(dt, copy=False))
    eval_idx = np.sort(rng.permutation(n)[:min(cfg.eval_train_n, n)])
    mx_ev = [m[eval_idx] for m in mx_tr]
    y_ev = y_train[eval_idx]
    has_test = X_test is not None
    if has_test:
        X_test = _check_X(X_test, "X_test")
        mx_te = mx_for(params, X_test.astype(dt, copy=False))
        y_te = np.asarray(y_test).astype(np.int64).ravel()
    etas = cfg.etas()
    T = len(etas)
    hist = History(eta=etas.tolist(), data=data_name, config=cfg.to_dict())
    tables = None
    if cfg.flip or cfg.translate:
        tables = [aug_tables(f, cfg.flip, cfg.translate) for f in filter_sizes(params)]
    keep = 1.0 - cfg.dropout
    nh = params["W1"].shape[0]

    def do_eval(t):
        t0 = time.perf_counter()
        tr = evaluate(params, mx_ev, y_ev, cfg.lam, cfg.eps, tta=cfg.tta)
        hist.t.append(int(t))
        for k in ("loss", "loss_ls", "cost", "acc"):
            getattr(hist, "train_" + k).append(tr[k])
        if has_test:
            te = evaluate(params, mx_te, y_te, cfg.lam, cfg.eps, tta=cfg.tta)
            for k in ("loss", "loss_ls", "cost", "acc"):
                getattr(hist, "test_" + k).append(te[k])
        hist.time_eval += time.perf_counter() - t0
        if callback is not None:
            callback(hist)

    bar = _progress(T, cfg.progress, data_name or "train")
    per_epoch = n // B
    order = None
    t = 0
    try:
        t_start = time.perf_counter()
        for t in range(T):
            if t % cfg.eval_period == 0:
                t_ev = hist.time_eval
                do_eval(t)
                t_start += hist.time_eval - t_ev
            j = t % per_epoch
            if j == 0:
                order = rng.permutation(n)
            idx = np.sort(order[j * B:(j + 1) * B])
            mb = [m[idx] for m in mx_tr]
            if tables is not None:
                choice = rng.integers(0, len(tables[0]), size=B)
                mb = [augment_mx(m, tb, choice) for m, tb in zip(mb, tables)]
            mask = None
            if cfg.dropout:
                mask = (rng.random((B, nh), dtype=np.float32) < keep).astype(dt)
                mask *= 1.0 / keep
            loss = train_step(params, mb, y_train[idx], float(etas[t]), cfg.lam, cfg.eps, mask)
            if not np.isfinite(loss):
                hist.updates_done = t
                hist.time_train = time.perf_counter() - t_start
                raise TrainingDiverged(
                    f"training diverged: the loss became {loss} at update {t} (eta={etas[t]:.3g}). "
                    f"Lower eta_max (now {cfg.eta_max:g}), e.g. to {cfg.eta_max / 3:.2g}, or check "
                    "that the data is normalised", hist)
            if bar is not None and (t + 1) % 50 == 0:
                bar.update(50)
        hist.updates_done = T
        hist.time_train = time.perf_counter() - t_start
        do_eval(T)
    except KeyboardInterrupt:
        hist.interrupted = True
        hist.updates_done = t
        hist.time_train = time.perf_counter() - t_start
        print(f"interrupted at update {t}/{T}: returning the partial history")
    finally:
        if bar is not None:
            bar.close()
    return params, hist


# ---- MX for a whole split, cached on disk ----

def data_hash(X: np.ndarray) -> str:
    """A short blake2b fingerprint of an array's bytes, shape and dtype."""
    import hashlib
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{X.shape}{X.dtype}".encode())
    h.update(np.ascontiguousarray(X).data)
    return h.hexdigest()


def precompute_mx(X: np.ndarray, f: int, dtype=np.float32, cache_dir=None, mmap: bool = True):
    """MX for a whole split, saved once with np.save and reloaded after that.

    X: (3072, n)  ->  MX: (n_p, f*f*3, n) in the spec layout, a transposed view of the
    batch-first array that is stored (so ``as_batch_first(MX)`` is free). The file name holds f,
    the dtype and a hash of X, so changed data never reuses a stale file. ``cache_dir=None``
    uses data/mx_cache; ``cache_dir=False`` disables the cache. Returns (MX, info) where info
    says whether it was loaded or built, the path and the seconds it took.
    """
    X = _check_X(X)
    _check_f(f)
    t0 = time.perf_counter()
    if cache_dir is False:
        mxb = mx_batch_first(X, f, dtype)
        return mxb.transpose(1, 2, 0), {"source": "built", "path": None,
                                        "seconds": time.perf_counter() - t0}
    d = Path(cache_dir) if cache_dir else DATA_DIR / "mx_cache"
    path = d / f"mx_f{f}_{np.dtype(dtype).name}_{data_hash(X)}.npy"
    if path.exists():
        try:
            mxb = np.load(path, mmap_mode="r" if mmap else None)
            if mxb.shape == (X.shape[1], (32 // f) ** 2, f * f * 3):
                return mxb.transpose(1, 2, 0), {"source": "loaded", "path": path,
                                                "seconds": time.perf_counter() - t0}
        except Exception:
            pass  # a damaged cache file is rebuilt below
    mxb = mx_batch_first(X, f, dtype)
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
    try:
        np.save(tmp, mxb)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return mxb.transpose(1, 2, 0), {"source": "built", "path": path,
                                    "seconds": time.perf_counter() - t0}


# ---- checkpoints ----

def save_checkpoint(path, params: dict, cfg: TrainConfig | None = None,
                    history: History | None = None) -> Path:
    """Write params + config + history to one .npz, atomically (temp file, then rename)."""
    check_params(params)
    meta = {"config": cfg.to_dict() if cfg else None,
            "history": history.to_dict() if history else None, "format": 1}
    arrays = {"param_" + k: v for k, v in params.items()}
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    _atomic_savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def load_checkpoint(path, like: dict | None = None):
    """Read a checkpoint written by save_checkpoint -> (params, cfg or None, history or None).

    Keys and shapes are validated; with ``like`` (e.g. init_params(...) of the architecture you
    expect) every array must also match its shape and dtype. Raises ValueError saying which.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            params = {k[6:]: z[k] for k in files if k.startswith("param_")}
            meta = json.loads(str(z["meta"])) if "meta" in files else None
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e}); was it written by "
                         "save_checkpoint?") from e
    if meta is None or not params:
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint (no meta/params)")
    try:
        check_params(params)
    except ValueError as e:
        raise ValueError(f"checkpoint {path} has inconsistent parameters: {e}") from e
    if like is not None:
        if set(like) != set(params):
            raise ValueError(f"checkpoint {path} has keys {sorted(params)}, expected {sorted(like)}")
        for k in like:
            if params[k].shape != like[k].shape or params[k].dtype != like[k].dtype:
                raise ValueError(
                    f"checkpoint {path}: {k} is {params[k].shape} {params[k].dtype}, expected "
                    f"{like[k].shape} {like[k].dtype}; it was saved for another architecture")
    cfg = TrainConfig.from_dict(meta["config"]) if meta.get("config") else None
    hist = History.from_dict(meta["history"]) if meta.get("history") else None
    return params, cfg, hist

def for_mode(cfg: TrainConfig, shrink: int = 20) -> TrainConfig:
    """The config to run now: unchanged normally; in fast mode (WORKBOOK_FAST=1) the step is
    divided by ``shrink`` (at least 10 updates) and evaluation uses at most 1000 training
    images, so a notebook cell finishes in seconds. Fast-mode results are not real results."""
    if not is_fast():
        return cfg
    return dataclasses.replace(cfg, step=max(10, cfg.step // shrink),
                               eval_every=None, eval_train_n=min(cfg.eval_train_n, 1000),
                               progress=False)


def result_row(label: str, params: dict, cfg: TrainConfig, hist: History) -> dict:
    """One results-table row: architecture, settings, final metrics, times, and the data."""
    br = _branches(params)
    return {"run": label, "f": [f for f, _, _ in br] if len(br) > 1 else br[0][0],
            "nf": [params[k].shape[3] for _, k, _ in br] if len(br) > 1 else params[br[0][1]].shape[3],
            "nh": params["W1"].shape[0], "updates": hist.updates_done,
            "n_cycles": cfg.n_cycles, "step": cfg.step, "increasing": cfg.increasing,
            "lam": cfg.lam, "eps": cfg.eps,
            "train_acc": hist.train_acc[-1] if hist.train_acc else None,
            "test_acc": hist.test_acc[-1] if hist.test_acc else None,
            "test_loss": hist.test_loss[-1] if hist.test_loss else None,
            "time_train_s": round(hist.time_train, 3), "time_eval_s": round(hist.time_eval, 3),
            "data": data_label(hist.data), "fast_mode": is_fast()}


def write_results(name: str, rows: list) -> Path:
    """Write rows (dicts, e.g. from result_row) to figures/<name>.json (atomically) and return
    the path. The README's results tables are made from these files."""
    FIG_DIR.mkdir(parents=True, exist_ok=True)
    path = FIG_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"fast_mode": is_fast(), "rows": rows}, indent=1))
    os.replace(tmp, path)
    return path


def results_markdown(rows: list, cols=("run", "f", "nf", "nh", "updates", "lam", "eps",
                                       "test_acc", "time_train_s", "data")) -> str:
    """A markdown table of result rows (accuracies shown in %)."""
    def fmt(k, v):
        if k.endswith("acc") and isinstance(v, float):
            return f"{100 * v:.2f}%"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(k, r.get(k, "")) for k in cols) + " |" for r in rows]
    return "\n".join(lines)


# ---- notebook 03 helpers (widgets call these; tests call them too) ----
# (end of notebook 03 helpers)

# ---- notebook 04 helpers (widgets call these; tests call them too) ----
# (end of notebook 04 helpers)

# ---- notebook 05 helpers (widgets call these; tests call them too) ----
# (end of notebook 05 helpers)


# =====================================================================================
# 5. plots
# =====================================================================================

def _plt():
    import matplotlib
    if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower() \
            and "ipykernel" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def save_fig(fig, name: str) -> Path:
    """Save ``fig`` as figures/<name>.png (folder created) and return the path."""
    FIG_DIR.mkdir(parents=True, exist_ok=True)
    path = FIG_DIR / (name if name.endswith(".png") else name + ".png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def data_label(name: str = "") -> str:
    """A title suffix that never lets synthetic or fast-mode numbers pass as CIFAR-10."""
    tag = name or ""
    if is_fast() and "FAST" not in tag.upper():
        tag = (tag + " [FAST MODE]").strip()
    return tag


def plot_history(runs, metrics=("loss", "cost", "acc"), title: str = "", name: str | None = None,
                 data: str = ""):
    """Training curves, train (solid) vs test (dashed), one panel per metric.

    runs: a History or a dict {label: History}. metrics from loss, loss_ls, cost, acc.
    Saves figures/<name>.png when ``name`` is given. Returns the figure.
    """
    plt = _plt()
    if isinstance(runs, History):
        runs = {"": runs}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes[0], metrics):
        for j, (label, h) in enumerate(runs.items()):
            c = colors[j % len(colors)]
            lab = f"{label} " if label else ""
            ax.plot(h.t, getattr(h, "train_" + m), "-", color=c, label=lab + "train")
            if getattr(h, "test_" + m):
                ax.plot(h.t, getattr(h, "test_" + m), "--", color=c, label=lab + "test")
        ax.set_xlabel("update step")
        ax.set_ylabel({"acc": "accuracy", "loss_ls": "loss (smoothed targets)"}.get(m, m))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    tag = data_label(data or next(iter(runs.values())).data)
    fig.suptitle(f"{title} - {tag}" if tag else title)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def plot_eta(cfg: TrainConfig, name: str | None = None):
    """The learning-rate schedule of ``cfg`` against the update step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(cfg.etas())
    ax.set_xlabel("update step")
    ax.set_ylabel("eta")
    ax.set_title(f"cyclic learning rate ({'doubling' if cfg.increasing else 'fixed'} cycles, "
                 f"step {cfg.step}, {cfg.n_cycles} cycles)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def bar_chart(labels, values, ylabel: str, title: str, name: str | None = None,
              fmt: str = "{:.3g}", data: str = ""):
    """A labelled bar chart (e.g. final test accuracy or training time per architecture)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 2, 3.6))
    bars = ax.bar([str(x) for x in labels], values, color="tab:blue")
    for b, v in zip(bars, values):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    tag = data_label(data)
    ax.set_title(f"{title} - {tag}" if tag else title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig
