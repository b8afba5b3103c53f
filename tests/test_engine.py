"""Tests for workbook/engine.py, the fast path: it equals the lesson (helpers.train, sgd_step,
compute_grads, evaluate, predict) up to float rounding, each bonus feature acts and is
reproducible, a run that ends early keeps what it did, and bad input is refused up front."""
import threading

import numpy as np
import pytest

import helpers as H
from workbook import engine
from workbook.augment import aug_tables
from workbook.engine import EngineConfig
from workbook.layout import mx_batch_first
from _common import copy_params, ctrl_c_at, diverged, max_rel_params, rel_err

HIST_LISTS = ("train_loss", "train_loss_ls", "train_cost", "train_acc",
              "test_loss", "test_loss_ls", "test_cost", "test_acc")


def small_cfg(**kw):
    """40 updates (2 * step 20) at batch 20 on small_data's 200 images, evaluated every 10."""
    base = dict(n_cycles=1, step=20, eta_min=1e-4, eta_max=0.05, batch_size=20, lam=0.001,
                eval_every=10, eval_train_n=100, progress=False)
    base.update(kw)
    return EngineConfig(**base)


def _never_called(*a):
    raise AssertionError("training started (an evaluation or update ran) despite bad input")


# ============================================================ THE check: engine.train == helpers.train

# Why these architectures: in float32 some runs are chaotic - the LESSON ITSELF, perturbed by one
# rounding step (W1 * (1 + 1e-7)), ends 5e-2 away after 300 updates (f=4, nf=4, nh=16, lam=0.003,
# seed 0: a ReLU flips at update 94 and the runs part). No implementation can match such a run to
# 1e-4 in float32; these cases are not chaotic (the perturbed lesson stays within ~1e-6), and the
# float64 test below covers a chaotic one to 1e-9.
EQ_CASES = {
    # name: (architecture, TrainConfig fields); all float32, >= 300 updates at batch size 100
    "no L2, no LS": ((8, 8, 20), dict(n_cycles=1, step=150, lam=0.0, eps=0.0)),
    "L2": ((8, 8, 20), dict(n_cycles=3, step=50, lam=0.003, eps=0.0)),
    "LS": ((4, 4, 16), dict(n_cycles=1, step=150, lam=0.0, eps=0.1)),
    "L2 + LS, doubling cycles, eval_every 7": ((8, 8, 20), dict(n_cycles=2, step=50, lam=0.003,
                                                                eps=0.1, increasing=True,
                                                                eval_every=7)),
    "L2 + LS, eta decay, seed 1": ((8, 8, 20), dict(n_cycles=2, step=75, lam=0.01, eps=0.2,
                                                    eta_decay=0.6, seed=1)),
}


