"""The lesson: KTH DD2424 Assignment 3, written the way the assignment writes it.

Read it top to bottom beside the spec:

    1. layouts      to_images, to_columns, flatten_filters
    2. convolution  conv_loops (the definition), build_mx_naive / build_mx, conv_matmul, conv_einsum
    3. network      one_hot, init_params (He), forward, smooth_targets, compute_loss, compute_grads
    4. training     sgd_step, cyclic_eta, TrainConfig, History, evaluate, predict, train

Only numpy and the standard library. Nothing here is tuned for speed: the fast version of the
same training (batch-first MX, fused BLAS updates, threads, the bonus features) is
``workbook/engine.py``, and the tests prove it equal to this file.

Layout (the assignment's names and shapes):

    X        (3072, n)          one image per column, CIFAR-10's order (R, G, B planes, row-major)
                                (an (n, 3072) array with n = 3072 cannot be told apart: pass X.T)
    X_ims    (32, 32, 3, n)     X_ims[row, col, channel, i]
    Fs       (f, f, 3, nf)      filters;  Fs_flat = Fs.reshape((f*f*3, nf), order='C')
    MX       (n_p, f*f*3, n)    patch p of image i, flattened in order='C';  n_p = (32/f)**2
    b0 (nf, 1)  W1 (nh, n_p*nf)  b1 (nh, 1)  W2 (K, nh)  b2 (K, 1)
    Y        (K, n)             one-hot targets;  y (n,) int labels
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np


def check_f(f) -> int:
    """n_p = (32/f)**2, or a ValueError when f is not a whole number that divides 32."""
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1 or 32 % f:
        raise ValueError(f"filter width f={f!r} must be an integer that divides 32 "
                         "(1, 2, 4, 8, 16 or 32): the convolution uses stride f")
    return (32 // int(f)) ** 2


def check_shape(a, shape: tuple, name: str) -> np.ndarray:
    """``a`` as an array whose shape matches ``shape`` (None: any size), else a ValueError."""
    a = np.asarray(a)
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}; got {a.shape}")
    return a


def check_normalised(X, name: str = "X") -> np.ndarray:
    """X (3072, n) of finite floats on the scale of normalised images (mean ~0, std ~1)."""
    X = check_shape(X, (3072, None), name)
    S = X[:, ::max(1, X.shape[1] // 256)]
    if not np.issubdtype(X.dtype, np.floating) or not np.isfinite(S).all() or (
            S.size and (abs(S.mean(dtype=np.float64)) > 3 or S.std(dtype=np.float64) > 10)):
        raise ValueError(f"{name} must hold normalised float images (mean 0, std 1 per pixel), "
                         "e.g. workbook.data.normalise(X_train, X_test); load_dataset does it")
    return X


# =====================================================================================
# 1. layouts
# =====================================================================================

def to_images(X: np.ndarray) -> np.ndarray:
    """X (3072, n) -> X_ims (32, 32, 3, n), the spec's
    ``np.transpose(X.reshape((32, 32, 3, n), order='F'), (1, 0, 2, 3))`` (a view)."""
    X = check_shape(X, (3072, None), "X")
    return np.transpose(X.reshape((32, 32, 3, X.shape[1]), order="F"), (1, 0, 2, 3))


def to_columns(X_ims: np.ndarray) -> np.ndarray:
    """The inverse of to_images: X_ims (32, 32, 3, n) -> X (3072, n)."""
    X_ims = check_shape(X_ims, (32, 32, 3, None), "X_ims")
    return np.transpose(X_ims, (1, 0, 2, 3)).reshape((3072, X_ims.shape[3]), order="F")


def flatten_filters(Fs: np.ndarray) -> np.ndarray:
    """Fs (f, f, 3, nf) -> Fs_flat (f*f*3, nf) = ``Fs.reshape((f*f*3, nf), order='C')``."""
    Fs = check_shape(Fs, (None, None, 3, None), "Fs")
    return Fs.reshape((Fs.shape[0] * Fs.shape[1] * 3, Fs.shape[3]), order="C")


# =====================================================================================
# 2. convolution (stride f: the f x f patches do not overlap)
# =====================================================================================

def conv_loops(X_ims: np.ndarray, Fs: np.ndarray) -> np.ndarray:
    """The definition, one dot product per image, patch and filter (slow; the reference).

    X_ims (32, 32, 3, n), Fs (f, f, 3, nf) -> conv_outputs (32/f, 32/f, nf, n) with
    conv_outputs[r, c, k, i] = sum(X_ims[r*f:(r+1)*f, c*f:(c+1)*f, :, i] * Fs[:, :, :, k]).
    """
    X_ims = check_shape(X_ims, (32, 32, 3, None), "X_ims")
    Fs = check_shape(Fs, (None, None, 3, None), "Fs")
    f, nf, n = Fs.shape[0], Fs.shape[3], X_ims.shape[3]
    g = 32 // f
    check_f(f)
    out = np.zeros((g, g, nf, n), dtype=np.result_type(X_ims, Fs))
    for i in range(n):
        for r in range(g):
            for c in range(g):
                patch = X_ims[r * f:(r + 1) * f, c * f:(c + 1) * f, :, i]
                for k in range(nf):
                    out[r, c, k, i] = np.sum(np.multiply(patch, Fs[:, :, :, k]))
    return out


def build_mx_naive(X_ims: np.ndarray, f: int) -> np.ndarray:
    """The spec's loop construction: X_ims (32, 32, 3, n) -> MX (n_p, f*f*3, n).
    Patches are numbered row by row: p = r*(32/f) + c."""
    X_ims = check_shape(X_ims, (32, 32, 3, None), "X_ims")
    n_p, g, n = check_f(f), 32 // f, X_ims.shape[3]
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
    """The same MX without a Python loop: cut the image axes into (patch, offset) pairs and
    move the patch axes first. X_ims (32, 32, 3, n) -> MX (n_p, f*f*3, n)."""
    X_ims = check_shape(X_ims, (32, 32, 3, None), "X_ims")
    n_p, g, n = check_f(f), 32 // f, X_ims.shape[3]
    v = X_ims.reshape(g, f, g, f, 3, n).transpose(0, 2, 1, 3, 4, 5)   # (r, c, dy, dx, ch, i)
    return np.ascontiguousarray(v).reshape(n_p, f * f * 3, n)


def conv_matmul(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """One matrix product per image (eq. 21): MX (n_p, f*f*3, n), Fs_flat (f*f*3, nf)
    -> conv_outputs_mat (n_p, nf, n)."""
    MX = check_shape(MX, (None, None, None), "MX")
    Fs_flat = check_shape(Fs_flat, (MX.shape[1], None), "Fs_flat")
    out = np.zeros((MX.shape[0], Fs_flat.shape[1], MX.shape[2]), np.result_type(MX, Fs_flat))
    for i in range(MX.shape[2]):
        out[:, :, i] = np.matmul(MX[:, :, i], Fs_flat)
    return out


def conv_einsum(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """All images at once: ``np.einsum('ijn,jl->iln', MX, Fs_flat, optimize=True)``."""
    MX = check_shape(MX, (None, None, None), "MX")
    Fs_flat = check_shape(Fs_flat, (MX.shape[1], None), "Fs_flat")
    return np.einsum("ijn,jl->iln", MX, Fs_flat, optimize=True)


# =====================================================================================
# 3. network (eqs. 1-5):
#   conv_outputs_mat = MX (x) Fs_flat + b0                     (n_p, nf, n)
#   conv_flat = max(0, conv_outputs_mat.reshape((n_p*nf, n)))   (n_p*nf, n)
#   X1 = max(0, W1 conv_flat + b1),  S = W2 X1 + b2,  P = softmax(S)
#   loss = -1/n sum_i y_i . log p_i,  cost = loss + lam (|Fs|^2 + |W1|^2 + |W2|^2)
# =====================================================================================

def one_hot(y, K: int = 10, dtype=np.float32) -> np.ndarray:
    """y (n,) int labels in 0..K-1 -> Y (K, n) with Y[y[i], i] = 1."""
    y = np.asarray(y).ravel()
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= K):
        raise ValueError(f"y must hold int labels 0..{K - 1}; got dtype {y.dtype}, "
                         f"range [{y.min()}, {y.max()}]")
    Y = np.zeros((K, y.size), dtype=dtype)
    Y[y, np.arange(y.size)] = 1
    return Y


def init_params(f: int, nf: int, nh: int, K: int = 10, seed: int = 0, dtype=np.float32) -> dict:
    """He initialisation, std = sqrt(2 / fan_in), biases zero. Returns Fs (f, f, 3, nf),
    b0 (nf, 1), W1 (nh, n_p*nf), b1 (nh, 1), W2 (K, nh), b2 (K, 1)."""
    n_p = check_f(f)
    for name, v in (("nf", nf), ("nh", nh), ("K", K)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    rng = np.random.default_rng(seed)
    fan_in = {"Fs": f * f * 3, "W1": n_p * nf, "W2": nh}
    p = {"Fs": rng.standard_normal((f, f, 3, nf)) * np.sqrt(2 / fan_in["Fs"]),
         "b0": np.zeros((nf, 1)),
         "W1": rng.standard_normal((nh, n_p * nf)) * np.sqrt(2 / fan_in["W1"]),
         "b1": np.zeros((nh, 1)),
         "W2": rng.standard_normal((K, nh)) * np.sqrt(2 / fan_in["W2"]),
         "b2": np.zeros((K, 1))}
    return {k: v.astype(dtype) for k, v in p.items()}


def softmax(S: np.ndarray) -> np.ndarray:
    """Column-wise softmax of scores S (K, n); the max is subtracted first (no overflow)."""
    E = np.exp(S - S.max(axis=0, keepdims=True))
    return E / E.sum(axis=0, keepdims=True)


def forward(params: dict, MX: np.ndarray) -> dict:
    """The forward pass: MX (n_p, f*f*3, n) -> the debug file's intermediates:
    conv_outputs_mat (n_p, nf, n) before ReLU, conv_flat (n_p*nf, n), X1 (nh, n), S, P (K, n)."""
    Fs_flat = flatten_filters(params["Fs"])
    n_p, d, n = check_shape(MX, (None, Fs_flat.shape[0], None), "MX").shape
    nf = Fs_flat.shape[1]
    conv_outputs_mat = np.einsum("ijn,jl->iln", MX, Fs_flat, optimize=True) + params["b0"][None]
    conv_flat = np.fmax(conv_outputs_mat.reshape((n_p * nf, n), order="C"), 0)
    X1 = np.fmax(params["W1"] @ conv_flat + params["b1"], 0)
    S = params["W2"] @ X1 + params["b2"]
    return {"conv_outputs_mat": conv_outputs_mat, "conv_flat": conv_flat, "X1": X1, "S": S,
            "P": softmax(S)}


def smooth_targets(Y: np.ndarray, eps: float) -> np.ndarray:
    """Label smoothing (eq. 23): one-hot Y (K, n) -> 1 - eps on the true class, eps/(K-1)
    on each of the others. eps = 0 gives Y back."""
    if not 0 <= eps < 1:
        raise ValueError(f"label smoothing eps must be in [0, 1); got {eps}")
    K = Y.shape[0]
    return Y * (1 - eps) + (1 - Y) * (eps / (K - 1))


def l2_penalty(params: dict) -> float:
    """|Fs|^2 + |W1|^2 + |W2|^2: the filters and weights, never the biases."""
    return float(sum(np.sum(np.square(v, dtype=np.float64)) for k, v in params.items()
                     if k.startswith(("Fs", "W"))))


def compute_loss(params: dict, MX: np.ndarray, Y: np.ndarray, lam: float = 0.0,
                 eps: float = 0.0) -> tuple:
    """(loss, cost): the mean cross-entropy against the smoothed targets, and
    loss + lam * (|Fs|^2 + |W1|^2 + |W2|^2). MX (n_p, f*f*3, n), Y (K, n) one-hot."""
    P = forward(params, MX)["P"]
    Y = check_shape(Y, P.shape, "Y")
    logP = np.log(np.maximum(P, np.finfo(P.dtype).tiny))
    loss = float(-np.sum(smooth_targets(Y, eps) * logP, dtype=np.float64) / Y.shape[1])
    return loss, loss + lam * l2_penalty(params)


def compute_grads(params: dict, MX: np.ndarray, Y: np.ndarray, lam: float = 0.0,
                  eps: float = 0.0) -> dict:
    """The backward pass, gradients of the cost keyed like params (same shapes):

        G = -(Y_smooth - P);  grad W2 = G X1^T / n,  grad b2 = G 1 / n
        G = W2^T G * (X1 > 0);  grad W1 = G conv_flat^T / n,  grad b1 = G 1 / n
        G_batch = W1^T G * (conv_flat > 0);  GG = G_batch.reshape((n_p, nf, n))
        grad Fs_flat = einsum('ijn,jln->il', MXt, GG) / n,  grad b0 = sum of GG over p, i / n
        and + 2 lam W for Fs, W1, W2.
    """
    fw = forward(params, MX)
    n_p, d, n = MX.shape
    nf = params["Fs"].shape[3]
    Y = check_shape(Y, fw["P"].shape, "Y")
    G = -(smooth_targets(Y, eps) - fw["P"])
    g = {"W2": G @ fw["X1"].T / n, "b2": G.sum(axis=1, keepdims=True) / n}
    G = (params["W2"].T @ G) * (fw["X1"] > 0)
    g["W1"] = G @ fw["conv_flat"].T / n
    g["b1"] = G.sum(axis=1, keepdims=True) / n
    G_batch = (params["W1"].T @ G) * (fw["conv_flat"] > 0)
    GG = G_batch.reshape((n_p, nf, n), order="C")
    MXt = np.transpose(MX, (1, 0, 2))
    grad_Fs_flat = np.einsum("ijn,jln->il", MXt, GG, optimize=True) / n
    g["Fs"] = grad_Fs_flat.reshape(params["Fs"].shape, order="C")
    g["b0"] = GG.sum(axis=(0, 2)).reshape(nf, 1) / n
    for k in ("Fs", "W1", "W2"):
        g[k] = g[k] + 2 * lam * params[k]
    return g


# =====================================================================================
# 4. training
# =====================================================================================

def sgd_step(params: dict, grads: dict, eta: float, lam: float) -> dict:
    """One SGD update; returns new params. ``grads`` are the LOSS gradients (compute_grads with
    lam=0), keyed like params; the L2 term is added here, to filters and weights only:

        W <- W - eta (grad W + 2 lam W)          b <- b - eta grad b
    """
    new = {}
    for k, W in params.items():
        if k.startswith("b"):
            new[k] = W - eta * grads[k]
        else:
            new[k] = W - eta * (grads[k] + 2 * lam * W)
    return new


def n_updates(n_cycles: int, step: int, increasing: bool = False) -> int:
    """Total updates: 2 step n_cycles, or 2 step (2**n_cycles - 1) with doubling cycles."""
    return 2 * step * ((2 ** n_cycles - 1) if increasing else n_cycles)


def cyclic_eta(t, eta_min: float, eta_max: float, n_s: int, increasing: bool = False,
               decay: float = 1.0):
    """The triangular cyclic learning rate of Assignment 2, optionally with doubling cycles.

    Cycle i lasts 2 n_s updates (2 n_s 2**i when ``increasing``); eta climbs linearly from
    eta_min to its peak eta_max * decay**i in the first half and falls back in the second.
    t: int or int array of update indices (from 0) -> float or float64 array.
    """
    t_arr = np.asarray(t, dtype=np.float64)
    if increasing:                       # cycle i starts at 2 n_s (2**i - 1)
        i = np.floor(np.log2(t_arr / (2.0 * n_s) + 1.0))
        i = np.where(t_arr < 2.0 * n_s * (2.0 ** i - 1.0), i - 1, i)         # guard rounding
        i = np.where(t_arr >= 2.0 * n_s * (2.0 ** (i + 1) - 1.0), i + 1, i)  # at the borders
        start, step = 2.0 * n_s * (2.0 ** i - 1.0), n_s * 2.0 ** i
    else:
        i = np.floor(t_arr / (2.0 * n_s))
        start, step = 2.0 * n_s * i, float(n_s)
    top = eta_max * decay ** i
    u = (t_arr - start) / step           # in [0, 2): up, then down
    eta = np.where(u <= 1.0, eta_min + u * (top - eta_min), top - (u - 1.0) * (top - eta_min))
    return float(eta) if np.ndim(t) == 0 else eta


@dataclass
class TrainConfig:
    """A training run; the defaults are the assignment's arch2 protocol (3 cycles, step 800).
    Metrics every ``eval_every`` updates (default step // 2) on ``eval_train_n`` training
    images and on the test images, and at the end."""
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

    @property
    def n_updates(self) -> int:
        return n_updates(self.n_cycles, self.step, self.increasing)

    @property
    def eval_period(self) -> int:
        return int(self.eval_every or max(1, self.step // 2))

    def etas(self) -> np.ndarray:
        """The learning rate of every update, (n_updates,)."""
        return cyclic_eta(np.arange(self.n_updates), self.eta_min, self.eta_max, self.step,
                          self.increasing, self.eta_decay)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self):
        """Self, or a ValueError naming the field: each field must have its declared type
        (True is not an int, 4.5 is not an int, 'False' is not a bool)."""
        for fd in dataclasses.fields(self):
            v, kind = getattr(self, fd.name), str(fd.type)
            ok = {"int": isinstance(v, (int, np.integer)) and not isinstance(v, bool),
                  "bool": isinstance(v, (bool, np.bool_)),
                  "float": isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                  and np.isfinite(v)}.get(kind.split(" ")[0], True)
            if kind.startswith("int |"):
                ok = v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                   and v >= 1)
            if not ok:
                kind = kind.replace("int | None", "None or an int >= 1")
                raise ValueError(f"{type(self).__name__}.{fd.name} must be {kind}; got {v!r}")
        for name, ok, want in (
                ("n_cycles", self.n_cycles >= 1, ">= 1"), ("step", self.step >= 1, ">= 1"),
                ("batch_size", self.batch_size >= 1, ">= 1"), ("seed", self.seed >= 0, ">= 0"),
                ("eval_train_n", self.eval_train_n >= 1, ">= 1"), ("lam", self.lam >= 0, ">= 0"),
                ("eta_min", 0 < self.eta_min <= self.eta_max, f"in (0, eta_max={self.eta_max}]"),
                ("eps", 0 <= self.eps < 1, "in [0, 1)"), ("eta_decay", self.eta_decay > 0, "> 0")):
            if not ok:
                raise ValueError(f"{type(self).__name__}.{name} must be {want}; "
                                 f"got {getattr(self, name)!r}")
        return self


@dataclass
class History:
    """What a run measured. The metric lists line up with ``t`` (the update index).
    loss: cross-entropy on the hard labels; loss_ls: on the smoothed targets trained on;
    cost: loss_ls + lam |W|^2; acc in [0, 1]. eta: the planned schedule, one per update.
    status: 'complete', or why the run ended early ('interrupted', 'stopped', 'failed',
    'diverged'); updates_done: how many updates it made."""
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
    status: str = "running"
    data: str = ""
    config: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def final_test_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    def record(self, t: int, train: dict, test: dict | None) -> None:
        """Append one evaluation (dicts of evaluate) made before update t."""
        self.t.append(int(t))
        for split, m in (("train", train), ("test", test)):
            for k in ("loss", "loss_ls", "cost", "acc"):
                if m is not None:
                    getattr(self, f"{split}_{k}").append(m[k])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf; ``.params`` and ``.history`` hold the run up to there."""

    def __init__(self, msg: str, params: dict, history: History):
        super().__init__(msg)
        self.params, self.history = params, history


def evaluate(params: dict, X: np.ndarray, y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
             chunk: int = 1000) -> dict:
    """Metrics on a whole split, computed in chunks of images: loss (hard labels), loss_ls
    (smoothed targets), cost (loss_ls + lam |W|^2) and acc. X (3072, n), y (n,) int."""
    X = check_shape(X, (3072, None), "X")
    K, f, n = params["W2"].shape[0], params["Fs"].shape[0], X.shape[1]
    hard = soft = correct = 0.0
    for s in range(0, n, chunk):
        P = forward(params, build_mx(to_images(X[:, s:s + chunk]), f))["P"]
        logP = np.log(np.maximum(P, np.finfo(P.dtype).tiny))
        Y = one_hot(y[s:s + chunk], K, P.dtype)
        hard -= float(np.sum(Y * logP, dtype=np.float64))
        soft -= float(np.sum(smooth_targets(Y, eps) * logP, dtype=np.float64))
        correct += int(np.sum(P.argmax(axis=0) == y[s:s + chunk]))
    out = {"loss": hard / n, "loss_ls": soft / n, "acc": correct / n}
    out["cost"] = out["loss_ls"] + lam * l2_penalty(params)
    return out


def predict(params: dict, X: np.ndarray) -> np.ndarray:
    """Class probabilities P (K, n) for normalised images X (3072, n)."""
    X = check_normalised(X, "X")
    return forward(params, build_mx(to_images(X), params["Fs"].shape[0]))["P"]


def train(params: dict, X_train, y_train, cfg: TrainConfig | None = None, X_test=None,
          y_test=None, *, data_name: str = "", callback=None):
    """Mini-batch SGD with the cyclic learning rate -> (new params, History).

    X_train (3072, n) normalised floats, y_train (n,) int. Every epoch the images are
    shuffled (seeded by cfg.seed); a batch is the next batch_size of them (the remainder is
    dropped). Metrics every cfg.eval_period updates and at the end; then callback(history).
    Ctrl-C stops the run: the params so far come back with history.status 'interrupted'.
    """
    cfg = (cfg or TrainConfig()).validate()
    X_train = check_normalised(X_train, "X_train")
    if X_train.shape[1] < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} > {X_train.shape[1]} training images")
    y_train = np.asarray(y_train).ravel()
    f, K, B, n = params["Fs"].shape[0], params["W2"].shape[0], cfg.batch_size, X_train.shape[1]
    etas, rng = cfg.etas(), np.random.default_rng(cfg.seed)
    hist = History(eta=etas.tolist(), data=data_name, config=cfg.to_dict())
    X_ev, y_ev = X_train[:, :cfg.eval_train_n], y_train[:cfg.eval_train_n]

    def measure(t):
        t0 = time.perf_counter()
        test = evaluate(params, X_test, y_test, cfg.lam, cfg.eps) if X_test is not None else None
        hist.record(t, evaluate(params, X_ev, y_ev, cfg.lam, cfg.eps), test)
        hist.time_eval += time.perf_counter() - t0
        if not np.isfinite(hist.train_loss[-1]):
            hist.status = "diverged"
            raise TrainingDiverged(f"the loss became {hist.train_loss[-1]} by update {t}; "
                                   f"lower eta_max (now {cfg.eta_max})", params, hist)
        if callback is not None:
            callback(hist)

    t_start = time.perf_counter()
    try:
        for t in range(len(etas)):
            if t % cfg.eval_period == 0:
                measure(t)
            if t % (n // B) == 0:
                order = rng.permutation(n)              # a new epoch: shuffle
            idx = np.sort(order[(t % (n // B)) * B:(t % (n // B) + 1) * B])
            MX = build_mx(to_images(X_train[:, idx]), f)
            grads = compute_grads(params, MX, one_hot(y_train[idx], K, X_train.dtype), 0.0, cfg.eps)
            params = sgd_step(params, grads, float(etas[t]), cfg.lam)
            hist.updates_done = t + 1
        measure(len(etas))
        hist.status = "complete"
    except KeyboardInterrupt:
        hist.status = "interrupted"
    hist.time_train = time.perf_counter() - t_start - hist.time_eval
    return params, hist
