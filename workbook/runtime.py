"""How train() uses the machine, kept out of the reader's way: BLAS threads, a prefetching batch
gatherer on the spare core, and the progress bar. None of it changes a number."""
from __future__ import annotations

import os
import time

from helpers import check_f


def prefetch_batches(draw, fetch, T: int, background=None):
    """Yield (idx, mask, batch) for updates 0..T-1, drawing each update's random choices in
    order in this thread. While update t computes, a helper thread gathers batch t+1 (numpy
    releases the GIL while copying) whenever ``background()`` (default: always) says a core is
    spare: that saves ~15% on small nets at 1 BLAS thread. When BLAS runs on every core the
    gather would only stall a GEMM thread (measured: arch2 at 2 threads 1.53 vs 1.39 ms per
    update, median), so then it runs inline."""
    if (os.cpu_count() or 1) < 2:
        background = lambda: False  # noqa: E731
    pool = fut = None
    try:
        for t in range(T):
            if fut is None:
                idx, choice, mask = draw(t)
                cur = (idx, mask, fetch(idx, choice))
            else:
                cur, fut = (idx, mask, fut.result()), None
            if t + 1 < T and (background is None or background()):
                idx, choice, mask = draw(t + 1)
                if pool is None:
                    from concurrent.futures import ThreadPoolExecutor
                    pool = ThreadPoolExecutor(1, thread_name_prefix="batch-prefetch")
                fut = pool.submit(fetch, idx, choice)
            yield cur
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def update_flops(params: dict, batch_size: int = 100) -> float:
    """The GEMM FLOPs (2 per multiply-add) of one training update at this batch size, the one
    cost model of the project (the benchmark's bound and the engine's time estimates use it).
    Each fully connected layer has 3 GEMMs (forward, input gradient, weight gradient), the
    convolution 2 (forward, filter gradient: the images need no gradient). Elementwise work
    (bias, ReLU, softmax, the SGD step) is left out. params: spec-layout parameters."""
    nh, width = params["W1"].shape
    K = params["W2"].shape[0]
    conv = sum(check_f(v.shape[0]) * v.shape[0] ** 2 * 3 * v.shape[3]
               for k, v in params.items() if k.startswith("Fs"))
    return 2.0 * batch_size * (2 * conv + 3 * width * nh + 3 * nh * K)


def auto_threads(params: dict, batch_size: int = 100) -> int:
    """BLAS threads for train() when cfg.threads is None: all cores (ThreadTuner then drops to 1
    while other programs need a core) when an update is over ~100 MFLOP (arch4 and wider), else 1: on
    arch1-3 a second BLAS thread saves at most ~15% of the step and takes the gather's core
    (arch2 protocol: 4.2-5.1 s of training at 1 thread, 5.9-6.2 s at 2, and 4.7-6.1 s when
    probing both now and then)."""
    return (os.cpu_count() or 1) if update_flops(params, batch_size) > 100e6 else 1


def blas_threads(threads):
    """A context manager limiting BLAS to ``threads`` threads (None: leave the default)."""
    if threads is None:
        from contextlib import nullcontext
        return nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=int(threads), user_api="blas")


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar for train(), or None when ``enabled`` is false or WORKBOOK_PROGRESS=0 (set by
    ``make workbook``: an executed notebook would keep a widget bar frozen at its first frame)."""
    if not enabled or os.environ.get("WORKBOOK_PROGRESS", "").strip().lower() in {"0", "false", "no", "off"}:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)


def cpu_sample():
    """(wall seconds, busy CPU seconds of the whole machine, this process's CPU seconds), or None
    where /proc/stat is not readable (not Linux). Two samples tell how much CPU OTHER programs
    used in between (see ThreadTuner.busy)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]   # user nice system idle iowait irq softirq steal
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    own = os.times()
    return time.monotonic(), (sum(v) - v[3] - v[4]) / hz, own.user + own.system