@pytest.mark.parametrize("name", list(EQ_CASES))
def test_engine_train_equals_helpers_train(eq_data, name):
    """Same seed, data and settings: the same parameters (float32 rounding, rel < 1e-4 after
    >= 300 updates) and the same history (t, eta identical; metrics within float rounding)."""
    Xn, y, Xtn, yt = eq_data
    arch, kw = EQ_CASES[name]
    cfg = H.TrainConfig(eta_min=1e-5, eta_max=0.1, batch_size=100, eval_train_n=200, **kw)
    assert cfg.n_updates >= 300
    p0 = H.init_params(*arch, seed=kw.get("seed", 0))
    p_before = copy_params(p0)
    pa, ha = H.train(p0, Xn, y, cfg, Xtn, yt, data_name="eq")
    pb, hb = engine.train(p0, Xn, y, cfg, Xtn, yt, data_name="eq")      # the plain TrainConfig
    assert all(np.array_equal(p0[k], p_before[k]) for k in p0), "a train() changed its input"
    assert ha.status == hb.status == "complete"
    assert ha.updates_done == hb.updates_done == cfg.n_updates
    assert max_rel_params(pa, p0) > 1e-2, "the lesson's run hardly moved: a vacuous comparison"
    for k in pa:
        assert pb[k].dtype == pa[k].dtype == np.float32, f"{k}: dtype {pb[k].dtype}"
        e = rel_err(pa[k], pb[k])
        assert e < 1e-4, f"{name}: {k} differs between engine.train and helpers.train by rel {e:.2e}"
    assert hb.t == ha.t, f"evaluated at {hb.t} (engine) vs {ha.t} (lesson)"
    assert ha.t[-1] == cfg.n_updates and ha.t[:2] == [0, cfg.eval_period]
    assert hb.eta == ha.eta and len(ha.eta) == cfg.n_updates
    for m in HIST_LISTS:
        a, b = np.asarray(getattr(ha, m)), np.asarray(getattr(hb, m))
        assert a.shape == b.shape == (len(ha.t),), f"history.{m}: {a.shape} vs {b.shape}"
        tol = 2.0 / 200 + 1e-12 if m.endswith("acc") else 1e-4 * max(1.0, np.max(np.abs(a)))
        assert np.max(np.abs(a - b)) <= tol, f"{name}: history.{m} differs: {a} vs {b}"
    assert hb.data == ha.data == "eq"
    for k, v in cfg.to_dict().items():
        assert hb.config[k] == v, f"the engine's history config has {k}={hb.config[k]!r}"


@pytest.mark.parametrize("inc", [False, True])
def test_engine_train_equals_helpers_train_in_float64(small_data, inc):
    """In float64 the two agree to ~1e-12: the same algorithm, only the rounding differs."""
    Xn, y, Xtn, yt = small_data
    Xn, Xtn = Xn.astype(np.float64), Xtn.astype(np.float64)
    cfg = H.TrainConfig(n_cycles=2, step=15 if inc else 25, eta_min=1e-5, eta_max=0.1,
                        batch_size=20, lam=0.003, eps=0.1, increasing=inc, eval_train_n=50)
    p0 = H.init_params(4, 4, 16, seed=3, dtype=np.float64)
    pa, ha = H.train(p0, Xn, y, cfg, Xtn, yt)
    pb, hb = engine.train(p0, Xn, y, cfg, Xtn, yt)
    assert ha.updates_done == hb.updates_done == cfg.n_updates
    e = max_rel_params(pa, pb)
    assert e < 1e-9, f"float64: engine and lesson differ by rel {e:.2e}"
    assert ha.t == hb.t
    for m in HIST_LISTS:
        assert np.allclose(getattr(ha, m), getattr(hb, m), rtol=1e-9, atol=1e-12), m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lam,eps", [(0.0, 0.0), (0.02, 0.0), (0.02, 0.15)])
def test_train_step_is_sgd_step_of_the_loss_gradients(dtype, lam, eps):
    """engine.train_step (fused, in place) == helpers.sgd_step(params, helpers.compute_grads(...,
    lam=0), eta, lam): W <- W - eta (grad + 2 lam W), biases without the L2 term."""
    rng = np.random.default_rng(1)
    n, eta, f = 12, 0.07, 4
    params = H.init_params(f, 5, 80, seed=2, dtype=dtype)     # W1 (80, 320): a fused update
    for k in params:
        if k.startswith("b"):
            params[k] = (0.1 * rng.standard_normal(params[k].shape)).astype(dtype)
    X = rng.standard_normal((3072, n)).astype(dtype)
    y = rng.integers(0, 10, n)
    MX = H.build_mx(H.to_images(X), f)
    grads = H.compute_grads(params, MX, H.one_hot(y, 10, dtype), lam=0.0, eps=eps)
    want = H.sgd_step(params, grads, eta, lam)
    got = copy_params(params)
    loss = engine.train_step(got, engine.mx_for(got, X), y, eta, lam, eps)
    want_loss = H.compute_loss(params, MX, H.one_hot(y, 10, dtype), eps=eps)[0]
    assert abs(loss - want_loss) < (1e-5 if dtype == np.float32 else 1e-12) * abs(want_loss)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for k in params:
        step = np.max(np.abs(want[k] - params[k]))
        assert step > 0, f"{k} did not move"
        err = np.max(np.abs(got[k] - want[k]))
        assert err <= tol * max(step, np.max(np.abs(want[k]))), \
            f"{k}: train_step differs from sgd_step by {err:.3g} (step size {step:.3g})"


