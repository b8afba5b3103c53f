"""Tests for the notebook 01 (convolution) and 02 (gradients) helpers in helpers.py.

Expected values come from definitions written out here (shapes from the spec, a direct 6-d einsum
of the convolution, the one-hot labels) or from independent oracles (torch autograd, finite
differences); never from numbers our own code printed.
"""
import numpy as np
import pytest

import helpers as H


# ---- notebook 01 ----

@pytest.mark.parametrize("f, nf, n", [(2, 3, 1), (4, 10, 100), (8, 40, 7), (16, 160, 2)])
def test_conv_shapes_match_spec(f, nf, n):
    s = H.conv_shapes(f, nf, n)
    g, n_p, d = 32 // f, (32 // f) ** 2, f * f * 3
    expected = {"X": (3072, n), "X_ims": (32, 32, 3, n), "Fs": (f, f, 3, nf), "Fs_flat": (d, nf),
                "MX": (n_p, d, n), "conv_outputs": (g, g, nf, n), "conv_outputs_mat": (n_p, nf, n),
                "conv_flat": (n_p * nf, n)}
    assert s == expected, f"conv_shapes({f}, {nf}, {n}) = {s}, expected {expected}"


def test_conv_shapes_are_the_real_shapes():
    f, nf, n = 8, 5, 3
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3072, n))
    Fs = rng.standard_normal((f, f, 3, nf))
    X_ims = H.to_images(X)
    MX = H.build_mx(X_ims, f)
    real = {"X": X.shape, "X_ims": X_ims.shape, "Fs": Fs.shape,
            "Fs_flat": H.flatten_filters(Fs).shape, "MX": MX.shape,
            "conv_outputs": H.conv_loops(X_ims, Fs).shape,
            "conv_outputs_mat": H.conv_matmul(MX, H.flatten_filters(Fs)).shape}
    s = H.conv_shapes(f, nf, n)
    for k, v in real.items():
        assert s[k] == v, f"conv_shapes says {k} is {s[k]}, the array is {v}"


def test_conv_shapes_rejects_bad_f():
    with pytest.raises(ValueError, match="divides 32"):
        H.conv_shapes(5, 3, 2)
    with pytest.raises(ValueError, match="positive"):
        H.conv_shapes(4, 0, 2)


def test_conv_agreement_small_diffs_and_detects_wrong_reference():
    rng = np.random.default_rng(1)
    X_ims = rng.standard_normal((32, 32, 3, 3))
    Fs = rng.standard_normal((4, 4, 3, 2))
    # reference from the definition, written out independently: a 6-d einsum on the image
    ref = np.einsum("racbhi,abhk->rcki", X_ims.reshape(8, 4, 8, 4, 3, 3), Fs)
    d = H.conv_agreement(X_ims, Fs, reference=ref)
    for k, v in d.items():
        assert v < 1e-10, f"{k}: max abs diff {v:.3g} (expected < 1e-10)"
    bad = ref.copy()
    bad[1, 2, 0, 1] += 0.5
    d_bad = H.conv_agreement(X_ims, Fs, reference=bad)
    assert abs(d_bad["loops vs reference"] - 0.5) < 1e-10, \
        f"a 0.5 error in the reference shows as {d_bad['loops vs reference']:.3g}"
    with pytest.raises(ValueError, match="reference"):
        H.conv_agreement(X_ims, Fs, reference=ref[..., :2])


def test_torch_conv2d_matches_definition():
    pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    X_ims = rng.standard_normal((32, 32, 3, 2))
    Fs = rng.standard_normal((8, 8, 3, 3))
    ref = np.einsum("racbhi,abhk->rcki", X_ims.reshape(4, 8, 4, 8, 3, 2), Fs)
    out = H.torch_conv2d(X_ims, Fs)
    assert out.shape == (4, 4, 3, 2), f"torch_conv2d shape {out.shape}"
    err = np.max(np.abs(out - ref))
    assert err < 1e-10, f"torch_conv2d differs from the definition by {err:.3g}"


def test_time_conv_methods_rows():
    rows = H.time_conv_methods(f=8, nf=4, n=6, repeats=1, seed=0, loops_max_calls=100)
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
    rows = H.time_conv_methods(f=16, nf=2, n=3, repeats=1, threads=1)
    assert all(r["threads"] == 1 and r["seconds"] > 0 for r in rows), rows


def test_conv_widget_report_mentions_shapes_and_methods():
    text = H.conv_widget_report(f=16, nf=3, n=2, repeats=1)
    for needle in ("(4, 768, 2)", "(768, 3)", "(2, 2, 3, 2)", "loops", "matmul", "einsum",
                   "conv_fast"):
        assert needle in text, f"{needle!r} missing from the widget report:\n{text}"


def test_format_table():
    t = H.format_table([{"a": 1.23456, "b": "x"}, {"a": 2.0}], ["a", "b"])
    lines = t.splitlines()
    assert len(lines) == 4, t
    assert lines[0].split() == ["a", "b"] and lines[2].split() == ["1.23", "x"], t


