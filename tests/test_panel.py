"""Tests for workbook.panel: exact settings, the estimate, and the run on a worker thread."""
import threading
import time

import numpy as np
import pytest

import helpers as H
from workbook import engine, panel


@pytest.mark.parametrize("name, value", [
    ("f", 4.5), ("step", 19.9), ("step", 20.0), ("nf", True), ("flip", "False"),
    ("increasing", "no"), ("increasing", 0), ("lam", "0.003"), ("lam", float("nan")),
    ("lam", -0.1), ("f", 3), ("eps", 1.0), ("dropout", 1.0), ("eta_max", 0.0), ("n_cycles", 0)])
def test_check_value_refuses_with_the_name_and_the_value(name, value):
    with pytest.raises(ValueError) as e:
        panel.check_value(name, value)
    msg = str(e.value)
    assert name in msg and repr(value) in msg, f"message {msg!r} must name {name} and {value!r}"


@pytest.mark.parametrize("name, value", [("lam", 0.003), ("lam", 0.0025), ("lam", 0.0015),
                                         ("eta_min", 1e-5), ("eta_max", 0.1), ("eta_decay", 0.8),
                                         ("step", 100), ("f", 4), ("flip", True),
                                         ("f", np.int64(8)), ("lam", np.float32(0.5))])
def test_values_are_kept_exactly_through_the_text_fields(name, value):
    v = panel.check_value(name, value)
    assert type(v) is panel.SETTINGS[name].kind and v == value
    if not isinstance(v, bool):
        back = panel.parse_setting(name, panel.format_value(v))
        assert back == v and type(back) is type(v), f"{name}: {v!r} came back as {back!r}"


@pytest.mark.parametrize("name, text", [("step", "4.5"), ("step", "1e3"), ("step", ""),
                                        ("lam", "abc"), ("lam", "nan"), ("lam", "inf"),
                                        ("flip", "True")])
def test_parse_setting_refuses_text_that_is_not_the_settings_type(name, text):
    with pytest.raises(ValueError, match=name):
        panel.parse_setting(name, text)


def test_check_settings_cross_checks_and_defaults():
    s = panel.check_settings({"lam": 0.0025})
    assert s == dict(panel.DEFAULTS, lam=0.0025)
    for bad, needle in (({"batch_size": 500, "n_train": 200}, "batch_size=500"),
                        ({"eta_min": 0.5, "eta_max": 0.1}, "eta_min=0.5"),
                        ({"width": 3}, "width")):
        with pytest.raises(ValueError, match=needle):
            panel.check_settings(bad)
    with pytest.raises(ValueError, match="n_train=2000"):
        panel.check_settings({}, n_available=300)


def test_time_and_progress_text():
    assert panel.fmt_time(0) == "0:00" and panel.fmt_time(61.4) == "1:01"
    assert panel.fmt_time(3725) == "1:02:05" and panel.fmt_time(float("nan")) == "?"
    assert panel.progress_text(25, 100, 30.0) == "update 25 of 100, elapsed 0:30, about 1:30 left"
    assert "about ? left" in panel.progress_text(0, 100, 3.0)


def test_estimate_gives_size_and_time_and_flags_long_runs(tiny, monkeypatch):
    s = panel.check_settings({"n_train": 200, "step": 50, "n_cycles": 2, "batch_size": 50},
                             n_available=300)
    e = panel.estimate(tiny, s, 20)
    assert e["updates"] == 200 and e["evaluations"] == 9 and e["epochs"] == 50
    assert e["seconds"] > 0 and not e["long"], e
    assert "200 updates" in e["text"] and "evaluations" in e["text"], e["text"]
    calls = []

    def fake(params, cfg, n_train, n_eval):
        calls.append(cfg.n_updates)
        return {"seconds": 0.0, "per_update_s": 2.0, "eval_s": 0.0, "updates": cfg.n_updates}
    monkeypatch.setattr(engine, "estimate_seconds", fake)
    e = panel.estimate(tiny, dict(s, nf=3), 20)                  # another shape: measured
    assert e["long"] and "6:40" in e["text"] and e["seconds"] == 400.0, e
    e = panel.estimate(tiny, dict(s, nf=3, step=100, lam=0.1), 20)   # same shape: scaled
    assert e["seconds"] == 800.0 and len(calls) == 1, (e, calls)


def test_curves_png_waits_for_the_second_evaluation():
    h = H.History(t=[0], train_loss=[2.3], test_loss=[2.3], train_acc=[0.1], test_acc=[0.1])
    assert panel.curves_png(h, 100) is None
    h.t.append(50)
    for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
        getattr(h, k).append(1.0)
    png = panel.curves_png(h, 100, "x")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _run(tiny, **kw):
    s = panel.check_settings(dict(dict(n_train=200, batch_size=25, step=20, n_cycles=2,
                                       nf=2, nh=5), **kw.pop("settings", {})), n_available=300)
    return panel.TrainingRun(tiny, s, 20, **kw)


