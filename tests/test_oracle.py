"""Tests for workbook.oracle: the torch twin itself (its layouts, its SGD, its label smoothing and
L2), the gradient tables, finite differences, the debug file, the reference transforms, and
the module without torch. (Gradients of helpers / the engine against the twin: test_network.py.)"""
import sys

import numpy as np
import pytest

import helpers as H
from workbook import engine, oracle
from _common import rel_err


def needs_torch():
    """torch, or a skip that says why (torch is only the optional oracle)."""
    if not oracle.torch_available():
        pytest.skip("torch is not installed (optional oracle): pip install -e .[oracle]")
    import torch
    return torch


# ------------------------------------------------------------------------ without torch

def test_module_works_without_torch_and_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)      # `import torch` now raises ImportError
    assert oracle.torch_available() is False
    p, MX, Y = oracle.tiny_net(f=16, nf=1, nh=2, n=2, seed=0)
    for call in (lambda: oracle.TorchTwin(p), lambda: oracle.torch_grads(p, MX, Y),
                 lambda: oracle.torch_conv2d(np.zeros((32, 32, 3, 1)), np.zeros((4, 4, 3, 1)))):
        with pytest.raises(ImportError, match="pip install"):
            call()
    # the numpy-only checks still work
    num = oracle.numerical_grads(p, MX, Y, max_entries=2)
    assert all(np.isfinite(v).sum() == min(2, v.size) for v in num.values())


# ------------------------------------------------------------------------ the twin

@pytest.mark.parametrize("f,nf", [(4, 3), ((4, 8), (3, 2))])
def test_twin_copies_weights_and_matches_torch_nn_module(f, nf):
    """The twin (spec flatten order) and an idiomatic nn.Sequential loaded with torch_layout
    (Flatten's order) compute the same probabilities: the W1 column reorder is right."""
    torch = needs_torch()
    p, MX, Y = oracle.tiny_net(f=f, nf=nf, nh=5, n=4, seed=2)
    X = np.random.default_rng(0).standard_normal((3072, 4))
    twin = oracle.TorchTwin(p)
    got = twin.params_numpy()
    for k in p:
        assert np.array_equal(got[k], p[k]), f"the twin does not start from params[{k!r}]"
    got["W1"][0, 0] += 1.0
    assert twin.params_numpy()["W1"][0, 0] == p["W1"][0, 0], "params_numpy must return copies"
    lay = oracle.torch_layout(p)
    nn = torch.nn
    convs = nn.ModuleList(nn.Conv2d(3, w.shape[0], w.shape[2], stride=w.shape[2]).double()
                          for w, _ in lay["convs"])
    head = nn.Sequential(nn.Linear(*lay["W1"].shape[::-1]), nn.ReLU(), nn.Linear(*lay["W2"].shape[::-1])).double()
    with torch.no_grad():
        for c, (w, b) in zip(convs, lay["convs"]):
            c.weight.copy_(torch.from_numpy(w))
            c.bias.copy_(torch.from_numpy(b))
        for i, (W, b) in ((0, ("W1", "b1")), (2, ("W2", "b2"))):
            head[i].weight.copy_(torch.from_numpy(lay[W]))
            head[i].bias.copy_(torch.from_numpy(lay[b]))
        x = torch.from_numpy(np.ascontiguousarray(X.T)).view(4, 3, 32, 32)
        h = torch.cat([torch.relu(c(x)).flatten(1) for c in convs], dim=1)
        P_nn = torch.softmax(head(h), dim=1).numpy().T
    P_twin = twin.forward(X)["P"].detach().numpy()
    assert rel_err(P_nn, P_twin) < 1e-12, f"nn.Sequential with torch_layout vs twin: {rel_err(P_nn, P_twin):.3g}"


