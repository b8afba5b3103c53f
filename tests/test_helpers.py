"""Tests for helpers.py section 4 (training), the lesson's plain code: the cyclic learning rate,
sgd_step against its equation, TrainConfig's checks, History, evaluate, predict and the plain
train loop (deterministic, learns, keeps a run interrupted by Ctrl-C).
(Sections 1-3 - layouts, convolution, network - are tested in test_convolution.py and
test_network.py.)"""
import dataclasses

import numpy as np
import pytest

import helpers as H
from workbook import data, synthetic
from _common import copy_params, diverged, plain_cfg, rel_err


def small_cfg(**kw):
    """40 updates at batch 20 on small_data's 200 images, evaluated every 10."""
    base = dict(n_cycles=1, step=20, eta_min=1e-4, eta_max=0.05, batch_size=20, lam=0.001,
                eval_every=10, eval_train_n=100)
    base.update(kw)
    return H.TrainConfig(**base)


# ============================================================ cyclic learning rate

def reference_schedule(n_cycles, n_s, eta_min, eta_max, increasing=False, decay=1.0):
    """Written out cycle by cycle: up over step_i updates, down over step_i updates."""
    out = []
    for i in range(n_cycles):
        s = n_s * 2 ** i if increasing else n_s
        top = eta_max * decay ** i
        out += [eta_min + (top - eta_min) * k / s for k in range(s)]
        out += [top - (top - eta_min) * k / s for k in range(s)]
    return np.array(out)