def test_train_step_equals_torch_sgd_with_dropout():
    """One step with a dropout mask against torch.optim.SGD on the same network."""
    torch = pytest.importorskip("torch", reason="torch is the independent oracle (optional)")
    F = torch.nn.functional
    f, nf, nh, n, K, eta, lam, eps = 4, 3, 8, 6, 10, 0.05, 0.01, 0.1
    rng = np.random.default_rng(0)
    params = H.init_params(f, nf, nh, seed=1, dtype=np.float64)
    for k in params:
        if k.startswith("b"):
            params[k] = 0.1 * rng.standard_normal(params[k].shape)
    X = rng.standard_normal((3072, n))
    y = rng.integers(0, K, n)
    mask = (rng.random((n, nh)) < 0.5) * 2.0
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD(list(t.values()), lr=eta)
    x = torch.tensor(np.ascontiguousarray(H.to_images(X).transpose(3, 2, 0, 1)))
    conv = F.conv2d(x, t["Fs"].permute(3, 2, 0, 1), bias=t["b0"].reshape(nf), stride=f)
    flat = torch.relu(conv.permute(2, 3, 1, 0).reshape(-1, n))
    X1 = torch.relu(t["W1"] @ flat + t["b1"]) * torch.tensor(mask.T)
    S = t["W2"] @ X1 + t["b2"]
    Ys = torch.tensor(H.smooth_targets(H.one_hot(y, K, np.float64), eps))
    loss = -(Ys * torch.log_softmax(S, 0)).sum() / n
    (loss + lam * sum((t[k] ** 2).sum() for k in ("Fs", "W1", "W2"))).backward()
    opt.step()
    ours = copy_params(params)
    got_loss = engine.train_step(ours, engine.mx_for(ours, X), y, eta, lam, eps, drop_mask=mask)
    assert abs(got_loss - loss.item()) < 1e-12
    for k in params:
        after = t[k].detach().numpy()
        e = np.max(np.abs(ours[k] - after)) / np.max(np.abs(after - params[k]))
        assert e < 1e-9, f"{k}: one step differs from torch SGD by {e:.3g} of the update"


@pytest.mark.parametrize("lam,eps", [(0.0, 0.0), (0.05, 0.1)])
def test_compute_grads_equals_the_lesson(lam, eps):
    rng = np.random.default_rng(4)
    params = H.init_params(8, 6, 12, seed=5, dtype=np.float64)
    params["b1"] += 0.05
    X = rng.standard_normal((3072, 9))
    Y = H.one_hot(rng.integers(0, 10, 9), 10, np.float64)
    MX = H.build_mx(H.to_images(X), 8)
    want = H.compute_grads(params, MX, Y, lam, eps)
    got = engine.compute_grads(params, MX, Y, lam, eps)
    assert set(got) == set(want) == set(params)
    for k in want:
        assert got[k].shape == params[k].shape
        e = rel_err(got[k], want[k])
        assert e < 1e-12, f"grad {k}: engine vs lesson rel {e:.2e}"


def test_compute_grads_refuses_bad_inputs():
    params = H.init_params(4, 3, 8, seed=0, dtype=np.float64)
    X = np.random.default_rng(0).standard_normal((3072, 5))
    MX = H.build_mx(H.to_images(X), 4)
    with pytest.raises(ValueError, match="float32"):
        engine.compute_grads(params, MX.astype(np.float32), H.one_hot([1, 2, 3, 4, 5], 10, np.float64))
    with pytest.raises(ValueError, match="one-hot"):
        engine.compute_grads(params, MX, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="MX for f=4"):
        engine.compute_grads(params, H.build_mx(H.to_images(X), 8), np.zeros((10, 5)))


