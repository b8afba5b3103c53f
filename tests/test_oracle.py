"""Tests for workbook.oracle: torch conv2d and autograd agree with the numpy code, finite differences, the debug file."""
import numpy as np
import pytest
import helpers as H
from workbook import oracle





def test_conv_agreement_small_diffs_and_detects_wrong_reference():
    rng = np.random.default_rng(1)
    X_ims = rng.standard_normal((32, 32, 3, 3))
    Fs = rng.standard_normal((4, 4, 3, 2))
    # reference from the definition, written out independently: a 6-d einsum on the image
    ref = np.einsum("racbhi,abhk->rcki", X_ims.reshape(8, 4, 8, 4, 3, 3), Fs)
    d = oracle.conv_agreement(X_ims, Fs, reference=ref)
    for k, v in d.items():
        assert v < 1e-10, f"{k}: max abs diff {v:.3g} (expected < 1e-10)"
    bad = ref.copy()
    bad[1, 2, 0, 1] += 0.5
    d_bad = oracle.conv_agreement(X_ims, Fs, reference=bad)
    assert abs(d_bad["loops vs reference"] - 0.5) < 1e-10, \
        f"a 0.5 error in the reference shows as {d_bad['loops vs reference']:.3g}"
    with pytest.raises(ValueError, match="reference"):
        oracle.conv_agreement(X_ims, Fs, reference=ref[..., :2])


def test_torch_conv2d_matches_definition():
    pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    X_ims = rng.standard_normal((32, 32, 3, 2))
    Fs = rng.standard_normal((8, 8, 3, 3))
    ref = np.einsum("racbhi,abhk->rcki", X_ims.reshape(4, 8, 4, 8, 3, 2), Fs)
    out = oracle.torch_conv2d(X_ims, Fs)
    assert out.shape == (4, 4, 3, 2), f"torch_conv2d shape {out.shape}"
    err = np.max(np.abs(out - ref))
    assert err < 1e-10, f"torch_conv2d differs from the definition by {err:.3g}"


def test_mx_to_images_inverts_spec_construction():
    rng = np.random.default_rng(4)
    X_ims = rng.standard_normal((32, 32, 3, 2))
    for f in (2, 4, 8, 16):
        back = oracle.mx_to_images(H.build_mx_naive(X_ims, f), f)
        assert np.array_equal(back, X_ims), f"mx_to_images(build_mx_naive(., {f})) != X_ims"
    with pytest.raises(ValueError, match="MX must have shape"):
        oracle.mx_to_images(np.zeros((64, 48, 2)), 8)


def test_tiny_net_shapes():
    p, MX, Y = oracle.tiny_net(f=8, nf=2, nh=6, n=5, seed=0)
    assert MX.shape == (16, 192, 5) and MX.dtype == np.float64, (MX.shape, MX.dtype)
    assert Y.shape == (10, 5) and np.array_equal(Y.sum(axis=0), np.ones(5)), "Y is not one-hot"
    assert p["Fs"].shape == (8, 8, 3, 2) and p["W1"].shape == (6, 32)
    assert all(np.any(p[k] != 0) for k in ("b0", "b1", "b2")), "biases should be non-zero"


def test_debug_params_and_check_rows_on_torch_debug_file(tmp_path):
    pytest.importorskip("torch")
    path = oracle.make_debug_file(tmp_path / "dbg.npz", seed=3, f=8, nf=3, nh=7, n=4)
    d, _ = oracle.load_debug_file(path)
    p = oracle.debug_params(d)
    assert np.array_equal(p["b0"], np.zeros((3, 1))), "debug network has no conv bias"
    rows = oracle.debug_check_rows(d)
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
    bad = [r for r in oracle.debug_check_rows(d2) if r["array"] == "grad_W2"]
    assert all(r["max_rel"] > 1e-3 for r in bad), bad


def test_debug_params_rejects_non_debug_dict():
    with pytest.raises(ValueError, match="missing"):
        oracle.debug_params({"Fs": np.zeros((4, 4, 3, 2))})


@pytest.mark.parametrize("lam, eps", [(0.0, 0.0), (0.01, 0.1)])
def test_torch_grads_agree_with_compute_grads(lam, eps):
    pytest.importorskip("torch")
    p, MX, Y = oracle.tiny_net(f=4, nf=3, nh=5, n=6, seed=1)
    ref, cost = oracle.torch_grads(p, MX, Y, lam, eps, return_cost=True)
    assert set(ref) == set(p), f"torch_grads keys {sorted(ref)} != params keys {sorted(p)}"
    g = H.compute_grads(p, MX, Y, lam, eps)
    for k in p:
        assert ref[k].shape == p[k].shape, f"torch grad {k} shape {ref[k].shape}"
        err = np.max(np.abs(g[k] - ref[k])) / max(1e-12, np.max(np.abs(ref[k])))
        assert err < 1e-10, f"{k}: compute_grads vs torch relative error {err:.3g}"
    c = H.compute_loss(p, MX, Y, lam, eps)[1]
    assert abs(c - cost) < 1e-12, f"cost numpy {c} vs torch {cost}"
    rows = oracle.grad_error_table(p, MX, Y, lam, eps, ref)
    assert [r["param"] for r in rows] == list(p)
    assert all(r["max_rel"] < 1e-9 and r["checked"] == p[r["param"]].size for r in rows), rows