def test_twin_sees_label_smoothing_and_l2_on_weights_only():
    needs_torch()
    p, MX, Y = oracle.tiny_net(f=8, nf=2, nh=4, n=3, seed=2)
    g0 = oracle.torch_grads(p, MX, Y, 0.0, 0.0)
    g_eps = oracle.torch_grads(p, MX, Y, 0.0, 0.2)
    g_lam = oracle.torch_grads(p, MX, Y, 0.1, 0.0)
    # eps changes the targets only: d cost / d b2 = mean (P - Y_smooth), so the change is known
    dY = (H.smooth_targets(Y, 0.2) - Y).mean(axis=1, keepdims=True)
    assert np.allclose(g_eps["b2"] - g0["b2"], -dY, atol=1e-12), "label smoothing not in the twin"
    for k in ("Fs", "W1", "W2"):
        assert np.allclose(g_lam[k] - g0[k], 0.2 * p[k], atol=1e-12), f"L2 (2 lam {k}) not in the twin"
    for k in ("b0", "b1", "b2"):
        assert np.allclose(g_lam[k], g0[k], atol=1e-14), f"L2 must not touch the bias {k}"


@pytest.mark.parametrize("f,nf,dropout", [(4, 3, False), (4, 3, True), ((4, 8), (3, 2), False)])
def test_twin_sgd_step_is_torch_sgd_with_weight_decay(f, nf, dropout):
    """twin.sgd_step (torch.optim.SGD, weight_decay 2 lam on Fs and W) equals helpers.sgd_step
    applied to the twin's own loss gradients, and engine.train_step from the same weights."""
    needs_torch()
    eta, lam, eps = 0.05, 0.01, 0.1
    p, MX, Y = oracle.tiny_net(f=f, nf=nf, nh=6, n=8, seed=3)
    X = np.random.default_rng(1).standard_normal((3072, 8))
    y = Y.argmax(axis=0)
    mask = (np.random.default_rng(2).random((8, 6)) < 0.5) * 2.0 if dropout else None
    twin = oracle.TorchTwin(p)
    g = twin.gradients(X, Y, 0.0, eps, drop_mask=mask)["grads"]
    want = H.sgd_step(p, g, eta, lam)
    loss_t = twin.sgd_step(X, y, eta, lam, eps, drop_mask=mask)
    got = twin.params_numpy()
    p_eng = {k: v.copy() for k, v in p.items()}
    loss_e = engine.train_step(p_eng, engine.mx_for(p_eng, X), y, eta, lam, eps, mask)
    assert abs(loss_t - loss_e) < 1e-12, f"batch loss: twin {loss_t}, engine.train_step {loss_e}"
    for k in p:
        moved = np.max(np.abs(want[k] - p[k]))
        assert moved > 0, f"{k} did not move"
        for name, other in (("helpers.sgd_step", want[k]), ("engine.train_step", p_eng[k])):
            err = np.max(np.abs(got[k] - other))
            assert err <= 1e-10 * moved, f"{k} after one update: twin vs {name} differs by {err:.3g} (moved {moved:.3g})"


def test_torch_conv2d_matches_definition():
    needs_torch()
    rng = np.random.default_rng(2)
    X_ims = rng.standard_normal((32, 32, 3, 2))
    Fs = rng.standard_normal((8, 8, 3, 3))
    ref = np.einsum("racbhi,abhk->rcki", X_ims.reshape(4, 8, 4, 8, 3, 2), Fs)
    out = oracle.torch_conv2d(X_ims, Fs)
    assert out.shape == (4, 4, 3, 2), f"torch_conv2d shape {out.shape}"
    err = np.max(np.abs(out - ref))
    assert err < 1e-10, f"torch_conv2d differs from the definition by {err:.3g}"


# ------------------------------------------------------------------------ tables

