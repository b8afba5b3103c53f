"""The speed machinery changes no number: fused BLAS SGD updates (workbook/fastsgd.py) equal
the plain spec update W <- W - eta (g + 2 lam W) up to float rounding, fall back to numpy for
arrays BLAS cannot update in place, and train() gives bit-identical results whatever its BLAS
thread count (so the ThreadTuner in workbook/runtime.py may switch counts freely)."""
import time

import numpy as np
import pytest

import helpers as H
from workbook import fastsgd, runtime

TOL = {np.float32: 1e-6, np.float64: 1e-12}


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _unfused(W, A, B, decay):
    return decay * W - (A.T @ B).reshape(W.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,N", [((7, 11), 5), ((4, 4, 3, 6), 300), ((1, 9), 3), ((10, 1), 4)])
def test_gemm_update_equals_unfused(dtype, shape, N):
    rng = np.random.default_rng(0)
    W = rng.standard_normal(shape).astype(dtype)
    rows = int(np.prod(shape[:-1])) if len(shape) > 2 else shape[0]
    A = rng.standard_normal((N, rows)).astype(dtype)
    B = rng.standard_normal((N, shape[-1])).astype(dtype)
    want = _unfused(W, A, B, 0.97)
    assert fastsgd.fused_ok(W, A, B)
    ptr = W.ctypes.data
    out = fastsgd.gemm_update(W, A, B, 0.97)
    assert out is W and W.ctypes.data == ptr, "the update must happen in place"
    assert W.dtype == dtype
    assert _rel(W, want) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scipy_blas_fallback_equals_unfused(monkeypatch, dtype):
    """Without numpy's own cblas (another BLAS build), scipy.linalg.blas does the fused GEMM."""
    monkeypatch.setattr(fastsgd, "_CBLAS", {})
    monkeypatch.setattr(fastsgd, "_GEMM", fastsgd._scipy_blas())
    rng = np.random.default_rng(6)
    W = rng.standard_normal((5, 3, 2)).astype(dtype)
    A, B = rng.standard_normal((9, 15)).astype(dtype), rng.standard_normal((9, 2)).astype(dtype)
    want, ptr = _unfused(W, A, B, 0.8), W.ctypes.data
    fastsgd.gemm_update(W, A, B, 0.8)
    assert W.ctypes.data == ptr and _rel(W, want) < TOL[dtype]


def test_gemm_update_with_aliased_inputs_falls_back():
    W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    A = np.random.default_rng(7).standard_normal((3, 3)).astype(np.float32)
    assert fastsgd.fused_ok(W, A, W.copy())
    B = W                                       # W is also the right factor: BLAS must not see it
    assert not fastsgd.fused_ok(W, A, B)
    want = _unfused(W.astype(np.float64), A.astype(np.float64), W.astype(np.float64), 0.5)
    fastsgd.gemm_update(W, A, B, 0.5)
    assert _rel(W, want) < 1e-6


@pytest.mark.parametrize("case", ["noncontig_W", "mixed_dtype", "noncontig_A", "int_W"])
def test_gemm_update_falls_back_to_numpy(case):
    rng = np.random.default_rng(1)
    big = rng.standard_normal((6, 10)).astype(np.float32)
    W = big[:, ::2] if case == "noncontig_W" else big[:, :5].copy()
    A = rng.standard_normal((8, 6)).astype(np.float64 if case == "mixed_dtype" else np.float32)
    B = rng.standard_normal((8, 5)).astype(np.float32)
    if case == "noncontig_A":
        A = np.asfortranarray(A)
    if case == "int_W":
        W = np.zeros((6, 5), np.float16)
    assert not fastsgd.fused_ok(W, A, B)
    want = _unfused(W.astype(np.float64), A.astype(np.float64), B.astype(np.float64), 0.9)
    fastsgd.gemm_update(W, A, B, 0.9)
    assert _rel(W.astype(np.float64), want) < (1e-2 if case == "int_W" else 1e-6)
    if case == "noncontig_W":
        assert np.shares_memory(W, big), "the non-contiguous view itself must be updated"


def test_gemm_update_refuses_read_only_and_bad_shapes():
    W = np.ones((3, 4), np.float32)
    W.setflags(write=False)
    A, B = np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="read-only"):
        fastsgd.gemm_update(W, A, B, 0.5)
    assert np.all(W == 1)
    with pytest.raises(ValueError, match="shape"):
        fastsgd.gemm_update(np.ones((3, 5), np.float32), A, B)


