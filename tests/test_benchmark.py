"""Smoke tests for benchmarks/speed.py with tiny settings (schema and correctness, never times),
and the check that its weight-for-weight torch twin (speed.TorchTwin) computes the same update
as helpers.train_step."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import helpers as H

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import speed  # noqa: E402

TINY = ["--quick", "--threads", "1", "--archs", "arch2,arch4", "--n-updates", "2", "--repeats", "2",
        "--warmup", "1", "--n-data", "300", "--sgemm-min-time", "0.001", "--sgemm-max", "64"]


def _is_time(v):
    return isinstance(v, float) and math.isfinite(v) and v >= 0


def _check_schema(res, torch_present):
    for k in ("schema", "note", "mode", "settings", "environment", "torch_note", "warnings",
              "sgemm", "sgemm_peak_gflops", "per_update", "protocol", "targets", "main_peak_rss_mb"):
        assert k in res, f"results JSON lacks key {k!r}"
    assert "not CIFAR-10" in res["note"], "the JSON must say the data is not CIFAR-10"
    env = res["environment"]
    for k in ("cpu_model", "cpu_count", "blas", "numpy", "torch", "torch_num_threads", "date"):
        assert k in env, f"environment lacks {k!r}"
    assert [r["arch"] for r in res["per_update"]] == ["arch2", "arch4"]
    for r in res["per_update"]:
        assert _is_time(r["numpy_s"]) and len(r["numpy_repeats_s"]) == 2, f"bad numpy timing row {r}"
        assert r["flops"]["total"] == sum(v for k, v in r["flops"].items() if k != "total")
        assert _is_time(r["numpy_step_s"]) and _is_time(r["x_sgemm_bound"]), r
        if torch_present:
            assert _is_time(r["torch_s"]) and isinstance(r["ratio_torch_over_numpy"], float), r
            tv = r["torch_variants"]
            assert {"t1", "t1_cl", "t1_nomkldnn", "t1_foreach", "t1_fused"} <= set(tv), tv
            assert r["torch_s"] == min(tv.values()) == tv[r["torch_variant"]], (
                "the torch reference must be the fastest variant tried")
        else:
            assert r["torch_s"] is None and r["ratio_torch_over_numpy"] is None, r
    assert [(g["m"], g["k"], g["n"]) for g in res["sgemm"]][-1] == (64, 64, 64)
    assert all(g["gflops"] > 0 for g in res["sgemm"])
    assert res["protocol"] == {"arch2": None, "arch5": None}, "--quick must skip the protocols"
    assert len(res["targets"]) == 7
    for t in res["targets"]:
        assert set(t) == {"name", "target", "value", "pass"} and t["pass"] in (True, False, None), t
    # protocols were not run, so their targets must read 'not measured'
    assert [t["pass"] for t in res["targets"][2:5]] == [None, None, None]


def test_flops_per_update_arch2_by_hand():
    # arch2: b=100, n_p=64, d=48, nf=10, nh=50, K=10 (counted by hand from the shapes)
    fl = speed.flops_per_update(4, 10, 50)
    assert fl["conv_fwd"] == fl["grad_Fs"] == 2 * 100 * 64 * 48 * 10 == 6_144_000
    assert fl["W1_fwd"] == fl["grad_W1"] == fl["grad_H"] == 6_400_000
    assert fl["W2_fwd"] == fl["grad_W2"] == fl["grad_X1"] == 100_000
    assert fl["total"] == 31_788_000


def test_batch_indices_are_sorted_epochs():
    idx = speed.batch_indices(1000, 12, batch=100, seed=3)
    assert idx.shape == (12, 100)
    assert np.all(np.diff(idx, axis=1) > 0), "each batch must be sorted and without repeats"
    epoch = np.sort(idx[:10].ravel())
    assert np.array_equal(epoch, np.arange(1000)), "the first 10 batches must cover one epoch once"


def test_main_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert speed.main(TINY + ["--out", str(out)]) == 0
    res = json.loads(out.read_text())
    _check_schema(res, torch_present=speed._torch() is not None)
    text = capsys.readouterr().out
    assert "Targets" in text and "SPEED ONLY" in text
    if speed._torch() is not None:
        assert "Idiomatic torch variants tried" in text and "t1_foreach" in text


def test_arch_names_include_the_bonus_nets():
    assert speed._arch("bonus_multi") == ("bonus_multi", (4, 8), 100, 800)
    assert speed._arch(((4, 8), 3, 5))[1:] == ((4, 8), 3, 5)
    fl = speed.flops_per_update((4, 8), 10, 50)
    assert fl["conv_fwd"] == 2 * 100 * 3072 * 10 * 2          # n_p * d = 3072 for every f
    assert fl["W1_fwd"] == 2 * 100 * (64 + 16) * 10 * 50


@pytest.mark.parametrize("impl", ["numpy", "numpy_step", "torch1", "torch:t1_cl", "torch:t1_nomkldnn",
                                  "torch:t1_foreach"])
def test_every_timed_program_runs_on_multi_size_filters(impl):
    if impl.startswith("torch"):
        pytest.importorskip("torch")
    data = speed.make_data(250, seed=1)
    r = speed.update_times(((4, 8), 3, 6), impls=(impl,), n_updates=2, repeats=1, warmup=0,
                           threads=1, data=data)[impl]
    assert _is_time(r["min_s"])


def test_main_without_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "_torch", lambda: None)
    out = tmp_path / "r.json"
    assert speed.main(TINY + ["--out", str(out)]) == 0
    res = json.loads(out.read_text())
    _check_schema(res, torch_present=False)
    assert "not installed" in res["torch_note"]
    assert res["targets"][0]["pass"] is None and res["targets"][1]["pass"] is None


def test_update_time_functions():
    data = speed.make_data(250, seed=1)
    r = speed.numpy_update_time("arch1", n_updates=2, repeats=1, warmup=0, threads=1, data=data)
    assert set(r) == {"median_s", "min_s", "repeats_s"} and len(r["repeats_s"]) == 1
    with pytest.raises(ValueError, match="arch"):
        speed.numpy_update_time("arch9", data=data)
    rows = speed.speed_grid(fs=(8,), nfs=(2, 3), nh=6, n_updates=1, repeats=1, warmup=0,
                            threads=1, data=data)
    assert [(r["f"], r["nf"]) for r in rows] == [(8, 2), (8, 3)]
    for r in rows:
        assert _is_time(r["numpy_s"])
        assert (r["ratio"] is None) == (speed._torch() is None)


def test_protocol_time_tiny():
    cfg = H.TrainConfig(n_cycles=1, step=5, eval_every=5, eval_train_n=50, progress=False)
    r = speed.protocol_time("arch2", cfg, n_train=300, n_test=100, threads=1)
    assert r["updates"] == 10 and r["n_evals"] == 3 and r["error"] is None, r
    assert r["threads"] == 1, f"protocol_time(threads=1) ran train with {r['threads']} threads"
    assert abs(r["time_train"] + r["time_eval"] + r["time_other"] - r["total"]) < 1e-9
    assert r["config"]["step"] == 5


def test_arch5_protocol_subprocess_tiny():
    big = np.ones(50_000_000, np.float32)  # 200 MB in this process, which the child must not report
    r = speed.arch5_protocol_subprocess(threads=1, shrink=200, n_train=300, n_test=100)
    mine = speed.peak_rss_mb()
    del big
    # step 800 // 200 = 4, 4 doubling cycles: 2*4*(2**4 - 1) = 120 updates
    assert r["updates"] == 120 and r["arch"] == "arch5" and r["nh"] == 300, r
    assert 0 < r["peak_rss_mb"] < mine - 100, (
        f"the subprocess reports a peak RSS of {r['peak_rss_mb']:.0f} MB with tiny data, close to "
        f"its parent's {mine:.0f} MB: it is measuring the parent, not itself")


@pytest.mark.parametrize("f,nf,nh", [(2, 3, 7), (4, 5, 8), (16, 4, 6)])
def test_torch_twin_update_equals_train_step(f, nf, nh):
    torch = pytest.importorskip("torch")
    lam, eta, b = 0.01, 0.1, 12
    data = speed.make_data(40, seed=2)
    idx = np.sort(np.random.default_rng(0).permutation(40)[:b])
    p_np = H.init_params(f, nf, nh, seed=5)
    rng = np.random.default_rng(1)
    for k in ("b0", "b1", "b2"):  # non-zero biases, so the bias paths are compared too
        p_np[k] = (0.1 * rng.standard_normal(p_np[k].shape)).astype(np.float32)
    twin = speed.TorchTwin(p_np, lam=lam, eta=eta)
    before = twin.params_numpy()
    for k in p_np:
        assert np.array_equal(before[k], p_np[k]), f"torch twin does not start from {k}"
    mxs = H.mx_for(p_np, data["X"])
    loss_np = H.train_step(p_np, [m[idx] for m in mxs], data["y"][idx], eta, lam)
    X = torch.from_numpy(data["Xr"]).view(-1, 3, 32, 32)
    it = torch.from_numpy(idx)
    with speed.thread_limit(1):
        loss_t = twin.step(X.index_select(0, it), torch.from_numpy(data["y"]).index_select(0, it))
    assert abs(loss_np - loss_t) < 1e-5 * max(1.0, abs(loss_np)), f"loss: numpy {loss_np}, torch {loss_t}"
    after = twin.params_numpy()
    for k in p_np:
        step = np.abs(p_np[k] - before[k]).max()
        assert step > 0, f"{k} did not change in the numpy update"
        err = np.abs(after[k] - p_np[k]).max()
        assert err <= 1e-4 * step + 1e-6, (
            f"{k} after one update: torch twin differs from train_step by {err:.3g} "
            f"(the update itself moved it by {step:.3g})")
