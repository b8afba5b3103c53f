"""Speed benchmark: the NumPy ConvNet (helpers.py) against a torch CPU twin.

One command (``make bench`` runs it without options):

    .venv/bin/python benchmarks/speed.py [--quick] [--threads N] [--out PATH]

SPEED ONLY. Every number here comes from random Gaussian data with CIFAR-10's shapes
(images 3072 = 3x32x32 float32, normalised scale, 10 random labels), never from CIFAR-10,
so accuracies it may print are meaningless (chance level). Timings depend on the machine
and on whatever else runs on it; the JSON records the CPU, the BLAS and the load average.

What it measures (see ``main`` for the flags):

1. Seconds per training update at batch 100 (forward + backward + SGD step, with a random
   mini-batch gathered each update, as in training) for arch1..arch5, for
   ``helpers.train_step`` on batch-first MX and for a torch twin (conv2d with stride f, ReLU,
   linear, ReLU, linear, cross_entropy, autograd, torch.optim.SGD with weight decay 2*lam on
   the weights = the L2 cost term). Both get the same thread count and the same batches;
   repeats of the two alternate so that load from other programs hits both alike. The
   medians over repeats and the ratio torch/numpy (> 1: NumPy faster) are reported.
2. Wall times of whole training protocols with ``helpers.train`` (49k train / 10k test):
   arch2 with TrainConfig() and arch5 with 4 doubling cycles (24,000 updates), end to end
   including the MX construction inside train. arch5 runs in a subprocess so that its peak
   RSS is its own (VmHWM on Linux, where a child's ru_maxrss inherits the parent's peak).
3. Measured float32 GEMM rates (GFLOP/s) for shapes the net uses and a 2048^3 square, the
   FLOP count of one update, and the ratio actual time / (FLOPs / peak GEMM rate).
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

import numpy as np

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
K = 10
BATCH = 100
LAM = 0.003
ETA = 0.01

SGEMM_SHAPES = ((6400, 48, 10), (100, 640, 50), (100, 2560, 300), (2048, 2048, 2048))

TARGETS = {
    "ratio_all": 1.3,        # torch/numpy per update, every arch
    "ratio_arch2": 2.0,      # torch/numpy per update, arch2
    "arch2_protocol_s": 6.0,
    "arch5_protocol_s": 180.0,
    "arch5_rss_mb": 2048.0,  # 2 GB (MB = 2**20 bytes, as ru_maxrss/1024)
    "arch2_vs_bound": 3.0,   # update time / (FLOPs / peak sgemm rate)
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
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; use one of {sorted(ARCHS)} or (f, nf, nh)")
        return (arch,) + ARCHS[arch]
    try:
        f, nf, nh = (int(v) for v in arch)
    except (TypeError, ValueError):
        raise ValueError(f"architecture must be a name like 'arch2' or a tuple (f, nf, nh); got {arch!r}")
    return (f"f{f}_nf{nf}_nh{nh}", f, nf, nh)


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
    """helpers.train_step on random mini-batches gathered from a precomputed batch-first MX.

    ``run(k)`` does k updates (gather + forward + backward + SGD) and returns the seconds.
    """

    def __init__(self, arch, data: dict, idx: np.ndarray, lam: float = LAM, eta: float = ETA,
                 seed: int = 0):
        _, f, nf, nh = _arch(arch)
        self.params = H.init_params(f, nf, nh, K=K, seed=seed)
        self.mxs = H.mx_for(self.params, data["X"])          # [(n, n_p, d)] float32
        self.y, self.idx, self.lam, self.eta, self.t = data["y"], idx, lam, eta, 0
        # helpers.train's own thread policy (auto_threads), never above the common cap
        self.threads = runtime.auto_threads(self.params, BATCH)

    def run(self, k: int) -> float:
        from threadpoolctl import threadpool_limits, threadpool_info
        params, mxs, y, idx, lam, eta = self.params, self.mxs, self.y, self.idx, self.lam, self.eta
        nb = len(idx)
        cap = max([i.get("num_threads", 1) for i in threadpool_info() if i.get("user_api") == "blas"]
                  or [1])
        with threadpool_limits(limits=min(cap, self.threads), user_api="blas"):
            t0 = time.perf_counter()
            for _ in range(k):
                ib = idx[self.t % nb]
                self.t += 1
                loss = H.train_step(params, [m[ib] for m in mxs], y[ib], eta, lam)
            dt = time.perf_counter() - t0
        if k and not np.isfinite(loss):
            raise FloatingPointError(f"numpy run diverged (loss {loss}); lower eta (now {eta})")
        return dt


class TorchTwin:
    """The same network in torch (CPU, float32, NCHW), started from the same weights.

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


