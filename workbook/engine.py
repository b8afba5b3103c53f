"""The engine: the lesson's training (helpers.py), fast, plus the bonus features of Exercise 5.

``engine.train`` takes the arguments of ``helpers.train`` and, for the same seed, data and
settings, returns the same parameters and history up to float rounding (tests/test_engine.py
proves it, as CS231n's fast_layers are proven equal to its layers). What makes it fast:

* MX batch-first (n, n_p, f*f*3) (workbook/layout.py): a batch is one contiguous gather and each
  layer is one GEMM (a BLAS matrix-matrix product) over the whole batch;
* the SGD update fused into the gradient's GEMM, W <- (1 - 2 eta lam) W - eta A^T B, in place
  (workbook/fastsgd.py), and the big intermediates kept in buffers reused every update;
* BLAS threads chosen per update and the next batch gathered on a spare core (workbook/runtime.py).

What it adds (EngineConfig): flips and shifts on MX (workbook/augment.py), dropout on the hidden
layer, TTA (test-time augmentation: the average of the probabilities of an image and its mirror),
patch whitening (workbook/whitening.py), several filter sizes side by side (keys Fs_f4, b0_f4,
Fs_f8, ...: their conv_flat stacked in increasing f before W1), a stop flag, progress hooks, and
runs that end early keeping everything they did (History.status).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np

import helpers as H
from helpers import History, TrainConfig, TrainingDiverged, check_f
from workbook import fastsgd, whitening
from workbook.augment import aug_tables, augment_mx, mirror_tables
from workbook.checks import check_labels, check_mx, check_normalised, check_Y
from workbook.layout import as_batch_first, mx_batch_first
from workbook.runtime import (blas_threads, prefetch_batches, progress_bar, thread_tuner,
                              update_flops)

MAX_UPDATES = 1_000_000     # the recipe has 30,000; a longer schedule is almost surely a typo
ASSUMED_GFLOPS = 60.0       # a conservative GEMM rate for time estimates before any timing


@dataclass
class EngineConfig(TrainConfig):
    """TrainConfig plus the engine's settings (all off by default):
    flip / translate (max shift, px): augmentation;  dropout: drop rate of the hidden layer;
    tta: evaluate on each image and its mirror;  whiten: filters learn on ZCA-whitened patches
    (ZCA: the whitening that rotates back to the pixel axes; the value is its eigenvalue floor,
    0.01 typical);  threads: BLAS threads (None: chosen per update);  progress: a tqdm bar."""
    flip: bool = False
    translate: int = 0
    dropout: float = 0.0
    tta: bool = False
    whiten: float = 0.0
    threads: int | None = None
    progress: bool = True

    def validate(self):
        super().validate()
        for name, ok, want in (("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                               ("translate", 0 <= self.translate <= 16, "0..16 (pixels)"),
                               ("whiten", self.whiten >= 0, ">= 0 (0 = off, 0.01 typical)")):
            if not ok:
                raise ValueError(f"EngineConfig.{name} must be {want}; got {getattr(self, name)!r}")
        if self.n_cycles > 40 or self.n_updates > MAX_UPDATES:
            raise ValueError(f"this schedule has {self.n_updates if self.n_cycles <= 40 else 'over 2**40'}"
                             f" updates; the limit is {MAX_UPDATES:,} (the assignment's runs have "
                             "4,800-30,000): lower n_cycles or step")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "EngineConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d).validate()


def as_engine_config(cfg) -> EngineConfig:
    """An EngineConfig from a helpers.TrainConfig (the bonus settings off), validated."""
    if cfg is None:
        return EngineConfig().validate()
    if isinstance(cfg, EngineConfig):
        return cfg.validate()
    if isinstance(cfg, TrainConfig):
        return EngineConfig(**cfg.to_dict()).validate()
    raise ValueError(f"cfg must be a helpers.TrainConfig or engine.EngineConfig; got {type(cfg).__name__}")


class TrainingFailed(RuntimeError):
    """An error ended a run early (e.g. in a callback); ``.params`` and ``.history`` (status
    'failed') hold what it did, and the cause is chained."""

    def __init__(self, msg: str, params: dict, history: History):
        super().__init__(msg)
        self.params, self.history = params, history


# ---- parameters: one filter size (helpers' keys) or several (Fs_f{f}, b0_f{f}) ----

def branches(params: dict) -> list:
    """[(f, Fs key, b0 key), ...] in the order their outputs are stacked before W1 (increasing f)."""
    if "Fs" in params:
        return [(params["Fs"].shape[0], "Fs", "b0")]
    out = sorted((params[k].shape[0], k, "b0" + k[2:]) for k in params if k.startswith("Fs_f"))
    if not out:
        raise ValueError("params has no filters: expected key 'Fs' (or 'Fs_f4', 'Fs_f8', ...)")
    return out


def filter_sizes(params: dict) -> tuple:
    """The filter width f of every branch, e.g. (4,) or (4, 8)."""
    return tuple(f for f, _, _ in branches(params))


def check_params(params: dict) -> dict:
    """Keys, shapes and dtype of a parameter dict; returns it, or a ValueError naming the array."""
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of arrays (init_params); got {type(params).__name__}")
    for k in ("W1", "b1", "W2", "b2"):
        if k not in params:
            raise ValueError(f"params is missing {k!r}; expected keys Fs, b0, W1, b1, W2, b2")
    dt = np.asarray(params["W1"]).dtype
    for k, v in params.items():
        if not isinstance(v, np.ndarray) or v.dtype != dt or dt not in (np.float32, np.float64):
            raise ValueError(f"params[{k!r}] must be a float32 or float64 array like W1 ({dt}); "
                             f"got {getattr(v, 'dtype', type(v).__name__)}")
    width = 0
    for f, kF, kb in branches(params):
        Fs, n_p = params[kF], check_f(f)
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
    """helpers.init_params, and for several filter sizes (f, nf tuples of equal length, or one
    nf for all): Fs_f{f}, b0_f{f} per branch (He init each), W1 over their stacked outputs."""
    if not isinstance(f, (tuple, list)):
        return H.init_params(f, nf, nh, K, seed, dtype)
    nfs = tuple(nf) if isinstance(nf, (tuple, list)) else (nf,) * len(f)
    if len(nfs) != len(f) or len(set(f)) != len(f) or not f:
        raise ValueError(f"need one nf per distinct filter size; got f={f}, nf={nf}")
    rng, p, width = np.random.default_rng(seed), {}, 0

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)

    for fi, nfi in sorted(zip(f, nfs)):
        H.init_params(32, nfi, nh, K)              # its argument checks (f=32: a tiny W1)
        p[f"Fs_f{fi}"], p[f"b0_f{fi}"] = he((fi, fi, 3, nfi), fi * fi * 3), np.zeros((nfi, 1), dtype)
        width += check_f(fi) * nfi
    p["W1"], p["b1"] = he((nh, width), width), np.zeros((nh, 1), dtype)
    p["W2"], p["b2"] = he((K, nh), nh), np.zeros((K, 1), dtype)
    return p


def mx_for(params: dict, X: np.ndarray) -> list:
    """Batch-first MX for every filter size of ``params``: X (3072, n) -> [(n, n_p, d), ...]."""
    return [mx_batch_first(X, f, dtype=params["W1"].dtype) for f in filter_sizes(params)]


def targets(y: np.ndarray, K: int, eps: float, dtype) -> np.ndarray:
    """int labels (n,) (already checked) -> smoothed targets (n, K), batch-first: row y of
    helpers.smooth_targets of the K x K identity (one-hot columns), one gather per batch."""
    return H.smooth_targets(np.eye(K, dtype=dtype), eps)[y]


# ---- the batch-first passes ----

def conv_gemm(mxb: np.ndarray, Fs_flat: np.ndarray, out=None) -> np.ndarray:
    """The engine's convolution: batch-first MX (n, n_p, d) as one (n*n_p, d) @ (d, nf) GEMM
    (in row pieces when tall and skinny) -> (n, n_p, nf); ``out``: an (n*n_p, nf) buffer."""
    n, n_p, d = mxb.shape
    return fastsgd.matmul_rows(mxb.reshape(n * n_p, d), Fs_flat, out=out).reshape(n, n_p, -1)


def forward_batch(params: dict, mxs: list, drop_mask=None, ws=None) -> dict:
    """mxs: (n, n_p, d) per branch -> H (n, sum n_p*nf) after ReLU, X1 (n, nh) after ReLU (and
    dropout), S, P, logP (n, K): helpers.forward's arrays, transposed (batch-first).
    ws: a dict of buffers reused across updates (train's), or None."""
    hs = []
    for (f, kF, kb), mx in zip(branches(params), mxs):
        n, n_p, d = mx.shape
        nf = params[kF].shape[3]
        c = conv_gemm(mx, params[kF].reshape(d, nf),
                      out=fastsgd.scratch(ws, kF, (n * n_p, nf), mx.dtype)).reshape(n, n_p * nf)
        c += np.tile(params[kb].reshape(nf), n_p)   # a broadcast over an inner nf is ~5x slower
        np.maximum(c, 0, out=c)
        hs.append(c)
    Hc = hs[0] if len(hs) == 1 else np.concatenate(
        hs, axis=1, out=fastsgd.scratch(ws, "H", (n, sum(h.shape[1] for h in hs)), hs[0].dtype))
    X1 = (params["W1"] @ Hc.T).T     # = H @ W1.T; this GEMM form is ~25% faster in OpenBLAS
    X1 += params["b1"].T
    np.maximum(X1, 0, out=X1)
    if drop_mask is not None:
        X1 *= drop_mask
    S = X1 @ params["W2"].T
    S += params["b2"].T
    Z = S - S.max(axis=1, keepdims=True)
    E = np.exp(Z)
    se = E.sum(axis=1, keepdims=True)
    return {"H": Hc, "X1": X1, "S": S, "P": E / se, "logP": Z - np.log(se)}


def backward_batch(params: dict, mxs: list, fw: dict, T: np.ndarray, lam: float,
                   drop_mask=None, scale: float = 1.0, decay: float | None = None, ws=None) -> dict:
    """Gradients for the forward ``fw`` and targets T (n, K). Every gradient is linear in
    G = P - T, so ``scale`` (the step eta) is applied once, to the small (n, K) matrix G. With
    ``decay`` (train_step): W <- decay W - grad in place instead (workbook/fastsgd.py); returns {}."""
    n = T.shape[0]
    G = fw["P"] - T
    G *= scale / n
    X1, Hc = fw["X1"], fw["H"]
    out = fastsgd.Sink(params, decay, l2=2.0 * lam * scale)   # grad W = A.T @ B + l2 W, b: sums
    G1 = G @ params["W2"]
    out.weight("W2", G, X1)
    out.bias("b2", G)
    if drop_mask is not None:
        G1 *= drop_mask
    G1 *= X1 > 0
    GH = np.matmul(G1, params["W1"], out=fastsgd.scratch(ws, "GH", Hc.shape, Hc.dtype))
    out.weight("W1", G1, Hc)
    out.bias("b1", G1)
    GH *= np.greater(Hc, 0, out=fastsgd.scratch(ws, "mask", Hc.shape, bool))
    off = 0
    for (f, kF, kb), mx in zip(branches(params), mxs):
        _, n_p, d = mx.shape
        nf = params[kF].shape[3]
        Gc = np.ascontiguousarray(GH[:, off:off + n_p * nf]).reshape(n * n_p, nf)
        off += n_p * nf
        out.weight(kF, mx.reshape(n * n_p, d), Gc)
        out.bias(kb, Gc, n)
    return out.g


def spec_mx_list(params: dict, MX) -> list:
    """Spec-layout MX (n_p, d, n), or {f: MX_f} for several sizes -> batch-first, per branch."""
    br = branches(params)
    if isinstance(MX, dict):
        if any(f not in MX for f, _, _ in br):
            raise ValueError(f"MX dict needs one MX per filter size {filter_sizes(params)}")
        mxs = [MX[f] for f, _, _ in br]
    elif len(br) == 1:
        mxs = [MX]
    else:
        raise ValueError(f"filter sizes {filter_sizes(params)}: pass MX as a dict {{f: MX_f}}")
    return [as_batch_first(check_mx(m, f, params[kF].dtype)) for (f, kF, _), m in zip(br, mxs)]


def compute_grads(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0) -> dict:
    """helpers.compute_grads on the batch-first path (one GEMM per layer), for one or several
    filter sizes: MX (n_p, f*f*3, n) or {f: MX_f}, Y (K, n) -> gradients keyed like params."""
    mxs = spec_mx_list(check_params(params), MX)
    Y = check_Y(Y, mxs[0].shape[0], params["W2"].shape[0])
    fw = forward_batch(params, mxs)
    T = np.ascontiguousarray(H.smooth_targets(Y.astype(fw["P"].dtype), eps).T)
    return backward_batch(params, mxs, fw, T, lam)


def train_step(params: dict, mxs: list, y: np.ndarray, eta: float, lam: float = 0.0,
               eps: float = 0.0, drop_mask=None, ws: dict | None = None) -> float:
    """helpers.sgd_step(params, compute_grads(...), eta, lam), in place on batch-first MX.
    Returns the batch loss (smoothed targets, before the update). W <- W - eta (g + 2 lam W)
    = (1 - 2 eta lam) W - eta g: eta is folded into G, and each weight is updated by the GEMM
    that computes its gradient. ws: an empty dict to keep the big intermediates in."""
    fw = forward_batch(params, mxs, drop_mask, ws)
    T = targets(y, params["W2"].shape[0], eps, fw["P"].dtype)
    loss = -float(np.sum(T * fw["logP"], dtype=np.float64)) / len(y)
    backward_batch(params, mxs, fw, T, 0.0, drop_mask, eta, 1.0 - 2.0 * eta * lam, ws)
    return loss


# ---- evaluation ----

def evaluate(params: dict, mxs: list, y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
             chunk: int = 2500, tta: bool = False, P_out: bool = False) -> dict:
    """helpers.evaluate on batch-first MX (mxs from mx_for; y (n,) int): loss, loss_ls, cost,
    acc, and P (K, n) if ``P_out``. ``tta`` averages each image's probabilities with its mirror's."""
    n, K = y.shape[0], params["W2"].shape[0]
    flips = mirror_tables(filter_sizes(params)) if tta else None
    hard = soft = 0.0
    correct, Ps = 0, []
    for s in range(0, n, chunk):
        mb = [m[s:s + chunk] for m in mxs]
        P = forward_batch(params, mb)["P"]
        if tta:
            mf = [augment_mx(m, fl[None], np.zeros(len(m), int)) for m, fl in zip(mb, flips)]
            P = 0.5 * (P + forward_batch(params, mf)["P"])
        if not np.isfinite(P).all():
            raise ValueError("the network produced NaN probabilities: the parameters have diverged")
        logP = np.log(np.maximum(P, np.finfo(P.dtype).tiny))
        yb = y[s:s + chunk]
        hard -= float(logP[np.arange(len(yb)), yb].sum(dtype=np.float64))
        soft -= float(np.sum(targets(yb, K, eps, logP.dtype) * logP, dtype=np.float64))
        correct += int(np.sum(P.argmax(axis=1) == yb))
        if P_out:
            Ps.append(P)
    out = {"loss": hard / n, "loss_ls": soft / n, "acc": correct / n}
    out["cost"] = out["loss_ls"] + lam * H.l2_penalty(params)
    if P_out:
        out["P"] = np.concatenate(Ps).T if Ps else np.zeros((K, 0), params["W1"].dtype)
    return out


def predict(params: dict, X: np.ndarray, tta: bool = False) -> np.ndarray:
    """Class probabilities: X (3072, n) normalised -> P (K, n)."""
    X = check_normalised(X, "X")
    check_params(params)
    y0 = np.zeros(X.shape[1], dtype=np.int64)
    return evaluate(params, mx_for(params, X), y0, tta=tta, P_out=True)["P"]


# ---- the run ----

def estimate_seconds(params: dict, cfg=None, n_train: int = 0, n_eval: int = 0,
                     timed: int = 4) -> dict:
    """Expected time of train(params, ...) with cfg on n_train images, from ``timed`` updates
    on random data of the right shape (after one untimed warm-up), plus the evaluations.
    Returns {seconds, per_update_s, updates, eval_s}."""
    cfg = as_engine_config(cfg)
    check_params(params)
    rng = np.random.default_rng(0)
    p = {k: v.copy() for k, v in params.items()}
    B, dt = cfg.batch_size, params["W1"].dtype
    mxs = [rng.standard_normal((B, check_f(f), f * f * 3)).astype(dt) for f in filter_sizes(p)]
    y = rng.integers(0, p["W2"].shape[0], B)
    ws, times = {}, []
    with blas_threads(cfg.threads or 1):
        for i in range(timed + 1):
            t0 = time.perf_counter()
            train_step(p, mxs, y, 1e-4, cfg.lam, cfg.eps, None, ws)
            times.append(time.perf_counter() - t0)
    per = float(np.median(times[1:])) * (1.15 if cfg.flip or cfg.translate else 1.0)
    T = cfg.n_updates
    per_eval = (min(cfg.eval_train_n, n_train) + n_eval) / B * per / 3.0 * (2 if cfg.tta else 1)
    eval_s = n_evaluations(cfg) * per_eval
    return {"seconds": T * per + eval_s, "per_update_s": per, "updates": T, "eval_s": eval_s}


def n_evaluations(cfg) -> int:
    """How many evaluations train makes: before updates 0, period, 2 period, ... and at the end."""
    return -(-cfg.n_updates // cfg.eval_period) + 1


def check_schedule(params: dict, cfg: EngineConfig) -> None:
    """Refuse, before any work, a run that would take over a week on this machine's GEMM rate."""
    secs = cfg.n_updates * update_flops(params, cfg.batch_size) / (ASSUMED_GFLOPS * 1e9)
    if secs > 7 * 86400:
        raise ValueError(f"{cfg.n_updates:,} updates of this network would take about "
                         f"{secs / 86400:.0f} days here (at ~{ASSUMED_GFLOPS:.0f} GFLOP/s); "
                         "lower n_cycles or step, or make the network smaller")


def train(params: dict, X_train, y_train, cfg=None, X_test=None, y_test=None, *,
          data_name: str = "", callback=None, on_update=None, stop=None):
    """helpers.train, fast, with the bonus settings of EngineConfig -> (params, History).

    X_train (3072, n) normalised floats, y_train (n,) int; X_test/y_test likewise (both or
    neither). callback(history) after every evaluation; on_update(t_done, T) after every update;
    ``stop`` (e.g. a threading.Event) is checked before every update. A run that ends early
    keeps what it did: Ctrl-C or ``stop`` return it with history.status 'interrupted' /
    'stopped'; a NaN loss raises TrainingDiverged, any other error TrainingFailed, both with
    .params and .history. Only status 'complete' is a finished run.
    """
    cfg = as_engine_config(cfg)
    params = {k: v.copy() for k, v in check_params(params).items()}
    K = params["W2"].shape[0]
    X_train = check_normalised(X_train, "X_train")
    y_train = check_labels(y_train, K, X_train.shape[1], "y_train")
    if (X_test is None) != (y_test is None):
        raise ValueError("pass X_test and y_test together (or neither)")
    if X_test is not None:
        X_test = check_normalised(X_test, "X_test")
        y_test = check_labels(y_test, K, X_test.shape[1], "y_test")
    if cfg.batch_size > X_train.shape[1]:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set "
                         f"({X_train.shape[1]} images)")
    check_schedule(params, cfg)
    with blas_threads(cfg.threads or os.cpu_count() or 1):   # restored afterwards
        return _run(params, X_train, y_train, cfg, X_test, y_test, data_name, callback,
                    on_update, stop)


def _run(params, X_train, y_train, cfg: EngineConfig, X_test, y_test, data_name, callback,
         on_update, stop):
    """The body of train (inputs validated), under its BLAS thread limit."""
    dt = params["W1"].dtype
    n, B = X_train.shape[1], cfg.batch_size
    rng = np.random.default_rng(cfg.seed)
    etas = cfg.etas()
    hist = History(eta=etas.tolist(), data=data_name, config=cfg.to_dict())
    mx_tr = mx_for(params, X_train.astype(dt, copy=False))
    n_ev = min(cfg.eval_train_n, n)                # metrics on a fixed training chunk (a view)
    mx_ev, y_ev = [m[:n_ev] for m in mx_tr], y_train[:n_ev]
    mx_te = mx_for(params, X_test.astype(dt, copy=False)) if X_test is not None else None
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
        hist.record(t, tr, te)
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
    t_start = time.perf_counter()
    try:
        for t in range(T):
            if t % cfg.eval_period == 0:
                do_eval(t)
            if stop is not None and stop.is_set():
                hist.status = "stopped"
                break
            threads.before(t)                  # (its timing includes fetching the batch)
            idx, mask, mb = next(batches)
            old = {k: params[k].copy() for k in params if k.startswith("Fs")} if Ws else None
            loss = train_step(params, mb, y_train[idx], float(etas[t]), cfg.lam, cfg.eps, mask, ws)
            if Ws:
                whitening.precondition(params, old, Ws, 1.0 - 2.0 * float(etas[t]) * cfg.lam)
            threads.after(t)
            if not np.isfinite(loss):
                hist.status = "diverged"
                raise TrainingDiverged(
                    f"training diverged: the loss became {loss} at update {t} (eta={etas[t]:.3g}). "
                    f"Lower eta_max (now {cfg.eta_max:g}), e.g. to {cfg.eta_max / 3:.2g}", params, hist)
            hist.updates_done = t + 1
            if bar is not None and (t + 1) % 50 == 0:
                bar.update(50)
            if on_update is not None:
                on_update(t + 1, T)
        if hist.status == "running":
            do_eval(T)
            hist.status = "complete"
    except KeyboardInterrupt:
        hist.status = "interrupted"
        print(f"interrupted at update {hist.updates_done} of {T}: the run is kept, not complete")
    except TrainingDiverged:
        raise
    except Exception as e:
        hist.status = "failed"
        raise TrainingFailed(f"the run failed at update {hist.updates_done} of {T} "
                             f"({type(e).__name__}: {e}); .params and .history hold it",
                             params, hist) from e
    finally:
        hist.time_train = time.perf_counter() - t_start - hist.time_eval
        if bar is not None:
            bar.close()
        batches.close()
    return params, hist