@pytest.mark.parametrize("n,groups", [(10, 1), (10, 64), (7, 3)])
def test_colsum_equals_sum(n, groups):
    G = np.random.default_rng(2).standard_normal((n * groups, 5)).astype(np.float32)
    assert _rel(fastsgd.colsum(G, n), G.sum(axis=0, dtype=np.float64)) < 1e-5
    assert _rel(fastsgd.colsum(G), G.sum(axis=0, dtype=np.float64)) < 1e-5


def _reference_step(params, mxs, y, eta, lam, eps, mask):
    """The spec update, unfused: gradients (numpy), then W <- W - eta (g + 2 lam W)."""
    fw = H._forward_core(params, mxs, mask)
    T = H._targets(y, params["W2"].shape[0], eps, fw["P"].dtype)
    g = H._backward_core(params, mxs, fw, T, lam, mask)
    return {k: v - eta * g[k] for k, v in params.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f,nf", [(4, 5), ((4, 8), (3, 2))])
@pytest.mark.parametrize("eps,dropout", [(0.0, False), (0.1, True)])
def test_fused_train_step_equals_unfused_update(dtype, f, nf, eps, dropout, monkeypatch):
    rng = np.random.default_rng(3)
    nh, n, eta, lam = 80, 12, 0.07, 0.02          # W1 has > fastsgd.FUSE_MIN weights: fused
    params = H.init_params(f, nf, nh, seed=4, dtype=dtype)
    for k in params:
        if k.startswith("b"):
            params[k] = (0.1 * rng.standard_normal(params[k].shape)).astype(dtype)
    X = rng.standard_normal((3072, n))
    y = rng.integers(0, 10, n)
    mask = ((rng.random((n, nh)) < 0.6) / 0.6).astype(dtype) if dropout else None
    mxs = H.mx_for(params, X)
    want = _reference_step(params, mxs, y, eta, lam, eps, mask)
    got = {k: v.copy() for k, v in params.items()}
    fused = []
    blas = fastsgd._blas_update
    monkeypatch.setattr(fastsgd, "_blas_update", lambda W2, *a: (fused.append(W2.shape), blas(W2, *a)))
    H.train_step(got, mxs, y, eta, lam, eps, mask)
    assert fused == [(nh, params["W1"].shape[1])], f"expected one fused update, of W1; got {fused}"
    for k in params:
        step = np.max(np.abs(want[k] - params[k]))
        assert got[k].dtype == dtype and step > 0
        err = np.max(np.abs(got[k] - want[k]))
        assert err <= TOL[dtype] * max(np.max(np.abs(want[k])), step), (
            f"{k} ({np.dtype(dtype)}): fused update differs from the unfused one by {err:.3g}")


def test_train_is_bit_identical_for_1_and_2_blas_threads():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3072, 300)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    p = H.init_params(4, 32, 64, seed=0)
    runs = []
    for th in (1, 2, None):
        cfg = H.TrainConfig(n_cycles=1, step=4, eval_every=4, eval_train_n=100, dropout=0.2,
                            eps=0.1, progress=False, threads=th)
        runs.append(H.train(p, X, y, cfg))
    for q, hist in runs[1:]:
        assert hist.train_loss == runs[0][1].train_loss
        for k in p:
            assert np.array_equal(q[k], runs[0][0][k]), f"{k} depends on the BLAS thread count"


