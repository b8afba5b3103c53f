"""Tests for helpers.py section 3 (network): gradients against torch autograd and finite
differences, label smoothing, multi-size filters, dtypes, shape checks, and an overfit check.

The torch twin below is built here from the spec (torch conv2d with stride f, the spec's flatten
order, explicit label-smoothed cross-entropy, L2 on Fs/W1/W2); it shares no code with helpers.py
beyond the layout functions to_images/build_mx that test_convolution.py checks.
"""
import numpy as np
import pytest

import helpers as H
from workbook import data, synthetic
from _common import rel_err


K = 10


def assert_grads_close(got, want, tol, what):
    assert set(got) == set(want), f"{what}: gradient keys {sorted(got)} != {sorted(want)}"
    errs = {k: rel_err(got[k], want[k]) for k in want}
    for k in want:
        assert got[k].shape == want[k].shape, f"{what}: grad {k} shape {got[k].shape} != {want[k].shape}"
    bad = {k: e for k, e in errs.items() if not e < tol}
    assert not bad, f"{what}: relative errors above {tol:g}: " + \
        ", ".join(f"{k}={e:.3g}" for k, e in bad.items()) + f" (all: {errs})"


def make_case(f, nf, nh, n, seed=0, dtype=np.float64):
    """Random params with non-zero biases (b0 included), data X (3072, n), labels y, MX."""
    rng = np.random.default_rng(seed)
    params = H.init_params(f, nf, nh, K=K, seed=seed, dtype=dtype)
    for k in params:
        if k.startswith("b"):
            params[k] = (0.1 * rng.standard_normal(params[k].shape)).astype(dtype)
    X = rng.standard_normal((3072, n)).astype(dtype)
    y = rng.integers(0, K, n)
    y[:min(n, K)] = np.arange(min(n, K))   # a few classes present for sure
    if isinstance(f, tuple):
        MX = {fi: H.build_mx(H.to_images(X), fi) for fi in f}
    else:
        MX = H.build_mx(H.to_images(X), f)
    return params, X, y, MX


def smooth_explicit(y, eps):
    """The spec's y_smooth: 1-eps on the label, eps/(K-1) elsewhere; (K, n)."""
    Ys = np.full((K, len(y)), eps / (K - 1))
    Ys[y, np.arange(len(y))] = 1.0 - eps
    return Ys


