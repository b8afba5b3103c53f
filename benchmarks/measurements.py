"""What every part of the benchmark shares: the nets, the random data, the batch order, thread
limits, the measured sgemm rate and the GEMM FLOP bound, peak memory, and the environment.

SPEED ONLY: the data is random Gaussian float32 with CIFAR-10's shapes, never CIFAR-10.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from workbook import engine
from workbook.runtime import blas_threads, update_flops
from workbook.runs import EX3_ARCHS

SCHEMA = "convnet-workbook/speed/2"
DATA_NOTE = ("SPEED ONLY: random Gaussian float32 data with CIFAR-10's shapes (3072 x n, "
             "10 random labels), not CIFAR-10; accuracies from these runs are meaningless.")

# name -> (f, nf, nh): the assignment's architectures 1-4 (Exercise 3) and 5 (Exercise 4)
ARCHS = {**{k: (v["f"], v["nf"], v["nh"]) for k, v in EX3_ARCHS.items()}, "arch5": (4, 40, 300)}
# the bonus nets: the recipe's wide net, a wider candidate, and multi-size filters (f 4 and 8)
BONUS = {"bonus": (4, 100, 800), "bonus_wide": (4, 200, 1000), "bonus_multi": ((4, 8), 100, 800)}
ALL_ARCHS = {**ARCHS, **BONUS}
K, BATCH, LAM, ETA = 10, 100, 0.003, 0.01
SGEMM_SHAPES = ((6400, 48, 10), (100, 640, 50), (100, 2560, 300), (2048, 2048, 2048))


def torch_module():
    """The torch module, or None when it is not installed (torch is optional)."""
    try:
        import torch
    except Exception:
        return None
    return torch


def arch(a):
    """'arch2' or (f, nf, nh) -> (name, f, nf, nh); f may be a tuple (several filter sizes)."""
    if isinstance(a, str):
        if a not in ALL_ARCHS:
            raise ValueError(f"unknown architecture {a!r}; use one of {sorted(ALL_ARCHS)} or (f, nf, nh)")
        return (a,) + ALL_ARCHS[a]
    try:
        f, nf, nh = a
        f = tuple(int(v) for v in f) if isinstance(f, (tuple, list)) else int(f)
        nf, nh = int(nf), int(nh)
    except (TypeError, ValueError):
        raise ValueError(f"architecture must be a name like 'arch2' or a tuple (f, nf, nh); got {a!r}")
    fname = "-".join(map(str, f)) if isinstance(f, tuple) else f
    return (f"f{fname}_nf{nf}_nh{nh}", f, nf, nh)


def net_params(a, seed: int = 0, dtype=np.float32) -> dict:
    """He-initialised parameters of a net (engine.init_params), the start of every program."""
    _, f, nf, nh = arch(a)
    return engine.init_params(f, nf, nh, K=K, seed=seed, dtype=dtype)


def net_flops(a, batch: int = BATCH) -> float:
    """GEMM FLOPs of one update: workbook.runtime.update_flops, the project's one count."""
    return update_flops(net_params(a), batch)


def bound(flops: float, gflops: float, seconds: float) -> dict:
    """The GEMM FLOP bound: {bound_s = flops / (gflops * 1e9), x_bound = seconds / bound_s}."""
    b = flops / (gflops * 1e9)
    return {"bound_s": b, "x_bound": seconds / b}


def default_threads() -> int:
    """The thread count used when none is given: os.cpu_count()."""
    return os.cpu_count() or 1


def blas_thread_count() -> int:
    """The BLAS thread limit now in force (threadpoolctl)."""
    from threadpoolctl import threadpool_info
    return max([i.get("num_threads", 1) for i in threadpool_info() if i.get("user_api") == "blas"] or [1])


@contextlib.contextmanager
def thread_limit(n: int | None):
    """Limit NumPy's BLAS (runtime.blas_threads) and torch (set_num_threads) to ``n`` threads."""
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1; got {n}")
    torch = torch_module() if "torch" in sys.modules else None
    old = torch.get_num_threads() if torch is not None else None
    with blas_threads(n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            if torch is not None:
                torch.set_num_threads(old)


def make_data(n: int, seed: int = 0) -> dict:
    """Random data with CIFAR-10's shapes (speed only): Xr (n, 3072) float32 C-contiguous (one
    image per row, NCHW when viewed as (n, 3, 32, 32)), X = Xr.T (3072, n) the spec layout (a
    view), y (n,) int64 labels 0..9, name."""
    n = int(n)
    if n < 1:
        raise ValueError(f"need at least one image; got n={n}")
    rng = np.random.default_rng(seed)
    Xr = rng.standard_normal((n, 3072), dtype=np.float32)
    y = rng.integers(0, K, size=n).astype(np.int64)
    return {"Xr": Xr, "X": Xr.T, "y": y, "name": "random Gaussian, CIFAR-10 shapes (speed only)"}


def batch_indices(n: int, n_batches: int, batch: int = BATCH, seed: int = 0) -> np.ndarray:
    """(n_batches, batch) int64 sorted indices, drawn as train does (seeded shuffles,
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


def summary(times: list, k: int) -> dict:
    """Seconds per update of repeats that each timed k updates: median, min (best), all."""
    per = [t / k for t in times]
    return {"median_s": float(np.median(per)), "min_s": float(np.min(per)),
            "repeats_s": [float(v) for v in per]}


def sgemm_rates(shapes=SGEMM_SHAPES, threads: int | None = None, min_time: float = 0.3,
                repeats: int = 3) -> list:
    """Measured float32 GEMM rates. shapes: (m, k, n) for A (m, k) @ B (k, n). Each repeat runs
    the product until ``min_time`` seconds have passed; the best repeat counts (the rate the BLAS
    can reach). Returns [{'m', 'k', 'n', 'threads', 'seconds', 'gflops'}]."""
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
            rows.append({"m": m, "k": k, "n": n, "threads": blas_thread_count(), "seconds": float(best),
                         "gflops": float(2.0 * m * k * n / best / 1e9)})
    return rows


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (2**20 bytes). On Linux VmHWM from
    /proc/self/status (a child's ru_maxrss there inherits its parent's peak); elsewhere ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def cpu_model() -> str:
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
    torch = torch_module() if "torch" in sys.modules else None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer",
            "architecture")
    libs = [{k: v for k, v in lib.items() if k in keep} for lib in threadpoolctl.threadpool_info()]
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
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
