"""Tests for helpers.py section 4 (training): cyclic learning rates, determinism, divergence,
checkpoints, one SGD step against torch.optim.SGD, augmentation on MX, dropout, the MX cache,
Ctrl-C, and a small arch2 run that must beat chance by a wide margin."""

import numpy as np
import pytest

import helpers as H
from workbook import data, oracle, synthetic


@pytest.fixture(scope="module")
def small_data():
    """200 synthetic training and 100 test images, normalised with the training statistics."""
    X, y = synthetic.make_synthetic(200, seed=2)
    Xt, yt = synthetic.make_synthetic(100, seed=2, stream=1)
    Xn, Xtn, _, _ = data.normalise(X, Xt)
    return Xn, y, Xtn, yt


def small_cfg(**kw):
    base = dict(n_cycles=1, step=20, eta_min=1e-4, eta_max=0.05, batch_size=20, lam=0.001,
                eval_every=10, eval_train_n=100, progress=False)
    base.update(kw)
    return H.TrainConfig(**base)


# ------------------------------------------------------------------------ cyclic learning rate

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


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_cyclic_eta_increasing_corners(decay):
    lo, hi, n_s = 1e-5, 1e-1, 100
    for i in range(5):
        start, step = 2 * n_s * (2 ** i - 1), n_s * 2 ** i
        top = hi * decay ** i
        for t, want in [(start, lo), (start + step, top), (start + step // 2, (lo + top) / 2),
                        (start + 2 * step - 1, lo + (top - lo) / step)]:
            got = H.cyclic_eta(t, lo, hi, n_s, increasing=True, decay=decay)
            assert abs(got - want) < 1e-12, \
                f"increasing cycles, decay={decay}: eta(t={t}) = {got}, expected {want} (cycle {i})"


@pytest.mark.parametrize("n_cycles,step,increasing,decay",
                         [(3, 7, False, 1.0), (2, 5, False, 0.7), (4, 3, True, 1.0), (3, 5, True, 0.5)])
def test_schedule_matches_reference_and_n_updates(n_cycles, step, increasing, decay):
    cfg = H.TrainConfig(n_cycles=n_cycles, step=step, eta_min=1e-4, eta_max=0.2,
                        increasing=increasing, eta_decay=decay)
    want_n = 2 * step * (2 ** n_cycles - 1) if increasing else 2 * step * n_cycles
    assert cfg.n_updates == want_n, f"n_updates {cfg.n_updates}, expected {want_n}"
    ref = reference_schedule(n_cycles, step, 1e-4, 0.2, increasing, decay)
    etas = cfg.etas()
    assert etas.shape == (want_n,)
    assert np.max(np.abs(etas - ref)) < 1e-12, \
        f"schedule differs from the cycle-by-cycle reference by {np.max(np.abs(etas - ref)):.3g}"
    with pytest.raises(ValueError):
        H.cyclic_eta(-1, 1e-4, 0.2, step)


# ------------------------------------------------------------------------ determinism

def test_same_seed_same_history_different_seed_differs(small_data):
    Xn, y, Xtn, yt = small_data
    p0 = H.init_params(4, 4, 16, seed=0)
    runs = [H.train(p0, Xn, y, small_cfg(seed=s), Xtn, yt) for s in (0, 0, 1)]
    (pa, ha), (pb, hb), (pc, hc) = runs
    metrics = ("t", "train_loss", "train_loss_ls", "train_cost", "train_acc",
               "test_loss", "test_loss_ls", "test_cost", "test_acc", "eta")
    for m in metrics:
        assert getattr(ha, m) == getattr(hb, m), f"same seed, different history.{m}"
    assert len(ha.t) == 5 and ha.t == [0, 10, 20, 30, 40] and ha.updates_done == 40
    for k in pa:
        assert np.array_equal(pa[k], pb[k]), f"same seed, different final {k}"
    assert any(not np.array_equal(pa[k], pc[k]) for k in pa), "seed 1 gave the same parameters"
    assert ha.train_loss[1:] != hc.train_loss[1:], "seed 1 gave the same training losses"
    # train works on a copy
    assert all(np.array_equal(p0[k], H.init_params(4, 4, 16, seed=0)[k]) for k in p0)


# ------------------------------------------------------------------------ divergence

def test_huge_eta_raises_training_diverged(small_data):
    Xn, y, _, _ = small_data
    cfg = small_cfg(eta_min=1e3, eta_max=1e6)
    with np.errstate(all="ignore"), pytest.raises(H.TrainingDiverged) as ei:
        H.train(H.init_params(4, 4, 16), Xn, y, cfg)
    msg = str(ei.value)
    assert "update" in msg and "eta_max" in msg, f"message does not say where/what to do: {msg}"
    assert isinstance(ei.value, FloatingPointError)
    h = ei.value.history
    assert isinstance(h, H.History) and h.updates_done < cfg.n_updates
    assert f"update {h.updates_done}" in msg


def test_blown_up_inputs_raise_training_diverged(small_data):
    Xn, y, _, _ = small_data
    with np.errstate(all="ignore"), pytest.raises(H.TrainingDiverged, match=r"update \d+.*eta_max") as ei:
        H.train(H.init_params(4, 4, 16), Xn * 1e3, y, small_cfg(eta_min=1e3, eta_max=1e4, eval_every=1000))
    assert ei.value.history.updates_done < 50


# ------------------------------------------------------------------------ checkpoints

def test_checkpoint_round_trip(tmp_path, small_data):
    Xn, y, Xtn, yt = small_data
    cfg = small_cfg(step=5, eval_every=5)
    params, hist = H.train(H.init_params(4, 4, 16, seed=3), Xn, y, cfg, Xtn, yt, data_name="synthetic")
    path = H.save_checkpoint(tmp_path / "run", params, cfg, hist)
    assert path == tmp_path / "run.npz"
    p2, cfg2, hist2 = H.load_checkpoint(path, like=params)
    assert set(p2) == set(params)
    for k in params:
        assert p2[k].dtype == params[k].dtype and np.array_equal(p2[k], params[k]), \
            f"checkpoint changed param {k}"
    assert cfg2 == cfg
    assert hist2.to_dict() == hist.to_dict()
    # without cfg/history, and float64, and multi-size filters
    p64 = H.init_params((4, 8), (3, 2), 6, dtype=np.float64, seed=1)
    path = H.save_checkpoint(tmp_path / "multi.npz", p64)
    q, c, h = H.load_checkpoint(path)
    assert c is None and h is None
    assert all(np.array_equal(q[k], p64[k]) and q[k].dtype == np.float64 for k in p64)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["multi.npz", "run.npz"], "temp files left"


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    params = H.init_params(4, 3, 8, seed=0)
    path = H.save_checkpoint(tmp_path / "ck.npz", params)
    before = path.read_bytes()

    def broken_savez(file, *a, **kw):     # writes half a file, then fails (disk full, Ctrl-C...)
        with open(file, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise OSError("simulated failure while writing")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="simulated"):
        H.save_checkpoint(path, H.init_params(4, 3, 8, seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == before, "a failed save damaged the existing checkpoint"
    assert [x.name for x in tmp_path.iterdir()] == ["ck.npz"], "a failed save left temp files"
    q, _, _ = H.load_checkpoint(path)
    assert all(np.array_equal(q[k], params[k]) for k in params)


def test_wrong_checkpoint_is_refused(tmp_path):
    params = H.init_params(4, 3, 8, seed=0)
    path = H.save_checkpoint(tmp_path / "ck.npz", params)
    with pytest.raises(ValueError, match="another architecture"):
        H.load_checkpoint(path, like=H.init_params(4, 5, 8))           # other nf: Fs, b0, W1
    with pytest.raises(ValueError, match="other precision"):
        H.load_checkpoint(path, like=H.init_params(4, 3, 8, dtype=np.float64))
    with pytest.raises(ValueError, match="keys"):
        H.load_checkpoint(path, like=H.init_params((4, 8), (3, 3), 8))
    # hand-edited: W1 of the wrong width
    bad = tmp_path / "bad.npz"
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["param_W1"] = d["param_W1"][:, :-1]
    np.savez(bad, **d)
    with pytest.raises(ValueError, match="inconsistent parameters.*W1"):
        H.load_checkpoint(bad)
    # no meta
    d.pop("meta")
    np.savez(bad, **d)
    with pytest.raises(ValueError, match="not a checkpoint"):
        H.load_checkpoint(bad)
    # not a zip at all / truncated
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        H.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        H.load_checkpoint(tmp_path / "missing.npz")


# ------------------------------------------------------------------------ one SGD step vs torch

@pytest.mark.parametrize("eps,dropout", [(0.0, False), (0.1, True)])
def test_train_step_equals_torch_sgd_step(eps, dropout):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    f, nf, nh, n, K = 4, 3, 8, 6, 10
    eta, lam = 0.05, 0.01
    rng = np.random.default_rng(0)
    params = H.init_params(f, nf, nh, seed=1, dtype=np.float64)
    for k in params:
        if k.startswith("b"):
            params[k] = 0.1 * rng.standard_normal(params[k].shape)
    X = rng.standard_normal((3072, n))
    y = rng.integers(0, K, n)
    mask = (rng.random((n, nh)) < 0.5) * 2.0 if dropout else None

    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD(list(t.values()), lr=eta)
    x = torch.tensor(np.ascontiguousarray(H.to_images(X).transpose(3, 2, 0, 1)))
    conv = F.conv2d(x, t["Fs"].permute(3, 2, 0, 1), bias=t["b0"].reshape(nf), stride=f)
    flat = torch.relu(conv.permute(2, 3, 1, 0).reshape(-1, n))          # (n_p*nf, n), C order
    X1 = torch.relu(t["W1"] @ flat + t["b1"])
    if dropout:
        X1 = X1 * torch.tensor(mask.T)
    S = t["W2"] @ X1 + t["b2"]
    Ys = np.full((K, n), eps / (K - 1))
    Ys[y, np.arange(n)] = 1 - eps
    loss = -(torch.tensor(Ys) * torch.log_softmax(S, 0)).sum() / n
    cost = loss + lam * sum((t[k] ** 2).sum() for k in ("Fs", "W1", "W2"))
    opt.zero_grad()
    cost.backward()
    opt.step()

    mxs = [H.mx_batch_first(X, f, dtype=np.float64)]
    ours = {k: v.copy() for k, v in params.items()}
    got_loss = H.train_step(ours, mxs, y, eta, lam=lam, eps=eps, drop_mask=mask)
    assert abs(got_loss - loss.item()) < 1e-12, f"train_step loss {got_loss} vs torch {loss.item()}"
    for k in params:
        after = t[k].detach().numpy()
        assert not np.array_equal(after, params[k]), f"torch did not move {k}"
        e = np.max(np.abs(ours[k] - after)) / np.max(np.abs(after - params[k]))
        assert e < 1e-9, f"{k} after one step differs from torch SGD by {e:.3g} of the update size"


# ------------------------------------------------------------------------ augmentation

def shift_reference(X, dy, dx, flip):
    """Written with index arithmetic: out[r, c] = in'[r - dy, c - dx] (zero outside), where
    in' is the image mirrored left-right when flip."""
    ims = H.to_images(X)
    out = np.zeros_like(ims)
    for r in range(32):
        for c in range(32):
            rs, cs = r - dy, c - dx
            if 0 <= rs < 32 and 0 <= cs < 32:
                out[r, c] = ims[rs, 31 - cs if flip else cs]
    return H.to_columns(out)


def expected_transforms(flip, s):
    shifts = [(0, 0)] + [(dy, dx) for dy in range(-s, s + 1) for dx in range(-s, s + 1)
                         if (dy, dx) != (0, 0)]
    return [(fl, dy, dx) for fl in ((False, True) if flip else (False,)) for dy, dx in shifts]


def test_shift_images_matches_index_reference():
    X = np.random.default_rng(0).standard_normal((3072, 2))
    for dy, dx, flip in [(0, 0, True), (2, -1, False), (-3, 2, True), (1, 1, False), (0, 0, False)]:
        assert np.array_equal(oracle.shift_images(X, dy, dx, flip), shift_reference(X, dy, dx, flip)), \
            f"shift_images(dy={dy}, dx={dx}, flip={flip}) is wrong"


@pytest.mark.parametrize("f", [2, 4, 8])
def test_augment_mx_equals_mx_of_transformed_images(f):
    n, s = 3, 2
    X = np.random.default_rng(f).standard_normal((3072, n))
    mxb = H.mx_batch_first(X, f, dtype=np.float64)
    tables = H.aug_tables(f, flip=True, max_shift=s)
    transforms = expected_transforms(True, s)
    assert tables.shape == (len(transforms), 3072) == (2 * (2 * s + 1) ** 2, 3072)
    assert len(H.aug_tables(f, flip=False, max_shift=s)) == (2 * s + 1) ** 2
    assert np.array_equal(H.aug_tables(f)[0], np.arange(3072)), "table 0 must be the identity"
    for k, (fl, dy, dx) in enumerate(transforms):
        want = H.mx_batch_first(oracle.shift_images(X, dy, dx, fl), f, dtype=np.float64)
        got = H.augment_mx(mxb, tables, np.full(n, k))
        assert np.array_equal(got, want), f"f={f}: table row {k} is not flip={fl}, shift ({dy}, {dx})"
    # a different transform per image
    choice = np.array([len(transforms) - 1, 0, len(transforms) // 2 + 3])
    got = H.augment_mx(mxb, tables, choice)
    for i, k in enumerate(choice):
        fl, dy, dx = transforms[k]
        want = H.mx_batch_first(oracle.shift_images(X[:, i:i + 1], dy, dx, fl), f, dtype=np.float64)[0]
        assert np.array_equal(got[i], want), f"f={f}: image {i} with transform {k}"
    # a flip on MX is the MX of the mirrored images, built by the spec's route
    flip_row = (2 * s + 1) ** 2
    mirrored = H.to_images(X)[:, ::-1]
    want = H.as_batch_first(H.build_mx(mirrored, f))
    assert np.array_equal(H.augment_mx(mxb, tables, np.full(n, flip_row)), want), \
        f"f={f}: flip on MX != build_mx of the mirrored images"


def test_training_with_augmentation_is_deterministic(small_data):
    Xn, y, _, _ = small_data
    cfg = small_cfg(flip=True, translate=2, eval_every=1000)
    p0 = H.init_params(4, 4, 16, seed=0)
    (pa, _), (pb, _), (pc, _) = (H.train(p0, Xn, y, c) for c in (cfg, cfg, small_cfg(eval_every=1000)))
    assert all(np.array_equal(pa[k], pb[k]) for k in pa), "augmented training is not reproducible"
    assert not np.array_equal(pa["W1"], pc["W1"]), "flip/translate had no effect on training"


# ------------------------------------------------------------------------ dropout

def test_dropout_is_deterministic_and_has_an_effect(small_data):
    Xn, y, Xtn, yt = small_data
    p0 = H.init_params(4, 4, 16, seed=0)
    (pa, ha), (pb, hb), (pc, hc) = (H.train(p0, Xn, y, small_cfg(dropout=d), Xtn, yt)
                                    for d in (0.5, 0.5, 0.0))
    for k in pa:
        assert np.array_equal(pa[k], pb[k]), f"dropout run not reproducible: {k} differs"
    assert ha.test_loss == hb.test_loss
    assert not np.array_equal(pa["W1"], pc["W1"]), "dropout=0.5 gave the same W1 as dropout=0"
    assert ha.train_loss[1:] != hc.train_loss[1:]


# ------------------------------------------------------------------------ Ctrl-C

def test_keyboard_interrupt_returns_partial_history(small_data, capsys):
    Xn, y, Xtn, yt = small_data
    calls = []

    def callback(hist):
        calls.append(len(hist.t))
        if len(calls) == 2:
            raise KeyboardInterrupt

    cfg = small_cfg(eval_every=10)
    params, hist = H.train(H.init_params(4, 4, 16), Xn, y, cfg, Xtn, yt, callback=callback)
    assert hist.interrupted is True
    assert calls == [1, 2]
    assert hist.t == [0, 10] and hist.updates_done == 10 < cfg.n_updates
    assert len(hist.test_acc) == len(hist.train_loss) == 2
    assert all(np.isfinite(v).all() for v in params.values())
    assert "interrupted at update 10/40" in capsys.readouterr().out


def test_keyboard_interrupt_in_final_evaluation_counts_all_updates(small_data, capsys):
    Xn, y, _, _ = small_data
    calls = []

    def callback(hist):
        calls.append(1)
        if hist.t[-1] == 40:          # the evaluation after the last update
            raise KeyboardInterrupt

    _, hist = H.train(H.init_params(4, 4, 16), Xn, y, small_cfg(eval_every=10), callback=callback)
    assert len(calls) == 5 and hist.interrupted is True
    assert hist.updates_done == 40, f"all 40 updates ran, but updates_done = {hist.updates_done}"
    assert "interrupted at update 40/40" in capsys.readouterr().out


# ------------------------------------------------------------------------ arch2 learns

def test_arch2_beats_chance_on_synthetic_data():
    X, y = synthetic.make_synthetic(5000, seed=0)
    Xt, yt = synthetic.make_synthetic(1000, seed=0, stream=1)
    Xn, Xtn, _, _ = data.normalise(X, Xt)
    cfg = H.TrainConfig(n_cycles=1, step=250, eta_min=1e-5, eta_max=0.1, batch_size=100,
                        lam=0.003, eval_every=10 ** 6, eval_train_n=1000, progress=False)
    _, hist = H.train(H.init_params(4, 10, 50, seed=0), Xn, y, cfg, Xtn, yt, data_name="synthetic")
    assert hist.updates_done == 500
    assert hist.test_acc[0] < 0.2, f"untrained test accuracy {hist.test_acc[0]}"
    assert hist.test_acc[-1] > 0.3, \
        f"arch2 reached only {hist.test_acc[-1]:.3f} test accuracy after 500 updates (chance 0.1)"
    assert hist.test_loss[-1] < hist.test_loss[0] - 0.3


# ---- bad input (issue 12)

def _never_called(hist):
    raise AssertionError("training started (an evaluation ran) despite bad input")


@pytest.mark.parametrize("kw,match", [
    (dict(batch_size=20.0), "batch_size must be an integer"),
    (dict(n_cycles=2.0), "n_cycles must be an integer"),
    (dict(lam=float("nan")), "lam must be a finite number"),
    (dict(eta_max=float("inf")), "eta_max must be a finite number"),
    (dict(n_cycles=40, increasing=True), "lower n_cycles or step"),
])
def test_train_config_validate_is_clear(kw, match):
    cfg = small_cfg(**kw)
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def test_huge_doubling_schedule_fails_fast_without_memory_error(small_data):
    Xn, y, _, _ = small_data
    with pytest.raises(ValueError, match="lower n_cycles or step"):
        H.train(H.init_params(4, 2, 8), Xn, y, small_cfg(n_cycles=40, increasing=True),
                callback=_never_called)


@pytest.mark.parametrize("bad", [1.7, "a", 10, -1])
def test_bad_training_labels_fail_before_any_update(small_data, bad):
    Xn, y, _, _ = small_data
    y_bad = y.astype(object if isinstance(bad, str) else np.float64)
    y_bad[7] = bad
    with pytest.raises(ValueError, match="y_train"):
        H.train(H.init_params(4, 2, 8), Xn, y_bad, small_cfg(), callback=_never_called)


def test_test_labels_out_of_range_fail_before_any_update(small_data):
    Xn, y, Xtn, yt = small_data
    yt_bad = yt.copy()
    yt_bad[0] = 10
    with pytest.raises(ValueError, match="y_test"):
        H.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), Xtn, yt_bad, callback=_never_called)


def test_x_test_without_y_test_is_a_clear_error(small_data):
    Xn, y, Xtn, yt = small_data
    with pytest.raises(ValueError, match="X_test and y_test together"):
        H.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), X_test=Xtn, callback=_never_called)
    with pytest.raises(ValueError, match="X_test and y_test together"):
        H.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), y_test=yt, callback=_never_called)


