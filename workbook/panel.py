"""The training panel's back end (no widgets here; workbook/widgets.py draws the panel).

- SETTINGS: every setting of a panel run with its exact type and range. ``check_settings``
  refuses a wrong type (a string for a boolean, 4.5 for an integer, ...) or a value out of range
  with the setting's name and the value, before any data is touched; ``parse_setting`` reads the
  text a student typed into a field the same strict way. Values are never rounded or snapped:
  lam=0.003 trains with 0.003.
- ``estimate``: the run's size (updates, epochs, evaluations, parameters) and its expected time
  on this machine, from a few timed updates (engine.estimate_seconds).
- ``TrainingRun``: one run of engine.train on a worker thread. ``stop()`` sets a threading.Event
  that train checks before every update, so the run ends within one update; progress and curves
  go to the callbacks from the worker, throttled; every ending (complete, stopped, failed,
  diverged, any other exception) ends in ``on_done`` with the run's ``RunResult`` or error.
"""
from __future__ import annotations

import dataclasses
import io
import math
import re
import threading
import time
import weakref

import numpy as np

import helpers as H
from workbook import engine
from workbook.config import is_fast
from workbook.runs import check_data

LONG_RUN_S = 300.0          # a run estimated longer than this needs a confirming click
FILTER_SIZES = (2, 4, 8, 16)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One panel setting: name, type (int, float or bool), the allowed range [lo, hi] (hi None:
    no upper limit here; n_train and batch_size are limited by the data), a short label."""
    name: str
    kind: type
    lo: float | None = None
    hi: float | None = None
    label: str = ""
    lo_open: bool = False    # True: the value must be > lo (not >=)
    hi_open: bool = False    # True: the value must be < hi

    def range_text(self) -> str:
        if self.kind is bool:
            return "True or False"
        if self.name == "f":
            return "one of " + ", ".join(map(str, FILTER_SIZES))
        kind = "a whole number" if self.kind is int else "a number"
        if self.lo is None and self.hi is None:
            return kind
        lo = "" if self.lo is None else f"{self.lo:g} {'<' if self.lo_open else '<='} "
        hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi:g}"
        return f"{kind}, {lo}{self.name}{hi}"


SETTINGS = {s.name: s for s in (
    Setting("f", int, 2, 16, "f (filter width)"),
    Setting("nf", int, 1, 2000, "nf (filters)"),
    Setting("nh", int, 1, 10000, "nh (hidden)"),
    Setting("n_train", int, 1, None, "n_train"),
    Setting("batch_size", int, 1, None, "batch"),
    Setting("n_cycles", int, 1, 100, "cycles"),
    Setting("step", int, 1, 10 ** 6, "step"),
    Setting("increasing", bool, label="doubling cycles"),
    Setting("eta_min", float, 0, 10, "eta_min", lo_open=True),
    Setting("eta_max", float, 0, 10, "eta_max", lo_open=True),
    Setting("eta_decay", float, 0, 1, "eta decay", lo_open=True),
    Setting("lam", float, 0, 10, "lam (L2)"),
    Setting("eps", float, 0, 1, "eps (LS)", hi_open=True),
    Setting("flip", bool, label="flips"),
    Setting("translate", int, 0, 8, "shift px"),
    Setting("dropout", float, 0, 1, "dropout", hi_open=True),
    Setting("seed", int, 0, 2 ** 32 - 1, "seed"),
)}

DEFAULTS = dict(f=4, nf=10, nh=50, n_train=2000, batch_size=100, n_cycles=1, step=100,
                increasing=False, eta_min=1e-5, eta_max=0.1, eta_decay=1.0, lam=0.003, eps=0.0,
                flip=False, translate=0, dropout=0.0, seed=0)

_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def check_value(name: str, value):
    """``value`` as the exact Python value setting ``name`` trains with, or ValueError.

    bool settings take only True/False (not 'False', 0 or 'no'); int settings only whole
    numbers of an integer type (not 4.5, 19.9 or 4.0); float settings any finite real number
    (not a string). The range of SETTINGS[name] is checked too.
    """
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; the settings are {list(SETTINGS)}")
    s = SETTINGS[name]
    is_bool = isinstance(value, (bool, np.bool_))
    if s.kind is bool:
        if not is_bool:
            raise ValueError(f"{name} must be True or False; got {value!r} "
                             f"({type(value).__name__})")
        return bool(value)
    if s.kind is int:
        if is_bool or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be a whole number (int); got {value!r} "
                             f"({type(value).__name__})")
        value = int(value)
    else:
        if is_bool or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a number; got {value!r} ({type(value).__name__})")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number; got {value!r}")
    bad = ((s.lo is not None and (value < s.lo or (s.lo_open and value == s.lo)))
           or (s.hi is not None and (value > s.hi or (s.hi_open and value == s.hi)))
           or (name == "f" and value not in FILTER_SIZES))
    if bad:
        raise ValueError(f"{name}={value!r} is refused: it must be {s.range_text()}")
    return value


def parse_setting(name: str, text) -> object:
    """The value of setting ``name`` from the text typed into its field, or ValueError.

    '0.003' -> 0.003 exactly (Python's float of the text); an int setting refuses '4.5' or
    '1e3'. A value that is already bool/int/float is checked as it is (check_value).
    """
    if not isinstance(text, str):
        return check_value(name, text)
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; the settings are {list(SETTINGS)}")
    t, kind = text.strip(), SETTINGS[name].kind
    if kind is bool:
        raise ValueError(f"{name} must be True or False (a checkbox); got the text {text!r}")
    if kind is int and not _INT_TEXT.fullmatch(t):
        raise ValueError(f"{name} must be a whole number; got {text!r}")
    if kind is float and not _FLOAT_TEXT.fullmatch(t):
        raise ValueError(f"{name} must be a number such as 0.003 or 1e-5; got {text!r}")
    return check_value(name, int(t) if kind is int else float(t))


def format_value(value) -> str:
    """The text a field shows for a checked value: repr for floats (0.003 -> '0.003', 1e-05 ->
    '1e-05'), so that parse_setting(format_value(v)) == v exactly."""
    return repr(float(value)) if isinstance(value, float) else str(value)


def check_settings(values: dict, n_available: int | None = None, partial: bool = False) -> dict:
    """Every setting of a run, checked, as the exact values it trains with -> dict.

    values: {name: value} (missing names take DEFAULTS unless ``partial``, which checks only the
    names given). n_available: the number of training images (n_train may not exceed it).
    Raises ValueError naming the first refused setting and its value; the cross-checks are
    batch_size <= n_train and eta_min <= eta_max, then the engine's own config validation.
    """
    if not isinstance(values, dict):
        raise ValueError(f"settings must be a dict; got {type(values).__name__}")
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    out = {k: check_value(k, v) for k, v in values.items()}
    if partial:
        return out
    out = {k: out.get(k, DEFAULTS[k]) for k in SETTINGS}
    if n_available is not None and out["n_train"] > n_available:
        raise ValueError(f"n_train={out['n_train']} is refused: the data has {n_available} "
                         "training images")
    if out["batch_size"] > out["n_train"]:
        raise ValueError(f"batch_size={out['batch_size']} is refused: it is larger than "
                         f"n_train={out['n_train']} (lower batch_size or raise n_train)")
    if out["eta_min"] > out["eta_max"]:
        raise ValueError(f"eta_min={out['eta_min']!r} is refused: it is larger than "
                         f"eta_max={out['eta_max']!r}")
    make_config(out).validate()
    return out


def make_config(s: dict) -> "engine.EngineConfig":
    """The EngineConfig of a panel run with checked settings ``s`` (metrics every step//2
    updates on min(n_train, 1000) training images; one BLAS thread in fast mode)."""
    return engine.EngineConfig(
        n_cycles=s["n_cycles"], step=s["step"], increasing=s["increasing"], eta_min=s["eta_min"],
        eta_max=s["eta_max"], eta_decay=s["eta_decay"], lam=s["lam"], eps=s["eps"],
        flip=s["flip"], translate=s["translate"], dropout=s["dropout"],
        batch_size=s["batch_size"], seed=s["seed"], eval_train_n=min(s["n_train"], 1000),
        progress=False, threads=1 if is_fast() else None)


def settings_text(s: dict) -> str:
    """One compact line of a run's settings, e.g. 'f=4 nf=10 nh=50 | 2 cycles of step 100 ...'."""
    sched = (f"{s['n_cycles']} {'doubling ' if s['increasing'] else ''}cycles of step "
             f"{s['step']}{' (first)' if s['increasing'] else ''}")
    bonus = [f"flip={s['flip']}", f"translate={s['translate']}", f"dropout={s['dropout']!r}"]
    return (f"f={s['f']} nf={s['nf']} nh={s['nh']} | {sched}, eta {s['eta_min']!r}.."
            f"{s['eta_max']!r} (decay {s['eta_decay']!r}) | batch {s['batch_size']}, lam="
            f"{s['lam']!r}, eps={s['eps']!r} | {' '.join(bonus)} | n_train {s['n_train']}, "
            f"seed {s['seed']}")


def fmt_time(seconds: float) -> str:
    """m:ss (or h:mm:ss from one hour on); '?' for an unknown time."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s, 3600)
    return f"{h}:{m // 60:02d}:{m % 60:02d}" if h else f"{m // 60}:{m % 60:02d}"


def progress_text(k: int, T: int, elapsed: float, note: str = "") -> str:
    """'update k of T, elapsed m:ss, about m:ss left' (the rate so far times what is left)."""
    left = elapsed / k * (T - k) if k else float("nan")
    return (f"update {k:,} of {T:,}, elapsed {fmt_time(elapsed)}, about {fmt_time(left)} left"
            + (f" ({note})" if note else ""))


def data_tag(name: str) -> str:
    """The data's name, with ' [FAST MODE]' in fast mode (numbers that are no CIFAR-10 result)."""
    name = str(name or "")
    return (name + " [FAST MODE]").strip() if is_fast() and "FAST" not in name.upper() else name


_ESTIMATES: dict = {}
_RUNNING: "weakref.WeakSet" = weakref.WeakSet()


def estimate(data: dict, s: dict, n_test: int) -> dict:
    """The size and expected time of a panel run with checked settings ``s``.

    Returns {"updates", "epochs", "evaluations", "parameters", "seconds", "per_update_s",
    "long" (seconds > LONG_RUN_S), "text"}. The time comes from engine.estimate_seconds (a few
    timed updates on random data of the run's shape, plus its cost model of the evaluations),
    measured once per network shape and batch and scaled to the schedule: changing step or
    the learning rates costs nothing.
    """
    cfg = make_config(s)
    T, n_test = cfg.n_updates, min(int(n_test), data["X_test"].shape[1])
    n_evals = engine.n_evaluations(cfg)
    key = (s["f"], s["nf"], s["nh"], s["batch_size"], s["flip"] or s["translate"] > 0,
           s["dropout"] > 0, cfg.eval_train_n, n_test, cfg.threads)
    if key not in _ESTIMATES:
        params = engine.init_params(s["f"], s["nf"], s["nh"], seed=s["seed"])
        probe = dataclasses.replace(cfg, n_cycles=1, step=100, increasing=False)
        e = engine.estimate_seconds(params, probe, s["n_train"], n_test)
        per_eval = float(e["eval_s"]) / engine.n_evaluations(probe)
        n_par = int(sum(np.asarray(v).size for v in params.values()))
        if len(_ESTIMATES) > 64:
            _ESTIMATES.clear()
        _ESTIMATES[key] = (float(e["per_update_s"]), per_eval, n_par)
    per_update, per_eval, n_par = _ESTIMATES[key]
    seconds = T * per_update + n_evals * per_eval
    epochs = T * s["batch_size"] / s["n_train"]
    text = (f"{T:,} updates ({epochs:.1f} epochs of {s['n_train']:,} images), {n_evals} "
            f"evaluations, {n_par:,} parameters: about {fmt_time(seconds)} on this machine "
            f"({1000 * per_update:.1f} ms per update)")
    return {"updates": T, "epochs": epochs, "evaluations": n_evals, "parameters": n_par,
            "seconds": seconds, "per_update_s": per_update, "long": seconds > LONG_RUN_S,
            "text": text}


def stop_all() -> int:
    """Stop every panel run still training (a panel cell run again leaves no run behind it,
    training unseen); returns how many were asked to stop."""
    runs = [r for r in list(_RUNNING) if r.running]
    for r in runs:
        r.stop()
    return len(runs)


def curves_png(hist, T: int, title: str = "", dpi: int = 80) -> bytes | None:
    """The loss and accuracy curves of ``hist`` (train and test) as PNG bytes, x axis 0..T; None
    before the second evaluation (one point is no curve). Drawn on a matplotlib Figure of its
    own, without pyplot, so a worker thread can draw while the kernel runs cells."""
    if len(hist.t) < 2:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 3.2), dpi=dpi)
    FigureCanvasAgg(fig)
    for ax, what, name in zip(fig.subplots(1, 2), ("loss", "acc"), ("loss", "accuracy")):
        for part, style in (("train", "-"), ("test", "--")):
            ys = getattr(hist, f"{part}_{what}")
            if len(ys) == len(hist.t):
                ax.plot(hist.t, ys, style, label=part)
        ax.set_xlim(0, max(T, hist.t[-1]))
        ax.set_xlabel("update")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@dataclasses.dataclass
