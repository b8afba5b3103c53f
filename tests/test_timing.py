"""Tests for workbook.timing: every routine returns well-formed rows and equal results. No
assertion is made on a time (only that it is a positive finite number): the machine is shared."""
import numpy as np
import pytest

from workbook import timing
from _common import TINY, tiny_cfg


def is_time(v):
    return isinstance(v, float) and np.isfinite(v) and v > 0


def test_time_conv_methods_rows():
    rows = timing.time_conv_methods(f=8, nf=4, n=6, repeats=1, seed=0, loops_max_calls=100)
    methods = [r["method"] for r in rows]
    assert methods == ["loops", "matmul", "einsum (optimize=True)", "engine GEMM (batch-first)"], f"methods {methods}"
    for r in rows:
        for k in ("seconds", "ms_per_image", "speedup_vs_loops"):
            assert is_time(r[k]), f"{r['method']}: {k} = {r[k]}"
        assert r["max_abs_diff_vs_loops"] < 1e-4, \
            f"{r['method']} differs from the loops by {r['max_abs_diff_vs_loops']:.3g} (float32)"
        assert (r["f"], r["nf"], r["n"], r["dtype"], r["threads"]) == (8, 4, 6, "float32", "default")
    # 100 calls allowed, 16 patches * 4 filters = 64 per image: the loops run on 1 image only
    assert rows[0]["n_timed"] == 1, f"loops timed on {rows[0]['n_timed']} images, expected 1"
    assert all(r["n_timed"] == 6 for r in rows[1:])
    with pytest.raises(ValueError, match="positive"):
        timing.time_conv_methods(n=0)


def test_time_conv_methods_one_thread():
    rows = timing.time_conv_methods(f=16, nf=2, n=3, repeats=1, threads=1)
    assert all(r["threads"] == 1 and is_time(r["seconds"]) for r in rows), rows


def test_format_table():
    t = timing.format_table([{"a": 1.23456, "b": "x"}, {"a": 2.0}], ["a", "b"])
    lines = t.splitlines()
    assert len(lines) == 4, t
    assert lines[0].split() == ["a", "b"] and lines[2].split() == ["1.23", "x"], t


@pytest.mark.parametrize("impl", ["plain", "engine"])
def test_time_grads_dtype_rows(impl):
    rows = timing.time_grads_dtype(f=16, nf=2, nh=4, n=5, repeats=1, impl=impl, threads=1)
    assert [(r["impl"], r["dtype"]) for r in rows] == [(impl, "float64"), (impl, "float32")], rows
    for r in rows:
        assert is_time(r["seconds"]) and is_time(r["ms_per_batch"]) and is_time(r["speedup_vs_float64"]), r
        assert (r["f"], r["nf"], r["nh"], r["n"], r["threads"]) == (16, 2, 4, 5, 1)
    assert rows[0]["speedup_vs_float64"] == 1.0
    with pytest.raises(ValueError, match="impl"):
        timing.time_grads_dtype(impl="fast")


def test_mx_build_times_rows(tmp_path):
    X = np.random.default_rng(8).standard_normal((3072, 12)).astype(np.float32)
    rows = timing.mx_build_times(X, 8, n_naive=4, folder=tmp_path)
    assert [r["how"].split()[0] for r in rows] == ["build_mx_naive", "build_mx", "mx_batch_first",
                                                   "np.save", "np.load"], rows
    assert all(r["images"] == 12 and is_time(r["seconds"]) for r in rows), rows
    assert list(tmp_path.iterdir()) == [], "the temporary MX file was not removed"


def test_time_per_update_and_ablation_estimate(tiny_data):
    t = timing.time_per_update(TINY, tiny_cfg(flip=True, dropout=0.2), tiny_data, n=3)
    assert is_time(t), f"time_per_update returned {t}"
    est = timing.ablation_time_estimate(TINY, tiny_cfg(), {"flip": ({}, {"flip": True})}, tiny_data, n=2)
    assert set(est) == {"base", "flip"} and all(is_time(v) for v in est.values()), est
    with pytest.raises(ValueError, match="larger than the training set"):
        timing.time_per_update(TINY, tiny_cfg(batch_size=1000), tiny_data)