def test_plots_save_pngs(tmp_path, monkeypatch):
    monkeypatch.setattr(H, "FIG_DIR", tmp_path)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3072, 3))
    H.plot_patch_grid(X, np.array([0, 1, 2]), [str(i) for i in range(10)], f=8, n_show=3,
                      data_name="SYNTHETIC", name="grid")
    H.plot_filters(rng.standard_normal((4, 4, 3, 5)), name="filters")
    H.grouped_bars({"a": {"x": 1.0, "y": 2.0}, "b": {"x": 3.0}}, "v", "t", name="bars")
    for n in ("grid", "filters", "bars"):
        assert (H.fig_dir() / f"{n}.png").stat().st_size > 1000, f"{n}.png was not written"
    import matplotlib.pyplot as plt
    plt.close("all")


# ---- notebook 02 ----

def test_mx_to_images_inverts_spec_construction():
    rng = np.random.default_rng(4)
    X_ims = rng.standard_normal((32, 32, 3, 2))
    for f in (2, 4, 8, 16):
        back = H.mx_to_images(H.build_mx_naive(X_ims, f), f)
        assert np.array_equal(back, X_ims), f"mx_to_images(build_mx_naive(., {f})) != X_ims"
    with pytest.raises(ValueError, match="MX must have shape"):
        H.mx_to_images(np.zeros((64, 48, 2)), 8)


def test_tiny_net_shapes():
    p, MX, Y = H.tiny_net(f=8, nf=2, nh=6, n=5, seed=0)
    assert MX.shape == (16, 192, 5) and MX.dtype == np.float64, (MX.shape, MX.dtype)
    assert Y.shape == (10, 5) and np.array_equal(Y.sum(axis=0), np.ones(5)), "Y is not one-hot"
    assert p["Fs"].shape == (8, 8, 3, 2) and p["W1"].shape == (6, 32)
    assert all(np.any(p[k] != 0) for k in ("b0", "b1", "b2")), "biases should be non-zero"


def test_debug_params_and_check_rows_on_torch_debug_file(tmp_path):
    pytest.importorskip("torch")
    path = H.make_debug_file(tmp_path / "dbg.npz", seed=3, f=8, nf=3, nh=7, n=4)
    d, _ = H.load_debug_file(path)
    p = H.debug_params(d)
    assert np.array_equal(p["b0"], np.zeros((3, 1))), "debug network has no conv bias"
    rows = H.debug_check_rows(d)
    names = {(r["array"], r["source"]) for r in rows}
    for k in ("conv_flat", "X1", "P"):
        assert (k, "forward") in names, f"{k} not compared"
    for k in ("grad_Fs_flat", "grad_W1", "grad_b1", "grad_W2", "grad_b2"):
        assert (k, "compute_grads") in names and (k, "spec einsum") in names, f"{k} not compared"
    for r in rows:
        assert r["max_rel"] < 1e-8, f"{r['array']} ({r['source']}): rel error {r['max_rel']:.3g}"
    # a corrupted file must be caught
    d2 = dict(d)
    d2["grad_W2"] = d["grad_W2"] * 1.01
    bad = [r for r in H.debug_check_rows(d2) if r["array"] == "grad_W2"]
    assert all(r["max_rel"] > 1e-3 for r in bad), bad


def test_debug_params_rejects_non_debug_dict():
    with pytest.raises(ValueError, match="missing"):
        H.debug_params({"Fs": np.zeros((4, 4, 3, 2))})


@pytest.mark.parametrize("lam, eps", [(0.0, 0.0), (0.01, 0.1)])
def test_torch_grads_agree_with_compute_grads(lam, eps):
    pytest.importorskip("torch")
    p, MX, Y = H.tiny_net(f=4, nf=3, nh=5, n=6, seed=1)
    ref, cost = H.torch_grads(p, MX, Y, lam, eps, return_cost=True)
    assert set(ref) == set(p), f"torch_grads keys {sorted(ref)} != params keys {sorted(p)}"
    g = H.compute_grads(p, MX, Y, lam, eps)
    for k in p:
        assert ref[k].shape == p[k].shape, f"torch grad {k} shape {ref[k].shape}"
        err = np.max(np.abs(g[k] - ref[k])) / max(1e-12, np.max(np.abs(ref[k])))
        assert err < 1e-10, f"{k}: compute_grads vs torch relative error {err:.3g}"
    c = H.compute_loss(p, MX, Y, lam, eps)[1]
    assert abs(c - cost) < 1e-12, f"cost numpy {c} vs torch {cost}"
    rows = H.grad_error_table(p, MX, Y, lam, eps, ref)
    assert [r["param"] for r in rows] == list(p)
    assert all(r["max_rel"] < 1e-9 and r["checked"] == p[r["param"]].size for r in rows), rows