def test_evaluate_and_predict_equal_the_lesson(small_data):
    Xn, y, Xtn, yt = small_data
    params = H.init_params(4, 4, 16, seed=7)
    want = H.evaluate(params, Xtn, yt, lam=0.01, eps=0.1)
    got = engine.evaluate(params, engine.mx_for(params, Xtn), yt, lam=0.01, eps=0.1, chunk=33)
    for k in ("loss", "loss_ls", "cost", "acc"):
        assert abs(got[k] - want[k]) < 1e-5 * max(1, abs(want[k])), f"{k}: {got[k]} vs {want[k]}"
    P = engine.predict(params, Xtn)
    assert P.shape == (10, Xtn.shape[1]) and np.allclose(P.sum(axis=0), 1, atol=1e-5)
    assert rel_err(P, H.predict(params, Xtn)) < 1e-5


# ============================================================ several filter sizes

def _multi_forward_loss(params, X, y, eps):
    """Written out for branches (4, 8): each branch's conv_flat in the spec layout, stacked in
    increasing f before W1; the mean smoothed cross-entropy (float64)."""
    flats = []
    for f in (4, 8):
        MX = H.build_mx(H.to_images(X), f)
        Fs = params[f"Fs_f{f}"]
        c = np.einsum("ijn,jl->iln", MX, Fs.reshape(-1, Fs.shape[3])) + params[f"b0_f{f}"][None]
        flats.append(np.fmax(c.reshape(-1, X.shape[1]), 0))
    X1 = np.fmax(params["W1"] @ np.vstack(flats) + params["b1"], 0)
    P = H.softmax(params["W2"] @ X1 + params["b2"])
    return -np.sum(H.smooth_targets(H.one_hot(y, 10, np.float64), eps) * np.log(P)) / X.shape[1]


def test_multi_size_gradients_match_finite_differences():
    rng = np.random.default_rng(8)
    params = engine.init_params((8, 4), (3, 2), 7, seed=1, dtype=np.float64)
    assert list(engine.branches(params)) == [(4, "Fs_f4", "b0_f4"), (8, "Fs_f8", "b0_f8")]
    assert params["W1"].shape == (7, 64 * 2 + 16 * 3)
    for k in ("b0_f4", "b0_f8", "b1"):
        params[k] = params[k] + 0.05
    X, y, eps, lam = rng.standard_normal((3072, 4)), rng.integers(0, 10, 4), 0.1, 0.02
    MX = {f: H.build_mx(H.to_images(X), f) for f in (4, 8)}
    g = engine.compute_grads(params, MX, H.one_hot(y, 10, np.float64), lam, eps)
    h = 1e-6
    for k in ("Fs_f4", "Fs_f8", "b0_f4", "b0_f8", "W1", "b2"):
        for idx in map(tuple, rng.integers(0, params[k].shape, size=(3, params[k].ndim))):
            p1, p2 = copy_params(params), copy_params(params)
            p1[k][idx] += h
            p2[k][idx] -= h
            cost = [_multi_forward_loss(p, X, y, eps) + lam * H.l2_penalty(p) for p in (p1, p2)]
            num = (cost[0] - cost[1]) / (2 * h)
            assert abs(g[k][idx] - num) < 1e-6 * max(1.0, abs(num)), \
                f"d cost / d {k}{idx}: analytic {g[k][idx]:.8g}, numerical {num:.8g}"
    with pytest.raises(ValueError, match="dict"):
        engine.compute_grads(params, MX[4], H.one_hot(y, 10, np.float64))