def test_thread_tuner_keeps_the_faster_count(monkeypatch):
    from threadpoolctl import threadpool_info
    clock = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(runtime.ThreadTuner, "busy", lambda self: False)
    monkeypatch.setattr(runtime, "cpu_sample", lambda: None)     # no /proc/stat: timed probes
    tu = runtime.ThreadTuner((1, 2), every=10, probe=2, max_every=40, first_probe=0)
    assert tu.choice == 2, "a wide net on an idle machine starts at all cores"
    cost = {1: 1.0, 2: 5.0}                    # 2 threads 5x slower: a busy machine
    seen = []
    for t in range(100):
        tu.before(t)
        seen.append(tu.current)
        clock[0] += cost[tu.current]
        tu.after(t)
    # probe: 2 updates at the current choice (2), then 1 thread (one untimed settling update,
    # then 2 timed): faster, so the choice becomes 1; the next probes start 10 updates later
    # (t=15), then 20, then 40 (the interval doubles while the choice stands, up to max_every):
    # 2 updates at 1 thread, then 2 threads: one settling, one timed (1.5x slower: cut short)
    assert seen[:5] == [2, 2, 1, 1, 1] and tu.choice == 1
    assert [t for t in range(5, 100) if seen[t] == 2] == [17, 18, 41, 42, 85, 86]
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas and set(blas) == {1}
    cost = {1: 3.0, 2: 1.0}                    # the machine became idle: back to 2
    for t in range(100, 200):
        tu.before(t)
        clock[0] += cost[tu.current]
        tu.after(t)
    assert tu.choice == 2 and tu.current == 2
    fixed = runtime.thread_tuner(H.init_params(4, 100, 800), 100, 1)
    assert fixed.counts == (1,) and fixed.fixed and fixed.eval_threads() == 1
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    for arch in ((2, 3, 50), (4, 10, 50), (8, 40, 50)):                 # arch1-3: 1 thread
        small = runtime.thread_tuner(H.init_params(*arch), 100, None)
        assert small.counts == (1,) and small.choice == 1 and not small.fixed
        assert small.eval_threads() == 1
    wide = runtime.thread_tuner(H.init_params(16, 160, 50), 100, None)   # arch4: all cores
    assert wide.counts == (1, 2) and wide.choice == 2
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 1)
    assert runtime.thread_tuner(H.init_params(4, 100, 800), 100, None).counts == (1,)


def test_thread_tuner_rechecks_when_an_update_turns_slow(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(runtime.ThreadTuner, "busy", lambda self: False)
    monkeypatch.setattr(runtime, "cpu_sample", lambda: None)     # no /proc/stat: timed probes
    tu = runtime.ThreadTuner((1, 2), every=50, probe=2, first_probe=0)
    cost = {1: 2.0, 2: 1.0}
    seen = []
    for t in range(40):
        if t == 20:
            cost = {1: 2.0, 2: 10.0}           # a neighbour takes a core: 2 threads spin-wait
        tu.before(t)
        seen.append(tu.current)
        clock[0] += cost[tu.current]
        tu.after(t)
    assert seen[:20] == [2, 2, 1, 1] + [2] * 16     # 1 thread: one settling update, one timed
    # the first slow update (t=20) triggers a probe right away, which moves to 1 thread
    assert seen[20:23] == [2, 2, 2] and set(seen[23:]) == {1} and tu.choice == 1


def test_busy_counts_other_programs_cpu_not_this_process(monkeypatch):
    """busy(): CPU used by OTHER programs over the last >= 0.2 s window, from /proc/stat's busy
    time less this process's own CPU time (fake samples here)."""
    samples = iter([(0.0, 0.0, 0.0),          # at construction
                    (0.01, 0.0, 0.0),          # its own first check: too short to tell
                    (1.0, 2.0, 1.9),           # 2 cores busy for 1 s, 1.9 s of it ours: idle
                    (1.01, 2.0, 1.9),          # too short a window: the last verdict stands
                    (2.0, 4.0, 3.0)])          # 2 core-seconds busy, 1 ours: a neighbour
    monkeypatch.setattr(runtime, "cpu_sample", lambda: next(samples))
    tu = runtime.ThreadTuner((1, 2))
    assert not tu.busy() and not tu.busy()
    assert tu.busy()


def test_busy_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_sample", lambda: None)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    tu = runtime.ThreadTuner((1, 2), every=10)
    seen = []
    for t in range(50):
        tu.before(t)
        seen.append(tu.current)
        tu.after(t)
    assert set(seen) == {1}, "with no idle core the tuner must not try more BLAS threads"
    assert tu.eval_threads() == 1, "evaluations run at the training's own count"
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.9, 0.9, 0.9))
    assert not tu.busy()
    # this process's own threads count in the load average: alone on 2 cores with 2 BLAS
    # threads the load is about 2.3, and that is not a busy machine
    tu.current = 2
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (2.3, 2.3, 2.3))
    assert not tu.busy(), "the tuner counted its own threads as another program's"
    tu.current = 1
    assert tu.busy(), "load 2.3 with 1 own thread: another program holds a core"


