"""Tests for workbook.experiments: architecture runs, previews, label-smoothing comparisons, results files."""
import json
import math
import numpy as np
import pytest
import helpers as H
from workbook import config, data, experiments, synthetic


@pytest.fixture(scope="module")
def tiny():
    """300 training and 100 test images of the synthetic stand-in, normalised like load_dataset."""
    Xtr, ytr = synthetic.make_synthetic(300, seed=0)
    Xte, yte = synthetic.make_synthetic(100, seed=0, stream=1)
    Xtr_n, Xte_n, _, _ = data.normalise(Xtr, Xte)
    return {"X_train": Xtr_n, "y_train": ytr, "X_test": Xte_n, "y_test": yte,
            "name": "SYNTHETIC tiny test subset"}


TINY_CFG = H.TrainConfig(n_cycles=1, step=10, batch_size=50, eval_train_n=100, progress=False)


TINY_ARCHS = {"a": {"f": 4, "nf": 2, "nh": 8}, "b": {"f": 8, "nf": 3, "nh": 6}}


@pytest.fixture(scope="module")
def tiny_runs(tiny):
    return experiments.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False)


METRICS = ("train_loss", "train_cost", "train_acc", "test_loss", "test_cost", "test_acc")


class FakeOutput:
    """Stands in for ipywidgets.Output: counts how often the plot area is entered."""

    def __init__(self):
        self.entered = 0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        return False


def scores(K=10, n=8, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((K, n)) * scale, rng.integers(0, K, n)


def log_softmax_cols(S):
    """Written out here, independently of helpers: log p for every column of S (K, n)."""
    out = np.empty_like(S, dtype=np.float64)
    for i in range(S.shape[1]):
        s = S[:, i] - S[:, i].max()
        out[:, i] = s - np.log(np.sum(np.exp(s)))
    return out


@pytest.fixture(scope="module")
def tiny_data():
    X, y = synthetic.make_synthetic(120, seed=4)
    Xt, yt = synthetic.make_synthetic(60, seed=4, stream=1)
    Xn, Xtn, _, _ = data.normalise(X, Xt)
    return {"X_train": Xn, "y_train": y, "X_test": Xtn, "y_test": yt, "name": "tiny synthetic"}


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


def test_compare_longer_runs_on_hand_numbers():
    lines = experiments.compare_longer_runs(0.50, 0.52, 0.55, 0.60, 0.59)
    # by hand: gains +5 and +8; lead 60-55 = +5; width 59-55 = +4 = 80% of it; 59-60 = -1
    assert lines[0] == "longer training: arch2 +5.00 points, arch3 +8.00 points; bigger gain: arch3"
    assert lines[1] == "after longer training arch3 vs arch2: +5.00 points"
    assert "+4.00 points" in lines[2] and "80%" in lines[2] and "most of it" in lines[2], lines[2]
    assert lines[3] == "at equal width (arch2 with nf=40 vs arch3): -1.00 points for the smaller filters"
    # arch3 behind: no gap to explain, and the other gain wins
    lines = experiments.compare_longer_runs(0.40, 0.41, 0.47, 0.45, 0.50, a="A", b="B", wide="wide A")
    assert lines[0].endswith("bigger gain: A"), lines[0]
    assert "B has no lead over A" in lines[2] and "+3.00 points" in lines[2], lines[2]
    # width recovers 1 of 4 points -> 25% -> "part of it"
    assert "25%" in experiments.compare_longer_runs(0.5, 0.5, 0.5, 0.54, 0.51)[2]
    with pytest.raises(ValueError, match="finite"):
        experiments.compare_longer_runs(0.5, math.nan, 0.5, 0.5, 0.5)


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


def test_ls_compare_and_summary_are_well_formed(tiny_data):
    runs = experiments.ls_compare(tiny_data, eps=0.2, lam=0.001, n_train=100, n_test=50, arch=(8, 4, 16),
                        n_cycles=1, step=10)
    assert list(runs) == ["eps=0", "eps=0.2"], f"keys {list(runs)}"
    a, b = runs.values()
    for lab, h in runs.items():
        assert h.updates_done == 20 and h.t[0] == 0 and h.t[-1] == 20, f"{lab}: t={h.t}"
        assert len(h.test_loss) == len(h.t) == len(h.train_loss), f"{lab}: ragged history"
        assert np.all(np.isfinite(h.train_loss + h.test_loss)), f"{lab}: non-finite loss"
    assert b.config["eps"] == 0.2 and a.config["eps"] == 0.0
    # same initialisation: identical metrics before the first update
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
    text = experiments.ls_summary_text(s)
    assert f"{s['plain']['gap']:.3f}" in text and f"{100 * s['smooth']['test_acc']:.2f}%" in text

    only = experiments.ls_compare(tiny_data, eps=0.0, lam=0.001, n_train=100, n_test=50, arch=(8, 4, 16),
                        n_cycles=1, step=10)
    assert list(only) == ["eps=0"]
    assert only["eps=0"].test_loss == a.test_loss, "eps=0 runs with the same seed differ"


def test_ls_compare_and_summary_reject_bad_input(tiny_data):
    with pytest.raises(ValueError, match="n_train"):
        experiments.ls_compare(tiny_data, n_train=10_000)
    with pytest.raises(ValueError, match="eps"):
        experiments.ls_compare(tiny_data, eps=1.0)
    with pytest.raises(ValueError, match="X_test"):
        experiments.ls_compare({"X_train": tiny_data["X_train"], "y_train": tiny_data["y_train"]})
    with pytest.raises(ValueError, match="test"):
        experiments.ls_summary(H.History(), H.History())


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