def test_multi_size_training_runs_and_is_deterministic(small_data):
    Xn, y, Xtn, yt = small_data
    p0 = engine.init_params((4, 8), (3, 2), 10, seed=0)
    a, ha = engine.train(p0, Xn, y, small_cfg(), Xtn, yt)
    b, hb = engine.train(p0, Xn, y, small_cfg(), Xtn, yt)
    assert ha.complete and ha.train_loss == hb.train_loss
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(not np.array_equal(a[k], p0[k]) for k in ("Fs_f4", "Fs_f8", "W1"))
    assert np.all(np.isfinite(ha.test_loss))
    with pytest.raises(ValueError, match="one nf per distinct filter size"):
        engine.init_params((4, 4), (3, 3), 10)


# ============================================================ determinism, bonus features

def test_same_seed_same_run_other_seed_differs(small_data):
    Xn, y, Xtn, yt = small_data
    p0 = H.init_params(4, 4, 16, seed=0)
    p_copy = copy_params(p0)
    (pa, ha), (pb, hb), (pc, hc) = (engine.train(p0, Xn, y, small_cfg(seed=s), Xtn, yt)
                                    for s in (0, 0, 1))
    for m in HIST_LISTS + ("t", "eta"):
        assert getattr(ha, m) == getattr(hb, m), f"same seed, different history.{m}"
    assert ha.t == [0, 10, 20, 30, 40] and ha.updates_done == 40
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert any(not np.array_equal(pa[k], pc[k]) for k in pa), "seed 1 gave the same parameters"
    assert ha.train_loss[1:] != hc.train_loss[1:]
    assert all(np.array_equal(p0[k], p_copy[k]) for k in p0), "train changed its input params"


@pytest.mark.parametrize("opts", [dict(dropout=0.5), dict(flip=True), dict(translate=2),
                                  dict(flip=True, translate=1, dropout=0.3)])
def test_bonus_options_are_deterministic_and_act(small_data, opts):
    Xn, y, Xtn, yt = small_data
    p0 = H.init_params(4, 4, 16, seed=0)
    (pa, ha), (pb, hb) = (engine.train(p0, Xn, y, small_cfg(**opts), Xtn, yt) for _ in range(2))
    pc, hc = engine.train(p0, Xn, y, small_cfg(), Xtn, yt)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa), f"{opts}: not reproducible"
    assert ha.test_loss == hb.test_loss
    assert not np.array_equal(pa["W1"], pc["W1"]), f"{opts} had no effect on training"
    assert ha.train_loss[1:] != hc.train_loss[1:]


def test_dropout_scales_kept_units_and_is_off_at_evaluation(small_data):
    """Inverted dropout: the mask is 0 or 1/keep; evaluation uses no mask."""
    Xn, y, _, _ = small_data
    params = H.init_params(4, 4, 16, seed=0)
    mxs = engine.mx_for(params, Xn[:, :8])
    fw = engine.forward_batch(params, mxs)
    mask = np.zeros((8, 16), np.float32)
    mask[:, ::2] = 2.0
    fd = engine.forward_batch(params, mxs, drop_mask=mask)
    assert np.allclose(fd["X1"], fw["X1"] * mask)
    P = engine.evaluate(params, mxs, y[:8], P_out=True)["P"]
    assert np.allclose(P, fw["P"].T, atol=1e-6)


def test_tta_averages_an_image_and_its_mirror(small_data):
    _, _, Xtn, yt = small_data
    params = H.init_params(4, 4, 16, seed=2)
    X = Xtn[:, :20]
    mirrored = H.to_columns(H.to_images(X)[:, ::-1])          # columns reversed: left <-> right
    want = 0.5 * (H.predict(params, X) + H.predict(params, mirrored))
    got = engine.predict(params, X, tta=True)
    assert rel_err(got, want) < 1e-5, "TTA is not the mean of the image's and its mirror's P"
    assert rel_err(engine.predict(params, X, tta=False), H.predict(params, X)) < 1e-5
    assert not np.allclose(got, H.predict(params, X), atol=1e-4), "TTA changed nothing"
    ev = engine.evaluate(params, engine.mx_for(params, X), yt[:20], tta=True)
    assert ev["acc"] == np.mean(want.argmax(axis=0) == yt[:20])
    assert np.array_equal(aug_tables(4, flip=True)[1], engine.mirror_tables((4,))[0])


