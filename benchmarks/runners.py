"""The programs that are timed, each with ``run(k)`` -> seconds for k updates at batch 100:

* ``TrainRunner``: the project's ``workbook.engine.train`` itself (its prefetch thread, its
  thread policy, the fused SGD step); hist.time_train / updates, evaluation excluded;
* ``StepRunner``: ``workbook.engine.train_step`` on prefetched batch-first batches;
* ``TorchLoopRunner``: the fastest idiomatic torch CPU loop we know, started from the SAME
  weights (copied in through ``workbook.oracle.torch_layout``), in several variants.

``update_times`` interleaves the repeats of all programs (load from other programs hits all
alike) and keeps the best repeat of each.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from benchmarks.measurements import (BATCH, ETA, K, LAM, arch, batch_indices, blas_thread_count,
                                     default_threads, make_data, net_flops, net_params, summary,
                                     thread_limit, torch_module)
from workbook import engine, oracle, runtime


class StepRunner:
    """engine.train_step on prefetched mini-batches (a ring of up to 16, gathered from the
    batch-first MX before timing, as train's prefetch thread hands them over), under the
    engine's own thread policy (runtime.thread_tuner) capped at the BLAS limit in force."""

    def __init__(self, a, data: dict, idx: np.ndarray, lam: float = LAM, eta: float = ETA,
                 seed: int = 0):
        self.params = net_params(a, seed)
        mxs = engine.mx_for(self.params, data["X"])            # [(n, n_p, d)] float32
        self.batches = [([m[ib] for m in mxs], data["y"][ib]) for ib in idx[:16]]
        self.lam, self.eta, self.t, self.tuner, self.ws = lam, eta, 0, None, {}

    def run(self, k: int) -> float:
        cap, loss = blas_thread_count(), 0.0
        with runtime.blas_threads(cap):
            if self.tuner is None:
                self.tuner = runtime.thread_tuner(self.params, BATCH, 1 if cap == 1 else None)
            tu, nb = self.tuner, len(self.batches)
            t0 = time.perf_counter()
            for _ in range(k):
                mb, yb = self.batches[self.t % nb]
                tu.before(self.t)
                loss = engine.train_step(self.params, mb, yb, self.eta, self.lam, 0.0, None, self.ws)
                tu.after(self.t)
                self.t += 1
            dt = time.perf_counter() - t0
        if k and not np.isfinite(loss):
            raise FloatingPointError(f"numpy run diverged (loss {loss}); lower eta (now {self.eta})")
        return dt


class TrainRunner:
    """engine.train itself: ``run(k)`` trains k updates (at least ``min_updates``, so that the
    thread tuner's probes are amortised) at a constant eta from the same start and returns
    k * hist.time_train / updates (evaluation and MX construction excluded by train's clock).
    ``cap``: a BLAS thread limit below the machine's (None: train's own policy)."""

    min_updates = 60

    def __init__(self, a, data: dict, idx=None, lam: float = LAM, eta: float = ETA,
                 seed: int = 0, cap: int | None = None):
        self.params = net_params(a, seed)
        m = min(10000, data["X"].shape[1])
        self.X, self.y = data["X"][:, :m], data["y"][:m]      # train() builds MX of these each run
        self.n_ev = min(100, m)
        self.lam, self.eta, self.seed, self.t = lam, eta, seed, 0
        self.threads = None if not cap or cap >= default_threads() else cap

    def run(self, k: int) -> float:
        if k < 1:
            return 0.0
        k_run = max(k, self.min_updates)
        cfg = engine.EngineConfig(n_cycles=1, step=(k_run + 1) // 2, eta_min=self.eta,
                                  eta_max=self.eta, lam=self.lam, eval_every=k_run,
                                  eval_train_n=self.n_ev, seed=self.seed + self.t, progress=False,
                                  threads=self.threads)
        self.t += 1
        _, hist = engine.train(self.params, self.X, self.y, cfg)
        if not np.isfinite(hist.train_loss[-1]):
            raise FloatingPointError("numpy train() run diverged")
        return hist.time_train / hist.updates_done * k


def torch_variants(cap: int) -> list:
    """Names of the idiomatic torch settings tried: t{threads}[_cl|_nomkldnn|_foreach|_fused]."""
    out = []
    for t in range(1, max(1, cap) + 1) if cap <= 2 else (1, 2, cap):
        out += [f"t{t}", f"t{t}_cl", f"t{t}_nomkldnn", f"t{t}_foreach", f"t{t}_fused"]
    return out


def idiomatic_model(torch, fs: tuple, nf: int, nh: int):
    """``nn.Sequential(Conv2d(3, nf, f, stride=f), ReLU, Flatten, Linear, ReLU, Linear)``; with
    several filter sizes the convs run side by side and their flattened outputs are
    concatenated (in increasing f, as the engine stacks them)."""
    nn = torch.nn

    class MultiConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(3, nf, f, stride=f) for f in fs)

        def forward(self, x):
            return torch.cat([torch.relu(c(x)).flatten(1) for c in self.convs], dim=1)

    width = sum(nf * (32 // f) ** 2 for f in fs)
    body = ([nn.Conv2d(3, nf, fs[0], stride=fs[0]), nn.ReLU(), nn.Flatten()] if len(fs) == 1
            else [MultiConv()])
    return nn.Sequential(*body, nn.Linear(width, nh), nn.ReLU(), nn.Linear(nh, K))


def load_weights(torch, model, params: dict) -> None:
    """Copy spec-layout params into the idiomatic model (oracle.torch_layout's mapping)."""
    lay = oracle.torch_layout(params)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for c, (w, b) in zip(convs, lay["convs"], strict=True):
            c.weight.copy_(torch.from_numpy(w))
            c.bias.copy_(torch.from_numpy(b))
        for lin, (kw, kb) in zip(lins, (("W1", "b1"), ("W2", "b2")), strict=True):
            lin.weight.copy_(torch.from_numpy(lay[kw]))
            lin.bias.copy_(torch.from_numpy(lay[kb]))


class TorchLoopRunner:
    """Idiomatic torch CPU training, the fastest plain loop we know: ``idiomatic_model``,
    ``F.cross_entropy``, ``optim.SGD(lr, weight_decay=2 lam)`` on every parameter, float32, the
    data one NCHW tensor, batches by index, grads set to None, no per-step ``.item()``. It starts
    from the numpy side's weights (net_params(seed)). ``variant``: 't2' = 2 threads; suffix '_cl'
    channels_last, '_nomkldnn' torch.backends.mkldnn off, '_foreach' foreach SGD, '_fused' fused
    SGD (one kernel per parameter, on the CPU since torch 2.4)."""

    def __init__(self, a, data: dict, idx: np.ndarray, lam: float = LAM, eta: float = ETA,
                 seed: int = 0, variant: str = "t1"):
        torch = torch_module()
        if torch is None:
            raise ImportError("torch is not installed: pip install -e .[oracle] (CPU build)")
        _, f, nf, nh = arch(a)
        th, *opts = variant.split("_")
        self.threads, self.variant = int(th[1:]), variant
        self.cl, self.mkldnn = "cl" in opts, "nomkldnn" not in opts
        fs = tuple(sorted(f)) if isinstance(f, tuple) else (f,)
        self.model = idiomatic_model(torch, fs, nf, nh)
        load_weights(torch, self.model, net_params(a, seed))
        n = data["Xr"].shape[0]
        self.X = torch.from_numpy(data["Xr"]).view(n, 3, 32, 32)
        if self.cl:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.X = self.X.contiguous(memory_format=torch.channels_last)
        kind = ({"foreach": True} if "foreach" in opts else {"fused": True} if "fused" in opts
                else {"foreach": False})
        self.opt = torch.optim.SGD(self.model.parameters(), lr=eta, weight_decay=2.0 * lam, **kind)
        self.y = torch.from_numpy(data["y"])
        self.idx = [torch.from_numpy(np.ascontiguousarray(i)) for i in idx]
        self.torch, self.t = torch, 0

    def run(self, k: int) -> float:
        torch, model, opt, X, y, idx = self.torch, self.model, self.opt, self.X, self.y, self.idx
        ce, nb, old = torch.nn.functional.cross_entropy, len(idx), torch.get_num_threads()
        torch.set_num_threads(self.threads)
        loss = None
        try:
            with warnings.catch_warnings():   # torch warns about TF32 on Intel GPUs here
                warnings.filterwarnings("ignore", message="TF32 acceleration")
                with torch.backends.mkldnn.flags(enabled=self.mkldnn):
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
            torch.set_num_threads(old)
        if loss is not None and not np.isfinite(loss.item()):
            raise FloatingPointError("torch run diverged")
        return dt


def update_times(a, impls=("numpy", "torch"), n_updates: int = 200, repeats: int = 5,
                 warmup: int = 20, threads: int | None = None, data: dict | None = None,
                 n_data: int = 49000, lam: float = LAM, eta: float = ETA, seed: int = 0,
                 screen: float | None = None) -> dict:
    """Seconds per update (batch 100) of each program in ``impls``: 'numpy' (TrainRunner),
    'numpy_step' (StepRunner), 'torch' (TorchLoopRunner at ``threads``), 'torch1' (at 1
    thread), 'torch:VARIANT' (e.g. 'torch:t2_cl', see torch_variants). Each repeat times
    ``n_updates`` consecutive updates; the programs' repeats alternate. ``screen``: after the
    first repeat, torch variants slower than ``screen`` x the fastest are timed no more.
    Returns {impl: {'median_s', 'min_s', 'repeats_s'}}; torch entries are None without torch."""
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
        torch_module()   # import before thread_limit, so that it limits torch's pools too
    with thread_limit(threads) as cap:
        for impl in impls:
            if impl.startswith("torch") and torch_module() is None:
                out[impl] = None
                continue
            if impl == "numpy":
                r = TrainRunner(a, data, idx, lam, eta, seed, cap=cap)
            elif impl == "numpy_step":
                r = StepRunner(a, data, idx, lam, eta, seed)
            else:
                v = {"torch": f"t{cap}", "torch1": "t1"}.get(impl) or impl.split(":", 1)[1]
                r = TorchLoopRunner(a, data, idx, lam, eta, seed, variant=v)
            runners[impl] = r
            if impl != "numpy":           # (each train() run starts afresh anyway)
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
        out[impl] = summary(times[impl], n_updates)
    return out


def numpy_update_time(a, **kw) -> dict:
    """engine.train seconds per update (hist.time_train / updates); see update_times."""
    return update_times(a, impls=("numpy",), **kw)["numpy"]


def torch_update_time(a, **kw) -> dict | None:
    """The idiomatic torch loop's seconds per update (None without torch); see update_times."""
    return update_times(a, impls=("torch",), **kw)["torch"]


def speed_grid(fs=(2, 4, 8, 16), nfs=(5, 10, 20, 40, 80, 160), nh: int = 50,
               n_updates: int = 50, repeats: int = 3, warmup: int = 5,
               threads: int | None = None, data: dict | None = None, n_data: int = 10000,
               seed: int = 0) -> list:
    """Per-update times on a grid of filter widths x filter counts (numpy and torch): one row
    per (f, nf) {'f', 'nf', 'nh', 'numpy_s', 'torch_s', 'ratio', 'mflop'}, ratio = torch_s /
    numpy_s (> 1: NumPy faster; None without torch)."""
    data = make_data(n_data, seed) if data is None else data
    rows = []
    for f in fs:
        for nf in nfs:
            r = update_times((f, nf, nh), n_updates=n_updates, repeats=repeats, warmup=warmup,
                             threads=threads, data=data, seed=seed)
            ns = r["numpy"]["median_s"]
            ts = r["torch"]["median_s"] if r.get("torch") else None
            rows.append({"f": f, "nf": nf, "nh": nh, "numpy_s": ns, "torch_s": ts,
                         "ratio": ts / ns if ts else None, "mflop": net_flops((f, nf, nh)) / 1e6})
    return rows
