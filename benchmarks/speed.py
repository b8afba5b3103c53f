"""Speed benchmark: the NumPy ConvNet (helpers.py) against idiomatic torch CPU training.

One command (``make bench`` runs it without options):

    .venv/bin/python benchmarks/speed.py [--quick] [--threads N] [--out PATH]

SPEED ONLY. Every number here comes from random Gaussian data with CIFAR-10's shapes
(images 3072 = 3x32x32 float32, normalised scale, 10 random labels), never from CIFAR-10,
so accuracies it may print are meaningless (chance level). Timings depend on the machine
and on whatever else runs on it; the JSON records the CPU, the BLAS and the load average.

What it measures (see ``main`` for the flags):

1. Seconds per training update at batch 100 for arch1..arch5 and the bonus nets (bonus
   (4, 100, 800), bonus_wide (4, 200, 1000), bonus_multi ((4, 8), 100, 800)):
   - NumPy: the project's ``helpers.train`` itself (hist.time_train / updates: batch
     gathering on its prefetch thread, its thread policy, the fused SGD step; evaluation
     excluded), and ``helpers.train_step`` on prefetched batches;
   - torch: the fastest idiomatic CPU loop we know, ``nn.Sequential(Conv2d(3, nf, f,
     stride=f), ReLU, Flatten, Linear, ReLU, Linear)``, ``F.cross_entropy``, ``optim.SGD(lr,
     weight_decay)``, float32, the data one NCHW tensor, batches by index, grads set to None,
     no per-step ``.item()``, in several variants (1 and 2 threads; channels_last; mkldnn
     off; foreach SGD; fused SGD). The fastest variant is the reference; all are printed.
   Repeats of all programs alternate (interleaved) and the best repeat counts (best-of-N), so
   load from other programs hits all alike; variants 1.5x slower than the best torch one after
   the first repeat are not repeated.
2. Wall times of whole training protocols with ``helpers.train`` (49k train / 10k test):
   arch2 with TrainConfig() and arch5 with 4 doubling cycles (24,000 updates), end to end
   including the MX construction inside train. arch5 runs in a subprocess so that its peak
   RSS is its own (VmHWM on Linux, where a child's ru_maxrss inherits the parent's peak).
3. Measured float32 GEMM rates (GFLOP/s) for shapes the net uses and a big square at 1 and
   at all threads, the FLOP count of one update, and the ratio actual time / (FLOPs / the big
   GEMM's best rate at up to NumPy's thread count): how close an update is to its flop bound.
4. The environment: CPU model, cores, BLAS (threadpoolctl), threads, versions, date, load.

It prints tables and writes JSON (default benchmarks/results.json, or
benchmarks/results_quick.json with --quick). The issue's targets are printed as
pass/miss; nothing is asserted. torch is optional: without it the torch columns are null
and the JSON says why.

Importable (notebook 05 and tests/test_benchmark.py use it)::

    import sys; sys.path.insert(0, '../benchmarks'); import speed
    speed.numpy_update_time('arch2', n_updates=50)      # {'median_s': ..., 'repeats_s': [...]}
    speed.torch_update_time('arch2', n_updates=50)      # same, or None without torch
    speed.speed_grid(fs=(2, 4, 8, 16), nfs=(10, 40))    # rows with the torch/numpy ratio
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import warnings

import numpy as np

warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # helpers.py, also when the package is not installed
import helpers as H  # noqa: E402
from workbook import experiments, runtime

SCHEMA = "convnet-workbook/speed/1"
DATA_NOTE = ("SPEED ONLY: random Gaussian float32 data with CIFAR-10's shapes (3072 x n, "
             "10 random labels), not CIFAR-10; accuracies from these runs are meaningless.")

# name -> (f, nf, nh), the assignment's five architectures (1-4 from helpers, 5 from Exercise 4)
ARCHS = {**{k: (a["f"], a["nf"], a["nh"]) for k, a in experiments.EX3_ARCHS.items()},
         "arch5": (4, 40, 300)}
# the bonus nets: the recipe's wide net, a wider candidate, and multi-size filters (f 4 and 8)
BONUS = {"bonus": (4, 100, 800), "bonus_wide": (4, 200, 1000), "bonus_multi": ((4, 8), 100, 800)}
ALL_ARCHS = {**ARCHS, **BONUS}
K = 10
BATCH = 100
LAM = 0.003
ETA = 0.01

SGEMM_SHAPES = ((6400, 48, 10), (100, 640, 50), (100, 2560, 300), (2048, 2048, 2048))

TARGETS = {
    "ratio_all": 1.3,        # fastest torch / numpy train() per update: arch1-5 and the bonus nets
    "ratio_arch2": 2.0,      # the same, arch2
    "arch2_protocol_s": 6.0,
    "arch5_protocol_s": 180.0,
    "arch5_rss_mb": 2048.0,  # 2 GB (MB = 2**20 bytes, as ru_maxrss/1024)
    "arch2_vs_bound": 3.0,   # update time / (FLOPs / measured sgemm rate)
    "wide_vs_bound": 1.5,    # the same for arch5 and the bonus nets
}


def _torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except Exception:
        return None
    return torch


def _arch(arch):
    """'arch2' or (f, nf, nh) -> (name, f, nf, nh)."""
    if isinstance(arch, str):
        if arch not in ALL_ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; use one of {sorted(ALL_ARCHS)} or (f, nf, nh)")
        return (arch,) + ALL_ARCHS[arch]
    try:
        f, nf, nh = arch
        f = tuple(int(v) for v in f) if isinstance(f, (tuple, list)) else int(f)
        nf, nh = int(nf), int(nh)
    except (TypeError, ValueError):
        raise ValueError(f"architecture must be a name like 'arch2' or a tuple (f, nf, nh); got {arch!r}")
    fname = "-".join(map(str, f)) if isinstance(f, tuple) else f
    return (f"f{fname}_nf{nf}_nh{nh}", f, nf, nh)


def default_threads() -> int:
    """The thread count used when none is given: os.cpu_count()."""
    return os.cpu_count() or 1


@contextlib.contextmanager
def thread_limit(n: int | None):
    """Limit NumPy's BLAS (threadpoolctl) and torch (set_num_threads) to ``n`` threads."""
    from threadpoolctl import threadpool_limits
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1; got {n}")
    torch = _torch() if "torch" in sys.modules else None
    old = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            if torch is not None:
                torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------