def test_torch_grads_sees_label_smoothing_and_l2():
    pytest.importorskip("torch")
    p, MX, Y = H.tiny_net(f=8, nf=2, nh=4, n=3, seed=2)
    g0 = H.torch_grads(p, MX, Y, 0.0, 0.0)
    g_eps = H.torch_grads(p, MX, Y, 0.0, 0.2)
    g_lam = H.torch_grads(p, MX, Y, 0.1, 0.0)
    # eps changes the targets only: d cost / d b2 = mean (P - Y_smooth), so the change is known
    dY = (H.smooth_targets(Y, 0.2) - Y).mean(axis=1, keepdims=True)
    assert np.allclose(g_eps["b2"] - g0["b2"], -dY, atol=1e-12), "label smoothing not in torch twin"
    assert np.allclose(g_lam["W2"] - g0["W2"], 0.2 * p["W2"], atol=1e-12), "L2 not in torch twin"
    assert np.allclose(g_lam["b1"], g0["b1"], atol=1e-14), "L2 must not touch the biases"


@pytest.mark.parametrize("lam, eps", [(0.0, 0.0), (0.01, 0.1)])
def test_numerical_grads_agree_with_compute_grads(lam, eps):
    p, MX, Y = H.tiny_net(f=8, nf=2, nh=6, n=5, seed=0)
    num = H.numerical_grads(p, MX, Y, lam, eps, h=1e-5, max_entries=8, seed=0)
    assert set(num) == set(p)
    for k in p:
        assert num[k].shape == p[k].shape
        assert np.sum(np.isfinite(num[k])) == min(8, p[k].size), \
            f"{k}: {np.sum(np.isfinite(num[k]))} entries evaluated"
    rows = H.grad_error_table(p, MX, Y, lam, eps, num)
    for r in rows:
        assert r["max_rel"] < 1e-6, f"{r['param']}: finite-difference rel error {r['max_rel']:.3g}"


def test_numerical_grads_catch_a_wrong_gradient():
    p, MX, Y = H.tiny_net(f=16, nf=2, nh=3, n=4, seed=5)
    num = H.numerical_grads(p, MX, Y, 0.0, 0.0, max_entries=None)
    wrong = {k: v.copy() for k, v in num.items()}
    wrong["W1"] = wrong["W1"] * 1.1
    rows = {r["param"]: r for r in H.grad_error_table(p, MX, Y, 0.0, 0.0, wrong)}
    assert rows["W1"]["max_rel"] > 1e-2, f"a 10% error in W1 gives rel {rows['W1']['max_rel']:.3g}"
    assert rows["W2"]["max_rel"] < 1e-6


def test_numerical_grads_does_not_change_params():
    p, MX, Y = H.tiny_net(f=16, nf=1, nh=2, n=2, seed=6)
    before = {k: v.copy() for k, v in p.items()}
    H.numerical_grads(p, MX, Y, max_entries=3)
    for k in p:
        assert np.array_equal(p[k], before[k]), f"numerical_grads changed params[{k!r}]"
    with pytest.raises(ValueError, match="positive"):
        H.numerical_grads(p, MX, Y, h=0.0)


def test_grads_spec_layout_matches_compute_grads():
    p, MX, Y = H.tiny_net(f=4, nf=3, nh=5, n=7, seed=3)
    for lam, eps in [(0.0, 0.0), (0.02, 0.1)]:
        g = H.compute_grads(p, MX, Y, lam, eps)
        gs = H.grads_spec_layout(p, MX, Y, lam, eps)
        assert gs["G_batch"].shape == (64 * 3, 7)
        assert gs["Fs_flat"].shape == (48, 3)
        for k in p:
            err = np.max(np.abs(g[k] - gs[k]))
            assert err < 1e-12, f"{k} (lam={lam}, eps={eps}): spec layout differs by {err:.3g}"


def test_grad_error_table_rejects_bad_reference():
    p, MX, Y = H.tiny_net(f=16, nf=1, nh=2, n=2, seed=7)
    ref = {k: np.zeros_like(v) for k, v in p.items()}
    ref.pop("b2")
    with pytest.raises(ValueError, match="b2"):
        H.grad_error_table(p, MX, Y, 0.0, 0.0, ref)
    ref["b2"] = np.zeros((3, 1))
    with pytest.raises(ValueError, match="shape"):
        H.grad_error_table(p, MX, Y, 0.0, 0.0, ref)


def test_time_grads_dtype_rows():
    rows = H.time_grads_dtype(f=16, nf=2, nh=4, n=5, repeats=1)
    assert [r["dtype"] for r in rows] == ["float64", "float32"], rows
    for r in rows:
        assert r["seconds"] > 0 and r["ms_per_batch"] > 0 and r["speedup_vs_float64"] > 0, r
        assert (r["f"], r["nf"], r["nh"], r["n"]) == (16, 2, 4, 5)


def test_mx_build_times_rows(tmp_path):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((3072, 12)).astype(np.float32)
    rows = H.mx_build_times(X, 8, n_naive=4, cache_dir=tmp_path)
    assert len(rows) == 4, rows
    assert [r["source"] for r in rows] == ["built", "built", "loaded", "extrapolated"], rows
    assert rows[3]["images"] == 4 and all(r["seconds"] > 0 for r in rows), rows
    assert len(list(tmp_path.glob("*.npy"))) == 1, "precompute_mx should have written one file"