def test_conv_agreement_small_diffs_and_detects_wrong_reference():
    rng = np.random.default_rng(1)
    X_ims = rng.standard_normal((32, 32, 3, 3))
    Fs = rng.standard_normal((4, 4, 3, 2))
    # reference from the definition, written out independently: a 6-d einsum on the image
    ref = np.einsum("racbhi,abhk->rcki", X_ims.reshape(8, 4, 8, 4, 3, 3), Fs)
    d = oracle.conv_agreement(X_ims, Fs, reference=ref)
    assert len(d) == 6 and "engine GEMM (batch-first) vs loops" in d, sorted(d)
    for k, v in d.items():
        assert v < 1e-10, f"{k}: max abs diff {v:.3g} (expected < 1e-10)"
    bad = ref.copy()
    bad[1, 2, 0, 1] += 0.5
    d_bad = oracle.conv_agreement(X_ims, Fs, reference=bad)
    assert abs(d_bad["loops vs reference"] - 0.5) < 1e-10, \
        f"a 0.5 error in the reference shows as {d_bad['loops vs reference']:.3g}"
    with pytest.raises(ValueError, match="reference"):
        oracle.conv_agreement(X_ims, Fs, reference=ref[..., :2])


def test_tiny_net_shapes_single_and_multi():
    p, MX, Y = oracle.tiny_net(f=8, nf=2, nh=6, n=5, seed=0)
    assert MX.shape == (16, 192, 5) and MX.dtype == np.float64, (MX.shape, MX.dtype)
    assert Y.shape == (10, 5) and np.array_equal(Y.sum(axis=0), np.ones(5)), "Y is not one-hot"
    assert p["Fs"].shape == (8, 8, 3, 2) and p["W1"].shape == (6, 32)
    assert all(np.any(p[k] != 0) for k in ("b0", "b1", "b2")), "biases should be non-zero"
    p, MX, Y = oracle.tiny_net(f=(4, 8), nf=(2, 3), nh=6, n=5, seed=0)
    assert sorted(MX) == [4, 8] and MX[8].shape == (16, 192, 5)
    assert p["W1"].shape == (6, 64 * 2 + 16 * 3) and np.any(p["b0_f8"] != 0)
    with pytest.raises(ValueError, match="need n=5"):
        oracle.tiny_net(n=5, X=np.zeros((3072, 3)))


@pytest.mark.parametrize("f,nf", [(8, 2), ((8, 16), (2, 1))])
@pytest.mark.parametrize("lam, eps", [(0.0, 0.0), (0.01, 0.1)])
def test_numerical_grads_agree_with_compute_grads(f, nf, lam, eps):
    p, MX, Y = oracle.tiny_net(f=f, nf=nf, nh=6, n=5, seed=0)
    num = oracle.numerical_grads(p, MX, Y, lam, eps, h=1e-5, max_entries=8, seed=0)
    assert set(num) == set(p)
    for k in p:
        assert num[k].shape == p[k].shape
        assert np.sum(np.isfinite(num[k])) == min(8, p[k].size), \
            f"{k}: {np.sum(np.isfinite(num[k]))} entries evaluated"
    for impl in (("engine",) if isinstance(MX, dict) else ("plain", "engine")):
        rows = oracle.grad_error_table(p, MX, Y, lam, eps, num, impl=impl)
        assert [r["param"] for r in rows] == list(p) and {r["impl"] for r in rows} == {impl}
        for r in rows:
            assert r["max_rel"] < 1e-6, f"{impl} {r['param']}: finite-difference rel error {r['max_rel']:.3g}"


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


def test_grad_error_table_rejects_bad_reference_and_impl():
    p, MX, Y = oracle.tiny_net(f=16, nf=1, nh=2, n=2, seed=7)
    ref = {k: np.zeros_like(v) for k, v in p.items()}
    ref.pop("b2")
    with pytest.raises(ValueError, match="b2"):
        oracle.grad_error_table(p, MX, Y, 0.0, 0.0, ref)
    ref["b2"] = np.zeros((3, 1))
    with pytest.raises(ValueError, match="shape"):
        oracle.grad_error_table(p, MX, Y, 0.0, 0.0, ref)
    with pytest.raises(ValueError, match="impl"):
        oracle.grad_error_table(p, MX, Y, 0.0, 0.0, ref, impl="fast")
    pm, MXm, Ym = oracle.tiny_net(f=(8, 16), nf=1, nh=2, n=2)
    with pytest.raises(ValueError, match="one filter size"):
        oracle.grad_error_table(pm, MXm, Ym, 0.0, 0.0, pm, impl="plain")