def make_data(n: int, seed: int = 0) -> dict:
    """Random data with CIFAR-10's shapes (speed only).

    Returns Xr (n, 3072) float32 C-contiguous (one image per row: R, G, B planes, row-major,
    i.e. NCHW when viewed as (n, 3, 32, 32)), X = Xr.T (3072, n) the spec layout (a view,
    image-contiguous like load_dataset's), y (n,) int64 labels 0..9, name str.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"need at least one image; got n={n}")
    rng = np.random.default_rng(seed)
    Xr = rng.standard_normal((n, 3072), dtype=np.float32)
    y = rng.integers(0, K, size=n).astype(np.int64)
    return {"Xr": Xr, "X": Xr.T, "y": y, "name": "random Gaussian, CIFAR-10 shapes (speed only)"}


def batch_indices(n: int, n_batches: int, batch: int = BATCH, seed: int = 0) -> np.ndarray:
    """(n_batches, batch) int64 sorted indices, drawn as in helpers.train (seeded shuffles,
    consecutive slices of each epoch's permutation, each slice sorted)."""
    if batch > n:
        raise ValueError(f"batch {batch} is larger than the data ({n} images); use more data")
    rng = np.random.default_rng(seed)
    per_epoch = n // batch
    out = np.empty((n_batches, batch), np.int64)
    order = None
    for t in range(n_batches):
        j = t % per_epoch
        if j == 0:
            order = rng.permutation(n)
        out[t] = np.sort(order[j * batch:(j + 1) * batch])
    return out


# ---------------------------------------------------------------------------------------
# the two programs that are timed
# ---------------------------------------------------------------------------------------

class NumpyRunner:
    """helpers.train_step on prefetched mini-batches (a ring of up to 16, gathered from a
    precomputed batch-first MX before timing, as train's prefetch thread hands them over).

    ``run(k)`` does k updates (forward + backward + SGD) and returns the seconds.
    """

    def __init__(self, arch, data: dict, idx: np.ndarray, lam: float = LAM, eta: float = ETA,
                 seed: int = 0):
        _, f, nf, nh = _arch(arch)
        self.params = H.init_params(f, nf, nh, K=K, seed=seed)
        self.mxs = H.mx_for(self.params, data["X"])          # [(n, n_p, d)] float32
        self.y, self.idx, self.lam, self.eta, self.t = data["y"], idx, lam, eta, 0
        self.batches = [([m[ib] for m in self.mxs], data["y"][ib]) for ib in idx[:16]]
        # helpers.train's own thread policy (runtime.thread_tuner: starts where auto_threads
        # says, then times 1 vs all cores), never above the common cap
        self.tuner = None

    def run(self, k: int) -> float:
        from threadpoolctl import threadpool_limits, threadpool_info
        params, batches, lam, eta = self.params, self.batches, self.lam, self.eta
        nb = len(batches)
        cap = max([i.get("num_threads", 1) for i in threadpool_info() if i.get("user_api") == "blas"]
                  or [1])
        with threadpool_limits(limits=cap, user_api="blas"):
            if self.tuner is None:
                self.tuner = runtime.thread_tuner(params, BATCH, 1 if cap == 1 else None)
            tu = self.tuner
            t0 = time.perf_counter()
            for _ in range(k):
                mb, yb = batches[self.t % nb]
                tu.before(self.t)
                loss = H.train_step(params, mb, yb, eta, lam)
                tu.after(self.t)
                self.t += 1
            dt = time.perf_counter() - t0
        if k and not np.isfinite(loss):
            raise FloatingPointError(f"numpy run diverged (loss {loss}); lower eta (now {eta})")
        return dt


class TorchTwin:
    """The same network in torch (CPU, float32, NCHW), started from the same weights: a check
    that the update the benchmark times is the one torch computes (tests/test_benchmark.py).

    params: helpers' spec layout (Fs (f, f, 3, nf), b0 (nf, 1), W1 (nh, n_p*nf), b1 (nh, 1),
    W2 (K, nh), b2 (K, 1)), single filter size. The conv weight is Fs.transpose(3, 2, 0, 1)
    (nf, 3, f, f); the conv output (b, nf, g, g) is flattened as (b, g, g, nf), i.e. patch
    p = r*g + c then filter, exactly helpers' H = conv_flat.T, so W1 is shared unchanged.
    The L2 term lam*|W|^2 is torch.optim.SGD's weight_decay = 2*lam on Fs, W1, W2 only.
    """

    def __init__(self, params: dict, lam: float = LAM, eta: float = ETA):
        torch = _torch()
        if torch is None:
            raise ImportError("torch is not installed: pip install torch (CPU build) to run the twin")
        if "Fs" not in params:
            raise ValueError("the torch twin supports one filter size (key 'Fs') only")
        self.torch = torch
        self.f = params["Fs"].shape[0]
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32, order="C")).requires_grad_()  # a copy  # noqa: E731
        self.w = t(params["Fs"].transpose(3, 2, 0, 1))
        self.b0 = t(params["b0"][:, 0])
        self.W1, self.b1 = t(params["W1"]), t(params["b1"][:, 0])
        self.W2, self.b2 = t(params["W2"]), t(params["b2"][:, 0])
        self.opt = torch.optim.SGD([
            {"params": [self.w, self.W1, self.W2], "weight_decay": 2.0 * lam},
            {"params": [self.b0, self.b1, self.b2], "weight_decay": 0.0}], lr=eta)

    def step(self, xb, yb) -> float:
        """One update on xb (b, 3, 32, 32) float32, yb (b,) int64; returns the batch loss."""
        F = self.torch.nn.functional
        self.opt.zero_grad(set_to_none=True)
        h = F.relu(F.conv2d(xb, self.w, self.b0, stride=self.f))
        h = h.permute(0, 2, 3, 1).reshape(xb.shape[0], -1)
        x1 = F.relu(F.linear(h, self.W1, self.b1))
        loss = F.cross_entropy(F.linear(x1, self.W2, self.b2), yb)
        loss.backward()
        self.opt.step()
        return loss.item()

    def params_numpy(self) -> dict:
        """The current weights in helpers' spec layout (float32 numpy copies)."""
        d = lambda a: a.detach().numpy().copy()  # noqa: E731
        return {"Fs": d(self.w).transpose(2, 3, 1, 0).copy(), "b0": d(self.b0)[:, None],
                "W1": d(self.W1), "b1": d(self.b1)[:, None], "W2": d(self.W2), "b2": d(self.b2)[:, None]}


