"""Tests for helpers.py section 3 (network), and the engine's compute_grads beside it: every
gradient against the torch twin (workbook.oracle.TorchTwin, weights copied in) and against
centred finite differences (no torch needed), the forward pass's intermediates, label
smoothing, multi-size filters, dtypes, shape checks, and an overfit check.

The twin shares no code with helpers.py: it is torch conv2d with stride f on the NCHW images,
the spec's flatten order, an explicit label-smoothed cross-entropy, L2 on Fs/W1/W2.
"""
import numpy as np
import pytest

import helpers as H
from workbook import data, engine, oracle, synthetic
from _common import rel_err

K = 10
IMPLS = {"helpers.compute_grads": H.compute_grads, "engine.compute_grads": engine.compute_grads}


def twin_or_skip(params):
    if not oracle.torch_available():
        pytest.skip("torch is not installed (the optional oracle): pip install -e .[oracle]; "
                    "the finite-difference tests below check the same gradients without it")
    return oracle.TorchTwin(params)


def assert_grads_close(got, want, tol, what):
    """Every key, shape and relative error; the message names each failing parameter."""
    assert set(got) == set(want), f"{what}: gradient keys {sorted(got)} != {sorted(want)}"
    for k in want:
        assert got[k].shape == want[k].shape, f"{what}: grad {k} shape {got[k].shape} != {want[k].shape}"
    errs = {k: rel_err(got[k], want[k]) for k in want}
    bad = {k: e for k, e in errs.items() if not e < tol}
    assert not bad, f"{what}: relative error above {tol:g} for " + \
        ", ".join(f"{k} ({e:.3g})" for k, e in bad.items()) + f"; all: {errs}"


def make_case(f, nf, nh, n, seed=0, dtype=np.float64):
    """Random params (one or several filter sizes) with non-zero biases, X (3072, n), y, MX
    (spec layout, or {f: MX_f})."""
    rng = np.random.default_rng(seed)
    params = engine.init_params(f, nf, nh, K=K, seed=seed, dtype=dtype)
    for k in params:
        if k.startswith("b"):
            params[k] = (0.1 * rng.standard_normal(params[k].shape)).astype(dtype)
    X = rng.standard_normal((3072, n)).astype(dtype)
    y = rng.integers(0, K, n)
    y[:min(n, K)] = np.arange(min(n, K))   # a few classes present for sure
    ims = H.to_images(X)
    MX = {fi: H.build_mx(ims, fi) for fi in f} if isinstance(f, tuple) else H.build_mx(ims, f)
    return params, X, y, MX


def smooth_explicit(y, eps):
    """The spec's y_smooth: 1-eps on the label, eps/(K-1) elsewhere; (K, n)."""
    Ys = np.full((K, len(y)), eps / (K - 1))
    Ys[y, np.arange(len(y))] = 1.0 - eps
    return Ys


# ------------------------------------------------------------------------ gradients vs torch

CASES = [(4, 2, 8, 5), (2, 3, 6, 4), (8, 5, 10, 12), (16, 4, 7, 3), ((4, 8), (6, 5), 9, 6),
         ((2, 16), (2, 3), 5, 4)]


def impl_cases(cases):
    """(impl, case) pairs: helpers.compute_grads is the lesson's one filter size, the engine
    takes one or several."""
    return [(impl, *c) for impl in IMPLS for c in cases
            if not (isinstance(c[0], tuple) and impl.startswith("helpers"))]


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("lam", [0.0, 0.01])
@pytest.mark.parametrize("impl,f,nf,nh,n", impl_cases(CASES))
def test_every_gradient_matches_the_torch_twin(impl, f, nf, nh, n, lam, eps):
    params, X, y, MX = make_case(f, nf, nh, n, seed=sum(np.atleast_1d(f)) + nh)
    Y = H.one_hot(y, dtype=np.float64)
    ref = twin_or_skip(params).gradients(X, Y, lam, eps)
    g = IMPLS[impl](params, MX, Y, lam=lam, eps=eps)
    assert_grads_close(g, ref["grads"], 1e-9, f"{impl} vs torch twin (f={f}, nf={nf}, nh={nh}, "
                                              f"n={n}, lam={lam}, eps={eps})")
    assert abs(oracle.cost_of(params, MX, Y, lam, eps) - ref["cost"]) < 1e-10 * max(1, abs(ref["cost"]))