def test_cpu_sample_reads_proc_stat():
    s = runtime.cpu_sample()
    if s is None:
        pytest.skip("no /proc/stat here (not Linux)")
    wall, busy, own = s
    t0, x = time.process_time(), 0.0
    while time.process_time() - t0 < 0.05:     # burn CPU: both clocks must move (10 ms ticks)
        x += 1.0
    s2 = runtime.cpu_sample()
    assert s2[0] > wall and s2[2] > own and s2[1] >= busy


@pytest.mark.parametrize("pattern", ["always", "never", "alternate"])
def test_prefetch_batches_same_batches_whether_gathered_ahead_or_inline(pattern):
    """Each update's choices are drawn once, in order, in the caller's thread; the batches are the
    same whether the helper thread gathers them ahead (a spare core) or they are fetched inline."""
    import threading
    drawn, fetched_in = [], []

    def draw(t):
        drawn.append(t)
        return np.array([t]), t % 3, None

    def fetch(idx, choice):
        fetched_in.append(threading.current_thread() is threading.main_thread())
        return int(idx[0]) * 10 + choice

    flags = {"always": lambda t: True, "never": lambda t: False, "alternate": lambda t: t % 2 == 0}[pattern]
    step = [0]

    def background():
        return flags(step[0])

    out = []
    for idx, mask, batch in runtime.prefetch_batches(draw, fetch, 7, background=background):
        out.append((int(idx[0]), batch))
        step[0] += 1
    assert out == [(t, t * 10 + t % 3) for t in range(7)]
    assert drawn == list(range(7)), "choices must be drawn once each, in update order"
    if pattern == "never":
        assert all(fetched_in)
    elif pattern == "always" and (runtime.os.cpu_count() or 1) > 1:
        assert fetched_in[0] and not any(fetched_in[1:]), "batches 1.. should come from the helper"