def torch_twin(params, X, y=None, lam=0.0, eps=0.0, loss_fn=None, keep=None):
    """Loss, cost and autograd gradients of the network in torch, float64.

    params: helpers' dict (single 'Fs'/'b0' or 'Fs_f{f}'/'b0_f{f}' branches). Each branch is
    conv2d(stride f) + bias, laid out as conv_outputs (R, C, nf, n) and flattened in C order to
    (n_p*nf, n); branches are stacked in increasing f before W1.
    loss_fn(S (K, n) tensor) overrides the explicit smoothed cross-entropy.
    Returns (loss, cost, grads dict, extras dict).
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    n = X.shape[1]
    x = torch.tensor(np.ascontiguousarray(H.to_images(X).transpose(3, 2, 0, 1)), dtype=torch.float64)
    fkeys = sorted((v.shape[0], k) for k, v in params.items() if k.startswith("Fs"))
    flats, pre = [], []
    for f, kF in fkeys:
        kb = "b0" + kF[2:]
        Fs = t[kF]
        nf = Fs.shape[3]
        conv = F.conv2d(x, Fs.permute(3, 2, 0, 1), bias=t[kb].reshape(nf), stride=f)  # (n,nf,R,C)
        co = conv.permute(2, 3, 1, 0)                        # (R, C, nf, n)
        g = 32 // f
        z = co.reshape(g * g * nf, n)                        # C order == the spec's flatten
        z.retain_grad()
        pre.append(z)
        flats.append(torch.relu(z))
    Hh = torch.cat(flats, dim=0)
    X1 = torch.relu(t["W1"] @ Hh + t["b1"])
    if keep is not None:
        X1 = X1 * torch.tensor(keep)
    S = t["W2"] @ X1 + t["b2"]
    if loss_fn is None:
        Ys = torch.tensor(smooth_explicit(y, eps))
        loss = -(Ys * torch.log_softmax(S, dim=0)).sum() / n
    else:
        loss = loss_fn(S)
    reg = sum((t[k] ** 2).sum() for k in t if k.startswith(("Fs", "W")))
    cost = loss + lam * reg
    cost.backward()
    grads = {k: v.grad.numpy() for k, v in t.items()}
    extras = {"S": S.detach().numpy(), "P": torch.softmax(S, 0).detach().numpy(),
              "X1": X1.detach().numpy(), "conv_flat": Hh.detach().numpy(),
              "G_pre": [z.grad.numpy() for z in pre]}
    return loss.item(), cost.item(), grads, extras


# ------------------------------------------------------------------------ gradients vs torch

@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("lam", [0.0, 0.01])
@pytest.mark.parametrize("f,nf,nh,n", [(4, 2, 8, 5), (2, 3, 6, 4), (8, 5, 10, 12), (16, 4, 7, 3)])
def test_grads_match_torch_autograd(f, nf, nh, n, lam, eps):
    params, X, y, MX = make_case(f, nf, nh, n, seed=f + nf)
    Y = H.one_hot(y, dtype=np.float64)
    loss_t, cost_t, g_t, ex = torch_twin(params, X, y, lam, eps)
    g = H.compute_grads(params, MX, Y, lam=lam, eps=eps)
    assert_grads_close(g, g_t, 1e-7, f"compute_grads vs torch (f={f}, nf={nf}, nh={nh}, n={n}, "
                                     f"lam={lam}, eps={eps})")
    loss, cost = H.compute_loss(params, MX, Y, lam=lam, eps=eps)
    assert abs(loss - loss_t) < 1e-10 * max(1, abs(loss_t)), f"loss {loss} vs torch {loss_t}"
    assert abs(cost - cost_t) < 1e-10 * max(1, abs(cost_t)), f"cost {cost} vs torch {cost_t}"
    fw = H.forward(params, MX)
    for k in ("S", "P", "X1", "conv_flat"):
        e = rel_err(fw[k], ex[k])
        assert e < 1e-10, f"forward {k} vs torch: relative error {e:.3g}"


def test_multi_size_filters_match_torch_twin():
    f, nf, nh, n = (4, 8), (6, 5), 9, 6
    params, X, y, MX = make_case(f, nf, nh, n, seed=11)
    assert set(params) == {"Fs_f4", "b0_f4", "Fs_f8", "b0_f8", "W1", "b1", "W2", "b2"}
    assert params["Fs_f4"].shape == (4, 4, 3, 6) and params["Fs_f8"].shape == (8, 8, 3, 5)
    assert params["W1"].shape == (nh, 64 * 6 + 16 * 5)
    assert H.filter_sizes(params) == (4, 8)
    # the order the sizes are given in does not matter
    p2 = H.init_params((8, 4), (5, 6), nh, seed=11, dtype=np.float64)
    assert {k: v.shape for k, v in p2.items()} == {k: v.shape for k, v in params.items()}
    Y = H.one_hot(y, dtype=np.float64)
    for lam, eps in ((0.0, 0.0), (0.01, 0.1)):
        loss_t, cost_t, g_t, ex = torch_twin(params, X, y, lam, eps)
        g = H.compute_grads(params, MX, Y, lam=lam, eps=eps)
        assert_grads_close(g, g_t, 1e-7, f"multi-size compute_grads vs torch (lam={lam}, eps={eps})")
        loss, cost = H.compute_loss(params, MX, Y, lam=lam, eps=eps)
        assert abs(cost - cost_t) < 1e-10 * max(1, abs(cost_t)), f"cost {cost} vs torch {cost_t}"
    fw = H.forward(params, MX)
    assert rel_err(fw["conv_flat"], ex["conv_flat"]) < 1e-10, "stacking order of the branches"
    with pytest.raises(ValueError, match="dict"):
        H.forward(params, MX[4])
    with pytest.raises(ValueError, match="one MX per filter size"):
        H.forward(params, {4: MX[4]})


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
    torch = pytest.importorskip("torch")
    params, X, y, MX = make_case(4, 3, 8, 7, seed=4)
    Y = H.one_hot(y, dtype=np.float64)
    yt = torch.tensor(y)
    for e in (0.1, 0.3):
        fn = lambda S, e=e: torch.nn.functional.cross_entropy(S.T, yt, label_smoothing=e)  # noqa: E731
        loss_t, _, g_t, _ = torch_twin(params, X, loss_fn=fn)
        eps = e * (K - 1) / K
        loss, _ = H.compute_loss(params, MX, Y, eps=eps)
        assert abs(loss - loss_t) < 1e-12, \
            f"torch label_smoothing={e} loss {loss_t} != ours with eps={eps}: {loss}"
        assert_grads_close(H.compute_grads(params, MX, Y, eps=eps), g_t, 1e-7,
                           f"grads, torch label_smoothing={e} vs ours eps={eps}")
        # and the unmapped eps is a different loss
        assert abs(H.compute_loss(params, MX, Y, eps=e)[0] - loss_t) > 1e-6


def test_eps_zero_is_the_plain_cross_entropy():
    torch = pytest.importorskip("torch")
    params, X, y, MX = make_case(8, 4, 6, 9, seed=5)
    Y = H.one_hot(y, dtype=np.float64)
    yt = torch.tensor(y)
    loss_t, _, g_t, _ = torch_twin(params, X, loss_fn=lambda S: torch.nn.functional.cross_entropy(S.T, yt))
    loss, cost = H.compute_loss(params, MX, Y, eps=0.0)
    assert loss == cost
    assert abs(loss - loss_t) < 1e-12, f"eps=0 loss {loss} vs torch cross_entropy {loss_t}"
    P = H.forward(params, MX)["P"]
    plain = -np.mean(np.log(P[y, np.arange(len(y))]))
    assert abs(loss - plain) < 1e-12, f"eps=0 loss {loss} vs -mean log p_y {plain}"
    g0 = H.compute_grads(params, MX, Y, eps=0.0)
    assert_grads_close(g0, g_t, 1e-7, "eps=0 grads vs torch cross_entropy")
    # and eps=0 is literally the unsmoothed computation: same bits as passing no eps
    g_default = H.compute_grads(params, MX, Y)
    for k in g0:
        assert np.array_equal(g0[k], g_default[k]), f"eps=0 changed grad {k}"


# ------------------------------------------------------------------------ finite differences

def test_centred_finite_differences_agree():
    """For users without torch: centred differences of compute_loss's cost, float64."""
    params, X, y, MX = make_case(8, 2, 4, 3, seed=7)
    Y = H.one_hot(y, dtype=np.float64)
    lam, eps, h = 0.01, 0.1, 1e-6
    g = H.compute_grads(params, MX, Y, lam=lam, eps=eps)
    num = {}
    for k, v in params.items():
        gk = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            old = v[idx]
            v[idx] = old + h
            cp = H.compute_loss(params, MX, Y, lam, eps)[1]
            v[idx] = old - h
            cm = H.compute_loss(params, MX, Y, lam, eps)[1]
            v[idx] = old
            gk[idx] = (cp - cm) / (2 * h)
        num[k] = gk
    assert_grads_close(g, num, 1e-6, "compute_grads vs centred finite differences")


