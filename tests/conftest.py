"""Shared pytest set-up: the repository root is importable (``import helpers``) even without
``pip install -e .``, and every test module runs with one BLAS thread."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

pytest_plugins = ["_cifar"]       # the CIFAR-10 look-alike and the local server (fixtures)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny matrices: one BLAS thread is much faster than many on a busy shared machine
    (multi-threaded OpenBLAS was 15-27x slower on these shapes under load)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def tiny():
    """300 training and 100 test images of the synthetic stand-in, normalised like load_dataset."""
    from workbook import data, synthetic
    Xtr, ytr = synthetic.make_synthetic(300, seed=0)
    Xte, yte = synthetic.make_synthetic(100, seed=0, stream=1)
    Xtr_n, Xte_n, _, _ = data.normalise(Xtr, Xte)
    return {"X_train": Xtr_n, "y_train": ytr, "X_test": Xte_n, "y_test": yte,
            "name": "SYNTHETIC tiny test subset"}


@pytest.fixture(scope="module")
def tiny_data():
    """load_dataset-like dict: 300 train, 100 val, 100 test synthetic images, normalised."""
    from workbook import data, synthetic
    X, y = synthetic.make_synthetic(400, seed=3)
    Xt, yt = synthetic.make_synthetic(100, seed=3, stream=1)
    Xtr, Xva, Xte, _, _ = data.normalise(X[:, :300], X[:, 300:], Xt)
    return {"X_train": Xtr, "y_train": y[:300], "X_val": Xva, "y_val": y[300:],
            "X_test": Xte, "y_test": yt, "name": "tiny synthetic (test)"}


@pytest.fixture
def isolated_data(monkeypatch, tmp_path):
    """No CIFAR10_DIR / WORKBOOK_DATA / fast mode from the caller's shell; DATA_DIR is a temp folder."""
    from workbook import config
    for k in ("CIFAR10_DIR", "WORKBOOK_DATA", "WORKBOOK_FAST"):
        monkeypatch.delenv(k, raising=False)
    data_dir = tmp_path / "data_dir"
    monkeypatch.setattr(config, "DATA_DIR", data_dir)
    return data_dir


@pytest.fixture(scope="module")
def small_data():
    """(X_train, y_train, X_test, y_test): 200 synthetic training and 100 test images,
    normalised with the training statistics (float32)."""
    from workbook import data, synthetic
    X, y = synthetic.make_synthetic(200, seed=2)
    Xt, yt = synthetic.make_synthetic(100, seed=2, stream=1)
    Xn, Xtn, _, _ = data.normalise(X, Xt)
    return Xn, y, Xtn, yt


@pytest.fixture(scope="module")
def eq_data():
    """(X_train, y_train, X_test, y_test): 1000 + 200 synthetic images, normalised (float32),
    for the engine-equals-lesson runs of 300 updates at batch size 100."""
    from workbook import data, synthetic
    X, y = synthetic.make_synthetic(1000, seed=2)
    Xt, yt = synthetic.make_synthetic(200, seed=2, stream=1)
    Xn, Xtn, _, _ = data.normalise(X, Xt)
    return Xn, y, Xtn, yt
