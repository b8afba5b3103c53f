"""Tests for workbook.synthetic: the procedural stand-in is deterministic, balanced and cached safely."""
import numpy as np
import pytest

from workbook import data, synthetic

pytestmark = pytest.mark.usefixtures("isolated_data")


def _spec_ims(X):
    """The spec's reshape: X (3072, n) -> X_ims (32, 32, 3, n)."""
    n = X.shape[1]
    return np.transpose(X.reshape((32, 32, 3, n), order="F"), (1, 0, 2, 3))


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_shapes_dtypes_balance():
    for n in (1000, 1234, 7):
        X, y = synthetic.make_synthetic(n, seed=5)
        assert X.shape == (3072, n) and X.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        counts = np.bincount(y, minlength=10)
        assert counts.sum() == n and counts.min() == n // 10
        assert counts.max() == n // 10 + (n % 10 > 0)
        assert (counts == n // 10 + 1).sum() == n % 10
    assert 10 <= X.std() and X.min() < 30 and X.max() > 225        # not a blank image


def test_synthetic_deterministic_and_seeded():
    X1, y1 = synthetic.make_synthetic(300, seed=7)
    X2, y2 = synthetic.make_synthetic(300, seed=7)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)        # bit-identical
    X3, y3 = synthetic.make_synthetic(300, seed=8)
    assert not np.array_equal(y1, y3) and (X1 != X3).mean() > 0.9
    X4, _ = synthetic.make_synthetic(300, seed=7, stream=1)
    assert (X1 != X4).mean() > 0.9
    # image i only depends on (seed, stream, i): prefixes and offsets agree
    X5, y5 = synthetic.make_synthetic(120, seed=7)
    assert np.array_equal(X5, X1[:, :120]) and np.array_equal(y5, y1[:120])
    X6, y6 = synthetic.make_synthetic(50, seed=7, start=990)
    X7, y7 = synthetic.make_synthetic(1040, seed=7)
    assert np.array_equal(X6, X7[:, 990:]) and np.array_equal(y6, y7[990:])


def test_synthetic_labels_carry_signal():
    """Nearest class mean on 8x8-pooled images beats chance (10%) clearly: the classes are
    visually different. (The real difficulty check is a training run; see the notebook.)"""
    def feats(X):
        ims = _spec_ims(X).astype(np.float64)
        return ims.reshape(8, 4, 8, 4, 3, -1).mean(axis=(1, 3)).reshape(-1, X.shape[1])
    Xtr, ytr = synthetic.make_synthetic(2000, seed=1)
    Xte, yte = synthetic.make_synthetic(500, seed=1, stream=1)
    Ftr, Fte = feats(Xtr), feats(Xte)
    mu, sd = Ftr.mean(1, keepdims=True), Ftr.std(1, keepdims=True)
    Ftr, Fte = (Ftr - mu) / sd, (Fte - mu) / sd
    C = np.stack([Ftr[:, ytr == k].mean(1) for k in range(10)], 1)      # (d, 10)
    pred = ((Fte[:, :, None] - C[:, None, :]) ** 2).sum(0).argmin(1)
    assert (pred == yte).mean() > 0.2


def test_synthetic_pool_cache(monkeypatch, isolated_data):
    monkeypatch.setattr(synthetic, "N_POOL", {"train": 1000, "test": 300})
    monkeypatch.setattr(synthetic, "_CACHE_MIN", 100)
    d1 = data.load_dataset(source="synthetic", n_val=100, verbose=False)
    files = sorted(p.name for p in isolated_data.iterdir())
    assert len(files) == 2 and all(f.endswith(".npz") for f in files)   # train and test pools
    X, y = synthetic.make_synthetic(900, seed=0)
    np.testing.assert_array_equal(d1["y_train"], y)
    d2 = data.load_dataset(source="synthetic", n_val=100, verbose=False)   # from the cache
    assert np.array_equal(d1["X_train"], d2["X_train"]) and np.array_equal(d1["X_test"],
                                                                           d2["X_test"])
    # a stale cache (another generator) and a corrupt one are both regenerated
    train_file = next(p for p in isolated_data.iterdir() if "train" in p.name)
    np.savez(train_file, X=np.zeros((3072, 1000), np.uint8), y=np.zeros(1000, np.int64))
    d3 = data.load_dataset(source="synthetic", n_val=100, verbose=False)
    assert np.array_equal(d1["X_val"], d3["X_val"])
    train_file.write_bytes(b"garbage")
    d4 = data.load_dataset(source="synthetic", n_val=100, verbose=False)
    assert np.array_equal(d1["X_train"], d4["X_train"])
    assert sorted(p.name for p in isolated_data.iterdir()) == files          # no temp files