class TrainRunner:
    """The project's own ``helpers.train`` (batch gathering on its prefetch thread, its thread
    policy ``runtime.thread_tuner``, the fused SGD step): ``run(k)`` trains k updates at a constant eta
    from the same start and returns ``hist.time_train`` (evaluation and MX construction are
    excluded by train's own clock). ``threads``: None for train's policy, capped at ``cap``."""

    def __init__(self, arch, data: dict, idx=None, lam: float = LAM, eta: float = ETA,
                 seed: int = 0, cap: int | None = None):
        _, f, nf, nh = _arch(arch)
        self.params = H.init_params(f, nf, nh, K=K, seed=seed)
        n_ev, m = min(100, data["X"].shape[1]), min(10000, data["X"].shape[1])
        self.X, self.y = data["X"][:, :m], data["y"][:m]      # train() builds MX of these each run
        self.lam, self.eta, self.seed = lam, eta, seed
        self.threads = None if not cap or cap >= default_threads() else cap   # None: train's policy
        self.n_ev, self.t = n_ev, 0

    min_updates = 60   # each run is a fresh train() whose ThreadTuner probes first: amortise it

    def run(self, k: int) -> float:
        if k < 1:
            return 0.0
        k_run = max(k, self.min_updates)
        cfg = H.TrainConfig(n_cycles=1, step=(k_run + 1) // 2, eta_min=self.eta, eta_max=self.eta, lam=self.lam,
                            eval_every=k, eval_train_n=self.n_ev, seed=self.seed + self.t,
                            progress=False, threads=self.threads)
        self.t += 1
        _, hist = H.train(self.params, self.X, self.y, cfg)
        if not np.isfinite(hist.train_loss[-1]):
            raise FloatingPointError("numpy train() run diverged")
        return hist.time_train / hist.updates_done * k   # seconds for k updates


def _torch_variants(cap: int) -> list:
    """Names of the idiomatic torch settings tried: t{threads}[_cl|_nomkldnn|_foreach|_fused]."""
    out = []
    for t in range(1, max(1, cap) + 1) if cap <= 2 else (1, 2, cap):
        out += [f"t{t}", f"t{t}_cl", f"t{t}_nomkldnn", f"t{t}_foreach", f"t{t}_fused"]
    return out


class PlainTorchRunner:
    """Idiomatic torch CPU training, the fastest plain loop we know: ``nn.Sequential(Conv2d(3,
    nf, f, stride=f), ReLU, Flatten, Linear, ReLU, Linear)`` (multi-size filters: the conv
    branches' flattened outputs concatenated), ``F.cross_entropy``, ``optim.SGD(lr,
    weight_decay=2 lam)`` on every parameter, float32, the data one NCHW tensor, batches by
    index, grads set to None, no per-step ``.item()``. ``variant``: 't2' = 2 threads; suffix
    '_cl' channels_last, '_nomkldnn' torch.backends.mkldnn off, '_foreach' foreach SGD, '_fused'
    fused SGD (one kernel per parameter, on the CPU since torch 2.4)."""

    def __init__(self, arch, data: dict, idx: np.ndarray, lam: float = LAM, eta: float = ETA,
                 seed: int = 0, variant: str = "t1"):
        torch = _torch()
        if torch is None:
            raise ImportError("torch is not installed")
        nn = torch.nn
        _, f, nf, nh = _arch(arch)
        torch.manual_seed(seed)
        th, *opts = variant.split("_")
        self.threads, self.variant = int(th[1:]), variant
        self.cl, self.mkldnn = "cl" in opts, "nomkldnn" not in opts
        fs = f if isinstance(f, tuple) else (f,)
        width = sum(nf * (32 // fi) ** 2 for fi in fs)
        if len(fs) == 1:
            body = [nn.Conv2d(3, nf, fs[0], stride=fs[0]), nn.ReLU(), nn.Flatten()]
        else:
            body = [_MultiConv(torch, fs, nf)]
        self.model = nn.Sequential(*body, nn.Linear(width, nh), nn.ReLU(), nn.Linear(nh, K))
        n = data["Xr"].shape[0]
        self.X = torch.from_numpy(data["Xr"]).view(n, 3, 32, 32)
        if self.cl:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.X = self.X.contiguous(memory_format=torch.channels_last)
        kind = {"foreach": True} if "foreach" in opts else {"fused": True} if "fused" in opts else {"foreach": False}
        self.opt = torch.optim.SGD(self.model.parameters(), lr=eta, weight_decay=2.0 * lam, **kind)
        self.y = torch.from_numpy(data["y"])
        self.idx = [torch.from_numpy(np.ascontiguousarray(i)) for i in idx]
        self.torch, self.t = torch, 0

    def run(self, k: int) -> float:
        torch, model, opt, X, y, idx = self.torch, self.model, self.opt, self.X, self.y, self.idx
        ce, nb, old = torch.nn.functional.cross_entropy, len(idx), torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with warnings.catch_warnings():   # torch warns about TF32 on Intel GPUs here
                warnings.filterwarnings("ignore", message="TF32 acceleration")
                flags = torch.backends.mkldnn.flags(enabled=self.mkldnn)
                flags.__enter__()
            try:
                t0 = time.perf_counter()
                for _ in range(k):
                    ib = idx[self.t % nb]
                    self.t += 1
                    loss = ce(model(X[ib]), y[ib])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                dt = time.perf_counter() - t0
            finally:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="TF32 acceleration")
                    flags.__exit__(None, None, None)
        finally:
            torch.set_num_threads(old)
        if k and not np.isfinite(loss.item()):
            raise FloatingPointError("torch run diverged")
        return dt


def _MultiConv(torch, fs, nf):
    """Parallel stride-f convolutions, ReLU, flattened and concatenated (multi-size filters)."""
    nn = torch.nn

    class MultiConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(3, nf, f, stride=f) for f in fs)

        def forward(self, x):
            return torch.cat([torch.relu(c(x)).flatten(1) for c in self.convs], dim=1)

    return MultiConv()


