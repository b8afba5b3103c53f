"""Small shared test utilities (imported by the test modules; not a test file)."""
import numpy as np


def rel_err(a, b):
    """max |a - b| / max(max |a|, max |b|), in float64: one number per array pair."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))


def tiny_cfg(**kw):
    """An engine config (EngineConfig: TrainConfig plus the bonus settings) of 20 updates on
    tiny data, progress bar off (fields overridable)."""
    from workbook.engine import EngineConfig
    base = dict(n_cycles=1, step=10, eta_min=1e-4, eta_max=0.05, batch_size=50, lam=0.001,
                eval_train_n=100, progress=False)
    base.update(kw)
    return EngineConfig(**base)


def plain_cfg(**kw):
    """The same tiny run as a helpers.TrainConfig (the lesson's settings only)."""
    import helpers as H
    base = dict(n_cycles=1, step=10, eta_min=1e-4, eta_max=0.05, batch_size=50, lam=0.001,
                eval_train_n=100)
    base.update(kw)
    return H.TrainConfig(**base)


def max_rel_params(a: dict, b: dict) -> float:
    """The largest rel_err over the arrays of two parameter dicts with the same keys."""
    assert set(a) == set(b), f"different keys: {sorted(a)} vs {sorted(b)}"
    return max(rel_err(a[k], b[k]) for k in a)


def copy_params(p: dict) -> dict:
    return {k: v.copy() for k, v in p.items()}


TINY = dict(f=4, nf=4, nh=16)
TINY_ARCHS = {"a": {"f": 4, "nf": 2, "nh": 8}, "b": {"f": 8, "nf": 3, "nh": 6}}
METRICS = ("train_loss", "train_cost", "train_acc", "test_loss", "test_cost", "test_acc")


def scores(K=10, n=8, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((K, n)) * scale, rng.integers(0, K, n)


class FakeOutput:
    """Stands in for ipywidgets.Output: counts how often the plot area is entered."""

    def __init__(self):
        self.entered = 0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        return False


def diverged(train, X, y, cfg):
    """Run ``train`` (helpers.train or engine.train) with a learning rate that blows up; return
    the TrainingDiverged it must raise, after the checks both trains share."""
    import pytest
    import helpers as H
    with np.errstate(all="ignore"), pytest.raises(H.TrainingDiverged) as ei:
        train(H.init_params(4, 4, 16), X, y, cfg)
    e = ei.value
    assert isinstance(e, FloatingPointError) and "eta_max" in str(e), str(e)
    assert e.history.status == "diverged" and e.history.updates_done < cfg.n_updates
    assert set(e.params) == {"Fs", "b0", "W1", "b1", "W2", "b2"}
    return e


def ctrl_c_at(call: int, monkeypatch) -> list:
    """Make engine.train_step raise KeyboardInterrupt on its ``call``-th call (as Ctrl-C would);
    returns the list that counts the calls."""
    from workbook import engine
    real, calls = engine.train_step, []

    def step(*a, **k):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_step", step)
    return calls
