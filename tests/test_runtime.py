"""Tests for workbook/runtime.py: how the engine uses the machine (BLAS threads, the thread
tuner, the prefetching batch gatherer, the FLOP count) changes no number: train() gives
bit-identical results whatever its BLAS thread count. No test here measures a time: the tuner
runs on a fake clock and fake CPU samples."""
import time

import numpy as np
import pytest

import helpers as H
from workbook import engine, runtime


def test_train_is_bit_identical_for_1_and_2_blas_threads():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3072, 300)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    p = H.init_params(4, 32, 64, seed=0)
    runs = []
    for th in (1, 2, None):
        cfg = engine.EngineConfig(n_cycles=1, step=4, eval_every=4, eval_train_n=100, dropout=0.2,
                            eps=0.1, progress=False, threads=th)
        runs.append(engine.train(p, X, y, cfg))
    for q, hist in runs[1:]:
        assert hist.train_loss == runs[0][1].train_loss
        for k in p:
            assert np.array_equal(q[k], runs[0][0][k]), f"{k} depends on the BLAS thread count"


@pytest.fixture
def idle_clock(monkeypatch):
    """A fake clock (list of one float, advanced by the test) on an idle machine without
    /proc/stat, so the ThreadTuner decides by its timed probes."""
    clock = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(runtime.ThreadTuner, "busy", lambda self: False)
    monkeypatch.setattr(runtime, "cpu_sample", lambda: None)     # no /proc/stat: timed probes
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.0, 0.0, 0.0))   # an idle machine
    return clock


def test_thread_tuner_keeps_the_faster_count(monkeypatch, idle_clock):
    from threadpoolctl import threadpool_info
    clock = idle_clock
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


def test_thread_tuner_rechecks_when_an_update_turns_slow(monkeypatch, idle_clock):
    clock = idle_clock
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


def test_thread_tuner_does_not_time_the_cold_first_update(monkeypatch):
    """The first update of a run is slow at any count; probing it would blame the start count."""
    clock = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(runtime.ThreadTuner, "busy", lambda self: False)
    monkeypatch.setattr(runtime, "cpu_sample", lambda: None)     # no /proc/stat: timed probes
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.0, 0.0, 0.0))   # an idle machine
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


def test_update_flops_by_hand():
    """2 FLOPs per multiply-add; conv: 2 GEMMs (forward, filter gradient), each layer 3."""
    p = H.init_params(4, 10, 50)                      # arch2: n_p 64, d 48, width 640
    conv, fc1, fc2 = 64 * 48 * 10, 640 * 50, 50 * 10
    assert runtime.update_flops(p, 100) == 2.0 * 100 * (2 * conv + 3 * fc1 + 3 * fc2)
    multi = engine.init_params((4, 8), (3, 2), 6)
    conv = 64 * 48 * 3 + 16 * 192 * 2
    width = 64 * 3 + 16 * 2
    assert runtime.update_flops(multi, 10) == 2.0 * 10 * (2 * conv + 3 * width * 6 + 3 * 6 * 10)


def test_auto_threads_and_blas_threads(monkeypatch):
    from threadpoolctl import threadpool_info
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 4)
    assert runtime.auto_threads(H.init_params(4, 10, 50)) == 1            # arch2: small
    assert runtime.auto_threads(H.init_params(4, 100, 800)) == 4          # the recipe's net

    def blas():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas()
    with runtime.blas_threads(1):
        assert blas() == {1}
    assert blas() == before
    with runtime.blas_threads(None):
        assert blas() == before


def test_progress_bar_can_be_switched_off(monkeypatch):
    assert runtime.progress_bar(10, False, "x") is None
    monkeypatch.setenv("WORKBOOK_PROGRESS", "0")
    assert runtime.progress_bar(10, True, "x") is None