@pytest.mark.parametrize("where", ["X_train", "X_test"])
def test_nan_images_fail_before_training(small_data, where):
    Xn, y, Xtn, yt = small_data
    Xn, Xtn = Xn.copy(), Xtn.copy()
    (Xn if where == "X_train" else Xtn)[5, 3] = np.nan
    with pytest.raises(ValueError, match=rf"{where} has NaN or inf"):
        H.train(H.init_params(4, 2, 8), Xn, y, small_cfg(), Xtn, yt, callback=_never_called)


def test_checkpoint_names_with_dots_are_kept(tmp_path):
    p0, p1 = H.init_params(4, 3, 8, seed=0), H.init_params(4, 3, 8, seed=1)
    a = H.save_checkpoint(tmp_path / "arch5.seed0", p0)
    b = H.save_checkpoint(tmp_path / "arch5.seed1", p1)
    assert a != b and a.is_file() and b.is_file()
    assert np.array_equal(H.load_checkpoint(a)[0]["W1"], p0["W1"])
    assert np.array_equal(H.load_checkpoint(b)[0]["W1"], p1["W1"])
    H.save_checkpoint(tmp_path / "model.ckpt", p0)
    q, _, _ = H.load_checkpoint(tmp_path / "model.ckpt")      # the name it was saved under
    assert np.array_equal(q["Fs"], p0["Fs"])


def test_save_checkpoint_never_overwrites_a_non_checkpoint(tmp_path):
    victim = tmp_path / "results.npz"
    victim.write_bytes(b"my thesis results, not a checkpoint")
    before = victim.read_bytes()
    with pytest.raises(FileExistsError, match="not a checkpoint"):
        H.save_checkpoint(victim, H.init_params(4, 3, 8))
    assert victim.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["results.npz"]
    ck = H.save_checkpoint(tmp_path / "ck.npz", H.init_params(4, 3, 8, seed=0))
    H.save_checkpoint(ck, H.init_params(4, 3, 8, seed=1))     # a checkpoint may be replaced
    assert np.array_equal(H.load_checkpoint(ck)[0]["W1"], H.init_params(4, 3, 8, seed=1)["W1"])


def test_checkpoint_of_other_precision_says_so(tmp_path):
    path = H.save_checkpoint(tmp_path / "ck", H.init_params(4, 3, 8))          # float32
    with pytest.raises(ValueError) as exc:
        H.load_checkpoint(path, like=H.init_params(4, 3, 8, dtype=np.float64))
    assert "other precision" in str(exc.value) and "another architecture" not in str(exc.value)