def test_cyclic_eta_corners():
    lo, hi, n_s = 1e-5, 1e-1, 500
    for t, want in [(0, lo), (n_s, hi), (2 * n_s, lo), (3 * n_s, hi), (4 * n_s, lo),
                    (n_s // 2, (lo + hi) / 2), (n_s + n_s // 2, (lo + hi) / 2)]:
        got = H.cyclic_eta(t, lo, hi, n_s)
        assert isinstance(got, float)
        assert abs(got - want) < 1e-12, f"cyclic_eta(t={t}) = {got}, expected {want}"
    arr = H.cyclic_eta(np.arange(4 * n_s), lo, hi, n_s)
    assert isinstance(arr, np.ndarray) and arr.shape == (4 * n_s,) and arr.dtype == np.float64


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_cyclic_eta_doubling_cycle_corners(decay):
    lo, hi, n_s = 1e-5, 1e-1, 100
    for i in range(5):
        start, step = 2 * n_s * (2 ** i - 1), n_s * 2 ** i
        top = hi * decay ** i
        for t, want in [(start, lo), (start + step, top), (start + step // 2, (lo + top) / 2),
                        (start + 2 * step - 1, lo + (top - lo) / step)]:
            got = H.cyclic_eta(t, lo, hi, n_s, increasing=True, decay=decay)
            assert abs(got - want) < 1e-12, \
                f"doubling cycles, decay={decay}: eta(t={t}) = {got}, expected {want} (cycle {i})"


@pytest.mark.parametrize("n_cycles,step,increasing,decay",
                         [(3, 7, False, 1.0), (2, 5, False, 0.7), (4, 3, True, 1.0), (3, 5, True, 0.5),
                          (6, 1, True, 0.9)])
def test_schedule_matches_reference_and_n_updates(n_cycles, step, increasing, decay):
    cfg = H.TrainConfig(n_cycles=n_cycles, step=step, eta_min=1e-4, eta_max=0.2,
                        increasing=increasing, eta_decay=decay)
    want_n = 2 * step * (2 ** n_cycles - 1) if increasing else 2 * step * n_cycles
    assert cfg.n_updates == H.n_updates(n_cycles, step, increasing) == want_n
    ref = reference_schedule(n_cycles, step, 1e-4, 0.2, increasing, decay)
    etas = cfg.etas()
    assert etas.shape == (want_n,)
    assert np.max(np.abs(etas - ref)) < 1e-12, \
        f"schedule differs from the cycle-by-cycle reference by {np.max(np.abs(etas - ref)):.3g}"
    assert etas.min() >= 1e-4 - 1e-15 and etas.max() <= 0.2 + 1e-15


# ============================================================ sgd_step

def _params_and_grads(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    p = H.init_params(4, 3, 8, seed=seed, dtype=dtype)
    p = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in p.items()}
    g = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p.items()}
    return p, g


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_sgd_step_is_its_equation(lam):
    """W <- W - eta (grad W + 2 lam W) for Fs, W1, W2;  b <- b - eta grad b for b0, b1, b2."""
    p, g = _params_and_grads()
    p_copy, g_copy = copy_params(p), copy_params(g)
    eta = 0.03
    new = H.sgd_step(p, g, eta, lam)
    assert set(new) == set(p)
    for k in ("Fs", "W1", "W2"):
        want = p[k] - eta * g[k] - 2 * eta * lam * p[k]
        assert rel_err(new[k], want) < 1e-14, f"{k}: not W - eta (grad + 2 lam W)"
    for k in ("b0", "b1", "b2"):
        assert rel_err(new[k], p[k] - eta * g[k]) < 1e-14, f"{k}: a bias must get no L2 term"
    for k in p:
        assert new[k] is not p[k] and not np.shares_memory(new[k], p[k]), f"{k}: not a new array"
        assert np.array_equal(p[k], p_copy[k]) and np.array_equal(g[k], g_copy[k]), \
            f"sgd_step changed its input {k}"
        assert new[k].shape == p[k].shape and new[k].dtype == p[k].dtype


def test_sgd_step_l2_moves_weights_not_biases():
    p, _ = _params_and_grads()
    zero = {k: np.zeros_like(v) for k, v in p.items()}
    new = H.sgd_step(p, zero, 0.1, 0.5)        # only the L2 term acts: W <- (1 - 2 eta lam) W
    for k in p:
        factor = 0.9 if not k.startswith("b") else 1.0
        assert np.allclose(new[k], factor * p[k], rtol=1e-14, atol=0), f"{k}: factor != {factor}"


def test_sgd_step_with_compute_grads_lowers_the_cost():
    rng = np.random.default_rng(3)
    p = H.init_params(8, 4, 12, seed=1, dtype=np.float64)
    X = rng.standard_normal((3072, 20))
    MX, Y = H.build_mx(H.to_images(X), 8), H.one_hot(rng.integers(0, 10, 20), 10, np.float64)
    lam = 0.01
    before = H.compute_loss(p, MX, Y, lam)[1]
    new = H.sgd_step(p, H.compute_grads(p, MX, Y, lam=0.0), 1e-3, lam)
    after = H.compute_loss(new, MX, Y, lam)[1]
    assert after < before, f"a small step along the gradient raised the cost {before} -> {after}"
    # the same as a step with the cost's gradient (L2 included by compute_grads) and lam=0 here
    alt = H.sgd_step(p, H.compute_grads(p, MX, Y, lam=lam), 1e-3, 0.0)
    for k in p:
        assert rel_err(new[k], alt[k]) < 1e-13, k


# ============================================================ TrainConfig

def test_train_config_defaults_are_the_assignment_protocol():
    cfg = H.TrainConfig().validate()
    assert (cfg.n_cycles, cfg.step, cfg.batch_size, cfg.lam) == (3, 800, 100, 0.003)
    assert cfg.n_updates == 4800 and cfg.eval_period == 400
    assert dataclasses.replace(cfg, eval_every=7).eval_period == 7
    assert cfg.to_dict()["step"] == 800


@pytest.mark.parametrize("field,value", [
    ("n_cycles", True), ("n_cycles", 4.5), ("step", 19.9), ("batch_size", 20.0), ("seed", "0"),
    ("increasing", "False"), ("increasing", 1), ("lam", float("nan")), ("eta_max", float("inf")),
    ("eta_min", "1e-5"), ("eps", True), ("eval_every", 0), ("eval_every", 2.5),
    ("eval_train_n", None)])
def test_train_config_types_are_checked_with_the_field_name(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be") as ei:
        H.TrainConfig(**{field: value}).validate()
    assert repr(value) in str(ei.value), f"the value is not in the message: {ei.value}"


@pytest.mark.parametrize("kw,field", [(dict(lam=-0.1), "lam"), (dict(eps=1.0), "eps"),
                                      (dict(eps=-0.1), "eps"), (dict(n_cycles=0), "n_cycles"),
                                      (dict(step=0), "step"), (dict(eta_min=0.2, eta_max=0.1), "eta_min"),
                                      (dict(seed=-1), "seed"), (dict(eta_decay=0.0), "eta_decay")])
def test_train_config_ranges_name_the_field_and_value(kw, field):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be .*got {kw[field]!r}"):
        H.TrainConfig(**kw).validate()


def test_train_config_accepts_numpy_numbers():
    cfg = H.TrainConfig(step=np.int64(10), lam=np.float32(0.001), increasing=np.bool_(True),
                        eval_every=np.int32(5))
    assert cfg.validate() is cfg


# ============================================================ History

def test_history_records_and_status():
    h = H.History(eta=[0.1, 0.2], config={"step": 1})
    assert h.status == "running" and not h.complete and np.isnan(h.final_test_acc)
    m = {"loss": 2.0, "loss_ls": 2.1, "cost": 2.2, "acc": 0.1}
    h.record(0, m, dict(m, acc=0.15))
    h.record(10, dict(m, loss=1.0), None)
    assert h.t == [0, 10] and h.train_loss == [2.0, 1.0] and h.train_cost == [2.2, 2.2]
    assert h.test_acc == [0.15] and h.final_test_acc == 0.15
    h.status = "complete"
    assert h.complete
    d = h.to_dict()
    assert d["t"] == [0, 10] and d["status"] == "complete" and d["config"] == {"step": 1}
    for s in ("interrupted", "stopped", "failed", "diverged"):
        assert not H.History(status=s).complete


# ============================================================ evaluate, predict

def test_evaluate_is_the_loss_and_accuracy_of_forward(small_data):
    _, _, Xtn, yt = small_data
    X, y = Xtn.astype(np.float64), yt
    p = H.init_params(4, 4, 16, seed=5, dtype=np.float64)
    MX, Y = H.build_mx(H.to_images(X), 4), H.one_hot(y, 10, np.float64)
    P = H.forward(p, MX)["P"]
    lam, eps = 0.01, 0.1
    out = H.evaluate(p, X, y, lam=lam, eps=eps)
    assert set(out) == {"loss", "loss_ls", "cost", "acc"}
    assert out["loss"] == pytest.approx(-np.mean(np.log(P[y, np.arange(len(y))])), rel=1e-12)
    loss_ls, cost = H.compute_loss(p, MX, Y, lam, eps)
    assert out["loss_ls"] == pytest.approx(loss_ls, rel=1e-12)
    assert out["cost"] == pytest.approx(cost, rel=1e-12)
    assert out["acc"] == np.mean(P.argmax(axis=0) == y)
    chunked = H.evaluate(p, X, y, lam=lam, eps=eps, chunk=7)
    for k in out:
        assert chunked[k] == pytest.approx(out[k], rel=1e-12), f"{k} depends on the chunk size"
    plain = H.evaluate(p, X, y)
    assert plain["loss_ls"] == pytest.approx(plain["loss"], rel=1e-12) and plain["cost"] == plain["loss_ls"]


def test_predict_is_forward_softmax(small_data):
    _, _, Xtn, _ = small_data
    p = H.init_params(8, 3, 10, seed=1)
    P = H.predict(p, Xtn[:, :30])
    assert P.shape == (10, 30) and np.allclose(P.sum(axis=0), 1, atol=1e-5) and P.min() >= 0
    want = H.forward(p, H.build_mx(H.to_images(Xtn[:, :30]), 8))["P"]
    assert np.array_equal(P, want)
    with pytest.raises(ValueError, match=r"X must have shape \(3072, n\)"):
        H.predict(p, Xtn[:, :30].T)


# ============================================================ the plain train loop

def test_train_is_deterministic_for_a_seed(small_data):
    Xn, y, Xtn, yt = small_data
    p0 = H.init_params(4, 4, 16, seed=0)
    p_copy = copy_params(p0)
    (pa, ha), (pb, hb), (pc, hc) = (H.train(p0, Xn, y, small_cfg(seed=s), Xtn, yt, data_name="s")
                                    for s in (0, 0, 1))
    for m in ("t", "train_loss", "train_loss_ls", "train_cost", "train_acc", "test_loss",
              "test_loss_ls", "test_cost", "test_acc", "eta"):
        assert getattr(ha, m) == getattr(hb, m), f"same seed, different history.{m}"
    assert ha.t == [0, 10, 20, 30, 40] and ha.updates_done == 40 and ha.status == "complete"
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert any(not np.array_equal(pa[k], pc[k]) for k in pa), "seed 1 gave the same parameters"
    assert ha.train_loss[1:] != hc.train_loss[1:]
    assert all(np.array_equal(p0[k], p_copy[k]) for k in p0), "train changed its input params"
    assert ha.data == "s" and ha.config == small_cfg().to_dict()
    assert ha.eta == small_cfg().etas().tolist()
    assert ha.time_train >= 0 and ha.time_eval >= 0


def test_train_every_epoch_uses_each_image_once(small_data, monkeypatch):
    """Shuffled epochs: in each epoch of n // B batches every image appears exactly once."""
    Xn, y, _, _ = small_data
    seen = []
    real = H.build_mx

    def spy(X_ims, f):
        seen.append(X_ims.shape[3])
        return real(X_ims, f)

    cols = []
    real_to_images = H.to_images
    monkeypatch.setattr(H, "build_mx", spy)
    monkeypatch.setattr(H, "to_images", lambda X: cols.append(X.copy()) or real_to_images(X))
    cfg = small_cfg(eval_every=1000, eval_train_n=20)           # evaluations: 20 images each
    H.train(H.init_params(4, 2, 8), Xn, y, cfg)
    batches = [c for c in cols if c.shape[1] == 20 and not np.array_equal(c, Xn[:, :20])]
    assert len(batches) >= 30
    first_epoch = np.concatenate(batches[:10], axis=1)       # 200 images / 20 per batch
    key = {Xn[:, i].tobytes(): i for i in range(200)}
    idx = sorted(key[first_epoch[:, j].tobytes()] for j in range(200))
    assert idx == list(range(200)), "an epoch did not use every training image exactly once"


def test_train_learns_well_above_chance():
    X, y = synthetic.make_synthetic(2000, seed=0)
    Xt, yt = synthetic.make_synthetic(500, seed=0, stream=1)
    Xn, Xtn, _, _ = data.normalise(X, Xt)
    cfg = H.TrainConfig(n_cycles=1, step=150, eta_min=1e-5, eta_max=0.1, batch_size=100,
                        lam=0.003, eval_every=300, eval_train_n=500)
    _, hist = H.train(H.init_params(4, 10, 50, seed=0), Xn, y, cfg, Xtn, yt)
    assert hist.updates_done == 300 and hist.complete
    assert hist.test_acc[0] < 0.2, f"untrained test accuracy {hist.test_acc[0]}"
    assert hist.test_acc[-1] > 0.3, \
        f"arch2 reached only {hist.test_acc[-1]:.3f} test accuracy after 300 updates (chance 0.1)"
    assert hist.test_loss[-1] < hist.test_loss[0] - 0.3


def test_ctrl_c_returns_the_run_interrupted(small_data):
    Xn, y, Xtn, yt = small_data
    calls = []

    def callback(hist):
        calls.append(len(hist.t))
        if len(calls) == 2:
            raise KeyboardInterrupt

    p0 = H.init_params(4, 4, 16)
    params, hist = H.train(p0, Xn, y, small_cfg(), Xtn, yt, callback=callback)
    assert hist.status == "interrupted" and not hist.complete
    assert calls == [1, 2] and hist.t == [0, 10] and hist.updates_done == 10
    assert len(hist.test_acc) == len(hist.train_loss) == 2
    assert not np.array_equal(params["W1"], p0["W1"]), "the 10 updates made were not returned"
    assert all(np.isfinite(v).all() for v in params.values())


def test_divergence_raises_with_the_run(small_data):
    Xn, y, _, _ = small_data
    diverged(H.train, Xn, y, small_cfg(eta_min=1e3, eta_max=1e6))


def test_train_refuses_a_batch_larger_than_the_data(small_data):
    Xn, y, _, _ = small_data
    with pytest.raises(ValueError, match="batch_size 500"):
        H.train(H.init_params(4, 2, 8), Xn, y, small_cfg(batch_size=500))
    with pytest.raises(ValueError, match=r"X_train must have shape \(3072, n\)"):
        H.train(H.init_params(4, 2, 8), Xn.T, y, small_cfg())
    with pytest.raises(ValueError, match="TrainConfig.step"):
        H.train(H.init_params(4, 2, 8), Xn, y, plain_cfg(step=19.9))


@pytest.mark.parametrize("how", ["uint8", "raw floats", "nan"])
def test_plain_train_and_predict_refuse_unnormalised_images(how):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (3072, 100)).astype(np.uint8 if how == "uint8" else np.float32)
    if how == "nan":
        X = rng.standard_normal((3072, 100)).astype(np.float32)
        X[5, 7] = np.nan
    y = rng.integers(0, 10, 100)
    p = H.init_params(4, 2, 8)
    with pytest.raises(ValueError, match="normalise"):
        H.train(p, X, y, H.TrainConfig(n_cycles=1, step=5, batch_size=50))
    with pytest.raises(ValueError, match="normalise"):
        H.predict(p, X)