# ============================================================ runs that end early keep what they did

def test_divergence_raises_with_params_and_history(small_data):
    Xn, y, _, _ = small_data
    e = diverged(engine.train, Xn, y, small_cfg(eta_min=1e3, eta_max=1e6))
    assert "update" in str(e) and isinstance(e.history, H.History) and not e.history.complete


def test_stop_flag_ends_the_run_where_set(small_data):
    Xn, y, Xtn, yt = small_data
    stop = threading.Event()
    seen = []

    def on_update(t_done, T):
        seen.append((t_done, T))
        if t_done == 13:
            stop.set()

    p, h = engine.train(H.init_params(4, 4, 16), Xn, y, small_cfg(), Xtn, yt,
                        on_update=on_update, stop=stop)
    assert h.status == "stopped" and not h.complete
    assert h.updates_done == 13 and seen[-1] == (13, 40)
    assert h.t == [0, 10], f"evaluations {h.t}: no final evaluation for a stopped run"
    assert all(np.isfinite(v).all() for v in p.values())
    stop2 = threading.Event()
    stop2.set()
    _, h0 = engine.train(H.init_params(4, 4, 16), Xn, y, small_cfg(), stop=stop2)
    assert h0.status == "stopped" and h0.updates_done == 0


def test_on_update_is_called_once_per_update(small_data):
    Xn, y, _, _ = small_data
    seen = []
    _, h = engine.train(H.init_params(4, 3, 8), Xn, y, small_cfg(),
                        on_update=lambda t, T: seen.append((t, T)))
    assert seen == [(t, 40) for t in range(1, 41)] and h.complete


@pytest.mark.parametrize("at", [10, 40])
def test_a_callback_error_keeps_the_run(small_data, at):
    """An exception in the callback (e.g. a live plot) -> TrainingFailed with .params and
    .history (status 'failed', the updates made), the cause chained."""
    Xn, y, Xtn, yt = small_data

    def callback(hist):
        if hist.t[-1] == at:
            raise RuntimeError("the plot broke")

    with pytest.raises(engine.TrainingFailed) as ei:
        engine.train(H.init_params(4, 4, 16), Xn, y, small_cfg(), Xtn, yt, callback=callback)
    e = ei.value
    assert isinstance(e.__cause__, RuntimeError) and "the plot broke" in str(e.__cause__)
    assert e.history.status == "failed" and not e.history.complete
    assert e.history.updates_done == at and e.history.t[-1] == at
    assert f"update {at} of 40" in str(e)
    assert set(e.params) == {"Fs", "b0", "W1", "b1", "W2", "b2"}
    assert all(np.isfinite(v).all() for v in e.params.values())


def test_ctrl_c_during_an_update_returns_the_run_interrupted(small_data, monkeypatch, capsys):
    Xn, y, Xtn, yt = small_data
    ctrl_c_at(6, monkeypatch)
    p0 = H.init_params(4, 4, 16)
    p, h = engine.train(p0, Xn, y, small_cfg(), Xtn, yt)
    assert h.status == "interrupted" and not h.complete
    assert h.updates_done == 5 and h.t == [0]
    assert not np.array_equal(p["W1"], p0["W1"]), "the 5 updates made were not kept"
    assert "interrupted at update 5 of 40" in capsys.readouterr().out


def test_ctrl_c_in_the_final_evaluation_counts_every_update(small_data):
    Xn, y, _, _ = small_data

    def callback(hist):
        if hist.t[-1] == 40:
            raise KeyboardInterrupt

    _, h = engine.train(H.init_params(4, 4, 16), Xn, y, small_cfg(), callback=callback)
    assert h.status == "interrupted" and h.updates_done == 40