class TorchRunner:
    """TorchTwin on mini-batches gathered (index_select) from one preallocated NCHW float32
    tensor holding the whole dataset (it shares memory with data['Xr']). With ``one_thread``
    it runs with torch.set_num_threads(1) (torch's best setting for small nets on a few cores)."""
    one_thread = False

    def __init__(self, arch, data: dict, idx: np.ndarray, lam: float = LAM, eta: float = ETA,
                 seed: int = 0):
        _, f, nf, nh = _arch(arch)
        self.twin = TorchTwin(H.init_params(f, nf, nh, K=K, seed=seed), lam, eta)
        torch = self.twin.torch
        n = data["Xr"].shape[0]
        self.X = torch.from_numpy(data["Xr"]).view(n, 3, 32, 32)
        self.y = torch.from_numpy(data["y"])
        self.idx = [torch.from_numpy(np.ascontiguousarray(i)) for i in idx]
        self.t = 0

    def run(self, k: int) -> float:
        X, y, idx, step = self.X, self.y, self.idx, self.twin.step
        torch = self.twin.torch
        nb = len(idx)
        old = torch.get_num_threads()
        if self.one_thread:
            torch.set_num_threads(1)
        try:
            t0 = time.perf_counter()
            for _ in range(k):
                ib = idx[self.t % nb]
                self.t += 1
                loss = step(X.index_select(0, ib), y.index_select(0, ib))
            dt = time.perf_counter() - t0
        finally:
            torch.set_num_threads(old)
        if k and not np.isfinite(loss):
            raise FloatingPointError(f"torch run diverged (loss {loss})")
        return dt


# ---------------------------------------------------------------------------------------
# per-update times
# ---------------------------------------------------------------------------------------

def _summary(times: list, k: int) -> dict:
    per = [t / k for t in times]
    return {"median_s": float(np.median(per)), "min_s": float(np.min(per)),
            "repeats_s": [float(v) for v in per]}


