"""Tests for workbook/runs.py: the chapters' runs of several architectures (reuse, bad input,
rows, the same as a direct engine.train call), fast mode, and a Ctrl-C that ends the loop."""
import dataclasses

import numpy as np
import pytest

import helpers as H
from workbook import engine, runs
from _common import METRICS, TINY_ARCHS, ctrl_c_at, tiny_cfg

TINY_CFG = tiny_cfg()          # 20 updates, batch 50, evaluated every 5


@pytest.fixture(scope="module")
def tiny_runs(tiny):
    return runs.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False)


def test_ex3_architectures_keep_the_conv_output_width():
    want = {"arch1": 768, "arch2": 640, "arch3": 640, "arch4": 640}   # 256*3, 64*10, 16*40, 4*160
    for k, spec in runs.EX3_ARCHS.items():
        got = (32 // spec["f"]) ** 2 * spec["nf"]
        assert got == want[k], f"{k}: conv output width {got}, expected {want[k]}"
        assert spec["nh"] == 50


def test_rows_and_histories_are_well_formed(tiny, tiny_runs):
    rows, hists = tiny_runs
    assert [r["run"] for r in rows] == list(TINY_ARCHS) == list(hists)
    for r in rows:
        spec, h = TINY_ARCHS[r["run"]], hists[r["run"]]
        for k in ("f", "nf", "nh"):
            assert r[k] == spec[k], f"row {r['run']}: {k}={r[k]}, expected {spec[k]}"
        assert r["updates"] == 20 and h.updates_done == 20 and r["status"] == "complete"
        assert h.t == [0, 5, 10, 15, 20], f"history {r['run']}: evaluated at {h.t}"
        for m in METRICS:
            v = np.asarray(getattr(h, m))
            assert v.shape == (5,) and np.all(np.isfinite(v)), f"history {r['run']}.{m} = {v}"
        assert 0.0 <= r["test_acc"] <= 1.0 and r["test_acc"] == h.test_acc[-1]
        assert r["test_loss"] == h.test_loss[-1] and r["train_acc"] == h.train_acc[-1]
        assert "SYNTHETIC" in r["data"], f"row {r['run']} data label {r['data']!r} hides the data"
        assert (r["lam"], r["eps"], r["step"], r["n_cycles"]) == (0.001, 0.0, 10, 1)
        assert r["time_train_s"] >= 0 and r["time_eval_s"] >= 0


def test_run_architectures_trains_like_a_direct_call(tiny, tiny_runs):
    _, hists = tiny_runs
    spec = TINY_ARCHS["b"]
    p0 = H.init_params(spec["f"], spec["nf"], spec["nh"], seed=3)
    _, h = engine.train(p0, tiny["X_train"], tiny["y_train"], TINY_CFG, tiny["X_test"], tiny["y_test"])
    for m in METRICS:
        assert getattr(h, m) == getattr(hists["b"], m), f"{m}: run_architectures differs from train()"


def test_reuse_without_retraining(tiny, tiny_runs, monkeypatch):
    rows, hists = tiny_runs
    calls = []
    real_train = runs.train
    monkeypatch.setattr(runs, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    rows2, hists2 = runs.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False,
                                           reuse={"a": (rows[0], hists["a"])})
    assert len(calls) == 1, f"train() was called {len(calls)} times, expected 1 (only 'b')"
    assert hists2["a"] is hists["a"] and rows2[0] is rows[0]
    other = dataclasses.replace(TINY_CFG, step=12)
    with pytest.raises(ValueError, match="another config"):
        runs.run_architectures(TINY_ARCHS, other, tiny, reuse={"a": (rows[0], hists["a"])})
    with pytest.raises(ValueError, match="not in archs"):
        runs.run_architectures(TINY_ARCHS, TINY_CFG, tiny, reuse={"zzz": (rows[0], hists["a"])})
    # the progress bar and thread count are not part of the protocol
    assert runs.same_protocol(hists["a"], dataclasses.replace(TINY_CFG, progress=True, threads=2))


def test_bad_input_is_refused(tiny):
    with pytest.raises(ValueError, match="'f', 'nf' and 'nh'"):
        runs.run_architectures({"x": {"f": 4, "nf": 2}}, TINY_CFG, tiny)
    with pytest.raises(ValueError, match="load_dataset"):
        runs.run_architectures(TINY_ARCHS, TINY_CFG, {"X_train": tiny["X_train"]})
    with pytest.raises(ValueError, match="empty"):
        runs.run_architectures({}, TINY_CFG, tiny)


def test_params_out_receives_the_trained_networks(tiny):
    out = {}
    rows, _ = runs.run_architectures({"a": TINY_ARCHS["a"]}, TINY_CFG, tiny, seed=1,
                                     verbose=False, params_out=out)
    assert set(out) == {"a"} and out["a"]["Fs"].shape == (4, 4, 3, 2)
    assert not np.array_equal(out["a"]["W1"], H.init_params(4, 2, 8, seed=1)["W1"])


def test_ctrl_c_in_the_first_architecture_ends_the_loop(tiny, monkeypatch, capsys):
    calls = ctrl_c_at(9, monkeypatch)
    rows, hists = runs.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False)
    assert len(calls) == 9, "the second architecture was trained after a Ctrl-C"
    assert [r["run"] for r in rows] == ["a"] and list(hists) == ["a"]
    assert rows[0]["status"] == "interrupted" and rows[0]["updates"] == 8
    assert hists["a"].status == "interrupted"
    out = capsys.readouterr().out
    assert "a did not finish (interrupted at update 8 of 20)" in out
    assert "Finished: none" in out and "not trained: b" in out


