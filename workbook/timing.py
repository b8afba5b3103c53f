"""Timing: convolution methods, float32 vs float64, MX construction, and the time of one update."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from helpers import TrainConfig, build_mx, build_mx_naive, compute_grads, conv_einsum, conv_fast, conv_loops, conv_matmul, flatten_filters, init_params, mx_batch_first, one_hot, to_images, train
from workbook.checks import _check_X, _check_f
from workbook.runtime import blas_threads


def time_conv_methods(f: int = 4, nf: int = 10, n: int = 100, repeats: int = 3, seed: int = 0,
                      dtype=np.float32, loops_max_calls: int = 200_000, threads=None) -> list:
    """Time the convolution methods on random data; best (minimum) of ``repeats`` runs.

    Inputs are what each method gets in use: loops X_ims (32, 32, 3, n); matmul and einsum the
    C-contiguous spec MX (n_p, f*f*3, n); conv_fast a view of batch-first MX (as training
    keeps it, so its transpose is free). MX construction is not timed (it is done
    once per dataset). When n*n_p*nf exceeds ``loops_max_calls`` the loops are timed on fewer
    images and the time scaled linearly to n (row key ``n_timed`` says how many).
    ``threads``: BLAS threads while timing (None: the library default; 1 avoids thread overhead
    on a busy machine). Returns one dict per method: method, seconds (for n images),
    ms_per_image, n_timed, speedup_vs_loops, max_abs_diff_vs_loops (on the images the loops
    computed), threads, f, nf, n, dtype.
    """
    return _timed_rows(threads, _time_conv_methods, f, nf, n, repeats, seed, dtype,
                       loops_max_calls)


def _timed_rows(threads, fn, *args) -> list:
    """Run a timing routine under a BLAS thread limit and tag its rows with the setting."""
    with blas_threads(threads):
        rows = fn(*args)
    for r in rows:
        r["threads"] = "default" if threads is None else int(threads)
    return rows


def _time_conv_methods(f, nf, n, repeats, seed, dtype, loops_max_calls) -> list:
    import time
    n_p = _check_f(f)
    if int(n) < 1 or int(nf) < 1 or int(repeats) < 1:
        raise ValueError(f"n, nf and repeats must be positive; got n={n}, nf={nf}, repeats={repeats}")
    n, nf, repeats, d = int(n), int(nf), int(repeats), f * f * 3
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3072, n)).astype(dtype)
    Fs = (rng.standard_normal((f, f, 3, nf)) * np.sqrt(2.0 / d)).astype(dtype)
    X_ims, Fs_flat = to_images(X), flatten_filters(Fs)
    MX = build_mx(X_ims, f)
    MXv = mx_batch_first(X, f, dtype=dtype).transpose(1, 2, 0)

    def best(fn, k):
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t0)
        return min(ts), out

    n_loop = max(1, min(n, loops_max_calls // max(1, n_p * nf)))
    t_loop, ref = best(lambda: conv_loops(X_ims[..., :n_loop], Fs), repeats)
    t_loop *= n / n_loop
    ref = ref.reshape((n_p, nf, n_loop), order="C").astype(np.float64)
    rows = [{"method": "loops", "seconds": t_loop, "n_timed": n_loop, "max_abs_diff_vs_loops": 0.0}]
    methods = [("matmul", lambda: conv_matmul(MX, Fs_flat)),
               ("einsum (optimize=True)", lambda: conv_einsum(MX, Fs_flat, optimize=True)),
               ("einsum (optimize=False)", lambda: conv_einsum(MX, Fs_flat, optimize=False)),
               ("conv_fast (one GEMM)", lambda: conv_fast(MXv, Fs_flat))]
    for name, fn in methods:
        fn()  # warm-up (einsum path search, BLAS thread start)
        t, out = best(fn, repeats)
        diff = float(np.max(np.abs(np.asarray(out[..., :n_loop], np.float64) - ref)))
        rows.append({"method": name, "seconds": t, "n_timed": n, "max_abs_diff_vs_loops": diff})
    for r in rows:
        r["seconds"] = max(r["seconds"], 1e-9)
        r["ms_per_image"] = 1e3 * r["seconds"] / n
        r["speedup_vs_loops"] = t_loop / r["seconds"]
        r.update(f=f, nf=nf, n=n, dtype=np.dtype(dtype).name)
    return rows


def format_table(rows: list, cols, fmt: str = "{:.3g}") -> str:
    """A plain-text table of dict rows (floats formatted with ``fmt``), for printing."""
    cols = list(cols)
    cells = [[c for c in cols]] + [[fmt.format(r.get(c)) if isinstance(r.get(c), float)
                                    else str(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    lines = ["  ".join(s.ljust(w[j]) for j, s in enumerate(row)) for row in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def time_grads_dtype(f: int = 4, nf: int = 10, nh: int = 50, n: int = 100, repeats: int = 5,
                     seed: int = 0, X: np.ndarray | None = None, threads=None) -> list:
    """Time compute_grads (forward + backward of one batch) in float32 and float64.

    X: (3072, >=n) images (random when None). Best of ``repeats`` after one warm-up call.
    ``threads``: BLAS threads while timing (None: the library default).
    Returns rows {dtype, seconds, ms_per_batch, speedup_vs_float64, threads, f, nf, nh, n}.
    """
    return _timed_rows(threads, _time_grads_dtype, f, nf, nh, n, repeats, seed, X)


def _time_grads_dtype(f, nf, nh, n, repeats, seed, X) -> list:
    import time
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3072, n)) if X is None else _check_X(X)[:, :n]
    y = rng.integers(0, 10, X.shape[1])
    rows = []
    for dt in (np.float64, np.float32):
        p = init_params(f, nf, nh, seed=seed, dtype=dt)
        MX = mx_batch_first(X, f, dtype=dt).transpose(1, 2, 0)
        Y = one_hot(y, 10, dt)
        compute_grads(p, MX, Y)
        ts = []
        for _ in range(max(1, int(repeats))):
            t0 = time.perf_counter()
            compute_grads(p, MX, Y)
            ts.append(time.perf_counter() - t0)
        rows.append({"dtype": np.dtype(dt).name, "seconds": max(min(ts), 1e-9)})
    for r in rows:
        r["ms_per_batch"] = 1e3 * r["seconds"]
        r["speedup_vs_float64"] = rows[0]["seconds"] / r["seconds"]
        r.update(f=f, nf=nf, nh=nh, n=int(X.shape[1]))
    return rows


def mx_build_times(X: np.ndarray, f: int = 4, n_naive: int = 200, folder=None) -> list:
    """The spec's "precompute MX once, save it, load it" measured against just building it.

    X: (3072, n). Rows {how, images, seconds}: build_mx_naive (the spec's loops, timed on the
    first ``n_naive`` images and scaled to n), mx_batch_first (vectorised), np.save of that MX
    and np.load of it (a temporary file in ``folder``, default the system temp folder, removed
    afterwards; the OS file cache makes the load a best case).
    """
    import tempfile
    from pathlib import Path
    X = _check_X(X)
    _check_f(f)
    n = X.shape[1]
    k = max(1, min(int(n_naive), n))
    t0 = time.perf_counter()
    build_mx_naive(to_images(X[:, :k]), f)
    rows = [{"how": f"build_mx_naive (spec loops; timed on {k}, scaled)", "images": n,
             "seconds": (time.perf_counter() - t0) * n / k}]
    t0 = time.perf_counter()
    mxb = mx_batch_first(X, f)
    rows.append({"how": "mx_batch_first (vectorised)", "images": n, "seconds": time.perf_counter() - t0})
    with tempfile.TemporaryDirectory(dir=folder) as d:
        path = Path(d) / "mx.npy"
        t0 = time.perf_counter()
        np.save(path, mxb)
        rows.append({"how": f"np.save ({mxb.nbytes / 1e6:.0f} MB)", "images": n,
                     "seconds": time.perf_counter() - t0})
        t0 = time.perf_counter()
        np.load(path)
        rows.append({"how": "np.load", "images": n, "seconds": time.perf_counter() - t0})
    return rows


def time_per_update(arch: dict, cfg: TrainConfig, data: dict, n: int = 20, seed: int = 0) -> float:
    """Seconds per SGD update of ``arch`` trained with ``cfg``'s options (augmentation, dropout,
    batch size, threads): the mean update time of a short ``train`` run of about ``n`` updates
    on data['X_train'] (evaluation excluded). Multiply by cfg.n_updates for a training-time
    estimate."""
    cfg = cfg.validate()
    if cfg.batch_size > data["X_train"].shape[1]:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set")
    short = dataclasses.replace(cfg, n_cycles=1, step=max(1, (int(n) + 1) // 2), increasing=False,
                                eval_every=10 ** 9, eval_train_n=cfg.batch_size, seed=seed,
                                progress=False)
    params = init_params(arch["f"], arch["nf"], arch["nh"], seed=seed, dtype=data["X_train"].dtype)
    _, hist = train(params, data["X_train"], data["y_train"], short)
    return hist.time_train / max(1, hist.updates_done)


def ablation_time_estimate(base_arch: dict, base_cfg: TrainConfig, variants: dict, data: dict,
                           n: int = 10) -> dict:
    """Estimated training seconds of every run_ablation run (evaluation not included):
    {'base': s, name: s, ...} = time_per_update(arch, cfg, data, n) * cfg.n_updates."""
    out = {"base": time_per_update(base_arch, base_cfg, data, n) * base_cfg.n_updates}
    for name, (a_over, c_over) in variants.items():
        cfg = dataclasses.replace(base_cfg, **c_over)
        out[name] = time_per_update({**base_arch, **a_over}, cfg, data, n) * cfg.n_updates
    return out
