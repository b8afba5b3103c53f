"""Smoke tests for the benchmarks package with tiny settings (schema and correctness, never
times), and the check that the torch loop it times computes the engine's update from the same
weights."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import cli, measurements as M, protocols, report, runners
from workbook import engine, oracle
from workbook.runtime import update_flops

TINY = ["--quick", "--threads", "1", "--archs", "arch2,arch4", "--n-updates", "2", "--repeats", "2",
        "--warmup", "1", "--n-data", "300", "--sgemm-min-time", "0.001", "--sgemm-max", "64"]


def is_time(v):
    return isinstance(v, float) and math.isfinite(v) and v >= 0


def check_schema(res, torch_present):
    for k in ("schema", "note", "mode", "settings", "environment", "torch_note", "warnings",
              "sgemm", "sgemm_peak_gflops", "sgemm_rate_by_threads", "per_update", "protocol",
              "targets", "main_peak_rss_mb"):
        assert k in res, f"results JSON lacks key {k!r}"
    assert res["schema"] == M.SCHEMA and "not CIFAR-10" in res["note"]
    for k in ("cpu_model", "cpu_count", "blas", "numpy", "torch", "torch_num_threads", "date"):
        assert k in res["environment"], f"environment lacks {k!r}"
    assert [r["arch"] for r in res["per_update"]] == ["arch2", "arch4"]
    rate = res["sgemm_rate_by_threads"]["1"]                 # JSON keys are strings
    for r in res["per_update"]:
        assert is_time(r["numpy_s"]) and len(r["numpy_repeats_s"]) == 2, f"bad numpy timing row {r}"
        assert is_time(r["numpy_step_s"]), r
        assert r["flops"] == update_flops(M.net_params(r["arch"]), 100), "not runtime.update_flops"
        assert r["sgemm_gflops"] == rate, "the bound must use the big sgemm's rate at the same threads"
        assert math.isclose(r["bound_s"], r["flops"] / (rate * 1e9))
        assert math.isclose(r["x_sgemm_bound"], r["numpy_s"] / r["bound_s"])
        assert math.isclose(r["x_sgemm_bound_step"], r["numpy_step_s"] / r["bound_s"])
        if torch_present:
            assert is_time(r["torch_s"]) and math.isclose(r["ratio_torch_over_numpy"], r["torch_s"] / r["numpy_s"])
            tv = r["torch_variants"]
            assert {"t1", "t1_cl", "t1_nomkldnn", "t1_foreach", "t1_fused"} == set(tv), tv
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
    assert [t["pass"] for t in res["targets"][2:5]] == [None, None, None], "protocols not run"


def test_net_flops_arch2_by_hand():
    # arch2: b=100, n_p=64, d=48, nf=10, nh=50, K=10: conv 2 GEMMs, W1 and W2 3 each
    conv, w1, w2 = 2 * 100 * 64 * 48 * 10, 2 * 100 * 640 * 50, 2 * 100 * 50 * 10
    assert M.net_flops("arch2") == 2 * conv + 3 * w1 + 3 * w2 == 31_788_000
    # two branches (f 4 and 8, n_p * d = 3072 each), W1 over 64 + 16 patches of 100 filters
    assert M.net_flops("bonus_multi") == 2 * 2 * (2 * 100 * 3072 * 100) + 3 * (2 * 100 * 80 * 100 * 800) \
        + 3 * (2 * 100 * 800 * 10)
    b = M.bound(1e9, 100.0, 0.02)
    assert math.isclose(b["bound_s"], 0.01) and math.isclose(b["x_bound"], 2.0)


def test_arch_names_include_the_bonus_nets():
    assert M.arch("bonus_multi") == ("bonus_multi", (4, 8), 100, 800)
    assert M.arch(((4, 8), 3, 5)) == ("f4-8_nf3_nh5", (4, 8), 3, 5)
    with pytest.raises(ValueError, match="arch"):
        M.arch("arch9")


def test_batch_indices_are_sorted_epochs():
    idx = M.batch_indices(1000, 12, batch=100, seed=3)
    assert idx.shape == (12, 100)
    assert np.all(np.diff(idx, axis=1) > 0), "each batch must be sorted and without repeats"
    assert np.array_equal(np.sort(idx[:10].ravel()), np.arange(1000)), \
        "the first 10 batches must cover one epoch once"


def test_main_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(TINY + ["--out", str(out)]) == 0
    res = json.loads(out.read_text())
    check_schema(res, torch_present=M.torch_module() is not None)
    text = capsys.readouterr().out
    assert "Targets" in text and "SPEED ONLY" in text and "x bound" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"], "temporary files left"


def test_quick_run_may_not_write_results_json():
    with pytest.raises(SystemExit, match="quick"):
        cli.main(TINY + ["--out", str(cli.RESULTS)])
    assert cli.output_path(cli.parser().parse_args(["--quick"])) == cli.QUICK_RESULTS
    assert cli.output_path(cli.parser().parse_args([])) == cli.RESULTS


def test_main_without_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "torch_module", lambda: None)
    out = tmp_path / "r.json"
    assert cli.main(TINY + ["--out", str(out)]) == 0
    res = json.loads(out.read_text())
    check_schema(res, torch_present=False)
    assert "not installed" in res["torch_note"]
    assert res["targets"][0]["pass"] is None and res["targets"][1]["pass"] is None


def test_results_json_is_readable_by_speed_rows(tmp_path):
    from workbook.reference import speed_rows
    out = tmp_path / "r.json"
    cli.main(TINY + ["--out", str(out), "--no-torch"])
    res = json.loads(out.read_text())
    for r in res["per_update"]:
        r["torch_s"] = 2 * r["numpy_s"]                    # as if torch had run
    out.write_text(json.dumps(res))
    rows = speed_rows(out)
    assert [r["label"] for r in rows] == ["arch2", "arch4"] and all(math.isclose(r["ratio"], 2.0) for r in rows)


@pytest.mark.parametrize("impl", ["numpy", "numpy_step", "torch1", "torch:t1_cl", "torch:t1_nomkldnn",
                                  "torch:t1_foreach"])
def test_every_timed_program_runs_on_multi_size_filters(impl):
    if impl.startswith("torch") and M.torch_module() is None:
        pytest.skip("torch is not installed (optional)")
    data = M.make_data(250, seed=1)
    r = runners.update_times(((4, 8), 3, 6), impls=(impl,), n_updates=2, repeats=1, warmup=0,
                             threads=1, data=data)[impl]
    assert is_time(r["min_s"]) and len(r["repeats_s"]) == 1


def test_update_time_functions():
    data = M.make_data(250, seed=1)
    r = runners.numpy_update_time("arch1", n_updates=2, repeats=1, warmup=0, threads=1, data=data)
    assert set(r) == {"median_s", "min_s", "repeats_s"} and len(r["repeats_s"]) == 1
    with pytest.raises(ValueError, match="unknown implementations"):
        runners.update_times("arch1", impls=("jax",), data=data)
    rows = runners.speed_grid(fs=(8,), nfs=(2, 3), nh=6, n_updates=1, repeats=1, warmup=0,
                              threads=1, data=data)
    assert [(r["f"], r["nf"]) for r in rows] == [(8, 2), (8, 3)]
    for r in rows:
        assert is_time(r["numpy_s"]) and (r["ratio"] is None) == (M.torch_module() is None)


@pytest.mark.parametrize("a", [(2, 3, 7), (16, 4, 6), ((4, 8), 3, 5)])
def test_the_torch_loop_computes_the_engines_update(a):
    """The idiomatic loop the benchmark times starts from the engine's weights (through
    oracle.torch_layout) and one of its updates equals engine.train_step (lam = 0: the loop's
    weight decay also decays the biases, as idiomatic torch code does)."""
    if not oracle.torch_available():
        pytest.skip("torch is not installed (optional)")
    import torch
    data = M.make_data(40, seed=2)
    idx = M.batch_indices(40, 1, batch=12, seed=0)
    run = runners.TorchLoopRunner(a, data, idx, lam=0.0, eta=0.1, seed=5, variant="t1")
    convs = [m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    lins = [m for m in run.model.modules() if isinstance(m, torch.nn.Linear)]

    def torch_arrays():
        d = lambda t: t.detach().numpy().copy()  # noqa: E731
        out = {f"conv{i}.{w}": d(getattr(c, w)) for i, c in enumerate(convs) for w in ("weight", "bias")}
        out.update({k: d(getattr(lins[i], w)) for k, i, w in (("W1", 0, "weight"), ("b1", 0, "bias"),
                                                              ("W2", 1, "weight"), ("b2", 1, "bias"))})
        return out

    def layout_arrays(params):
        lay = oracle.torch_layout(params)
        out = {f"conv{i}.{w}": v for i, c in enumerate(lay["convs"]) for w, v in zip(("weight", "bias"), c)}
        out.update({k: lay[k] for k in ("W1", "b1", "W2", "b2")})
        return out

    p = M.net_params(a, seed=5)
    start = layout_arrays(p)
    for k, v in torch_arrays().items():
        assert np.array_equal(v, start[k]), f"the torch loop does not start from the engine's {k}"
    ib = idx[0]
    loss_np = engine.train_step(p, [m[ib] for m in engine.mx_for(p, data["X"])], data["y"][ib], 0.1)
    with M.thread_limit(1):
        run.run(1)
    want, got = layout_arrays(p), torch_arrays()
    for k in want:
        moved = np.abs(want[k] - start[k]).max()
        assert moved > 0, f"{k} did not move in the numpy update"
        err = np.abs(got[k] - want[k]).max()
        assert err <= 1e-4 * moved + 1e-7, \
            f"{k} after one update: torch loop vs engine.train_step differ by {err:.3g} (moved {moved:.3g})"
    assert np.isfinite(loss_np)


def test_protocol_time_tiny():
    cfg = engine.EngineConfig(n_cycles=1, step=5, eval_every=5, eval_train_n=50, progress=False)
    r = protocols.protocol_time("arch2", cfg, n_train=300, n_test=100, threads=1)
    assert r["updates"] == 10 and r["n_evals"] == 3 and r["error"] is None, r
    assert r["threads"] == 1, f"protocol_time(threads=1) ran train with {r['threads']} threads"
    assert abs(r["time_train"] + r["time_eval"] + r["time_other"] - r["total"]) < 1e-9
    assert r["config"]["step"] == 5


def test_arch5_protocol_subprocess_tiny():
    big = np.ones(50_000_000, np.float32)  # 200 MB here, which the child must not report
    r = protocols.arch5_protocol_subprocess(threads=1, shrink=200, n_train=300, n_test=100)
    mine = M.peak_rss_mb()
    del big
    # step 800 // 200 = 4, 4 doubling cycles: 2*4*(2**4 - 1) = 120 updates
    assert r["updates"] == 120 and r["arch"] == "arch5" and r["nh"] == 300, r
    assert 0 < r["peak_rss_mb"] < mine - 100, (
        f"the subprocess reports a peak RSS of {r['peak_rss_mb']:.0f} MB with tiny data, close to "
        f"its parent's {mine:.0f} MB: it is measuring the parent, not itself")


def test_speed_py_script_and_module_entry_points_run():
    for cmd in ([sys.executable, "benchmarks/speed.py", "--help"], [sys.executable, "-m", "benchmarks", "--help"]):
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cli.HERE.parent)
        assert p.returncode == 0 and "--quick" in p.stdout, (cmd, p.stderr[-2000:])


def test_targets_read_the_rows():
    rows = [{"arch": a, "ratio_torch_over_numpy": 2.0, "x_sgemm_bound": 1.2} for a in M.ALL_ARCHS]
    rows[1]["ratio_torch_over_numpy"] = 0.9                # arch2 slower than torch
    t = report.evaluate_targets({"per_update": rows, "protocol": {"arch2": None, "arch5": None}})
    assert [x["pass"] for x in t] == [False, False, None, None, None, True, True], t