def update_times(arch, impls=("numpy", "torch"), n_updates: int = 200, repeats: int = 5,
                 warmup: int = 20, threads: int | None = None, data: dict | None = None,
                 n_data: int = 49000, lam: float = LAM, eta: float = ETA, seed: int = 0) -> dict:
    """Seconds per update (batch 100) for each implementation in ``impls``.

    Each repeat times ``n_updates`` consecutive updates with time.perf_counter; the repeats of
    the implementations alternate. data: from make_data (made with ``n_data`` images if None).
    Returns {impl: {'median_s', 'min_s', 'repeats_s': [per-update seconds per repeat]}};
    'torch' maps to None when torch is not installed.
    """
    if n_updates < 1 or repeats < 1 or warmup < 0:
        raise ValueError("need n_updates >= 1, repeats >= 1 and warmup >= 0")
    bad = set(impls) - {"numpy", "torch", "torch1"}
    if bad:
        raise ValueError(f"unknown implementations {sorted(bad)}; use 'numpy', 'torch', 'torch1'")
    data = make_data(n_data, seed) if data is None else data
    n = data["Xr"].shape[0]
    idx = batch_indices(n, min(max(n // BATCH, 1), warmup + n_updates * repeats), BATCH, seed)
    out, runners = {}, {}
    if "torch" in impls or "torch1" in impls:
        _torch()  # import before thread_limit, so that it limits torch's thread pools too
    with thread_limit(threads):
        for impl in impls:
            if impl.startswith("torch") and _torch() is None:
                out[impl] = None
                continue
            cls = NumpyRunner if impl == "numpy" else TorchRunner
            runners[impl] = cls(arch, data, idx, lam, eta, seed)
            if impl == "torch1":
                runners[impl].one_thread = True
            runners[impl].run(warmup)
        times = {impl: [] for impl in runners}
        for _ in range(repeats):
            for impl, r in runners.items():
                times[impl].append(r.run(n_updates))
    for impl in runners:
        out[impl] = _summary(times[impl], n_updates)
    return out


def numpy_update_time(arch, **kw) -> dict:
    """helpers.train_step seconds per update; see update_times for the keywords."""
    return update_times(arch, impls=("numpy",), **kw)["numpy"]


def torch_update_time(arch, **kw) -> dict | None:
    """Torch twin seconds per update (None without torch); see update_times."""
    return update_times(arch, impls=("torch",), **kw)["torch"]


def flops_per_update(f: int, nf: int, nh: int, b: int = BATCH, k: int = K) -> dict:
    """Multiply-add FLOPs (2 per MAC) of the GEMMs in one update at batch b.

    conv fwd 2*b*n_p*d*nf, W1 fwd 2*b*(n_p*nf)*nh, W2 fwd 2*b*nh*K; backward: grad W2 and
    grad X1 2*b*nh*K each, grad W1 and grad H 2*b*nh*(n_p*nf) each, grad Fs 2*b*n_p*d*nf.
    Elementwise work (bias, ReLU, softmax, SGD) is left out.
    """
    n_p, d = (32 // f) ** 2, f * f * 3
    conv, w1, w2 = 2 * b * n_p * d * nf, 2 * b * n_p * nf * nh, 2 * b * nh * k
    out = {"conv_fwd": conv, "W1_fwd": w1, "W2_fwd": w2, "grad_W2": w2, "grad_X1": w2,
           "grad_W1": w1, "grad_H": w1, "grad_Fs": conv}
    out["total"] = sum(out.values())
    return out


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
            rows.append({"m": m, "k": k, "n": n, "seconds": float(best),
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
    (sets cfg.threads); None keeps cfg.threads, i.e. train's own policy (auto_threads) as a
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
        used = cfg.threads if cfg.threads is not None else (
            runtime.auto_threads(params, cfg.batch_size) if hasattr(H, "auto_threads") else None)
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
    # against torch's faster setting (the common thread cap, or 1 thread): the stricter test
    ratios = {r["arch"]: r.get("ratio_best_torch_over_numpy") or r["ratio_torch_over_numpy"]
              for r in res["per_update"]}
    have = [v for v in ratios.values() if v is not None]
    all5 = len(have) == len(ARCHS) and set(ratios) == set(ARCHS)
    mn = min(have) if have else None
    rows.append(_target("numpy faster than torch's best thread setting, every arch (min ratio)",
                        f">= {TARGETS['ratio_all']}x", mn,
                        (mn >= TARGETS["ratio_all"]) if (mn is not None and all5) else None))
    r2 = ratios.get("arch2")
    rows.append(_target("numpy faster than torch on arch2 (torch/numpy)", f">= {TARGETS['ratio_arch2']}x",
                        r2, None if r2 is None else r2 >= TARGETS["ratio_arch2"]))
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
    rows.append(_target("arch2 update time / (FLOPs / peak sgemm rate)",
                        f"<= {TARGETS['arch2_vs_bound']:g}", b2,
                        None if b2 is None else b2 <= TARGETS["arch2_vs_bound"]))
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
    out.append(f"Per update (batch {s['batch']}, median of {s['repeats']} x {s['n_updates']} updates, "
               f"data {s['n_data']} images):")
    out.append(_table(["arch", "f", "nf", "nh", "np thr", "numpy ms", "torch ms", "torch 1thr ms",
                       "torch/numpy", "best torch/numpy", "(of min)", "MFLOP", "numpy GFLOP/s",
                       "x bound"],
                      [[r["arch"], r["f"], r["nf"], r["nh"], r.get("numpy_threads"), r["numpy_s"] * 1e3,
                        r["torch_s"] * 1e3 if r["torch_s"] is not None else None,
                        r["torch1_s"] * 1e3 if r.get("torch1_s") else None,
                        r["ratio_torch_over_numpy"], r.get("ratio_best_torch_over_numpy"),
                        r["ratio_of_min"], r["mflop"],
                        r["numpy_gflops"], r["x_sgemm_bound"]]
                       for r in res["per_update"]]))
    out.append("(ms: medians over repeats; numpy runs with helpers.train's thread policy "
               "(auto_threads) under the common cap 'threads'; torch at the cap and at 1 thread; "
               "'best torch': the faster of the two; '(of min)': the ratio of the fastest repeats; "
               "'x bound': numpy time / (FLOPs / peak GEMM rate))")
    if res.get("torch_note"):
        out.append(f"note: {res['torch_note']}")
    for w in res.get("warnings", []):
        out.append(f"WARNING: {w}")
    out += ["", "float32 GEMM rates:",
            _table(["m", "k", "n", "GFLOP/s"], [[g["m"], g["k"], g["n"], g["gflops"]] for g in res["sgemm"]])]
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
                   help="30 updates x 3 repeats, 10k images, no protocols (unless --protocol); "
                        "writes benchmarks/results_quick.json")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for NumPy's BLAS and for torch in the per-update comparison "
                        "(default: os.cpu_count()); for the protocols, BLAS threads for train "
                        "(default: train's own policy, helpers.auto_threads)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results[_quick].json)")
    p.add_argument("--protocol", action=argparse.BooleanOptionalAction, default=None,
                   help="run the arch2 protocol (default: on, off with --quick)")
    p.add_argument("--arch5", action=argparse.BooleanOptionalAction, default=None,
                   help="run the arch5 protocol (~2 min) in a subprocess (default: on, off with --quick)")
    p.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures to time")
    p.add_argument("--n-updates", type=int, default=None, help="updates per repeat (200; quick 30)")
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
         "n_updates": args.n_updates or (30 if quick else 200),
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
    impls = ("numpy", "torch", "torch1") if torch is not None else ("numpy",)
    env = environment()
    res = {"schema": SCHEMA, "note": DATA_NOTE, "mode": "quick" if quick else "full",
           "settings": s, "environment": env, "torch_note": torch_note, "warnings": []}
    load, ncpu = (env["load_average"] or [0.0])[0], env["cpus_usable"] or env["cpu_count"] or 1
    if load > 0.5 * ncpu:
        res["warnings"].append(
            f"the machine was busy (1-minute load average {load:.1f} on {ncpu} CPUs): timings are "
            "noisy, and multi-threaded BLAS/torch suffer most; rerun on an idle machine")

    sg = sgemm_rates(tuple(sh for sh in SGEMM_SHAPES if sh[0] != 2048) +
                     ((args.sgemm_max,) * 3,), threads=s["threads"],
                     min_time=args.sgemm_min_time or (0.1 if quick else 0.3))
    peak = max(g["gflops"] for g in sg)
    res["sgemm"], res["sgemm_peak_gflops"] = sg, peak

    data = make_data(s["n_data"])
    per = []
    for a in archs:
        name, f, nf, nh = _arch(a)
        r = update_times(a, impls=impls, n_updates=s["n_updates"], repeats=s["repeats"],
                         warmup=s["warmup"], threads=s["threads"], data=data)
        fl = flops_per_update(f, nf, nh)
        ns = r["numpy"]["median_s"]
        ts = r["torch"]["median_s"] if r.get("torch") else None
        t1 = r["torch1"]["median_s"] if r.get("torch1") else None
        best = min(ts, t1) if ts and t1 else ts
        per.append({"arch": name, "f": f, "nf": nf, "nh": nh,
                    "numpy_threads": min(s["threads"], runtime.auto_threads(H.init_params(f, nf, nh))),
                    "torch1_s": t1, "ratio_best_torch_over_numpy": best / ns if best else None,
                    "numpy_s": ns, "numpy_repeats_s": r["numpy"]["repeats_s"],
                    "torch_s": ts, "torch_repeats_s": r["torch"]["repeats_s"] if ts else None,
                    "ratio_torch_over_numpy": ts / ns if ts else None,
                    "numpy_min_s": r["numpy"]["min_s"],
                    "torch_min_s": r["torch"]["min_s"] if ts else None,
                    "ratio_of_min": r["torch"]["min_s"] / r["numpy"]["min_s"] if ts else None,
                    "flops": fl, "mflop": fl["total"] / 1e6,
                    "numpy_gflops": fl["total"] / ns / 1e9,
                    "x_sgemm_bound": ns / (fl["total"] / (peak * 1e9))})
        print(f"  timed {name}: numpy {ns * 1e3:.3f} ms"
              + (f", torch {ts * 1e3:.3f} ms" if ts else ""), flush=True)
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