# ---------------------------------------------------------------------------------------
# per-update times
# ---------------------------------------------------------------------------------------

def _summary(times: list, k: int) -> dict:
    per = [t / k for t in times]
    return {"median_s": float(np.median(per)), "min_s": float(np.min(per)),
            "repeats_s": [float(v) for v in per]}


def update_times(arch, impls=("numpy", "torch"), n_updates: int = 200, repeats: int = 5,
                 warmup: int = 20, threads: int | None = None, data: dict | None = None,
                 n_data: int = 49000, lam: float = LAM, eta: float = ETA, seed: int = 0,
                 screen: float | None = None) -> dict:
    """Seconds per update (batch 100) for each implementation in ``impls``:

    'numpy': helpers.train itself (TrainRunner: hist.time_train / updates); 'numpy_step':
    helpers.train_step on prefetched batches; 'torch': the plain idiomatic torch loop
    (PlainTorchRunner) at ``threads``; 'torch1': the same at 1 thread; 'torch:VARIANT' (e.g.
    'torch:t2_cl', see _torch_variants).
    Each repeat times ``n_updates`` consecutive updates; the repeats of the implementations
    alternate (interleaved), so load from other programs hits all alike. data: from make_data
    (``n_data`` images if None). ``screen``: after the first repeat, 'torch:' variants slower
    than ``screen`` x the fastest one are timed no more (their one repeat stays). Returns
    {impl: {'median_s', 'min_s', 'repeats_s'}}; torch entries are None without torch.
    """
    if n_updates < 1 or repeats < 1 or warmup < 0:
        raise ValueError("need n_updates >= 1, repeats >= 1 and warmup >= 0")
    fixed = {"numpy", "numpy_step", "torch", "torch1"}
    bad = [i for i in impls if i not in fixed and not i.startswith("torch:")]
    if bad:
        raise ValueError(f"unknown implementations {sorted(bad)}; use {sorted(fixed)} or 'torch:t1' etc.")
    data = make_data(n_data, seed) if data is None else data
    n = data["Xr"].shape[0]
    idx = batch_indices(n, min(max(n // BATCH, 1), warmup + n_updates * repeats), BATCH, seed)
    out, runners = {}, {}
    if any(i.startswith("torch") for i in impls):
        _torch()  # import before thread_limit, so that it limits torch's thread pools too
    with thread_limit(threads) as cap:
        for impl in impls:
            if impl.startswith("torch") and _torch() is None:
                out[impl] = None
                continue
            if impl == "numpy":
                r = TrainRunner(arch, data, idx, lam, eta, seed, cap=cap)
            elif impl == "numpy_step":
                r = NumpyRunner(arch, data, idx, lam, eta, seed)
            else:
                v = {"torch": f"t{cap}", "torch1": "t1"}.get(impl) or impl.split(":", 1)[1]
                r = PlainTorchRunner(arch, data, idx, lam, eta, seed, variant=v)
            runners[impl] = r
            if impl != "numpy":         # (each train() run starts afresh anyway)
                r.run(warmup)
        times = {impl: [] for impl in runners}
        active = dict(runners)
        for rep in range(repeats):
            for impl, r in active.items():
                times[impl].append(r.run(n_updates))
            tv = {i: times[i][-1] for i in active if i.startswith("torch:")}
            if screen and rep == 0 and tv:
                fast = min(tv.values())
                active = {i: r for i, r in active.items() if tv.get(i, 0) <= screen * fast}
    for impl in runners:
        out[impl] = _summary(times[impl], n_updates)
    return out


def numpy_update_time(arch, **kw) -> dict:
    """helpers.train seconds per update (hist.time_train / updates); see update_times."""
    return update_times(arch, impls=("numpy",), **kw)["numpy"]


def torch_update_time(arch, **kw) -> dict | None:
    """Plain torch loop seconds per update (None without torch); see update_times."""
    return update_times(arch, impls=("torch",), **kw)["torch"]


def flops_per_update(f: int, nf: int, nh: int, b: int = BATCH, k: int = K) -> dict:
    """Multiply-add FLOPs (2 per MAC) of the GEMMs in one update at batch b.

    conv fwd 2*b*n_p*d*nf, W1 fwd 2*b*(n_p*nf)*nh, W2 fwd 2*b*nh*K; backward: grad W2 and
    grad X1 2*b*nh*K each, grad W1 and grad H 2*b*nh*(n_p*nf) each, grad Fs 2*b*n_p*d*nf.
    Elementwise work (bias, ReLU, softmax, SGD) is left out.
    """
    fs = tuple(f) if isinstance(f, (tuple, list)) else (f,)   # multi-size: summed over branches
    conv = sum(2 * b * (32 // fi) ** 2 * fi * fi * 3 * nf for fi in fs)   # n_p * d = 3072 per f
    w1, w2 = 2 * b * sum((32 // fi) ** 2 for fi in fs) * nf * nh, 2 * b * nh * k
    out = {"conv_fwd": conv, "W1_fwd": w1, "W2_fwd": w2, "grad_W2": w2, "grad_X1": w2,
           "grad_W1": w1, "grad_H": w1, "grad_Fs": conv}
    out["total"] = sum(out.values())
    return out


def threadpool_threads() -> int:
    """The BLAS thread limit now in force (threadpoolctl)."""
    from threadpoolctl import threadpool_info
    return max([i.get("num_threads", 1) for i in threadpool_info() if i.get("user_api") == "blas"] or [1])


def sgemm_rates(shapes=SGEMM_SHAPES, threads: int | None = None, min_time: float = 0.3,
                repeats: int = 3) -> list:
    """Measured float32 GEMM rates. shapes: (m, k, n) for A (m, k) @ B (k, n).

    Each repeat runs the product until ``min_time`` seconds have passed; the best repeat
    counts (the rate the BLAS can reach). Returns [{'m','k','n','seconds','gflops'}].
    """
    rng = np.random.default_rng(0)
    rows = []
    with thread_limit(threads):
        for m, k, n in shapes:
            A = rng.standard_normal((m, k), dtype=np.float32)
            B = rng.standard_normal((k, n), dtype=np.float32)
            C = A @ B
            best = np.inf
            for _ in range(repeats):
                reps, t0 = 0, time.perf_counter()
                while True:
                    np.matmul(A, B, out=C)
                    reps += 1
                    el = time.perf_counter() - t0
                    if el >= min_time:
                        break
                best = min(best, el / reps)
            rows.append({"m": m, "k": k, "n": n, "threads": threadpool_threads(), "seconds": float(best),
                         "gflops": float(2.0 * m * k * n / best / 1e9)})
    return rows


def speed_grid(fs=(2, 4, 8, 16), nfs=(5, 10, 20, 40, 80, 160), nh: int = 50,
               n_updates: int = 50, repeats: int = 3, warmup: int = 5,
               threads: int | None = None, data: dict | None = None, n_data: int = 10000,
               seed: int = 0) -> list:
    """Per-update times on a grid of filter widths x filter counts (numpy and torch).

    Returns one row per (f, nf): {'f','nf','nh','numpy_s','torch_s','ratio','mflop'} with
    ratio = torch_s / numpy_s (> 1: NumPy faster; None without torch).
    """
    data = make_data(n_data, seed) if data is None else data
    rows = []
    for f in fs:
        for nf in nfs:
            r = update_times((f, nf, nh), n_updates=n_updates, repeats=repeats, warmup=warmup,
                             threads=threads, data=data, seed=seed)
            ns = r["numpy"]["median_s"]
            ts = r["torch"]["median_s"] if r.get("torch") else None
            rows.append({"f": f, "nf": nf, "nh": nh, "numpy_s": ns, "torch_s": ts,
                         "ratio": ts / ns if ts else None,
                         "mflop": flops_per_update(f, nf, nh)["total"] / 1e6})
    return rows


# ---------------------------------------------------------------------------------------
# whole protocols
# ---------------------------------------------------------------------------------------

def protocol_config(arch: str) -> "H.TrainConfig":
    """The issue's protocol for 'arch2' (TrainConfig(): 3 cycles, step 800, 4,800 updates)
    or 'arch5' (4 doubling cycles from step 800, lam 0.0025: 24,000 updates), progress off."""
    if arch == "arch2":
        return H.TrainConfig(progress=False)
    if arch == "arch5":
        return H.TrainConfig(n_cycles=4, step=800, increasing=True, lam=0.0025, progress=False)
    raise ValueError(f"protocols exist for 'arch2' and 'arch5', not {arch!r}")


def protocol_time(arch: str = "arch2", cfg=None, n_train: int = 49000, n_test: int = 10000,
                  threads: int | None = None, seed: int = 0) -> dict:
    """Wall time of one whole helpers.train run on random data (speed only).

    cfg: a TrainConfig (default protocol_config(arch)). threads: BLAS threads for the run
    (sets cfg.threads); None keeps cfg.threads, i.e. train's own policy (runtime.thread_tuner) as a
    user gets it. Times the call to helpers.train end to end (MX construction for train and
    test, all updates, all evaluations); data generation is outside. Returns arch, f, nf, nh,
    n_train, n_test, threads (what train used), updates, n_evals, time_train, time_eval,
    time_other (MX construction etc.), total (seconds), config (dict), error (None, or the
    message if training diverged).
    """
    import dataclasses
    name, f, nf, nh = _arch(arch)
    cfg = protocol_config(name) if cfg is None else cfg
    has_threads = any(fl.name == "threads" for fl in dataclasses.fields(cfg))
    if threads is not None and has_threads:
        cfg = dataclasses.replace(cfg, threads=int(threads))
    tr = make_data(n_train, seed)
    te = make_data(n_test, seed + 1)
    params = H.init_params(f, nf, nh, K=K, seed=seed)
    used = threads
    if has_threads:
        used = cfg.threads          # None: train's own policy (runtime.thread_tuner)
    err = None
    with thread_limit(threads if not has_threads else used):
        t0 = time.perf_counter()
        try:
            _, hist = H.train(params, tr["X"], tr["y"], cfg, te["X"], te["y"], data_name=tr["name"])
        except H.TrainingDiverged as e:
            hist, err = e.history, str(e)
        total = time.perf_counter() - t0
    return {"arch": name, "f": f, "nf": nf, "nh": nh, "n_train": n_train, "n_test": n_test,
            "threads": used, "updates": hist.updates_done, "n_evals": len(hist.t),
            "time_train": hist.time_train, "time_eval": hist.time_eval,
            "time_other": total - hist.time_train - hist.time_eval, "total": total,
            "config": cfg.to_dict(), "error": err}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (2**20 bytes).

    On Linux it reads VmHWM from /proc/self/status: resource.getrusage's ru_maxrss is not a
    child's own peak there (fork copies the parent's high-water mark, and exec keeps it, so a
    subprocess of a big parent reports the parent's peak). Elsewhere: ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def arch5_protocol_subprocess(threads: int | None = None, shrink: int = 1,
                              n_train: int = 49000, n_test: int = 10000) -> dict:
    """Run the arch5 protocol in a fresh Python (so its peak RSS is its own) and return its
    protocol_time dict plus 'peak_rss_mb'. shrink > 1 divides the step (for tests)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "arch5.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only-arch5-protocol",
               "--json-out", str(out), "--protocol-shrink", str(shrink),
               "--n-train", str(n_train), "--n-test", str(n_test)]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"the arch5 protocol subprocess failed ({p.returncode}):\n{p.stderr[-3000:]}")
        return json.loads(out.read_text())


def _only_arch5(args) -> int:
    cfg = protocol_config("arch5")
    if args.protocol_shrink > 1:
        import dataclasses
        cfg = dataclasses.replace(cfg, step=max(1, cfg.step // args.protocol_shrink), eval_every=None)
    r = protocol_time("arch5", cfg, n_train=args.n_train, n_test=args.n_test, threads=args.threads)
    r["peak_rss_mb"] = peak_rss_mb()
    Path(args.json_out).write_text(json.dumps(r, indent=1))
    return 0


# ---------------------------------------------------------------------------------------
# environment, targets, report
# ---------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """CPU model, core counts, BLAS libraries and threads (threadpoolctl), torch threads,
    versions, date and load average. Call it after torch is imported to list torch's libs."""
    import threadpoolctl
    torch = _torch() if "torch" in sys.modules else None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    libs = [{k: v for k, v in lib.items() if k in ("user_api", "internal_api", "prefix",
                                                    "version", "num_threads", "threading_layer",
                                                    "architecture")}
            for lib in threadpoolctl.threadpool_info()]
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "torch_num_threads": torch.get_num_threads() if torch is not None else None,
        "blas": libs,
    }


def _target(name: str, target: str, value, ok) -> dict:
    return {"name": name, "target": target, "value": value, "pass": ok}


def evaluate_targets(res: dict) -> list:
    """The issue's targets as rows {'name','target','value','pass'} (pass None = not measured)."""
    rows = []
    ratios = {r["arch"]: r["ratio_torch_over_numpy"] for r in res["per_update"]}
    want = set(ARCHS) | set(BONUS)
    have = [v for v in ratios.values() if v is not None]
    complete = want <= set(ratios) and len(have) == len(ratios)
    mn = min(have) if have else None
    rows.append(_target("numpy train() vs the fastest idiomatic torch, arch1-5 + bonus nets (min ratio)",
                        f">= {TARGETS['ratio_all']}x", mn,
                        (mn >= TARGETS["ratio_all"]) if (mn is not None and complete) else None))
    r2 = ratios.get("arch2")
    rows.append(_target("numpy train() vs the fastest torch on arch2 (torch/numpy)",
                        f">= {TARGETS['ratio_arch2']}x", r2, None if r2 is None else r2 >= TARGETS["ratio_arch2"]))
    p2 = (res["protocol"].get("arch2") or {}).get("total")
    rows.append(_target("arch2 protocol wall time (s)", f"<= {TARGETS['arch2_protocol_s']:g}", p2,
                        None if p2 is None else p2 <= TARGETS["arch2_protocol_s"]))
    a5 = res["protocol"].get("arch5") or {}
    p5, rss = a5.get("total"), a5.get("peak_rss_mb")
    rows.append(_target("arch5 protocol wall time (s)", f"<= {TARGETS['arch5_protocol_s']:g}", p5,
                        None if p5 is None else p5 <= TARGETS["arch5_protocol_s"]))
    rows.append(_target("arch5 protocol peak RSS (MB)", f"<= {TARGETS['arch5_rss_mb']:g}", rss,
                        None if rss is None else rss <= TARGETS["arch5_rss_mb"]))
    b2 = next((r["x_sgemm_bound"] for r in res["per_update"] if r["arch"] == "arch2"), None)
    rows.append(_target("arch2 update time / (FLOPs / sgemm rate)",
                        f"<= {TARGETS['arch2_vs_bound']:g}", b2,
                        None if b2 is None else b2 <= TARGETS["arch2_vs_bound"]))
    wide = [r["x_sgemm_bound"] for r in res["per_update"] if r["arch"] == "arch5" or r["arch"] in BONUS]
    mw = max(wide) if wide else None
    rows.append(_target("arch5 + bonus update time / (FLOPs / sgemm rate) (max)",
                        f"<= {TARGETS['wide_vs_bound']:g}", mw,
                        None if mw is None else mw <= TARGETS["wide_vs_bound"]))
    return rows


def _fmt(v, spec="{:.3g}"):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "pass" if v else "MISS"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 else spec.format(v)
    return str(v)


def _table(headers, rows) -> str:
    cells = [[_fmt(c) for c in r] for r in rows]
    w = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
         for i, h in enumerate(headers)]
    line = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(headers), line(["-" * x for x in w])] + [line(r) for r in cells])


def report(res: dict) -> str:
    """The human-readable tables for a results dict."""
    env, s = res["environment"], res["settings"]
    out = [f"Speed benchmark ({res['mode']} mode) -- {DATA_NOTE}",
           f"{env['cpu_model']}, {env['cpu_count']} cores, threads={s['threads']}, "
           f"numpy {env['numpy']}, torch {env['torch'] or 'not installed'}, "
           f"load average at start {env['load_average']}", ""]
    out.append(f"Per update (batch {s['batch']}, best of {s['repeats']} interleaved repeats of "
               f"up to {s['n_updates']} updates (fewer on big nets), data {s['n_data']} images):")
    out.append(_table(["arch", "f", "nf", "nh", "np thr", "train() ms", "step ms", "torch ms",
                       "torch variant", "torch/numpy", "MFLOP", "numpy GFLOP/s", "sgemm GFLOP/s",
                       "x bound"],
                      [[r["arch"], r["f"], r["nf"], r["nh"], r.get("numpy_threads"), r["numpy_s"] * 1e3,
                        r["numpy_step_s"] * 1e3 if r.get("numpy_step_s") else None,
                        r["torch_s"] * 1e3 if r["torch_s"] is not None else None,
                        r.get("torch_variant"), r["ratio_torch_over_numpy"], r["mflop"],
                        r["numpy_gflops"], r.get("sgemm_gflops"), r["x_sgemm_bound"]]
                       for r in res["per_update"]]))
    out.append("(train() ms: helpers.train's hist.time_train / updates, its own thread policy "
               "(runtime.thread_tuner) under the cap 'threads'; step ms: train_step on prefetched batches; "
               "torch: the fastest of the idiomatic variants below; torch/numpy > 1: NumPy faster; "
               "x bound: train() time / (FLOPs / big-sgemm rate at numpy's thread count))")
    tv = [r for r in res["per_update"] if r.get("torch_variants")]
    if tv:
        names = list(tv[0]["torch_variants"])
        out += ["", "Idiomatic torch variants tried (ms per update, best of the repeats; * = the "
                "reference, the fastest; tN = N threads, cl = channels_last, nomkldnn = "
                "torch.backends.mkldnn off, foreach = foreach SGD, fused = fused SGD):",
                _table(["arch"] + names,
                       [[r["arch"]] + [f"{r['torch_variants'][v] * 1e3:.3g}" + ("*" if v == r["torch_variant"] else "")
                                       if r["torch_variants"].get(v) is not None else "-" for v in names]
                        for r in tv])]
    if res.get("torch_note"):
        out.append(f"note: {res['torch_note']}")
    for w in res.get("warnings", []):
        out.append(f"WARNING: {w}")
    out += ["", "float32 GEMM rates:",
            _table(["m", "k", "n", "threads", "GFLOP/s"],
                   [[g["m"], g["k"], g["n"], g.get("threads"), g["gflops"]] for g in res["sgemm"]])]
    prot = [v for v in res["protocol"].values() if v]
    if prot:
        out += ["", "Whole protocols (helpers.train, 49k/10k random images; seconds; threads: "
                "--threads if given, else train's own policy):",
                _table(["arch", "threads", "updates", "evals", "train", "eval", "other", "total",
                        "peak RSS MB"],
                       [[p["arch"], p.get("threads"), p["updates"], p["n_evals"], p["time_train"], p["time_eval"],
                         p["time_other"], p["total"], p.get("peak_rss_mb")] for p in prot])]
    if res.get("grid"):
        out += ["", "Grid (torch/numpy):",
                _table(["f", "nf", "numpy ms", "torch ms", "ratio"],
                       [[g["f"], g["nf"], g["numpy_s"] * 1e3,
                         g["torch_s"] * 1e3 if g["torch_s"] else None, g["ratio"]] for g in res["grid"]])]
    out += ["", "Targets (from the issue; printed, never asserted):",
            _table(["target", "goal", "value", "result"],
                   [[t["name"], t["target"], t["value"], t["pass"]] for t in res["targets"]])]
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="speed.py", description=__doc__.split("\n\n")[0] + " " + DATA_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="20 updates x 3 repeats, 10k images, no protocols (unless --protocol; "
                        "about 5 minutes); "
                        "writes benchmarks/results_quick.json")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for NumPy's BLAS and for torch in the per-update comparison "
                        "(default: os.cpu_count()); for the protocols, BLAS threads for train "
                        "(default: train's own policy, runtime.thread_tuner)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results[_quick].json)")
    p.add_argument("--protocol", action=argparse.BooleanOptionalAction, default=None,
                   help="run the arch2 protocol (default: on, off with --quick)")
    p.add_argument("--arch5", action=argparse.BooleanOptionalAction, default=None,
                   help="run the arch5 protocol (~2 min) in a subprocess (default: on, off with --quick)")
    p.add_argument("--archs", default=",".join(ALL_ARCHS),
                   help=f"comma-separated architectures to time (default: all, {', '.join(ALL_ARCHS)})")
    p.add_argument("--n-updates", type=int, default=None, help="updates per repeat (200; quick 20)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (5; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up updates (20; quick 5)")
    p.add_argument("--n-data", type=int, default=None, help="images to gather batches from (49000; quick 10000)")
    p.add_argument("--no-torch", action="store_true", help="skip torch (as if it were not installed)")
    p.add_argument("--grid", action="store_true", help="also time speed_grid() (slow)")
    p.add_argument("--sgemm-min-time", type=float, default=None, help="seconds per GEMM repeat (0.3; quick 0.1)")
    p.add_argument("--sgemm-max", type=int, default=2048, help="side of the square GEMM (2048)")
    # protocol sizes (defaults are the issue's; smaller values are for tests)
    p.add_argument("--n-train", type=int, default=49000, help=argparse.SUPPRESS)
    p.add_argument("--n-test", type=int, default=10000, help=argparse.SUPPRESS)
    p.add_argument("--protocol-shrink", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--only-arch5-protocol", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    return p


def run_benchmark(args) -> dict:
    """Everything ``main`` measures, as the results dict (see the module docstring)."""
    quick = args.quick
    s = {"threads": args.threads or default_threads(), "batch": BATCH, "lam": LAM, "eta": ETA,
         "n_updates": args.n_updates or (20 if quick else 200),
         "repeats": args.repeats or (3 if quick else 5),
         "warmup": args.warmup if args.warmup is not None else (5 if quick else 20),
         "n_data": args.n_data or (10000 if quick else 49000)}
    want_prot = (not quick) if args.protocol is None else args.protocol
    want_a5 = (not quick) if args.arch5 is None else args.arch5
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in archs:
        _arch(a)
    torch = None if args.no_torch else _torch()
    torch_note = None
    if torch is None:
        torch_note = ("torch was skipped (--no-torch)" if args.no_torch else
                      "torch is not installed, so the torch columns are null; "
                      "pip install torch (CPU build) to compare")
    variants = _torch_variants(s["threads"]) if torch is not None else []
    impls = ("numpy", "numpy_step") + tuple("torch:" + v for v in variants)
    env = environment()
    res = {"schema": SCHEMA, "note": DATA_NOTE, "mode": "quick" if quick else "full",
           "settings": s, "environment": env, "torch_note": torch_note, "warnings": []}
    load, ncpu = (env["load_average"] or [0.0])[0], env["cpus_usable"] or env["cpu_count"] or 1
    if load > 0.5 * ncpu:
        res["warnings"].append(
            f"the machine was busy (1-minute load average {load:.1f} on {ncpu} CPUs): timings are "
            "noisy, and multi-threaded BLAS/torch suffer most; rerun on an idle machine")

    mt = args.sgemm_min_time or (0.1 if quick else 0.3)
    big = (args.sgemm_max,) * 3
    sg = sgemm_rates(tuple(sh for sh in SGEMM_SHAPES if sh[0] != 2048), threads=s["threads"], min_time=mt)
    rate = {}                                   # threads -> big-sgemm GFLOP/s, the bound's rate
    for t in sorted({1, s["threads"]}):
        row = sgemm_rates((big,), threads=t, min_time=mt)[0]
        sg.append(row)
        rate[t] = row["gflops"]
    peak = max(rate.values())
    res["sgemm"], res["sgemm_peak_gflops"], res["sgemm_rate_by_threads"] = sg, peak, rate
    print("  sgemm " + ", ".join(f"{t} thread(s) {g:.0f} GFLOP/s" for t, g in rate.items()), flush=True)

    data = make_data(s["n_data"])
    per = []
    for a in archs:
        name, f, nf, nh = _arch(a)
        fl = flops_per_update(f, nf, nh)
        # about the same seconds per timed run on every net: fewer updates on big ones
        k = max(4, min(s["n_updates"], int(s["n_updates"] * 600e6 / fl["total"])))
        TrainRunner.min_updates = 24 if quick else 60
        r = update_times(a, impls=impls, n_updates=k, repeats=s["repeats"],
                         warmup=min(s["warmup"], k), threads=s["threads"], data=data, screen=1.5)
        ns, nstep = r["numpy"]["min_s"], r["numpy_step"]["min_s"]
        tv = {v: (r["torch:" + v] or {}).get("min_s") for v in variants}
        best = min((t, v) for v, t in tv.items() if t is not None) if any(tv.values()) else (None, None)
        ts, tvar = best
        nthr = s["threads"]                                  # train's tuner may use them all
        g = max(v for t, v in rate.items() if t <= nthr)   # the best rate numpy could use
        per.append({"arch": name, "f": f, "nf": nf, "nh": nh, "numpy_threads": nthr,
                    "n_updates": k, "numpy_s": ns, "numpy_median_s": r["numpy"]["median_s"],
                    "numpy_repeats_s": r["numpy"]["repeats_s"], "numpy_step_s": nstep,
                    "torch_s": ts, "torch_variant": tvar, "torch_variants": tv if variants else None,
                    "torch_repeats_s": r["torch:" + tvar]["repeats_s"] if tvar else None,
                    "torch1_s": tv.get("t1"),
                    "ratio_torch_over_numpy": ts / ns if ts else None,
                    "ratio_best_torch_over_numpy": ts / ns if ts else None,
                    "ratio_torch_over_numpy_step": ts / nstep if ts else None,
                    "flops": fl, "mflop": fl["total"] / 1e6, "numpy_gflops": fl["total"] / ns / 1e9,
                    "sgemm_gflops": g, "bound_s": fl["total"] / (g * 1e9),
                    "x_sgemm_bound": ns / (fl["total"] / (g * 1e9))})
        print(f"  timed {name}: numpy train() {ns * 1e3:.3f} ms, train_step {nstep * 1e3:.3f} ms"
              + (f", torch {ts * 1e3:.3f} ms ({tvar}), ratio {ts / ns:.2f}" if ts else ""), flush=True)
    res["per_update"] = per
    del data

    res["protocol"] = {"arch2": None, "arch5": None}
    if want_prot:
        print("  arch2 protocol ...", flush=True)
        res["protocol"]["arch2"] = protocol_time("arch2", n_train=args.n_train, n_test=args.n_test,
                                                 threads=args.threads)
    if want_a5:
        print("  arch5 protocol in a subprocess (about 2 minutes) ...", flush=True)
        res["protocol"]["arch5"] = arch5_protocol_subprocess(args.threads, args.protocol_shrink,
                                                             args.n_train, args.n_test)
    if args.grid:
        res["grid"] = speed_grid(threads=s["threads"], n_updates=max(5, s["n_updates"] // 4),
                                 repeats=s["repeats"])
    res["main_peak_rss_mb"] = peak_rss_mb()
    res["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    res["targets"] = evaluate_targets(res)
    return res


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (0)."""
    args = _parser().parse_args(argv)
    if args.only_arch5_protocol:
        if not args.json_out:
            raise SystemExit("--only-arch5-protocol needs --json-out PATH")
        return _only_arch5(args)
    res = run_benchmark(args)
    out = Path(args.out) if args.out else HERE / ("results_quick.json" if args.quick else "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out)
    print(report(res))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