def test_torch_grads_sees_label_smoothing_and_l2():
    pytest.importorskip("torch")
    p, MX, Y = oracle.tiny_net(f=8, nf=2, nh=4, n=3, seed=2)
    g0 = oracle.torch_grads(p, MX, Y, 0.0, 0.0)
    g_eps = oracle.torch_grads(p, MX, Y, 0.0, 0.2)
    g_lam = oracle.torch_grads(p, MX, Y, 0.1, 0.0)
    # eps changes the targets only: d cost / d b2 = mean (P - Y_smooth), so the change is known
    dY = (H.smooth_targets(Y, 0.2) - Y).mean(axis=1, keepdims=True)
    assert np.allclose(g_eps["b2"] - g0["b2"], -dY, atol=1e-12), "label smoothing not in torch twin"
    assert np.allclose(g_lam["W2"] - g0["W2"], 0.2 * p["W2"], atol=1e-12), "L2 not in torch twin"
    assert np.allclose(g_lam["b1"], g0["b1"], atol=1e-14), "L2 must not touch the biases"


@pytest.mark.parametrize("lam, eps", [(0.0, 0.0), (0.01, 0.1)])
def test_numerical_grads_agree_with_compute_grads(lam, eps):
    p, MX, Y = oracle.tiny_net(f=8, nf=2, nh=6, n=5, seed=0)
    num = oracle.numerical_grads(p, MX, Y, lam, eps, h=1e-5, max_entries=8, seed=0)
    assert set(num) == set(p)
    for k in p:
        assert num[k].shape == p[k].shape
        assert np.sum(np.isfinite(num[k])) == min(8, p[k].size), \
            f"{k}: {np.sum(np.isfinite(num[k]))} entries evaluated"
    rows = oracle.grad_error_table(p, MX, Y, lam, eps, num)
    for r in rows:
        assert r["max_rel"] < 1e-6, f"{r['param']}: finite-difference rel error {r['max_rel']:.3g}"


def test_numerical_grads_catch_a_wrong_gradient():
    p, MX, Y = oracle.tiny_net(f=16, nf=2, nh=3, n=4, seed=5)
    num = oracle.numerical_grads(p, MX, Y, 0.0, 0.0, max_entries=None)
    wrong = {k: v.copy() for k, v in num.items()}
    wrong["W1"] = wrong["W1"] * 1.1
    rows = {r["param"]: r for r in oracle.grad_error_table(p, MX, Y, 0.0, 0.0, wrong)}
    assert rows["W1"]["max_rel"] > 1e-2, f"a 10% error in W1 gives rel {rows['W1']['max_rel']:.3g}"
    assert rows["W2"]["max_rel"] < 1e-6


def test_numerical_grads_does_not_change_params():
    p, MX, Y = oracle.tiny_net(f=16, nf=1, nh=2, n=2, seed=6)
    before = {k: v.copy() for k, v in p.items()}
    oracle.numerical_grads(p, MX, Y, max_entries=3)
    for k in p:
        assert np.array_equal(p[k], before[k]), f"numerical_grads changed params[{k!r}]"
    with pytest.raises(ValueError, match="positive"):
        oracle.numerical_grads(p, MX, Y, h=0.0)


def test_grads_spec_layout_matches_compute_grads():
    p, MX, Y = oracle.tiny_net(f=4, nf=3, nh=5, n=7, seed=3)
    for lam, eps in [(0.0, 0.0), (0.02, 0.1)]:
        g = H.compute_grads(p, MX, Y, lam, eps)
        gs = H.grads_spec_layout(p, MX, Y, lam, eps)
        assert gs["G_batch"].shape == (64 * 3, 7)
        assert gs["Fs_flat"].shape == (48, 3)
        for k in p:
            err = np.max(np.abs(g[k] - gs[k]))
            assert err < 1e-12, f"{k} (lam={lam}, eps={eps}): spec layout differs by {err:.3g}"


def test_grad_error_table_rejects_bad_reference():
    p, MX, Y = oracle.tiny_net(f=16, nf=1, nh=2, n=2, seed=7)
    ref = {k: np.zeros_like(v) for k, v in p.items()}
    ref.pop("b2")
    with pytest.raises(ValueError, match="b2"):
        oracle.grad_error_table(p, MX, Y, 0.0, 0.0, ref)
    ref["b2"] = np.zeros((3, 1))
    with pytest.raises(ValueError, match="shape"):
        oracle.grad_error_table(p, MX, Y, 0.0, 0.0, ref)


def test_aug_transforms_order_matches_tables(tiny_data):
    X = tiny_data["X_train"][:, :3]
    for f, s in ((4, 1), (8, 1)):
        tables = H.aug_tables(f, flip=True, max_shift=s)
        tr = H.aug_transforms(flip=True, max_shift=s)
        assert len(tr) == len(tables) == 2 * (2 * s + 1) ** 2
        mxb = H.mx_batch_first(X, f)
        for k, (fl, dy, dx) in enumerate(tr):
            want = H.mx_batch_first(oracle.shift_images(X, dy, dx, fl), f)
            got = H.augment_mx(mxb, tables, np.full(3, k))
            assert np.array_equal(got, want), f"f={f}: table {k} is not flip={fl}, shift ({dy}, {dx})"