# ============================================================ bad input, refused before any work

@pytest.mark.parametrize("kind", ["uint8", "float 0..255"])
def test_raw_pixels_are_refused_with_the_normalisation_advice(small_data, kind):
    Xn, y, _, _ = small_data
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, Xn.shape).astype(np.uint8)
    X = X if kind == "uint8" else X.astype(np.float32)
    with pytest.raises(ValueError, match="normalise") as ei:
        engine.train(H.init_params(4, 2, 8), X, y, small_cfg(), callback=_never_called,
                     on_update=_never_called)
    assert "X_train" in str(ei.value)
    with pytest.raises(ValueError, match="normalise"):
        engine.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), X[:, :50], y[:50],
                     callback=_never_called)
    with pytest.raises(ValueError, match="normalise"):
        engine.predict(H.init_params(4, 2, 8), X[:, :5])


@pytest.mark.parametrize("where", ["X_train", "X_test"])
def test_nan_images_are_refused(small_data, where):
    Xn, y, Xtn, yt = small_data
    Xn, Xtn = Xn.copy(), Xtn.copy()
    (Xn if where == "X_train" else Xtn)[5, 3] = np.nan
    with pytest.raises(ValueError, match=rf"{where} has NaN or inf.*column 3"):
        engine.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), Xtn, yt, callback=_never_called)


def test_rows_instead_of_columns_are_refused(small_data):
    Xn, y, _, _ = small_data
    with pytest.raises(ValueError, match=r"\(3072, n\).*X_train\.T"):
        engine.train(H.init_params(4, 2, 8), Xn.T, y, small_cfg(), callback=_never_called)


@pytest.mark.parametrize("bad", [1.7, "a", 10, -1])
def test_bad_training_labels_are_refused(small_data, bad):
    Xn, y, _, _ = small_data
    y_bad = y.astype(object if isinstance(bad, str) else np.float64)
    y_bad[7] = bad
    with pytest.raises(ValueError, match="y_train"):
        engine.train(H.init_params(4, 2, 8), Xn, y_bad, small_cfg(), callback=_never_called)


def test_test_labels_and_pairs_are_checked(small_data):
    Xn, y, Xtn, yt = small_data
    yt_bad = yt.copy()
    yt_bad[0] = 10
    with pytest.raises(ValueError, match="y_test"):
        engine.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), Xtn, yt_bad, callback=_never_called)
    with pytest.raises(ValueError, match="y_train has 199 labels for 200 images"):
        engine.train(H.init_params(4, 2, 8), Xn, y[:-1], small_cfg(), callback=_never_called)
    for kw in (dict(X_test=Xtn), dict(y_test=yt)):
        with pytest.raises(ValueError, match="X_test and y_test together"):
            engine.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), callback=_never_called, **kw)
    with pytest.raises(ValueError, match="batch_size 500 is larger"):
        engine.train(H.init_params(4, 2, 8), Xn, y, small_cfg(batch_size=500), callback=_never_called)


@pytest.mark.parametrize("field,value", [("flip", "no"), ("increasing", "False"), ("tta", 1),
                                         ("translate", 1.5), ("step", 19.9), ("n_cycles", True),
                                         ("threads", 0), ("dropout", "0.3"), ("batch_size", 20.0)])
def test_settings_are_type_checked_with_the_field_name(small_data, field, value):
    Xn, y, _, _ = small_data
    with pytest.raises(ValueError, match=field) as ei:
        engine.train(H.init_params(4, 2, 8), Xn, y, small_cfg(**{field: value}),
                     callback=_never_called)
    assert repr(value) in str(ei.value), f"the message does not show the value: {ei.value}"


