"""Tests for workbook.experiments: architecture runs, previews, label-smoothing comparisons, results files."""
import json
import numpy as np
import pytest
import helpers as H
from workbook import config, experiments
from _common import METRICS, TINY_ARCHS


TINY_CFG = H.TrainConfig(n_cycles=1, step=10, batch_size=50, eval_train_n=100, progress=False)


@pytest.fixture(scope="module")
def tiny_runs(tiny):
    return experiments.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False)


def test_ex3_architectures_keep_the_conv_output_width():
    # (32/f)^2 * nf by hand: 256*3, 64*10, 16*40, 4*160
    want = {"arch1": 768, "arch2": 640, "arch3": 640, "arch4": 640}
    for k, spec in experiments.EX3_ARCHS.items():
        got = (32 // spec["f"]) ** 2 * spec["nf"]
        assert got == want[k], f"{k}: conv output width {got}, expected {want[k]}"
        assert spec["nh"] == 50, f"{k}: nh={spec['nh']}, the spec uses 50"


def test_run_architectures_reuses_without_retraining(tiny, tiny_runs, monkeypatch):
    rows, hists = tiny_runs
    calls = []
    real_train = H.train
    monkeypatch.setattr(experiments, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    rows2, hists2 = experiments.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False,
                                        reuse={"a": (rows[0], hists["a"])})
    assert len(calls) == 1, f"train() was called {len(calls)} times, expected 1 (only 'b')"
    assert hists2["a"] is hists["a"] and rows2[0] is rows[0], "the reused run was not taken as is"
    other = H.TrainConfig(n_cycles=1, step=12, batch_size=50, eval_train_n=100, progress=False)
    with pytest.raises(ValueError, match="another config"):
        experiments.run_architectures(TINY_ARCHS, other, tiny, reuse={"a": (rows[0], hists["a"])})
    with pytest.raises(ValueError, match="not in archs"):
        experiments.run_architectures(TINY_ARCHS, TINY_CFG, tiny, reuse={"zzz": (rows[0], hists["a"])})


def test_run_architectures_rejects_bad_input(tiny):
    with pytest.raises(ValueError, match="'f', 'nf' and 'nh'"):
        experiments.run_architectures({"x": {"f": 4, "nf": 2}}, TINY_CFG, tiny)
    with pytest.raises(ValueError, match="load_dataset"):
        experiments.run_architectures(TINY_ARCHS, TINY_CFG, {"X_train": tiny["X_train"]})
    with pytest.raises(ValueError, match="empty"):
        experiments.run_architectures({}, TINY_CFG, tiny)


def test_train_preview_calls_back_and_uses_a_subset(tiny):
    seen = []
    params, h = experiments.train_preview(tiny, f=8, nf=3, nh=7, step=10, n_cycles=2, increasing=True,
                                batch_size=20, n_train=200, n_test=50,
                                callback=lambda hist: seen.append(list(hist.t)))
    # doubling cycles by hand: 2*10 + 2*20 = 60 updates, evaluated every 5
    assert h.updates_done == 60, f"{h.updates_done} updates, expected 60"
    assert h.t == list(range(0, 61, 5)), f"evaluated at {h.t}"
    assert len(seen) == len(h.t), f"callback called {len(seen)} times for {len(h.t)} evaluations"
    assert seen[-1] == h.t and seen[0] == [0], f"callback saw {seen[0]} ... {seen[-1]}"
    shapes = {k: v.shape for k, v in params.items()}
    want = {"Fs": (8, 8, 3, 3), "b0": (3, 1), "W1": (7, 16 * 3), "b1": (7, 1), "W2": (10, 7),
            "b2": (10, 1)}
    assert shapes == want, f"params shapes {shapes}, expected {want}"
    assert "subset 200 train / 50 test" in h.data and "SYNTHETIC" in h.data, f"data label {h.data!r}"
    assert h.config["eval_train_n"] == 200, f"eval_train_n {h.config['eval_train_n']}, expected 200"
    for m in METRICS:
        assert np.all(np.isfinite(getattr(h, m))), f"preview history {m} is not finite"


def test_train_preview_rejects_bad_settings(tiny):
    with pytest.raises(ValueError, match="batch_size"):
        experiments.train_preview(tiny, batch_size=500, n_train=200, step=10)
    with pytest.raises(ValueError, match="eta_min"):
        experiments.train_preview(tiny, eta_min=0.5, eta_max=0.1, n_train=200, step=10)
    with pytest.raises(ValueError, match="divides 32"):
        experiments.train_preview(tiny, f=3, n_train=200, step=10)


def test_results_round_trip_and_markdown(tiny_runs, tmp_path, monkeypatch):
    rows, _ = tiny_runs
    monkeypatch.setattr(config, "FIG_DIR", tmp_path)
    path = experiments.write_results("03_test", rows)
    assert path == config.fig_dir() / "03_test.json", f"written to {path}"
    back = json.loads(path.read_text())
    assert back["rows"] == rows, "rows changed in the JSON round trip"
    assert back["fast_mode"] is config.is_fast()
    md = experiments.results_markdown(back["rows"])
    lines = md.splitlines()
    assert len(lines) == 2 + len(rows), f"markdown has {len(lines)} lines for {len(rows)} rows"
    for r in rows:
        row_line = next((ln for ln in lines if ln.startswith(f"| {r['run']} |")), None)
        assert row_line is not None, f"run {r['run']!r} missing from the markdown table"
        assert f"{100 * r['test_acc']:.2f}%" in row_line and r["data"] in row_line, \
            f"row {r['run']}: accuracy or data label missing in {row_line!r}"


def test_fast_mode_never_overwrites_full_mode_figures(tmp_path, monkeypatch):
    """Running the tests (fast mode) must not replace the figures/results of a real run."""
    monkeypatch.setattr(config, "FIG_DIR", tmp_path)
    monkeypatch.setenv("WORKBOOK_FAST", "0")
    full = experiments.write_results("03_mode", [{"run": "full"}])
    monkeypatch.setenv("WORKBOOK_FAST", "1")
    fast = experiments.write_results("03_mode", [{"run": "fast"}])
    assert full == tmp_path / "03_mode.json" and fast == tmp_path / "fast-mode" / "03_mode.json"
    assert json.loads(full.read_text())["rows"] == [{"run": "full"}], "fast mode overwrote it"
    assert json.loads(fast.read_text())["fast_mode"] is True
    assert experiments.read_results("03_mode") == {"fast": {"run": "fast"}}, "read_results read another mode"
    assert experiments.read_results("03_missing") == {}
    assert list(tmp_path.rglob("*.tmp")) == [], "a temporary file was left behind"


def test_train_preview_passes_every_option_to_the_config(tiny, monkeypatch):
    seen = {}
    real_train = H.train

    def spy(params, X, y, cfg, *a, **k):
        seen["cfg"], seen["params"], seen["n"] = cfg, params, X.shape[1]
        return real_train(params, X, y, cfg, *a, **k)
    monkeypatch.setattr(experiments, "train", spy)
    opts = dict(f=8, nf=3, nh=7, n_cycles=2, step=10, increasing=True, eta_min=2e-5, eta_max=0.05,
                eta_decay=0.7, lam=0.002, eps=0.15, flip=True, translate=2, dropout=0.25,
                batch_size=20, n_train=160, n_test=40, seed=5)
    _, h = experiments.train_preview(tiny, **opts)
    cfg = seen["cfg"]
    for k in ("n_cycles", "step", "increasing", "eta_min", "eta_max", "eta_decay", "lam", "eps",
              "flip", "translate", "dropout", "batch_size", "seed"):
        assert getattr(cfg, k) == opts[k], f"{k}: TrainConfig has {getattr(cfg, k)!r}, set {opts[k]!r}"
        assert h.config[k] == opts[k], f"{k}: the history's config has {h.config[k]!r}"
    assert seen["params"]["Fs"].shape == (8, 8, 3, 3) and seen["params"]["W1"].shape == (7, 48)
    assert seen["n"] == 160 and len(h.test_acc) == len(h.t), "n_train/n_test not applied"
    assert "subset 160 train / 40 test" in h.data
    assert set(experiments.PREVIEW_OPTIONS) == set(opts), "PREVIEW_OPTIONS lists another set"


def test_ls_summary_is_well_formed(tiny_data):
    kw = dict(f=8, nf=4, nh=16, step=10, lam=0.001, n_train=100, n_test=50, batch_size=50)
    _, a = experiments.train_preview(tiny_data, eps=0.0, **kw)
    _, b = experiments.train_preview(tiny_data, eps=0.2, **kw)
    assert a.test_loss[0] == b.test_loss[0], "the two runs did not start from the same params"
    assert a.train_loss_ls == a.train_loss, "eps=0: smoothed and hard losses should coincide"
    assert b.train_loss_ls[-1] != b.train_loss[-1], "eps>0: smoothed loss equals the hard loss"
    s = experiments.ls_summary(a, b, labels=("plain", "smooth"))
    for lab, h in (("plain", a), ("smooth", b)):
        r = s[lab]
        assert r["gap"] == pytest.approx(h.test_loss[-1] - h.train_loss[-1])
        assert r["test_loss_min"] == min(h.test_loss) and r["rise"] >= 0
        assert r["t_min"] in h.t and r["test_acc"] == h.test_acc[-1]
    assert s["d_test_acc"] == pytest.approx(b.test_acc[-1] - a.test_acc[-1])
    assert s["d_rise"] == pytest.approx(s["smooth"]["rise"] - s["plain"]["rise"])
    with pytest.raises(ValueError, match="test"):
        experiments.ls_summary(H.History(), H.History())


def _acc(**kw):
    base = {"arch1": 0.52, "arch2": 0.58, "arch3": 0.62, "arch4": 0.595, "arch2 long": 0.60,
            "arch3 long": 0.645, "arch2 nf=40 long": 0.63}
    base.update(kw)
    return base


def test_ex3_checks_use_the_assignment_on_cifar_and_chance_on_synthetic():
    ok = {c["check"]: c["ok"] for c in experiments.ex3_checks(_acc(), "cifar10")}
    assert all(ok.values()) and len(ok) == 4, ok
    bad = {c["check"]: c["ok"] for c in experiments.ex3_checks(_acc(arch2=0.55), "cifar10")}
    assert bad["arch2 within 2 points of the assignment's 57.61%"] is False
    low = experiments.ex3_checks(_acc(arch3=0.59, **{"arch2 long": 0.59, "arch3 long": 0.599,
                                         "arch2 nf=40 long": 0.5}), "cifar10")
    assert [c["ok"] for c in low][1:] == [False, True, False], low
    syn = experiments.ex3_checks(_acc(arch4=0.2), "synthetic")
    assert [c["ok"] for c in syn] == [True, False, True], syn
    # the names (what a verdict cell prints) do not depend on the numbers
    assert [c["check"] for c in syn] == [c["check"] for c in experiments.ex3_checks(_acc(), "synthetic")]


def test_ex4_checks():
    def summ(acc_a, acc_b, rise_a, rise_b, tl_a=0.5, tl_b=0.7):
        return {"labels": ("no LS", "LS"),
                "no LS": {"test_acc": acc_a, "rise": rise_a, "train_loss": tl_a},
                "LS": {"test_acc": acc_b, "rise": rise_b, "train_loss": tl_b}}
    ok = [c["ok"] for c in experiments.ex4_checks(summ(0.66, 0.657, 0.3, 0.05), "cifar10")]
    assert ok == [True, True, True, True], ok
    ok = [c["ok"] for c in experiments.ex4_checks(summ(0.62, 0.61, 0.005, 0.02), "cifar10")]
    assert ok == [False, False, False, False], ok
    ok = [c["ok"] for c in experiments.ex4_checks(summ(0.35, 0.31, 0, 0, 0.6, 0.5), "synthetic")]
    assert ok == [True, False], ok


def test_ex5_checks():
    recipe = [{"seed": s, "test_acc": a, "time_train_s": t} for s, a, t in ((0, 0.70, 500), (1, 0.69, 950))]
    ok = [c["ok"] for c in experiments.ex5_checks([], recipe, recorded=True)]
    assert ok == [True, False, False], ok           # above 67.26%, below 73%, one seed over 15 min
    fast = [dict(r, test_acc=0.735, time_train_s=800) for r in recipe]
    assert [c["ok"] for c in experiments.ex5_checks([], fast, recorded=True)] == [True, True, True]
    ok = [c["ok"] for c in experiments.ex5_checks([], recipe[:1] + [dict(recipe[1], test_acc=0.6)], recorded=True)]
    assert ok[0] is False, "mean 65% is below the teacher's 67.26%"
    abl = [{"run": r, "seed": s, "val_acc": 0.2} for r in ("base", "flip") for s in (0, 1)]
    assert [c["ok"] for c in experiments.ex5_checks(abl, [], recorded=False)] == [True, True]
    assert [c["ok"] for c in experiments.ex5_checks(abl[:3], [], recorded=False)] == [False, True]
    abl[0]["val_acc"] = 0.12
    assert [c["ok"] for c in experiments.ex5_checks(abl, [], recorded=False)] == [True, False]


def test_data_kind():
    assert experiments.data_kind({"name": "CIFAR-10", "synthetic": False}) == "cifar10"
    assert experiments.data_kind("CIFAR-10 (JPEG q75 copy)") == "cifar10"
    assert experiments.data_kind({"name": "SYNTHETIC (not CIFAR-10) [FAST MODE]", "synthetic": True}) == "synthetic"


def test_load_recorded_and_summarise_seeds(tmp_path):
    assert experiments.load_recorded("ablation", folder=tmp_path) is None
    rows = [{"run": "recipe", "group": "base", "seed": 0, "val_acc": 0.70},
            {"run": "recipe", "group": "base", "seed": 1, "val_acc": 0.72},
            {"run": "- flip", "group": "remove", "seed": 0, "val_acc": 0.66},
            {"run": "- flip", "group": "remove", "seed": 1, "val_acc": None}]
    (tmp_path / "ablation.json").write_text(json.dumps({"data": "CIFAR-10", "rows": rows}))
    rec = experiments.load_recorded("ablation", folder=tmp_path)
    assert rec["data"] == "CIFAR-10" and rec["rows"] == rows
    st = experiments.summarise_seeds(rec["rows"])
    assert [s["run"] for s in st] == ["recipe", "- flip"] and [s["n"] for s in st] == [2, 1]
    assert st[0]["mean"] == pytest.approx(0.71) and st[0]["std"] == pytest.approx(0.01 * 2 ** 0.5)
    assert st[0]["min"] == 0.70 and st[0]["max"] == 0.72 and st[1]["std"] == 0.0
    (tmp_path / "recipe.json").write_text(json.dumps({"data": "x"}))
    with pytest.raises(ValueError, match="rows"):
        experiments.load_recorded("recipe", folder=tmp_path)


def test_ablation_deltas_compare_each_group_with_its_reference():
    rows = [{"run": "recipe", "group": "recipe", "seed": 0, "val_acc": 0.70, "time_train_s": 600},
            {"run": "base", "group": "base", "seed": 0, "val_acc": 0.60, "time_train_s": 120},
            {"run": "- flip", "group": "remove", "seed": 0, "val_acc": 0.66, "time_train_s": 600},
            {"run": "+ flip", "group": "add", "seed": 0, "val_acc": 0.63, "time_train_s": 120},
            {"run": "+ flip", "group": "add", "seed": 1, "val_acc": 0.65, "time_train_s": 180}]
    d = {s["run"]: s for s in experiments.ablation_deltas(rows)}
    assert d["- flip"]["ref"] == "recipe" and d["- flip"]["delta_pp"] == pytest.approx(-4.0)
    assert d["+ flip"]["ref"] == "base" and d["+ flip"]["delta_pp"] == pytest.approx(4.0)
    assert d["+ flip"]["minutes"] == pytest.approx(2.5)
    only_base = experiments.ablation_deltas(rows[1:2] + rows[2:3])
    assert only_base[1]["ref"] == "base", "without a recipe run the base stands in"


def test_history_from_dict_takes_a_partial_record():
    h = experiments.history_from_dict({"t": [0, 10], "test_acc": [0.1, 0.5], "extra": 1})
    assert h.t == [0, 10] and h.final_test_acc == 0.5 and h.train_loss == []


def test_speed_rows_read_what_the_file_has(tmp_path):
    assert experiments.speed_rows(tmp_path / "missing.json") == []
    d = {"sgemm": [{"m": 1, "seconds": 1.0}],
         "per_update": [{"arch": "arch2", "f": 4, "nf": 10, "nh": 50, "numpy_s": 0.001, "torch_s": 0.003},
                        {"arch": "arch5", "numpy_ms": 4.0, "torch_ms": 5.0},
                        {"arch": "arch9", "numpy_s": 0.001}],
         "grid": [{"f": 2, "nf": 5, "numpy_s": 0.1, "torch_s": 0.2}]}
    (tmp_path / "r.json").write_text(json.dumps(d))
    rows = experiments.speed_rows(tmp_path / "r.json")
    assert [r["label"] for r in rows] == ["arch2", "arch5"], rows
    assert rows[0]["numpy_ms"] == pytest.approx(1.0) and rows[0]["ratio"] == pytest.approx(3.0)
    assert rows[1]["ratio"] == pytest.approx(1.25)
    (tmp_path / "bad.json").write_text("{not json")
    assert experiments.speed_rows(tmp_path / "bad.json") == []


def test_run_architectures_rows_and_histories_are_well_formed(tiny, tiny_runs):
    rows, hists = tiny_runs
    assert [r["run"] for r in rows] == list(TINY_ARCHS), f"rows out of order: {[r['run'] for r in rows]}"
    assert list(hists) == list(TINY_ARCHS), f"histories keyed {list(hists)}"
    for r in rows:
        spec, h = TINY_ARCHS[r["run"]], hists[r["run"]]
        for k in ("f", "nf", "nh"):
            assert r[k] == spec[k], f"row {r['run']}: {k}={r[k]}, expected {spec[k]}"
        assert r["updates"] == 20 and h.updates_done == 20, \
            f"row {r['run']}: {r['updates']} updates, expected 2*step*n_cycles = 20"
        assert h.t == [0, 5, 10, 15, 20], f"history {r['run']}: evaluated at {h.t}, expected every 5"
        for m in METRICS:
            v = np.asarray(getattr(h, m))
            assert v.shape == (5,) and np.all(np.isfinite(v)), f"history {r['run']}.{m} = {v}"
        assert 0.0 <= r["test_acc"] <= 1.0 and r["test_acc"] == h.test_acc[-1], \
            f"row {r['run']}: test_acc {r['test_acc']} vs history {h.test_acc[-1]}"
        assert "SYNTHETIC" in r["data"], f"row {r['run']} data label {r['data']!r} hides the data"
        assert r["time_train_s"] >= 0 and r["time_eval_s"] >= 0


def test_run_architectures_trains_like_a_direct_call(tiny, tiny_runs):
    _, hists = tiny_runs
    spec = TINY_ARCHS["b"]
    p0 = H.init_params(spec["f"], spec["nf"], spec["nh"], seed=3)
    _, h = H.train(p0, tiny["X_train"], tiny["y_train"], TINY_CFG, tiny["X_test"], tiny["y_test"])
    for m in METRICS:
        a, b = np.asarray(getattr(h, m)), np.asarray(getattr(hists["b"], m))
        assert np.array_equal(a, b), f"{m}: run_architectures {b} differs from train() {a}"