@pytest.mark.parametrize("lam,eps", [(0.0, 0.0), (0.01, 0.1)])
@pytest.mark.parametrize("f,nf,nh,n", CASES[:4])
def test_forward_and_loss_match_the_torch_twin(f, nf, nh, n, lam, eps):
    params, X, y, MX = make_case(f, nf, nh, n, seed=f + nf)
    Y = H.one_hot(y, dtype=np.float64)
    ref = twin_or_skip(params).gradients(X, Y, lam, eps)
    loss, cost = H.compute_loss(params, MX, Y, lam=lam, eps=eps)
    assert abs(loss - ref["loss"]) < 1e-10 * max(1, abs(ref["loss"])), f"loss {loss} vs torch {ref['loss']}"
    assert abs(cost - ref["cost"]) < 1e-10 * max(1, abs(ref["cost"])), f"cost {cost} vs torch {ref['cost']}"
    fw = H.forward(params, MX)
    for k in ("conv_outputs_mat", "conv_flat", "X1", "S", "P"):
        assert fw[k].shape == ref[k].shape, f"forward {k} shape {fw[k].shape} vs torch {ref[k].shape}"
        e = rel_err(fw[k], ref[k])
        assert e < 1e-10, f"forward {k} vs torch: relative error {e:.3g}"


def test_multi_size_stacking_order_matches_the_twin():
    params, X, y, MX = make_case((4, 8), (6, 5), 9, 6, seed=11)
    assert set(params) == {"Fs_f4", "b0_f4", "Fs_f8", "b0_f8", "W1", "b1", "W2", "b2"}
    assert params["W1"].shape == (9, 64 * 6 + 16 * 5) and engine.filter_sizes(params) == (4, 8)
    p2 = engine.init_params((8, 4), (5, 6), 9, seed=11, dtype=np.float64)
    assert {k: v.shape for k, v in p2.items()} == {k: v.shape for k, v in params.items()}, \
        "the order the sizes are given in must not matter"
    ref = twin_or_skip(params).gradients(X, H.one_hot(y, dtype=np.float64))
    Hc = engine.forward_batch(params, engine.spec_mx_list(params, MX))["H"]
    e = rel_err(Hc.T, ref["conv_flat"])
    assert e < 1e-10, f"the engine stacks the branches' conv_flat differently from the twin: {e:.3g}"


