"""Small shared test utilities (imported by the test modules; not a test file)."""
import numpy as np


def rel_err(a, b):
    """max |a - b| / max(max |a|, max |b|), in float64: one number per array pair."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))


def tiny_cfg(**kw):
    """A TrainConfig of 20 updates on tiny data (fields overridable)."""
    import helpers as H
    base = dict(n_cycles=1, step=10, eta_min=1e-4, eta_max=0.05, batch_size=50, lam=0.001,
                eval_train_n=100, progress=False)
    base.update(kw)
    return H.TrainConfig(**base)


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
