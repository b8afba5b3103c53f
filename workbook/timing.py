"""Timing for the chapters: the convolution methods (the lesson's and the engine's one GEMM),
float32 vs float64 gradients, MX construction, and the time of one training update.
Every routine returns rows (dicts) for ``format_table``; none asserts anything about speed."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

import helpers as H
from helpers import check_f
from workbook import engine
from workbook.checks import check_X
from workbook.layout import mx_batch_first
from workbook.runtime import blas_threads


def best_time(fn, repeats: int):
    """(the fastest of ``repeats`` calls of fn() in seconds, the last result)."""
    ts, out = [], None
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return max(min(ts), 1e-9), out


def tag_threads(rows: list, threads) -> list:
    """Each row gets 'threads': the BLAS thread limit it was timed under ('default': none)."""
    for r in rows:
        r["threads"] = "default" if threads is None else int(threads)
    return rows


def time_conv_methods(f: int = 4, nf: int = 10, n: int = 100, repeats: int = 3, seed: int = 0,
                      dtype=np.float32, loops_max_calls: int = 200_000, threads=None) -> list:
    """Time the convolution methods on random data; best (minimum) of ``repeats`` runs.

    Each method gets its input as it is used: loops X_ims (32, 32, 3, n); matmul and einsum the
    spec MX (n_p, f*f*3, n); 'engine GEMM' the batch-first MX (n, n_p, f*f*3) that the engine
    keeps (one GEMM for the batch). Building MX is not timed (it is done once per dataset).
    When n*n_p*nf exceeds ``loops_max_calls`` the loops run on fewer images and their time is
    scaled to n (row key n_timed). ``threads``: BLAS threads while timing (None: the default).
    Rows: method, seconds (for n images), ms_per_image, n_timed, speedup_vs_loops,
    max_abs_diff_vs_loops (on the images the loops computed), threads, f, nf, n, dtype.
    """
    n_p = check_f(f)
    if int(n) < 1 or int(nf) < 1 or int(repeats) < 1:
        raise ValueError(f"n, nf and repeats must be positive; got n={n}, nf={nf}, repeats={repeats}")
    n, nf, d = int(n), int(nf), f * f * 3
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3072, n)).astype(dtype)
    Fs = (rng.standard_normal((f, f, 3, nf)) * np.sqrt(2.0 / d)).astype(dtype)
    X_ims, Fs_flat = H.to_images(X), H.flatten_filters(Fs)
    MX, mxb = H.build_mx(X_ims, f), mx_batch_first(X, f, dtype=dtype)
    with blas_threads(threads):
        n_loop = max(1, min(n, loops_max_calls // max(1, n_p * nf)))
        t_loop, ref = best_time(lambda: H.conv_loops(X_ims[..., :n_loop], Fs), repeats)
        t_loop *= n / n_loop
        ref = ref.reshape((n_p, nf, n_loop), order="C").astype(np.float64)
        rows = [{"method": "loops", "seconds": t_loop, "n_timed": n_loop, "max_abs_diff_vs_loops": 0.0}]
        methods = [("matmul", lambda: H.conv_matmul(MX, Fs_flat)),
                   ("einsum (optimize=True)", lambda: H.conv_einsum(MX, Fs_flat)),
                   ("engine GEMM (batch-first)", lambda: engine.conv_gemm(mxb, Fs_flat).transpose(1, 2, 0))]
        for name, fn in methods:
            fn()                  # warm-up (einsum's path search, BLAS threads starting)
            t, out = best_time(fn, repeats)
            diff = float(np.max(np.abs(np.asarray(out[..., :n_loop], np.float64) - ref)))
            rows.append({"method": name, "seconds": t, "n_timed": n, "max_abs_diff_vs_loops": diff})
    for r in rows:
        r["ms_per_image"] = 1e3 * r["seconds"] / n
        r["speedup_vs_loops"] = t_loop / r["seconds"]
        r.update(f=f, nf=nf, n=n, dtype=np.dtype(dtype).name)
    return tag_threads(rows, threads)


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
                     seed: int = 0, X: np.ndarray | None = None, threads=None,
                     impl: str = "plain") -> list:
    """Time compute_grads (forward + backward of one batch) in float64 and float32.

    impl: 'plain' (helpers.compute_grads, the lesson) or 'engine' (engine.compute_grads, the
    batch-first path). X: (3072, >= n) images (random when None). Best of ``repeats`` after one
    warm-up call, under ``threads`` BLAS threads (None: the default). Rows {impl, dtype,
    seconds, ms_per_batch, speedup_vs_float64, threads, f, nf, nh, n}.
    """
    grads = {"plain": H.compute_grads, "engine": engine.compute_grads}.get(impl)
    if grads is None:
        raise ValueError(f"impl must be 'plain' or 'engine'; got {impl!r}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3072, n)) if X is None else check_X(X)[:, :n]
    y = rng.integers(0, 10, X.shape[1])
    rows = []
    with blas_threads(threads):
        for dt in (np.float64, np.float32):
            p = H.init_params(f, nf, nh, seed=seed, dtype=dt)
            MX = H.build_mx(H.to_images(X.astype(dt)), f)
            Y = H.one_hot(y, 10, dt)
            grads(p, MX, Y)
            t, _ = best_time(lambda: grads(p, MX, Y), repeats)
            rows.append({"impl": impl, "dtype": np.dtype(dt).name, "seconds": t})
    for r in rows:
        r["ms_per_batch"] = 1e3 * r["seconds"]
        r["speedup_vs_float64"] = rows[0]["seconds"] / r["seconds"]
        r.update(f=f, nf=nf, nh=nh, n=int(X.shape[1]))
    return tag_threads(rows, threads)


def mx_build_times(X: np.ndarray, f: int = 4, n_naive: int = 200, folder=None) -> list:
    """The spec's "precompute MX once, save it, load it" measured against just building it.

    X: (3072, n). Rows {how, images, seconds}: build_mx_naive (the spec's loops, timed on the
    first ``n_naive`` images and scaled to n), build_mx (vectorised, the lesson),
    mx_batch_first (the engine's), np.save of that MX and np.load of it (a temporary file in
    ``folder``, default the system temp folder, removed afterwards; the OS file cache makes the
    load a best case).
    """
    import tempfile
    from pathlib import Path
    X = check_X(X)
    check_f(f)
    n = X.shape[1]
    k = max(1, min(int(n_naive), n))
    t_naive, _ = best_time(lambda: H.build_mx_naive(H.to_images(X[:, :k]), f), 1)
    rows = [{"how": f"build_mx_naive (spec loops; timed on {k}, scaled)", "images": n,
             "seconds": t_naive * n / k}]
    t, _ = best_time(lambda: H.build_mx(H.to_images(X), f), 1)
    rows.append({"how": "build_mx (vectorised)", "images": n, "seconds": t})
    t, mxb = best_time(lambda: mx_batch_first(X, f), 1)
    rows.append({"how": "mx_batch_first (the engine's layout)", "images": n, "seconds": t})
    with tempfile.TemporaryDirectory(dir=folder) as d:
        path = Path(d) / "mx.npy"
        t, _ = best_time(lambda: np.save(path, mxb), 1)
        rows.append({"how": f"np.save ({mxb.nbytes / 1e6:.0f} MB)", "images": n, "seconds": t})
        t, _ = best_time(lambda: np.load(path), 1)
        rows.append({"how": "np.load", "images": n, "seconds": t})
    return rows


def time_per_update(arch: dict, cfg, data: dict, n: int = 20, seed: int = 0) -> float:
    """Seconds per SGD update of ``arch`` ({'f', 'nf', 'nh'}) trained by engine.train with
    ``cfg``'s options (a TrainConfig or EngineConfig: augmentation, dropout, batch size,
    threads): the mean update time of a short run of about ``n`` updates on data['X_train']
    (evaluation excluded). Multiply by cfg.n_updates for a training-time estimate."""
    cfg = engine.as_engine_config(cfg)
    if cfg.batch_size > data["X_train"].shape[1]:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set")
    short = dataclasses.replace(cfg, n_cycles=1, step=max(1, (int(n) + 1) // 2), increasing=False,
                                eval_every=10 ** 9, eval_train_n=cfg.batch_size, seed=seed,
                                progress=False)
    params = engine.init_params(arch["f"], arch["nf"], arch["nh"], seed=seed,
                                dtype=data["X_train"].dtype)
    _, hist = engine.train(params, data["X_train"], data["y_train"], short)
    return hist.time_train / max(1, hist.updates_done)


def ablation_time_estimate(base_arch: dict, base_cfg, variants: dict, data: dict,
                           n: int = 10) -> dict:
    """Estimated training seconds of every run_ablation run (evaluation not included):
    {'base': s, name: s, ...} = time_per_update(arch, cfg, data, n) * cfg.n_updates."""
    base_cfg = engine.as_engine_config(base_cfg)
    out = {"base": time_per_update(base_arch, base_cfg, data, n) * base_cfg.n_updates}
    for name, (a_over, c_over) in variants.items():
        cfg = dataclasses.replace(base_cfg, **c_over)
        out[name] = time_per_update({**base_arch, **a_over}, cfg, data, n) * cfg.n_updates
    return out