@pytest.mark.parametrize("kw", [dict(dropout=1.0), dict(translate=17), dict(whiten=-0.1)])
def test_bonus_ranges_are_checked(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        small_cfg(**kw).validate()


def test_config_conversion_and_from_dict():
    plain = H.TrainConfig(step=30, lam=0.002)
    e = engine.as_engine_config(plain)
    assert isinstance(e, EngineConfig) and e.step == 30 and e.lam == 0.002 and not e.flip
    assert engine.as_engine_config(None) == EngineConfig()
    with pytest.raises(ValueError, match="TrainConfig"):
        engine.as_engine_config({"step": 30})
    d = small_cfg(flip=True).to_dict()
    assert EngineConfig.from_dict(d) == small_cfg(flip=True)
    with pytest.raises(ValueError, match="unknown config fields.*flipp"):
        EngineConfig.from_dict(dict(d, flipp=True))


def test_absurd_schedules_are_refused_before_any_work(small_data):
    Xn, y, _, _ = small_data
    for kw in (dict(n_cycles=40, increasing=True), dict(step=5_000_000)):
        with pytest.raises(ValueError, match="lower n_cycles or step"):
            engine.train(H.init_params(4, 2, 8), Xn, y, small_cfg(**kw), callback=_never_called)
    # a schedule within the update limit on a huge network: refused by its expected time
    big = {"Fs": np.broadcast_to(np.float32(0), (4, 4, 3, 400)),
           "b0": np.broadcast_to(np.float32(0), (400, 1)),
           "W1": np.broadcast_to(np.float32(0), (20000, 64 * 400)),
           "b1": np.broadcast_to(np.float32(0), (20000, 1)),
           "W2": np.broadcast_to(np.float32(0), (10, 20000)),
           "b2": np.broadcast_to(np.float32(0), (10, 1))}
    cfg = EngineConfig(n_cycles=1, step=400_000)
    with pytest.raises(ValueError, match=r"about \d+ days.*lower n_cycles or step"):
        engine.check_schedule(big, cfg)
    engine.check_schedule(H.init_params(4, 2, 8), cfg)             # a tiny net: fine


def test_parameters_are_checked():
    p = H.init_params(4, 3, 8)
    with pytest.raises(ValueError, match="float32 or float64"):
        engine.check_params({k: v.astype(np.int32) for k, v in p.items()})
    with pytest.raises(ValueError, match="missing 'W2'"):
        engine.check_params({k: v for k, v in p.items() if k != "W2"})
    with pytest.raises(ValueError, match="W1 must have shape"):
        engine.check_params(dict(p, W1=p["W1"][:, :-1]))
    with pytest.raises(ValueError, match="b0 must have shape"):
        engine.check_params(dict(p, b0=p["b0"][:-1]))
    with pytest.raises(ValueError, match="dict"):
        engine.check_params([p])
    assert engine.check_params(p) is p


def test_estimate_seconds_structure():
    params = H.init_params(4, 4, 16)
    cfg = small_cfg(n_cycles=2, step=25)
    est = engine.estimate_seconds(params, cfg, n_train=200, n_eval=100, timed=2)
    assert set(est) == {"seconds", "per_update_s", "updates", "eval_s"}
    assert est["updates"] == cfg.n_updates == 100
    assert est["per_update_s"] > 0 and est["eval_s"] > 0
    assert est["seconds"] == pytest.approx(est["updates"] * est["per_update_s"] + est["eval_s"])
    assert all(np.array_equal(v, H.init_params(4, 4, 16)[k]) for k, v in params.items()), \
        "estimate_seconds changed the parameters"


def test_conv_gemm_is_the_spec_convolution():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3072, 3))
    Fs = rng.standard_normal((8, 8, 3, 2))
    want = H.conv_matmul(H.build_mx(H.to_images(X), 8), H.flatten_filters(Fs))
    got = engine.conv_gemm(mx_batch_first(X, 8, dtype=np.float64), H.flatten_filters(Fs))
    assert got.shape == (3, 16, 2)
    assert np.max(np.abs(got.transpose(1, 2, 0) - want)) < 1e-12, "conv_gemm is not the convolution"