@pytest.mark.parametrize("fs", [4, (4, 8)])
def test_train_step_with_reused_buffers_equals_fresh_memory(fs):
    """train() passes a workspace dict so the big intermediates are not page-faulted in every
    update: the updates must be bit-identical to those without it, and the buffers reused."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3072, 40)).astype(np.float32)
    p0 = H.init_params(fs, 6, 16, seed=1)
    mxs = H.mx_for(p0, X)
    a, b = ({k: v.copy() for k, v in p0.items()} for _ in range(2))
    ws, ids = {}, None
    for t in range(3):
        idx = rng.choice(40, 10, replace=False)
        y = rng.integers(0, 10, 10)
        mask = (rng.random((10, 16)) < 0.7).astype(np.float32) / 0.7
        mb = [m[idx] for m in mxs]
        la = H.train_step(a, mb, y, 0.05, 0.01, 0.1, mask)
        lb = H.train_step(b, mb, y, 0.05, 0.01, 0.1, mask, ws=ws)
        assert la == lb
        if ids is None:
            ids = {k: id(v) for k, v in ws.items()}
        assert ids == {k: id(v) for k, v in ws.items()}, "buffers must be reused, not remade"
    assert {"GH", "mask"} <= set(ws) and len(ws) >= 3
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs with reused buffers"


def test_thread_tuner_does_not_time_the_cold_first_update(monkeypatch):
    """The first update of a run is slow at any count; probing it would blame the start count."""
    clock = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(runtime.ThreadTuner, "busy", lambda self: False)
    monkeypatch.setattr(runtime, "cpu_sample", lambda: None)     # no /proc/stat: timed probes
    tu = runtime.ThreadTuner((1, 2))                      # defaults: probe 3, first_probe 1
    seen = []
    for t in range(8):
        tu.before(t)
        seen.append(tu.current)
        clock[0] += (50.0 if t == 0 else 1.0) if tu.current == 2 else 1.8
        tu.after(t)
    # update 0 (cold) is not timed; 3 at 2 threads, then 1 thread: one settling update, one
    # timed: 1.8x slower, cut short
    assert seen == [2, 2, 2, 2, 1, 1, 2, 2] and tu.choice == 2


@pytest.mark.parametrize("N, d, c", [(6400, 48, 10), (5000, 48, 3), (6400, 12, 3), (6400, 48, 40), (100, 48, 10)])
def test_chunked_skinny_products_equal_the_plain_ones(N, d, c):
    """matmul_rows / gradient split tall, skinny products into row pieces (arch2's conv): the
    same numbers up to float32 rounding, whether or not a shape is split."""
    rng = np.random.default_rng(N + d + c)
    A = rng.standard_normal((N, d)).astype(np.float32)
    B = rng.standard_normal((d, c)).astype(np.float32)
    G = rng.standard_normal((N, c)).astype(np.float32)
    want = A.astype(np.float64) @ B
    got = fastsgd.matmul_rows(A, B)
    out = np.empty((N, c), np.float32)
    assert fastsgd.matmul_rows(A, B, out=out) is out
    for x in (got, out):
        err = np.max(np.abs(x - want))
        assert err < 1e-4 * np.max(np.abs(want)), f"matmul_rows off by {err:.3g} for {(N, d, c)}"
    want_g = A.astype(np.float64).T @ G
    g = fastsgd.gradient(A, G, (d, c))
    err = np.max(np.abs(g - want_g))
    assert g.shape == (d, c) and err < 1e-4 * np.max(np.abs(want_g)), f"gradient off by {err:.3g}"
    assert fastsgd._skinny(A, c) == (N > fastsgd.CHUNK and c <= fastsgd.SKINNY and d >= 32)


def test_thread_tuner_follows_other_programs_cpu_where_measured(monkeypatch):
    """With /proc/stat readable, no timed probes: all cores while other programs leave a core
    idle, 1 thread while they use more than half a core (checked every ``every`` updates, and
    at once when an update turns 3x slower)."""
    clock, wall, busy, own = [0.0], [0.0], [0.0], [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(runtime, "cpu_sample", lambda: (wall[0], busy[0], own[0]))
    tu = runtime.ThreadTuner((1, 2), every=10)
    seen, others = [], 0.0
    for t in range(60):
        if t == 25:
            others = 1.0                        # a neighbour takes a whole core
        if t == 45:
            others = 0.0
        tu.before(t)
        seen.append(tu.current)
        dt = 1.0 if tu.current == 1 else (0.6 if others < 0.5 else 6.0)
        clock[0] += dt
        wall[0] += dt
        own[0] += dt * tu.current if others < 0.5 else dt
        busy[0] += dt * tu.current + others * dt if others < 0.5 else 2 * dt
        tu.after(t)
    assert set(seen[:25]) == {2}, "idle machine: all cores, and no 1-thread probes"
    # at t=25 the update turns 10x slower: re-check at once (t=26), which sees the neighbour;
    # checks every 10 updates from there: t=46 still sees it over t=36..45, t=56 does not
    assert seen[25] == 2 and set(seen[26:56]) == {1}
    assert set(seen[56:]) == {2}, "the neighbour left: back to all cores"


def test_thread_tuner_reads_a_busy_machine_within_a_few_updates(monkeypatch):
    """/proc/stat counts in 10 ms ticks, so a reading needs >= 0.2 s; until then the tuner looks
    again at every update, instead of running 100 updates at 2 threads beside a neighbour."""
    clock = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    state = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(runtime, "cpu_sample", lambda: (state["wall"], state["busy"], state["own"]))
    tu = runtime.ThreadTuner((1, 2), every=100)
    seen = []
    for t in range(10):
        tu.before(t)
        seen.append(tu.current)
        dt = 0.05
        clock[0] += dt
        state["wall"] += dt
        state["own"] += dt                        # a neighbour holds the other core throughout
        state["busy"] += 2 * dt
        tu.after(t)
    assert seen[:4] == [2, 2, 2, 2] and set(seen[4:]) == {1}, seen