# ------------------------------------------------------------------------ float32 path

def test_float32_stays_float32_and_dtypes_must_match():
    p32, X, y, MX32 = make_case(4, 3, 8, 6, seed=8, dtype=np.float32)
    assert all(v.dtype == np.float32 for v in p32.values())
    assert MX32.dtype == np.float32
    Y32 = H.one_hot(y, dtype=np.float32)
    fw = H.forward(p32, MX32)
    for k, v in fw.items():
        assert v.dtype == np.float32, f"forward {k} is {v.dtype} for float32 params and MX"
    g32 = H.compute_grads(p32, MX32, Y32, lam=0.01, eps=0.1)
    for k, v in g32.items():
        assert v.dtype == np.float32, f"compute_grads {k} is {v.dtype} for float32 params and MX"
    # float32 is the float64 result to float32 accuracy
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    g64 = H.compute_grads(p64, MX32.astype(np.float64), Y32.astype(np.float64), lam=0.01, eps=0.1)
    assert_grads_close(g32, g64, 1e-4, "float32 grads vs float64 grads")
    with pytest.raises(ValueError, match="float64 but the parameters are float32"):
        H.forward(p32, MX32.astype(np.float64))
    with pytest.raises(ValueError, match="float32 but the parameters are float64"):
        H.compute_grads(p64, MX32, Y32)


# ------------------------------------------------------------------------ check_params