def test_ctrl_c_in_the_second_architecture_keeps_the_first(tiny, monkeypatch, capsys):
    real, calls = engine.train_step, []

    def step(*a, **k):
        calls.append(1)
        if len(calls) == 25:                  # update 5 of the second run
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_step", step)
    rows, _ = runs.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False)
    assert [r["status"] for r in rows] == ["complete", "interrupted"]
    assert "Finished: a;" in capsys.readouterr().out


def test_for_mode(monkeypatch):
    cfg = engine.EngineConfig(step=800, eval_every=400, eval_train_n=10000)
    monkeypatch.setenv("WORKBOOK_FAST", "0")
    assert runs.for_mode(cfg) == cfg
    monkeypatch.setenv("WORKBOOK_FAST", "1")
    fast = runs.for_mode(cfg)
    assert fast.step == 40 and fast.eval_every is None and fast.eval_train_n == 1000
    assert fast.threads == 1 and not fast.progress
    assert runs.for_mode(engine.EngineConfig(step=100)).step == 10
    monkeypatch.setenv("WORKBOOK_FAST", "yes")
    with pytest.raises(ValueError, match="WORKBOOK_FAST"):
        runs.for_mode(cfg)


def test_ls_summary(tiny_data):
    kw = dict(n_cycles=1, step=10, batch_size=50, lam=0.001, eval_train_n=100, progress=False)
    p0 = H.init_params(8, 4, 16, seed=0)
    X, y, Xv, yv = tiny_data["X_train"], tiny_data["y_train"], tiny_data["X_val"], tiny_data["y_val"]
    _, a = engine.train(p0, X, y, engine.EngineConfig(eps=0.0, **kw), Xv, yv)
    _, b = engine.train(p0, X, y, engine.EngineConfig(eps=0.2, **kw), Xv, yv)
    assert a.test_loss[0] == b.test_loss[0], "the two runs did not start from the same params"
    assert a.train_loss_ls == a.train_loss
    assert b.train_loss_ls[-1] != b.train_loss[-1]
    s = runs.ls_summary(a, b, labels=("plain", "smooth"))
    for lab, h in (("plain", a), ("smooth", b)):
        r = s[lab]
        assert r["gap"] == pytest.approx(h.test_loss[-1] - h.train_loss[-1])
        assert r["test_loss_min"] == min(h.test_loss) and r["rise"] >= 0
        assert r["t_min"] in h.t and r["test_acc"] == h.test_acc[-1]
    assert s["smooth"]["eps"] == 0.2
    assert s["d_test_acc"] == pytest.approx(b.test_acc[-1] - a.test_acc[-1])
    assert s["d_rise"] == pytest.approx(s["smooth"]["rise"] - s["plain"]["rise"])
    with pytest.raises(ValueError, match="test"):
        runs.ls_summary(H.History(), H.History())
