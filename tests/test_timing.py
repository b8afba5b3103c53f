"""Tests for workbook.timing: every timing routine returns sane rows and equal results."""
import numpy as np
import pytest

from workbook import timing
from _common import TINY, tiny_cfg




def test_time_conv_methods_rows():
    rows = timing.time_conv_methods(f=8, nf=4, n=6, repeats=1, seed=0, loops_max_calls=100)
    methods = [r["method"] for r in rows]
    assert methods == ["loops", "matmul", "einsum (optimize=True)", "einsum (optimize=False)",
                       "conv_fast (one GEMM)"], f"methods {methods}"
    for r in rows:
        for k in ("seconds", "ms_per_image", "speedup_vs_loops"):
            assert r[k] > 0 and np.isfinite(r[k]), f"{r['method']}: {k} = {r[k]}"
        assert r["max_abs_diff_vs_loops"] < 1e-4, \
            f"{r['method']} differs from the loops by {r['max_abs_diff_vs_loops']:.3g} (float32)"
        assert (r["f"], r["nf"], r["n"], r["dtype"]) == (8, 4, 6, "float32")
    # 100 calls allowed, 16 patches * 4 filters = 64 per image: the loops run on 1 image only
    assert rows[0]["n_timed"] == 1, f"loops timed on {rows[0]['n_timed']} images, expected 1"
    assert all(r["n_timed"] == 6 for r in rows[1:])


def test_time_conv_methods_one_thread():
    pytest.importorskip("threadpoolctl")
    rows = timing.time_conv_methods(f=16, nf=2, n=3, repeats=1, threads=1)
    assert all(r["threads"] == 1 and r["seconds"] > 0 for r in rows), rows


def test_format_table():
    t = timing.format_table([{"a": 1.23456, "b": "x"}, {"a": 2.0}], ["a", "b"])
    lines = t.splitlines()
    assert len(lines) == 4, t
    assert lines[0].split() == ["a", "b"] and lines[2].split() == ["1.23", "x"], t


def test_time_grads_dtype_rows():
    rows = timing.time_grads_dtype(f=16, nf=2, nh=4, n=5, repeats=1)
    assert [r["dtype"] for r in rows] == ["float64", "float32"], rows
    for r in rows:
        assert r["seconds"] > 0 and r["ms_per_batch"] > 0 and r["speedup_vs_float64"] > 0, r
        assert (r["f"], r["nf"], r["nh"], r["n"]) == (16, 2, 4, 5)


def test_mx_build_times_rows(tmp_path):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((3072, 12)).astype(np.float32)
    rows = timing.mx_build_times(X, 8, n_naive=4, folder=tmp_path)
    assert [r["how"].split()[0] for r in rows] == ["build_mx_naive", "mx_batch_first", "np.save",
                                                   "np.load"], rows
    assert all(r["images"] == 12 and r["seconds"] > 0 for r in rows), rows
    assert list(tmp_path.iterdir()) == [], "the temporary MX file was not removed"


def test_time_per_update_positive(tiny_data):
    t = timing.time_per_update(TINY, tiny_cfg(flip=True, dropout=0.2), tiny_data, n=3)
    assert np.isfinite(t) and t > 0, f"time_per_update returned {t}"
    est = timing.ablation_time_estimate(TINY, tiny_cfg(), {"flip": ({}, {"flip": True})}, tiny_data, n=2)
    assert set(est) == {"base", "flip"} and all(v > 0 for v in est.values()), est