def test_check_params_refuses_wrong_shapes():
    good = H.init_params(4, 3, 8)
    assert H.check_params(good) is good
    MX = H.build_mx(np.zeros((32, 32, 3, 2), np.float32), 4)
    cases = [("W1", np.zeros((8, 64 * 3 + 1), np.float32), "W1"),
             ("b1", np.zeros((7, 1), np.float32), "b1"),
             ("W2", np.zeros((10, 9), np.float32), "W2"),
             ("b2", np.zeros((10,), np.float32), "b2"),
             ("b0", np.zeros((4, 1), np.float32), "b0"),
             ("Fs", np.zeros((4, 4, 2, 3), np.float32), "Fs"),
             ("Fs", np.zeros((3, 3, 3, 3), np.float32), "divides 32")]
    for key, val, msg in cases:
        bad = dict(good, **{key: val})
        with pytest.raises(ValueError, match=msg):
            H.check_params(bad)
        with pytest.raises(ValueError, match=msg):
            H.forward(bad, MX)
    for key in ("W1", "b2"):
        bad = {k: v for k, v in good.items() if k != key}
        with pytest.raises(ValueError, match=f"missing '{key}'"):
            H.check_params(bad)
    with pytest.raises(ValueError, match="no filters"):
        H.check_params({k: v for k, v in good.items() if k not in ("Fs", "b0")})
    with pytest.raises(ValueError, match=r"MX for f=4 must have shape"):
        H.forward(good, H.build_mx(np.zeros((32, 32, 3, 2), np.float32), 8))
    with pytest.raises(ValueError, match=r"Y must be one-hot"):
        H.compute_grads(good, MX, np.zeros((10, 3), np.float32))


# ------------------------------------------------------------------------ grad_Fs_einsum

def test_grad_Fs_einsum_equals_loop_and_compute_grads():
    f, nf, nh, n = 4, 3, 8, 5
    params, X, y, MX = make_case(f, nf, nh, n, seed=9)
    n_p = (32 // f) ** 2
    rng = np.random.default_rng(1)
    G = rng.standard_normal((n_p * nf, n))
    got = H.grad_Fs_einsum(MX, G, nf)
    GG = G.reshape((n_p, nf, n), order="C")
    loop = sum(MX[:, :, i].T @ GG[:, :, i] for i in range(n))
    assert got.shape == (f * f * 3, nf)
    assert rel_err(got, loop) < 1e-13, f"grad_Fs_einsum vs per-image loop: {rel_err(got, loop):.3g}"
    # with G_batch = the gradient at the conv layer's pre-ReLU output (from torch autograd),
    # it is the Fs gradient of compute_grads
    pytest.importorskip("torch")
    Y = H.one_hot(y, dtype=np.float64)
    _, _, g_t, ex = torch_twin(params, X, y)
    gF = H.grad_Fs_einsum(MX, ex["G_pre"][0], nf).reshape(params["Fs"].shape)
    g = H.compute_grads(params, MX, Y)
    e = rel_err(gF, g["Fs"])
    assert e < 1e-10, f"grad_Fs_einsum vs compute_grads['Fs']: relative error {e:.3g}"


# ------------------------------------------------------------------------ sanity: overfit

def test_overfits_100_synthetic_images():
    X, y = synthetic.make_synthetic(100, seed=3)
    Xn = data.normalise(X)[0]
    params = H.init_params(4, 10, 50, seed=0)
    cfg = H.TrainConfig(n_cycles=2, step=100, eta_min=1e-5, eta_max=0.1, batch_size=20, lam=0.0,
                        eval_every=10 ** 6, eval_train_n=100, progress=False)
    _, hist = H.train(params, Xn, y, cfg)
    assert hist.updates_done == 400
    assert hist.train_acc[0] < 0.5, f"untrained accuracy {hist.train_acc[0]} is suspiciously high"
    assert hist.train_acc[-1] >= 0.99, \
        f"could not overfit 100 images: final train accuracy {hist.train_acc[-1]}"
    assert hist.train_loss[-1] < 0.1, f"final train loss {hist.train_loss[-1]} after overfitting"


# ---- bad input (issue 12)

@pytest.mark.parametrize("nf,nh,what", [(0, 10, "nf"), (4, 0, "nh"), ((2, 0), 10, "nf")])
def test_init_params_zero_sizes_are_a_clear_error(nf, nh, what):
    f = (4, 8) if isinstance(nf, tuple) else 4
    with pytest.raises(ValueError, match=f"{what} must be a positive integer"):
        H.init_params(f, nf, nh)                    # (was ZeroDivisionError)


def test_predict_refuses_nan_images():
    params = H.init_params(4, 3, 8, seed=0)
    X = np.random.default_rng(0).standard_normal((3072, 5)).astype(np.float32)
    assert np.isfinite(H.predict(params, X)).all()
    X[100, 2] = np.nan
    with pytest.raises(ValueError, match=r"X has NaN or inf .*column 2"):
        H.predict(params, X)
