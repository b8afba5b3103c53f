"""Tests for workbook.whitening: SGD in whitened patch coordinates equals the plain network with
folded filters, step by step and through train()."""
import dataclasses

import numpy as np
import pytest

import helpers as H
from workbook import data, engine, synthetic, whitening
from workbook.layout import mx_batch_first


@pytest.fixture(scope="module")
def small():
    X, y = synthetic.make_synthetic(300, seed=0)
    (Xn,) = data.normalise(X)[:1]
    return Xn.astype(np.float64), y


def test_whitening_matrix_is_symmetric_and_whitens(small):
    Xn, _ = small
    Ws = whitening.patch_whitening(Xn, (4, 8), 1e-6, n_sample=300)
    for f, W in Ws.items():
        d = f * f * 3
        assert W.shape == (d, d) and np.allclose(W, W.T), f"f={f}: W must be symmetric (d, d)"
        P = mx_batch_first(Xn, f, dtype=np.float64).reshape(-1, d) @ W
        C = P.T @ P / P.shape[0]
        off = C - np.diag(np.diag(C))
        assert np.max(np.abs(off)) < 0.05 * np.max(np.diag(C)), f"f={f}: whitened patches still correlated"


@pytest.mark.parametrize("f, nf", [(4, 5), ((4, 8), (3, 2))])
def test_preconditioned_step_equals_a_step_on_whitened_patches(small, f, nf):
    Xn, y = small
    fs = f if isinstance(f, tuple) else (f,)
    Ws = whitening.patch_whitening(Xn, fs, 0.01, n_sample=300)
    p = engine.init_params(f, nf, 12, seed=1, dtype=np.float64)
    mx = engine.mx_for(p, Xn[:, :40])
    eta, lam, eps = 0.05, 0.01, 0.1
    # reference: the lab formulation, filters Fs' on whitened patches mx @ W
    ref = {k: v.copy() for k, v in p.items()}
    mxw = [(m.reshape(-1, m.shape[2]) @ Ws[fi]).reshape(m.shape) for m, fi in zip(mx, sorted(fs))]
    engine.train_step(ref, mxw, y[:40], eta, lam, eps)
    # ours: plain coordinates Fs = W Fs', plain step, then the preconditioner
    ours = {k: v.copy() for k, v in p.items()}
    whitening.start(ours, Ws)
    old = {k: ours[k].copy() for k in ours if k.startswith("Fs")}
    engine.train_step(ours, mx, y[:40], eta, lam, eps)
    whitening.precondition(ours, old, Ws, 1 - 2 * eta * lam)
    for k in ours:
        want = ref[k]
        if k.startswith("Fs"):
            F = ref[k]
            want = (Ws[F.shape[0]] @ F.reshape(-1, F.shape[3])).reshape(F.shape)
        err = np.max(np.abs(ours[k] - want)) / max(np.max(np.abs(want)), 1e-30)
        assert err < 1e-12, f"{k}: preconditioned step differs from the whitened-patch step by {err:.2e}"


def test_train_with_whitening_is_deterministic_and_differs_from_plain(small):
    Xn, y = small
    cfg = engine.EngineConfig(n_cycles=1, step=10, batch_size=30, eval_train_n=50, progress=False,
                        whiten=0.01, eta_max=0.2)
    p0 = H.init_params(4, 4, 10, seed=0, dtype=np.float64)
    a, ha = engine.train(p0, Xn, y, cfg)
    b, hb = engine.train(p0, Xn, y, cfg)
    c, _ = engine.train(p0, Xn, y, dataclasses.replace(cfg, whiten=0.0))
    assert ha.train_loss == hb.train_loss and np.array_equal(a["Fs"], b["Fs"]), "same seed, other result"
    assert not np.allclose(a["Fs"], c["Fs"]), "whiten=0.01 trained like whiten=0"
    P = engine.predict(a, Xn[:, :20])            # the returned network is the plain one
    assert P.shape == (10, 20) and np.allclose(P.sum(axis=0), 1)


def test_bad_whitening_settings_are_refused(small):
    Xn, _ = small
    with pytest.raises(ValueError, match="whiten"):
        engine.EngineConfig(whiten=-1.0).validate()
    with pytest.raises(ValueError, match="regulariser"):
        whitening.patch_whitening(Xn, (4,), 0.0)