def test_the_conv_gradient_is_the_spec_sum_over_images():
    """grad Fs_flat = 1/n sum_i MX[:, :, i]^T GG[:, :, i], GG the gradient at the conv layer's
    pre-ReLU output (from torch autograd), reshaped (n_p, nf, n) in order='C'."""
    f, nf, nh, n = 4, 3, 8, 5
    params, X, y, MX = make_case(f, nf, nh, n, seed=9)
    Y = H.one_hot(y, dtype=np.float64)
    ref = twin_or_skip(params).gradients(X, Y)
    GG = ref["G_pre"][0].reshape(((32 // f) ** 2, nf, n), order="C")
    loop = sum(MX[:, :, i].T @ GG[:, :, i] for i in range(n))      # the cost is a mean: no 1/n
    got = H.flatten_filters(H.compute_grads(params, MX, Y)["Fs"])
    e = rel_err(got, loop)
    assert e < 1e-10, f"flatten_filters(compute_grads['Fs']) vs the per-image sum: {e:.3g}"


# ------------------------------------------------------------------------ label smoothing

def test_smooth_targets_is_the_spec_form():
    y = np.array([0, 3, 9, 3, 5])
    Y = H.one_hot(y, dtype=np.float64)
    for eps in (0.05, 0.1, 0.5):
        Ys = H.smooth_targets(Y, eps)
        assert np.allclose(Ys, smooth_explicit(y, eps), rtol=0, atol=1e-15), f"eps={eps}"
        assert np.allclose(Ys.sum(axis=0), 1.0, atol=1e-14)
    assert np.array_equal(H.smooth_targets(Y, 0.0), Y), "eps=0 must leave Y unchanged"
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="eps"):
            H.smooth_targets(Y, bad)


def test_torch_label_smoothing_is_ours_with_eps_mapped():
    """torch's label_smoothing=e puts e/K on every class (1-e+e/K on the label); the spec puts
    eps/(K-1) on the other classes, so they agree when eps = e*(K-1)/K."""
    params, X, y, MX = make_case(4, 3, 8, 7, seed=4)
    twin = twin_or_skip(params)
    import torch
    Y, yt = H.one_hot(y, dtype=np.float64), torch.tensor(y)
    for e in (0.1, 0.3):
        fn = lambda S, e=e: torch.nn.functional.cross_entropy(S.T, yt, label_smoothing=e)  # noqa: E731
        ref = twin.gradients(X, Y, loss_fn=fn)
        eps = e * (K - 1) / K
        loss, _ = H.compute_loss(params, MX, Y, eps=eps)
        assert abs(loss - ref["loss"]) < 1e-12, \
            f"torch label_smoothing={e} loss {ref['loss']} != ours with eps={eps}: {loss}"
        for impl, fn_g in IMPLS.items():
            assert_grads_close(fn_g(params, MX, Y, eps=eps), ref["grads"], 1e-9,
                               f"{impl}, torch label_smoothing={e} vs ours eps={eps}")
        assert abs(H.compute_loss(params, MX, Y, eps=e)[0] - ref["loss"]) > 1e-6, \
            "the unmapped eps must give a different loss"


def test_eps_zero_is_the_plain_cross_entropy():
    params, X, y, MX = make_case(8, 4, 6, 9, seed=5)
    twin = twin_or_skip(params)
    import torch
    Y = H.one_hot(y, dtype=np.float64)
    ref = twin.gradients(X, Y, loss_fn=lambda S: torch.nn.functional.cross_entropy(S.T, torch.tensor(y)))
    loss, cost = H.compute_loss(params, MX, Y, eps=0.0)
    assert loss == cost
    assert abs(loss - ref["loss"]) < 1e-12, f"eps=0 loss {loss} vs torch cross_entropy {ref['loss']}"
    P = H.forward(params, MX)["P"]
    plain = -np.mean(np.log(P[y, np.arange(len(y))]))
    assert abs(loss - plain) < 1e-12, f"eps=0 loss {loss} vs -mean log p_y {plain}"
    assert_grads_close(H.compute_grads(params, MX, Y, eps=0.0), ref["grads"], 1e-9,
                       "eps=0 grads vs torch cross_entropy")


# ------------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("impl,f,nf,nh,n", impl_cases([(8, 2, 4, 3), ((8, 16), (2, 1), 3, 3)]))
def test_centred_finite_differences_agree(impl, f, nf, nh, n):
    """Without torch: centred differences of the cost on every entry, float64."""
    params, X, y, MX = make_case(f, nf, nh, n, seed=7)
    Y = H.one_hot(y, dtype=np.float64)
    lam, eps = 0.01, 0.1
    num = oracle.numerical_grads(params, MX, Y, lam, eps, h=1e-6, max_entries=None)
    assert all(np.isfinite(v).all() for v in num.values()), "every entry must be evaluated"
    assert_grads_close(IMPLS[impl](params, MX, Y, lam=lam, eps=eps), num, 1e-6,
                       f"{impl} vs centred finite differences")


def test_finite_differences_see_a_wrong_bias_gradient():
    """The check can fail: a gradient missing the 1/n of b1 is caught and named."""
    params, X, y, MX = make_case(16, 2, 3, 4, seed=8)
    Y = H.one_hot(y, dtype=np.float64)
    g = H.compute_grads(params, MX, Y)
    g["b1"] = g["b1"] * 4
    num = oracle.numerical_grads(params, MX, Y, max_entries=None)
    with pytest.raises(AssertionError, match=r"b1 \("):
        assert_grads_close(g, num, 1e-6, "a wrong b1")


# ------------------------------------------------------------------------ float32

def test_float32_stays_float32_and_is_the_float64_result():
    p32, X, y, MX32 = make_case(4, 3, 8, 6, seed=8, dtype=np.float32)
    Y32 = H.one_hot(y, dtype=np.float32)
    for k, v in H.forward(p32, MX32).items():
        assert v.dtype == np.float32, f"forward {k} is {v.dtype} for float32 params and MX"
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    g64 = H.compute_grads(p64, MX32.astype(np.float64), Y32.astype(np.float64), lam=0.01, eps=0.1)
    for impl, fn in IMPLS.items():
        g32 = fn(p32, MX32, Y32, lam=0.01, eps=0.1)
        for k, v in g32.items():
            assert v.dtype == np.float32, f"{impl} {k} is {v.dtype} for float32 params and MX"
        assert_grads_close(g32, g64, 1e-4, f"{impl} float32 vs float64")
    with pytest.raises(ValueError, match="float64 but the parameters are float32"):
        engine.compute_grads(p32, MX32.astype(np.float64), Y32)


# ------------------------------------------------------------------------ shapes and bad input

def test_shape_checks_name_the_array():
    good = H.init_params(4, 3, 8)
    MX = H.build_mx(np.zeros((32, 32, 3, 2), np.float32), 4)
    with pytest.raises(ValueError, match=r"MX must have shape \(n, 48, n\)"):
        H.forward(good, H.build_mx(np.zeros((32, 32, 3, 2), np.float32), 8))
    with pytest.raises(ValueError, match=r"Y must have shape \(10, 2\)"):
        H.compute_grads(good, MX, np.zeros((10, 3), np.float32))
    with pytest.raises(ValueError, match=r"MX for f=4 must have shape"):
        engine.compute_grads(good, H.build_mx(np.zeros((32, 32, 3, 2), np.float32), 8),
                             np.zeros((10, 2), np.float32))


def test_engine_check_params_refuses_wrong_shapes():
    good = H.init_params(4, 3, 8)
    assert engine.check_params(good) is good
    cases = [("W1", np.zeros((8, 64 * 3 + 1), np.float32), "W1"),
             ("b1", np.zeros((7, 1), np.float32), "b1"),
             ("W2", np.zeros((10, 9), np.float32), "W2"),
             ("b0", np.zeros((4, 1), np.float32), "b0"),
             ("Fs", np.zeros((4, 4, 2, 3), np.float32), "Fs"),
             ("Fs", np.zeros((3, 3, 3, 3), np.float32), "divides 32")]
    for key, val, msg in cases:
        with pytest.raises(ValueError, match=msg):
            engine.check_params(dict(good, **{key: val}))
    for key in ("W1", "b2"):
        with pytest.raises(ValueError, match=f"missing '{key}'"):
            engine.check_params({k: v for k, v in good.items() if k != key})
    with pytest.raises(ValueError, match="no filters"):
        engine.check_params({k: v for k, v in good.items() if k not in ("Fs", "b0")})
    multi = engine.init_params((4, 8), 2, 5)
    MX4 = H.build_mx(np.zeros((32, 32, 3, 2), np.float32), 4)
    with pytest.raises(ValueError, match="dict"):
        engine.compute_grads(multi, MX4, np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="one MX per filter size"):
        engine.compute_grads(multi, {4: MX4}, np.zeros((10, 2), np.float32))


@pytest.mark.parametrize("nf,nh,what", [(0, 10, "nf"), (4, 0, "nh"), ((2, 0), 10, "nf")])
def test_init_params_zero_sizes_are_a_clear_error(nf, nh, what):
    f = (4, 8) if isinstance(nf, tuple) else 4
    with pytest.raises(ValueError, match=f"{what} must be a positive integer"):
        engine.init_params(f, nf, nh)


def test_init_params_is_he():
    p = H.init_params(4, 40, 300, seed=0, dtype=np.float64)
    for k, fan_in in (("Fs", 48), ("W1", 64 * 40), ("W2", 300)):
        std = p[k].std()
        assert abs(std / np.sqrt(2 / fan_in) - 1) < 0.1, f"{k}: std {std:.4g}, He wants {np.sqrt(2 / fan_in):.4g}"
    assert all(not p[k].any() for k in ("b0", "b1", "b2")), "biases start at zero"


# ------------------------------------------------------------------------ sanity: overfit

def test_plain_train_overfits_100_synthetic_images():
    X, y = synthetic.make_synthetic(100, seed=3)
    Xn = data.normalise(X)[0]
    params = H.init_params(4, 10, 50, seed=0)
    cfg = H.TrainConfig(n_cycles=2, step=100, eta_min=1e-5, eta_max=0.1, batch_size=20, lam=0.0,
                        eval_every=10 ** 6, eval_train_n=100)
    _, hist = H.train(params, Xn, y, cfg)
    assert hist.updates_done == 400 and hist.status == "complete"
    assert hist.train_acc[0] < 0.5, f"untrained accuracy {hist.train_acc[0]} is suspiciously high"
    assert hist.train_acc[-1] >= 0.99, f"could not overfit 100 images: final train accuracy {hist.train_acc[-1]}"
    assert hist.train_loss[-1] < 0.1, f"final train loss {hist.train_loss[-1]} after overfitting"