# ------------------------------------------------------------------------ debug file

def test_debug_file_check_rows_and_a_corrupted_file(tmp_path):
    needs_torch()
    path = oracle.make_debug_file(tmp_path / "dbg.npz", seed=3, f=8, nf=3, nh=7, n=4)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["dbg.npz"], "temporary files left"
    d, what = oracle.load_debug_file(path)
    assert str(path) in what
    p = oracle.debug_params(d)
    assert np.array_equal(p["b0"], np.zeros((3, 1))), "the debug network has no conv bias"
    rows = oracle.debug_check_rows(d)
    names = {(r["array"], r["source"]) for r in rows}
    for k in ("conv_flat", "X1", "P"):
        assert (k, "forward") in names, f"{k} not compared"
    for k in ("grad_Fs_flat", "grad_W1", "grad_b1", "grad_W2", "grad_b2"):
        assert (k, "compute_grads") in names and (k, "engine") in names, f"{k} not compared"
    for r in rows:
        assert r["max_rel"] < 1e-8, f"{r['array']} ({r['source']}): rel error {r['max_rel']:.3g}"
    d2 = dict(d)
    d2["grad_W2"] = d["grad_W2"] * 1.01
    bad = [r for r in oracle.debug_check_rows(d2) if r["array"] == "grad_W2"]
    assert len(bad) == 2 and all(r["max_rel"] > 1e-3 for r in bad), bad


def test_load_debug_file_refuses_a_file_without_the_keys(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, X=np.zeros((3072, 1)))
    with pytest.raises(ValueError, match="not a debug file"):
        oracle.load_debug_file(path)
    with pytest.raises(ValueError, match="missing"):
        oracle.debug_params({"Fs": np.zeros((4, 4, 3, 2))})


# ------------------------------------------------------------------------ image-space references

def test_mx_to_images_inverts_spec_construction():
    rng = np.random.default_rng(4)
    X_ims = rng.standard_normal((32, 32, 3, 2))
    for f in (2, 4, 8, 16):
        back = oracle.mx_to_images(H.build_mx_naive(X_ims, f), f)
        assert np.array_equal(back, X_ims), f"mx_to_images(build_mx_naive(., {f})) != X_ims"
    with pytest.raises(ValueError, match="MX must have shape"):
        oracle.mx_to_images(np.zeros((64, 48, 2)), 8)


def test_shift_images_by_hand():
    X = np.arange(3072, dtype=np.float64)[:, None] + 1.0
    ims = H.to_images(X)
    s = H.to_images(oracle.shift_images(X, 2, -1))
    assert s[2, 0, 1, 0] == ims[0, 1, 1, 0] and np.all(s[:2] == 0) and np.all(s[:, 31] == 0)
    m = H.to_images(oracle.shift_images(X, 0, 0, flip=True))
    assert np.array_equal(m, ims[:, ::-1]), "flip must mirror left-right"


def test_shift_images_is_the_reference_of_the_augmentation_tables(tiny_data):
    from workbook.augment import aug_tables, aug_transforms, augment_mx
    from workbook.layout import mx_batch_first
    X = tiny_data["X_train"][:, :3]
    for f, s in ((4, 1), (8, 1)):
        tables, tr = aug_tables(f, flip=True, max_shift=s), aug_transforms(flip=True, max_shift=s)
        assert len(tr) == len(tables) == 2 * (2 * s + 1) ** 2
        mxb = mx_batch_first(X, f)
        for k, (fl, dy, dx) in enumerate(tr):
            want = mx_batch_first(oracle.shift_images(X, dy, dx, fl), f)
            got = augment_mx(mxb, tables, np.full(3, k))
            assert np.array_equal(got, want), f"f={f}: table {k} is not flip={fl}, shift ({dy}, {dx})"