class ThreadTuner:
    """train()'s BLAS thread count for each update. ``counts`` (1,) or a fixed cfg.threads:
    that count throughout. Otherwise it starts at ``start`` (default: the largest count) and,
    from update ``first_probe`` on (the first update of a run is slow at any count), checks
    every ``every`` updates, and at once when an update takes 3x the fastest seen at its count
    (a neighbour started): where /proc/stat tells how much CPU other programs used since the
    last check (``others_cores``), all cores unless they used more than half a core, else 1;
    elsewhere (no /proc/stat) on a busy machine (load average, ``busy``) 1 thread, else it
    probes ``probe`` updates at the current count, then at each other count (after one
    untimed settling update; cut short once 1.5x slower), and runs at the count with the
    fastest update (more threads must win by 10%; the interval doubles while the choice
    stands, up to ``max_every``). Why: on an idle machine 2 threads make a wide net's update up
    to ~1.9x faster, but when another program holds a core a second BLAS thread spin-waits for
    it and the update gets 5-15x SLOWER (measured here). Results do not depend on the count
    (train's GEMMs split only their outputs between threads; tests/test_runtime.py checks that
    1 and 2 threads train bit-identically).
    """

    def __init__(self, counts, every: int = 100, probe: int = 3, max_every: int = 3200,
                 fixed: bool = False, start: int | None = None, first_probe: int = 1):
        self.fixed = bool(fixed)                           # the user's cfg.threads: obey it
        self.counts = tuple(sorted(dict.fromkeys(int(c) for c in counts)))
        self.every, self.probe, self.max_every = int(every), int(probe), int(max_every)
        self.first_every = self.every
        self.choice = self.counts[-1] if start not in self.counts else int(start)
        # the first update of a run is slow at any count (buffers, caches): probe after it
        self.current, self.next_probe, self.plan, self.best, self.t0 = None, int(first_probe), [], {}, 0.0
        self.fastest = {}                                  # best update time per count, ever
        self._last = None                                  # the count of the last timed update
        self._sample, self._others = cpu_sample(), 0.0
        from threadpoolctl import ThreadpoolController
        self._libs = ThreadpoolController().select(user_api="blas").lib_controllers
        if len(self.counts) > 1 and self.busy():
            self.choice = self.counts[0]

    def others_cores(self, min_window: float = 0.2) -> float | None:
        """Cores' worth of CPU that OTHER programs used since the last reading, once at least
        ``min_window`` seconds have passed (/proc/stat counts in 10 ms ticks); NaN before that;
        None where /proc/stat is unreadable."""
        new = cpu_sample()
        if new is None or self._sample is None:
            return None
        old = self._sample
        if new[0] - old[0] < min_window:
            return float("nan")
        self._others = max(0.0, (new[1] - old[1]) - (new[2] - old[2])) / (new[0] - old[0])
        self._sample = new
        return self._others

    def busy(self) -> bool:
        """No idle core beside this process: other programs used more than half a core lately
        (/proc/stat's busy time less this process's own CPU time; the last reading while the
        current window is short). Where that cannot be read, the 1-minute load average less
        this process's BLAS threads. On a busy machine more BLAS threads would only fight other
        programs for cores. (The load average is a poor witness: it still counts this
        process's own previous run, or torch's, for a minute.)"""
        others = self.others_cores()
        if others is not None:
            return (self._others if others != others else others) > 0.5
        return self._loadavg_busy()

    def _loadavg_busy(self) -> bool:
        try:
            return os.getloadavg()[0] - (self.current or 1) > (os.cpu_count() or 1) - 1.5
        except (AttributeError, OSError):
            return False

    def eval_threads(self) -> int:
        """BLAS threads for an evaluation: the training's own count. (Evaluating arch2 at 2
        threads was no faster than at 1, and the training at 1 thread after it was ~25% slower:
        its protocol trained in 6.4-6.8 s instead of 4.7-5.9 s.)"""
        return self.counts[0] if self.fixed else self.choice

    def _set(self, n: int) -> None:
        # only on a change (an evaluation's limit may have made one): OpenBLAS's set_num_threads
        # is cheap itself but slowed the next GEMMs, ~0.2-0.4 ms per update on arch2 when called
        # every update (its protocol trained in 5.8-7.2 instead of 4.5-4.9 s)
        for lib in self._libs:
            if lib.get_num_threads() != n:
                lib.set_num_threads(n)
        self.current = n

    def before(self, t: int) -> None:
        """Call before update t: sets the BLAS thread count for it."""
        if len(self.counts) == 1:
            self._set(self.counts[0])
            return
        if t >= self.next_probe and not self.plan:
            others = self.others_cores()
            if others is not None and others != others:    # window still short: next update
                self.next_probe = t + 1
            elif others is not None or self._loadavg_busy():   # known: no timed probe needed
                busy = others is None or others > 0.5      # (without /proc/stat: busy by load)
                self.choice = self.counts[0] if busy else self.counts[-1]
                self.next_probe = t + self.first_every
            else:
                order = (self.choice,) + tuple(c for c in self.counts if c != self.choice)
                # the first update after a switch settles (the gather moves between threads,
                # BLAS wakes or parks its workers): run it, but do not time it
                self.plan = [c for c in order for _ in range(self.probe + (c != self.choice))]
                self.best = {}
        self._set(self.plan[0] if self.plan else self.choice)
        self.t0 = time.perf_counter()

    def after(self, t: int) -> None:
        """Call after update t (records its time)."""
        if len(self.counts) == 1:
            return
        dt = time.perf_counter() - self.t0
        c = self.current
        if not self.plan:
            if c == self._last and dt > 3.0 * self.fastest.get(c, float("inf")) and c != min(self.counts):
                self.next_probe = t + 1                       # much slower than before: re-check
            if c == self._last:
                self.fastest[c] = min(self.fastest.get(c, dt), dt)
            self._last = c
            return
        self.plan.pop(0)
        settling, self._last = c != self._last, c
        if settling and c != self.choice:
            return
        self.best[c] = min(self.best.get(c, dt), dt)
        self.fastest[c] = min(self.fastest.get(c, dt), dt)
        if c != self.choice and dt > 1.5 * self.best[self.choice]:
            self.plan = [x for x in self.plan if x != c]          # clearly slower: stop here
        if not self.plan:
            # more threads must win by 10%
            new = min(self.best, key=lambda k: self.best[k] * (1.1 if k > min(self.best) else 1.0))
            self.every = min(2 * self.every, self.max_every) if new == self.choice else self.first_every
            self.choice, self.next_probe = new, t + 1 + self.every


def thread_tuner(params: dict, batch_size: int, threads: int | None) -> ThreadTuner:
    """The ThreadTuner for a run: a fixed ``threads`` if given; else 1 thread for nets too small
    to gain (auto_threads), else all cores, and 1 while other programs need a core."""
    if threads is not None:
        return ThreadTuner((threads,), fixed=True)
    n = auto_threads(params, batch_size)
    return ThreadTuner((1, n)) if n > 1 else ThreadTuner((1,))