def test_a_run_stops_exactly_where_asked_and_is_kept_but_not_final(tiny):
    done, curves = [], []

    def on_progress(text, k, T):
        if k >= 30:
            run.stop()
    run = _run(tiny, settings={"lam": 0.0025}, on_progress=on_progress, progress_every=0,
               curves_every=0, on_curves=lambda png, h: curves.append(len(h.t)),
               on_done=done.append)
    assert run.start().wait(60), "the run did not end"
    r = run.result
    assert done == [run] and run.error is None
    assert r.history.status == "stopped" and r.history.updates_done == 30
    assert r.label == "stopped at update 30 of 80" and not r.final, r.label
    assert r.params is not None and r.history.config["lam"] == 0.0025
    assert curves and curves[-1] >= 2, "the stopped run's curves were not drawn"
    params, hist = r
    assert hist is r.history


def test_stop_from_another_thread_ends_a_long_run_quickly(tiny):
    run = _run(tiny, settings={"step": 5000, "n_cycles": 3}).start()
    deadline = time.monotonic() + 30
    while run.k < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    threading.Thread(target=run.stop).start()
    assert run.wait(10), "Stop did not end the run"
    latency = time.monotonic() - t0
    assert latency < 2.0, f"the run took {latency:.2f} s to stop"
    assert run.result.history.status == "stopped" and run.result.history.updates_done < 30000
    assert run.result.label.startswith("stopped at update ")


def test_a_complete_run_is_labelled_final(tiny):
    run = _run(tiny).start()
    assert run.wait(60)
    assert run.result.final and run.result.label.startswith("complete: 80 updates, test acc ")


def test_an_error_in_a_callback_ends_the_run_cleanly(tiny):
    done = []

    def bad_curves(png, hist):
        raise RuntimeError("no screen")
    run = _run(tiny, on_curves=bad_curves, curves_every=0, on_done=done.append).start()
    assert run.wait(60) and done == [run]
    assert isinstance(run.error, engine.TrainingFailed)
    assert run.result.history.status == "failed" and "no screen" in run.result.label
    assert not run.result.final


def test_any_other_exception_reaches_on_done(tiny):
    done = []

    def broken_train(*a, **k):
        raise MemoryError("too big")
    run = _run(tiny, train=broken_train, on_done=done.append).start()
    assert run.wait(10) and done == [run]
    assert isinstance(run.error, MemoryError) and run.result is None


def test_a_diverging_run_is_kept_with_its_label(tiny):
    def diverging(params, *a, **k):
        raise H.TrainingDiverged("loss nan", params, H.History(updates_done=7, status="diverged"))
    run = _run(tiny, train=diverging).start()
    assert run.wait(10)
    assert isinstance(run.error, H.TrainingDiverged), run.error
    assert run.result.label == "diverged at update 7 of 80" and not run.result.final
    assert run.result.params is not None


def test_stop_all_stops_runs_left_behind(tiny):
    run = _run(tiny, settings={"step": 5000, "n_cycles": 3}).start()
    assert panel.stop_all() >= 1
    assert run.wait(10) and run.result.history.status == "stopped"
    assert panel.stop_all() == 0


# ------------------------------------------------------------------ train_preview (synchronous)

@pytest.mark.parametrize("kw,field", [
    (dict(increasing="False"), "increasing"), (dict(flip="no"), "flip"), (dict(f=4.5), "f"),
    (dict(step=19.9), "step"), (dict(lam=-1.0), "lam"), (dict(eps=1.0), "eps")])
def test_train_preview_refuses_bad_settings_before_touching_data(kw, field):
    class NoData(dict):
        def __getitem__(self, k):
            raise AssertionError("the data was touched before the settings were checked")
    with pytest.raises(ValueError, match=field):
        panel.train_preview(NoData(), **kw)


def test_train_preview_trains_exactly_the_given_settings(tiny):
    res = panel.train_preview(tiny, n_test=50, n_train=200, batch_size=50, step=10, lam=0.003)
    params, hist = res
    assert res.final and hist.status == "complete" and hist.updates_done == 20
    assert hist.config["lam"] == 0.003 and hist.config["step"] == 10
    assert res.settings["lam"] == 0.003 and len(hist.test_acc) == len(hist.t)


def test_train_preview_stopped_is_kept_and_not_final(tiny):
    import threading
    stop = threading.Event()
    stop.set()
    res = panel.train_preview(tiny, n_test=50, n_train=200, batch_size=50, step=10, stop=stop)
    assert not res.final and res.history.status == "stopped" and res.history.updates_done == 0
    assert "stopped at update 0 of 20" in res.label