class RunResult:
    """What a panel run left: params, history (its status says how it ended), label ('complete:
    ...', 'stopped at update k of T', ...), settings (the exact values trained with), data name.
    Unpacks as (params, history)."""
    params: dict | None
    history: object
    label: str
    settings: dict
    data: str = ""

    @property
    def final(self) -> bool:
        """True only for a run that made all its updates (a stopped run is never final)."""
        return getattr(self.history, "status", "") == "complete"

    def __iter__(self):
        return iter((self.params, self.history))


def result_label(hist, T: int, error: BaseException | None = None) -> str:
    """How a run ended, in words: 'complete: T updates, test acc x%' or 'stopped at update k of
    T' (also interrupted, diverged, failed)."""
    k, status = int(getattr(hist, "updates_done", 0)), getattr(hist, "status", "failed")
    if status == "complete":
        acc = f", test acc {100 * hist.test_acc[-1]:.2f}%" if hist.test_acc else ""
        return f"complete: {T:,} updates{acc}"
    why = f": {type(error).__name__}: {error}" if status == "failed" and error else ""
    return f"{status} at update {k:,} of {T:,}{why}"


class TrainingRun:
    """One panel run on a worker thread (threading.Thread, daemon), stoppable by ``stop()``.

    data: load_dataset() dict; settings: checked (check_settings); n_test: test images used.
    Callbacks, all called from the worker thread:
      on_progress(text, k, T): 'update k of T, elapsed m:ss, about m:ss left', at most every
        ``progress_every`` s and at least every 2 s (a ticker refreshes the clock while an
        evaluation runs);
      on_curves(png_bytes, hist): the curves from the second evaluation on, at most every
        ``curves_every`` s, and once more at the end;
      on_done(run): always, last; run.result (RunResult or None) and run.error (the exception
        or None) say how it ended.
    ``train`` replaces engine.train (tests).
    """

    def __init__(self, data: dict, settings: dict, n_test: int = 1000, *, on_progress=None,
                 on_curves=None, on_done=None, progress_every: float = 0.5,
                 curves_every: float = 1.0, train=None, clock=time.monotonic):
        check_data(data)
        self.settings = dict(settings)
        self.cfg = make_config(self.settings)
        self.T = self.cfg.n_updates
        self.data, self.n_test = data, min(int(n_test), data["X_test"].shape[1])
        self.on_progress, self.on_curves, self.on_done = on_progress, on_curves, on_done
        self.progress_every, self.curves_every = float(progress_every), float(curves_every)
        self._train, self._clock = train or engine.train, clock
        self.stop_event, self.done = threading.Event(), threading.Event()
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.k, self.t0, self.stop_asked, self.ended = 0, None, None, None
        self._last_progress = self._last_curves = -1e9
        self._lock = threading.Lock()
        self._hist = None
        self.thread = threading.Thread(target=self._work, name="training-panel", daemon=True)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def start(self) -> "TrainingRun":
        self.t0 = self._clock()
        _RUNNING.add(self)
        self.thread.start()
        threading.Thread(target=self._tick, name="training-panel-clock", daemon=True).start()
        return self

    def stop(self) -> None:
        """Ask the run to end before its next update (returns at once; see ``wait``)."""
        if self.stop_asked is None:
            self.stop_asked = self._clock()
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (on_done included); False on timeout."""
        return self.done.wait(timeout)

    def progress(self, note: str = "") -> str:
        return progress_text(self.k, self.T, self._clock() - (self.t0 or self._clock()), note)

    def _say(self, note: str = "") -> None:
        with self._lock:                  # the ticker never writes after the run has ended
            self._last_progress = self._clock()
            if self.on_progress and self.ended is None:
                self.on_progress(self.progress(note), self.k, self.T)

    def _tick(self) -> None:
        while not self.done.wait(1.0):
            if self._clock() - self._last_progress >= 1.5 and not self.stop_event.is_set():
                self._say("evaluating" if self._hist is not None and self.k and
                          self.k % self.cfg.eval_period == 0 else "")

    def _on_update(self, k: int, T: int) -> None:
        self.k = int(k)
        if self._clock() - self._last_progress >= self.progress_every or k == T:
            self._say()

    def _on_eval(self, hist) -> None:
        self._hist = hist
        if len(hist.t) >= 2 and self._clock() - self._last_curves >= self.curves_every:
            self._draw(hist)

    def _draw(self, hist) -> None:
        self._last_curves = self._clock()
        if self.on_curves:
            png = curves_png(hist, self.T, self.title(hist))
            if png is not None:
                self.on_curves(png, hist)

    def title(self, hist) -> str:
        k = hist.t[-1] if hist.t else 0
        tag = data_tag(getattr(hist, "data", ""))
        return f"evaluated at update {k:,} of {self.T:,} - {tag}".strip(" -")

    def _work(self) -> None:
        s, d = self.settings, self.data
        n, hist, params = s["n_train"], None, None
        name = f"{d.get('name', '')} - subset {n} train / {self.n_test} test".strip(" -")
        try:
            try:
                params = engine.init_params(s["f"], s["nf"], s["nh"], seed=s["seed"])
                X_te = d["X_test"][:, :self.n_test] if self.n_test else None
                y_te = d["y_test"][:self.n_test] if self.n_test else None
                params, hist = self._train(params, d["X_train"][:, :n], d["y_train"][:n],
                                           self.cfg, X_te, y_te, data_name=name,
                                           callback=self._on_eval, on_update=self._on_update,
                                           stop=self.stop_event)
            except (engine.TrainingFailed, H.TrainingDiverged) as e:
                self.error = e
                params, hist = getattr(e, "params", None), getattr(e, "history", None)
            except BaseException as e:          # noqa: BLE001 - every ending reaches on_done
                self.error = e
            if hist is not None:
                self.k = int(getattr(hist, "updates_done", self.k))
                cause = self.error.__cause__ if self.error is not None else None
                self.result = RunResult(params, hist, result_label(hist, self.T, cause or
                                                                   self.error), s, name)
                if len(hist.t) >= 2:
                    try:
                        self._draw(hist)
                    except Exception as e:      # noqa: BLE001 - the result stays
                        self.error = self.error or e
        finally:
            with self._lock:
                self.ended = self._clock()
            try:
                if self.on_done:
                    self.on_done(self)
            finally:
                self.done.set()


def train_preview(data: dict, n_test: int = 1000, *, stop=None, **settings) -> RunResult:
    """What the panel's Train button runs, synchronously in this thread (scripts, tests):
    every setting checked first (a ValueError naming it and its value, before any data is
    touched), then engine.train on the first n_train training and n_test test images.

    settings: any of SETTINGS (f, nf, nh, n_train, batch_size, n_cycles, step, increasing,
    eta_min, eta_max, eta_decay, lam, eps, flip, translate, dropout, seed); the others take
    DEFAULTS. stop: an optional threading.Event. Returns the RunResult (unpacks as (params,
    history)); a stopped or Ctrl-C'd run comes back with its status, never as final; a failed
    or diverged run raises as engine.train does."""
    s = check_settings(settings)
    check_data(data)
    s = check_settings(s, data["X_train"].shape[1])
    run = TrainingRun(data, s, n_test)
    if stop is not None:
        run.stop_event = stop
    run.t0 = run._clock()
    run.thread.run()                      # the worker's body, here in the caller's thread
    if run.result is None or isinstance(run.error, (engine.TrainingFailed, H.TrainingDiverged)):
        raise run.error
    return run.result
