"""Tests for workbook/data.py: CIFAR-10 loading (downloaded, verified, extracted: the download
and extraction themselves are tested in test_files.py), normalisation and load_dataset.

Everything runs offline: a tiny CIFAR-10 look-alike (the official folder layout and pickle
format, a few random images per batch) is built in tmp_path and served from a local HTTP
server on 127.0.0.1. Nothing is written to the repository's data/ folder."""
import hashlib
import io
import pickle
import os
import urllib.request
from pathlib import Path
import numpy as np
import pytest
import helpers as H
from workbook import data, images, synthetic
from _cifar import FOLDER, M, closed_port_url

pytestmark = pytest.mark.usefixtures("isolated_data")


def _spec_ims(X):
    """The spec's reshape: X (3072, n) -> X_ims (32, 32, 3, n)."""
    n = X.shape[1]
    return np.transpose(X.reshape((32, 32, 3, n), order="F"), (1, 0, 2, 3))


def _check_loaded(d, fake):
    n, n_test = 5 * M, M
    assert d["X_train"].shape == (3072, n) and d["X_train"].dtype == np.uint8
    assert d["X_test"].shape == (3072, n_test) and d["X_test"].dtype == np.uint8
    assert d["y_train"].shape == (n,) and d["y_train"].dtype == np.int64
    assert d["y_test"].dtype == np.int64
    assert d["label_names"] == data.CIFAR10_LABELS
    np.testing.assert_array_equal(d["y_train"], fake.y_train)
    np.testing.assert_array_equal(d["y_test"], fake.y_test)


def _check_split(d, n_train, n_val, n_test):
    for part, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        X, Y, y = d[f"X_{part}"], d[f"Y_{part}"], d[f"y_{part}"]
        assert X.shape == (3072, n) and X.dtype == np.float32
        assert Y.shape == (10, n) and y.shape == (n,) and y.dtype == np.int64
        assert np.array_equal(Y.argmax(0), y)
    assert d["mean"].shape == d["std"].shape == (3072, 1)


# ----------------------------------------------------------------------------- download
# ----------------------------------------------------------------------------- extraction
def test_load_cifar10_downloads_verifies_extracts(tmp_path, server, fake_cifar):
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    root = tmp_path / "root"
    d = data.load_cifar10(root=root, url=server.url("/c.tgz"), md5=fake_cifar.md5)
    _check_loaded(d, fake_cifar)
    assert (root / FOLDER / "batches.meta").is_file()
    assert server.hits["/c.tgz"] == 1
    data.load_cifar10(root=root, url=server.url("/c.tgz"), md5=fake_cifar.md5)
    assert server.hits["/c.tgz"] == 1                 # second call: read from disk only


def test_load_cifar10_from_corrupt_download_fails_without_leftovers(tmp_path, server,
                                                                   fake_cifar):
    truncated = fake_cifar.tar_bytes[: len(fake_cifar.tar_bytes) // 2]
    server.routes["/c.tgz"] = truncated
    root = tmp_path / "root"
    with pytest.raises(RuntimeError, match="truncated or corrupt"):
        data.load_cifar10(root=root, url=server.url("/c.tgz"),
                       md5=hashlib.md5(truncated).hexdigest())
    assert not (root / FOLDER).exists()
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]


def test_cifar10_dir_override(tmp_path, monkeypatch, fake_cifar):
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    empty_root = tmp_path / "nothing-here"
    assert data.cifar10_available(root=empty_root)
    d = data.load_cifar10(root=empty_root, download=False)
    _check_loaded(d, fake_cifar)
    assert not empty_root.exists()                    # nothing was downloaded or created
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder.parent))   # the parent works too
    _check_loaded(data.load_cifar10(root=empty_root, download=False), fake_cifar)


def test_cifar10_dir_pointing_at_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="CIFAR10_DIR"):
        data.load_cifar10(root=tmp_path)


def test_no_data_and_no_download(tmp_path):
    assert not data.cifar10_available(root=tmp_path)
    with pytest.raises(FileNotFoundError) as exc:
        data.load_cifar10(root=tmp_path, download=False)
    assert "make data" in str(exc.value) and "CIFAR10_DIR" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_or_corrupt_batch_file(tmp_path, monkeypatch, fake_cifar):
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    (fake_cifar.folder / "data_batch_3").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(RuntimeError, match="data_batch_3"):
        data.load_cifar10(download=False)
    (fake_cifar.folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.load_cifar10(download=False)


def test_layout_roundtrip_matches_pickled_rows(monkeypatch, fake_cifar):
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    d = data.load_cifar10(download=False)
    X, rows = d["X_train"], fake_cifar.rows_train
    for i in range(rows.shape[0]):
        np.testing.assert_array_equal(X[:, i], rows[i])        # image i = pickled row i
    np.testing.assert_array_equal(d["X_test"].T, fake_cifar.rows_test)
    X_ims = _spec_ims(X)
    rng = np.random.default_rng(0)
    for _ in range(300):
        r, c, ch, i = (int(rng.integers(0, k)) for k in (32, 32, 3, rows.shape[0]))
        assert X_ims[r, c, ch, i] == rows[i, ch * 1024 + r * 32 + c]


def test_fetch_or_explain_offline_and_online(tmp_path, server, fake_cifar, capsys):
    assert data.fetch_cifar10_or_explain(root=tmp_path / "r1", url=closed_port_url()) is False
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "SYNTHETIC" in out and "could not fetch" in out
    assert list((tmp_path / "r1").iterdir()) == []
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    assert data.fetch_cifar10_or_explain(root=tmp_path / "r2", url=server.url("/c.tgz"),
                                      md5=fake_cifar.md5) is True
    assert "CIFAR-10 ready" in capsys.readouterr().out


# ----------------------------------------------------------------------------- preprocessing
def test_one_hot_and_normalise():
    y = np.array([3, 0, 9, 3])
    Y = H.one_hot(y)
    assert Y.shape == (10, 4) and Y.dtype == np.float32
    assert np.array_equal(Y.argmax(0), y) and np.array_equal(Y.sum(0), np.ones(4))
    with pytest.raises(ValueError):
        H.one_hot(np.array([10]))
    rng = np.random.default_rng(0)
    A = rng.integers(0, 256, (3072, 50), dtype=np.uint8)
    B = rng.integers(0, 256, (3072, 7), dtype=np.uint8)
    An, Bn, mean, std = data.normalise(A, B)
    assert An.dtype == Bn.dtype == mean.dtype == np.float32 and mean.shape == (3072, 1)
    ref_mean, ref_std = A.mean(1, keepdims=True), A.std(1, keepdims=True)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
    np.testing.assert_allclose(std, ref_std, rtol=1e-6)
    np.testing.assert_allclose(Bn, (B - ref_mean) / ref_std, rtol=1e-5, atol=1e-5)


def test_load_dataset_cifar10_split(monkeypatch, fake_cifar, capsys):
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    N = 5 * M
    for source in ("cifar10", "auto"):                 # auto: on disk and not fast -> CIFAR-10
        d = data.load_dataset(source=source, n_val=5)
        _check_split(d, N - 5, 5, M)
        assert d["source"] == "CIFAR-10" and not d["synthetic"] and d["name"] == "CIFAR-10"
        assert d["label_names"] == data.CIFAR10_LABELS
        assert "data: CIFAR-10 - train 25, val 5, test 6" in capsys.readouterr().out
    rows = fake_cifar.rows_train.astype(np.float64)
    mu, sd = rows[:N - 5].mean(0)[:, None], rows[:N - 5].std(0)[:, None]
    np.testing.assert_allclose(d["X_train"], (rows[:N - 5].T - mu) / sd, atol=1e-4)
    np.testing.assert_allclose(d["X_val"], (rows[N - 5:].T - mu) / sd, atol=1e-4)  # the LAST 5
    np.testing.assert_allclose(d["X_test"], (fake_cifar.rows_test.T - mu) / sd, atol=1e-4)
    assert np.array_equal(d["y_val"], fake_cifar.y_train[N - 5:])
    d = data.load_dataset(source="cifar10", n_train=10, n_val=4, n_test=3, verbose=False)
    _check_split(d, 10, 4, 3)
    assert np.array_equal(d["y_train"], fake_cifar.y_train[:10])
    assert np.array_equal(d["y_val"], fake_cifar.y_train[N - 4:])
    assert np.array_equal(d["y_test"], fake_cifar.y_test[:3])
    with pytest.raises(ValueError):
        data.load_dataset(source="cifar10", n_train=N - 4, n_val=5, verbose=False)   # overlap


def test_load_dataset_auto_without_cifar_is_synthetic_and_never_downloads(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("auto mode must not download")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    d = data.load_dataset(n_train=50, n_val=10, n_test=20, verbose=False)
    assert d["synthetic"] and not d["fast"] and d["name"] == "SYNTHETIC (not CIFAR-10)"
    with pytest.raises(ValueError):
        data.load_dataset(source="imagenet")


def test_load_dataset_fast_mode_is_synthetic(monkeypatch, fake_cifar, capsys, isolated_data):
    monkeypatch.setenv("WORKBOOK_FAST", "1")
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))   # present, but fast mode wins
    d = data.load_dataset()
    n_tr, n_va, n_te = (data.FAST_SIZES[k] for k in ("n_train", "n_val", "n_test"))
    _check_split(d, n_tr, n_va, n_te)
    assert d["synthetic"] and d["fast"] and d["source"] == "synthetic"
    assert d["label_names"] == synthetic.SYNTHETIC_LABELS
    assert "SYNTHETIC" in d["name"] and "FAST MODE" in d["name"]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "SYNTHETIC" in out and "fast mode" in out
    assert f"train {n_tr}, val {n_va}, test {n_te}" in out
    # training columns are standardised ...
    np.testing.assert_allclose(d["X_train"].mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(d["X_train"].std(1), 1, atol=1e-3)
    # ... and val/test use the *training* statistics (val = the last images of the 50k pool)
    Xtr, _ = synthetic.make_synthetic(n_tr, seed=0)
    Xva, yva = synthetic.make_synthetic(n_va, seed=0, start=50000 - n_va)
    Xte, yte = synthetic.make_synthetic(n_te, seed=0, stream=1)
    mu = Xtr.mean(1, keepdims=True)
    sd = Xtr.std(1, keepdims=True)
    np.testing.assert_allclose(d["mean"], mu, rtol=1e-5)
    np.testing.assert_allclose(d["X_val"], (Xva - mu) / sd, atol=1e-4)
    np.testing.assert_allclose(d["X_test"], (Xte - mu) / sd, atol=1e-4)
    assert np.array_equal(d["y_val"], yva) and np.array_equal(d["y_test"], yte)
    assert abs(d["X_val"].mean(1)).max() > 1e-3        # not standardised with its own stats
    assert not isolated_data.exists()                      # small requests never touch the cache
    # explicit sizes win over FAST_SIZES
    _check_split(data.load_dataset(n_train=100, n_val=20, n_test=30, verbose=False), 100, 20, 30)


# ---------------------------------------------------------------------- bad input (issue 12)
ROOT = Path(__file__).resolve().parents[1]


class _RunsCode:
    """Unpickling this calls ``func(*args)``: the classic pickle payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 wrote its str (SHORT_BINSTRING/BINSTRING, no _codecs.encode),
    as in the official batches (protocol 2, made by Python 2 and NumPy)."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str2(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else
                   pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)
    dispatch[bytes] = _save_str2


def _dumps(d, protocol):
    if protocol != "py2":
        return pickle.dumps(d, protocol=protocol)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(d)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _repickle(folder, protocol):
    for name in data.CIFAR10_FILES:
        path = folder / name
        path.write_bytes(_dumps(pickle.loads(path.read_bytes(), encoding="bytes"), protocol))
        if protocol == "py2":                        # exactly the official batches' globals
            assert b"_codecs" not in path.read_bytes()
            assert (b"cnumpy.core.multiarray\n_reconstruct" in path.read_bytes()) == (
                name != "batches.meta")


@pytest.mark.parametrize("protocol", ["py2", 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("file,how", [("data_batch_1", "os.system"),
                                      ("batches.meta", "builtins.exec")])
def test_batch_pickle_that_runs_code_is_refused_and_not_run(tmp_path, monkeypatch, fake_cifar,
                                                            protocol, file, how):
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    _repickle(fake_cifar.folder, protocol)
    _check_loaded(data.load_cifar10(download=False), fake_cifar)   # genuine batches load
    marker = tmp_path / "payload-ran"
    payload = (_RunsCode(os.system, f"touch {marker}") if how == "os.system" else
               _RunsCode(exec, f"open({str(marker)!r}, 'w').close()"))
    path = fake_cifar.folder / file
    d = pickle.loads(path.read_bytes(), encoding="bytes")
    d[b"num_vis" if file == "batches.meta" else b"batch_label"] = payload
    path.write_bytes(_dumps(d, protocol))
    try:
        data.load_cifar10(download=False)
        err = None
    except Exception as e:   # noqa: BLE001 - checked below, after the marker
        err = e
    assert not marker.exists(), "unpickling the batch ran the payload"
    assert isinstance(err, data.UnsafePickleError), f"expected UnsafePickleError, got {err!r}"
    msg = str(err)
    assert file in msg and ("system" in msg or "exec" in msg) and "nothing in it was run" in msg
    assert "re-extract" in msg and "make data" not in msg       # CIFAR10_DIR: the user's copy


def test_load_cifar10_keeps_an_incomplete_folder_and_says_move_it(tmp_path, server, fake_cifar):
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    root = tmp_path / "root"
    partial = root / FOLDER
    partial.mkdir(parents=True)
    (partial / "data_batch_1").write_bytes(b"a user's half copy")
    with pytest.raises(FileExistsError) as exc:
        data.load_cifar10(root=root, url=server.url("/c.tgz"), md5=fake_cifar.md5)
    msg = str(exc.value)
    assert str(partial) in msg and "incomplete" in msg and "move it away" in msg
    assert server.hits.get("/c.tgz", 0) == 0                     # nothing was downloaded
    assert sorted(p.name for p in root.iterdir()) == [FOLDER]
    assert [p.name for p in partial.iterdir()] == ["data_batch_1"]
    assert (partial / "data_batch_1").read_bytes() == b"a user's half copy"


@pytest.mark.parametrize("bad,what", [(1.7, "1.7"), ("a", "'a'"), (10, "10"), (-1, "-1"),
                                      (True, "True")])
def test_batch_labels_must_be_ints_0_to_9_and_errors_name_the_file(monkeypatch, fake_cifar,
                                                                    bad, what):
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    path = fake_cifar.folder / "data_batch_2"
    d = dict(fake_cifar.batches["data_batch_2"])
    d[b"labels"] = list(d[b"labels"])
    d[b"labels"][3] = bad
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(RuntimeError) as exc:
        data.load_cifar10(download=False)
    msg = str(exc.value)
    assert str(path) in msg and f"label 3 is {what}" in msg and "integers 0..9" in msg


def test_batch_labels_as_float_array_are_refused(monkeypatch, fake_cifar):
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    d = dict(fake_cifar.batches["test_batch"])
    d[b"labels"] = np.array(d[b"labels"], dtype=np.float64) + 0.5
    (fake_cifar.folder / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(RuntimeError, match="test_batch.*integers 0..9.*float64"):
        data.load_cifar10(download=False)


def test_auto_with_a_wrong_cifar10_dir_raises_instead_of_synthetic(tmp_path, monkeypatch,
                                                                  fake_cifar):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="CIFAR10_DIR"):
        data.load_dataset(n_val=5, verbose=False)
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))
    (fake_cifar.folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        data.load_dataset(n_val=5, verbose=False)


def test_corrupt_batch_advice_depends_on_whose_folder_it_is(tmp_path, monkeypatch, fake_cifar):
    (fake_cifar.folder / "data_batch_4").write_bytes(b"\x80\x02garbage")
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))      # the user's own copy
    with pytest.raises(RuntimeError) as exc:
        data.load_dataset(source="cifar10", n_val=5, verbose=False)
    msg = str(exc.value)
    assert "data_batch_4" in msg and "re-extract your copy" in msg and "CIFAR10_DIR" in msg
    assert "delete" not in msg.lower() and "make data" not in msg
    monkeypatch.delenv("CIFAR10_DIR")                               # the workbook's data/
    root = tmp_path / "root"
    (root / FOLDER).mkdir(parents=True)
    for name in data.CIFAR10_FILES:
        (root / FOLDER / name).write_bytes((fake_cifar.folder / name).read_bytes())
    with pytest.raises(RuntimeError, match=r"delete .*cifar-10-batches-py and run `make data`"):
        data.load_cifar10(root=root, download=False)


def test_normalise_and_mean_std_refuse_nan_and_inf():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3072, 20)).astype(np.float32)
    B = rng.standard_normal((3072, 5))
    A_nan, B_inf = A.copy(), B.copy()
    A_nan[7, 12] = np.nan
    B_inf[0, 3] = np.inf
    with pytest.raises(ValueError, match=r"X_train holds NaN or inf in 1 image.*column 12"):
        data.normalise(A_nan, B)
    with pytest.raises(ValueError, match=r"array 2 .*NaN or inf.*column 3"):
        data.normalise(A, B_inf)
    with pytest.raises(ValueError, match="NaN or inf"):
        data.mean_std(A_nan)
    with pytest.raises(ValueError, match="of real numbers"):
        data.normalise(A.astype(object))
    An, Bn, _, _ = data.normalise(A, B)                # finite data: unchanged behaviour
    assert np.isfinite(An).all() and np.isfinite(Bn).all()


# ---------------------------------------------------------------- image folders (issue 13)
def _image_folder(root, classes, n_train=4, n_test=2, fmt="PNG", quality=75, seed=0):
    """root/train/<class>/*.png|jpg and root/test/<class>/*: 32x32 RGB, a class-coloured tint."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 200, (32, 32, 3), dtype=np.uint8)
                a[..., k % 3] += np.uint8(50)
                ext = "png" if fmt == "PNG" else "jpg"
                Image.fromarray(a).save(d / f"{i}.{ext}", fmt, **(
                    {"quality": quality} if fmt == "JPEG" else {}))
    return root


def _check_k(d, n_train, n_val, n_test, K):
    for part, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        X, Y, y = d[f"X_{part}"], d[f"Y_{part}"], d[f"y_{part}"]
        assert X.shape == (3072, n) and X.dtype == np.float32
        assert Y.shape == (K, n) and y.shape == (n,) and np.array_equal(Y.argmax(0), y)


def test_load_dataset_from_an_image_folder(tmp_path, capsys):
    folder = _image_folder(tmp_path / "tiny", ["cat", "dog", "frog"])
    for src in (str(folder), folder):                  # a str or a Path
        d = data.load_dataset(source=src, n_val=3)
        _check_k(d, 9, 3, 6, 3)
        assert d["label_names"] == ["cat", "dog", "frog"] and not d["synthetic"]
        assert d["name"] == d["source"] == "tiny (image folder)"
        out = capsys.readouterr().out
        assert f"data: tiny (image folder) from {folder.resolve()} - train 9, val 3, test 6" in out
    raw = images.load_image_folder(folder, progress=False)   # the split: the LAST n_val
    assert np.array_equal(d["y_val"], raw["y_train"][-3:])
    assert np.array_equal(d["y_train"], raw["y_train"][:9])
    Xtr = raw["X_train"][:, :9].astype(np.float64)
    mu, sd = Xtr.mean(1, keepdims=True), Xtr.std(1, keepdims=True)
    np.testing.assert_allclose(d["X_val"], (raw["X_train"][:, 9:] - mu) / sd, atol=1e-4)
    _check_k(data.load_dataset(source=folder, n_train=4, n_val=2, n_test=1, verbose=False),
             4, 2, 1, 3)


def test_load_dataset_image_folder_of_cifar10_classes_is_labelled(tmp_path, monkeypatch):
    folder = _image_folder(tmp_path / "cifar-jpeg", data.CIFAR10_LABELS, n_train=2, n_test=1,
                           fmt="JPEG", quality=75)
    d = data.load_dataset(source=folder, n_val=4, verbose=False)
    assert d["name"] == d["source"] == "CIFAR-10 (JPEG q75 copy)"
    _check_k(d, 16, 4, 10, 10)
    monkeypatch.setenv("WORKBOOK_FAST", "1")           # an explicit folder is used in fast mode
    d = data.load_dataset(source=folder, n_train=10, n_val=4, n_test=5, verbose=False)
    assert d["name"] == "CIFAR-10 (JPEG q75 copy) [FAST MODE]" and d["fast"]


def test_workbook_data_selects_the_folder_under_auto(tmp_path, monkeypatch, fake_cifar, capsys):
    folder = _image_folder(tmp_path / "mine", ["a", "b"])
    monkeypatch.setenv("WORKBOOK_DATA", str(folder))
    d = data.load_dataset(n_val=2)
    assert d["name"] == "mine (image folder)" and d["label_names"] == ["a", "b"]
    _check_k(d, 6, 2, 4, 2)
    capsys.readouterr()
    monkeypatch.setenv("CIFAR10_DIR", str(fake_cifar.folder))      # WORKBOOK_DATA wins
    assert data.load_dataset(n_val=2)["name"] == "mine (image folder)"
    assert "CIFAR10_DIR ignored, WORKBOOK_DATA wins" in capsys.readouterr().out
    monkeypatch.setenv("WORKBOOK_FAST", "1")           # fast mode: synthetic, and says so
    d = data.load_dataset(n_train=50, n_val=10, n_test=20)
    out = capsys.readouterr().out
    assert d["synthetic"] and d["name"] == "SYNTHETIC (not CIFAR-10) [FAST MODE]"
    assert out.count("\n") == 1 and "fast mode" in out
    assert f"WORKBOOK_DATA={folder}" in out and "CIFAR10_DIR=" in out and "ignored" in out


@pytest.mark.parametrize("how", ["env-missing", "env-not-a-folder", "source-missing",
                                 "source-empty-dir"])
def test_a_bad_image_folder_is_a_clear_error(tmp_path, monkeypatch, how):
    target = tmp_path / "nope"
    if how.endswith(("not-a-folder", "empty-dir")):
        (target / "train").mkdir(parents=True)
    if how.startswith("env"):
        monkeypatch.setenv("WORKBOOK_DATA", str(target))
        call = lambda: data.load_dataset(n_val=2, verbose=False)     # noqa: E731
    else:
        call = lambda: data.load_dataset(source=str(target), n_val=2)   # noqa: E731
    with pytest.raises(images.ImageFolderError) as exc:
        call()
    msg = str(exc.value)
    assert ("WORKBOOK_DATA" if how.startswith("env") else "source") in msg and str(target) in msg
    assert ("does not exist" in msg) == how.endswith("missing")
    assert "train/<class>/" in msg or "does not exist" in msg


# ------------------------------------------------------- issue 21: checks before any data
def _no_loading(monkeypatch):
    """Any attempt to load, generate or decode data fails the test."""
    def boom(*a, **k):
        raise AssertionError("data was loaded before the arguments were checked")
    monkeypatch.setattr(data, "load_cifar10", boom)
    monkeypatch.setattr(synthetic, "synthetic_part", boom, raising=False)
    monkeypatch.setattr(synthetic, "make_synthetic", boom)
    monkeypatch.setattr(data, "_synthetic_part", boom, raising=False)   # (the code before #21)
    monkeypatch.setattr(images, "_decode", boom)


@pytest.mark.parametrize("kw,field", [
    ({"dtype": np.int64}, "dtype"), ({"dtype": np.uint8}, "dtype"), ({"dtype": "int32"}, "dtype"),
    ({"dtype": np.float16}, "dtype"), ({"dtype": "banana"}, "dtype"),
    ({"seed": -1}, "seed"), ({"seed": True}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": "0"}, "seed"),
    ({"n_train": 4.5}, "n_train"), ({"n_train": 4.0}, "n_train"), ({"n_val": "10"}, "n_val"),
    ({"n_test": True}, "n_test"), ({"n_val": -1}, "n_val"), ({"verbose": "no"}, "verbose")])
@pytest.mark.parametrize("source", ["synthetic", "cifar10", "folder"])
def test_bad_settings_are_refused_before_any_data_is_loaded(tmp_path, monkeypatch, kw, field,
                                                            source):
    if source == "folder":
        source = _image_folder(tmp_path / "f", ["a", "b"], n_train=2, n_test=1)
    _no_loading(monkeypatch)
    with pytest.raises(ValueError) as exc:
        data.load_dataset(source=source, **{"n_val": 1, "verbose": False, **kw})
    assert field in str(exc.value) and repr(kw[field])[:6] in str(exc.value)


@pytest.mark.parametrize("kw,field", [({"n_val": 60000}, "n_val"), ({"n_train": 50000}, "n_train"),
                                      ({"n_test": 10001}, "n_test")])
@pytest.mark.parametrize("source", ["synthetic", "cifar10"])
def test_sizes_beyond_the_pool_are_refused_before_loading(monkeypatch, kw, field, source):
    _no_loading(monkeypatch)
    with pytest.raises(ValueError, match=field):
        data.load_dataset(source=source, verbose=False, **kw)


def test_image_folder_sizes_are_checked_before_decoding(tmp_path, monkeypatch):
    folder = _image_folder(tmp_path / "f", ["a", "b"], n_train=3, n_test=2)
    _no_loading(monkeypatch)
    with pytest.raises(ValueError, match=r"n_val must be in 0\.\.5 .*6 training images.*got 6"):
        data.load_dataset(source=folder, n_val=6, verbose=False)
    with pytest.raises(ValueError, match=r"n_test must be in 0\.\.4"):
        data.load_dataset(source=folder, n_val=1, n_test=5, verbose=False)


def test_int_dtype_is_refused_by_normalise_too():
    A = np.arange(3072 * 4, dtype=np.uint8).reshape(3072, 4)
    with pytest.raises(ValueError, match="dtype"):
        data.normalise(A, dtype=np.int64)
    Xn, _, _ = data.normalise(A, dtype=np.float64)
    assert Xn.dtype == np.float64 and np.abs(Xn).max() > 0


def test_the_number_of_classes_comes_from_the_data(tmp_path):
    three = _image_folder(tmp_path / "three", ["x", "y", "z"], n_train=2, n_test=1)
    d = data.load_dataset(source=three, n_val=1, verbose=False)
    assert d["K"] == 3 and d["Y_train"].shape[0] == 3
    s = data.load_dataset(source="synthetic", n_train=20, n_val=5, n_test=5, verbose=False)
    assert s["K"] == 10 == len(s["label_names"])


def test_more_classes_than_the_workbook_handles_fail_before_decoding(tmp_path, monkeypatch):
    names = [f"c{i:02d}" for i in range(12)]
    twelve = _image_folder(tmp_path / "twelve", names, n_train=1, n_test=1)
    _no_loading(monkeypatch)
    with pytest.raises(images.ImageFolderError) as exc:
        data.load_dataset(source=twelve, n_val=2, verbose=False)
    assert "12 classes" in str(exc.value) and str(data.MAX_CLASSES) in str(exc.value)


def test_constant_images_normalise_to_zero_not_nan(tmp_path):
    for X in (np.full((3072, 7), 200, np.uint8), np.full((3072, 3), 0.1),
              np.full((3072, 3), 0.1, np.float32)):
        Xn, Xo, mean, std = data.normalise(X, X[:, :2])
        assert np.isfinite(Xn).all() and np.array_equal(Xn, np.zeros_like(Xn))
        assert np.array_equal(Xo, np.zeros_like(Xo)) and (std == 1).all()
    folder = tmp_path / "black"
    for split, n in (("train", 3), ("test", 1)):
        for c in ("a", "b"):
            (folder / split / c).mkdir(parents=True)
            for i in range(n):
                from PIL import Image
                Image.new("RGB", (32, 32)).save(folder / split / c / f"{i}.png")
    d = data.load_dataset(source=folder, n_val=2, verbose=False)
    assert np.isfinite(d["X_train"]).all() and not d["X_train"].any()


def test_a_spread_too_small_for_float32_is_refused_not_inf():
    X = np.zeros((3072, 4))
    X[:, ::2] = 1e-39
    with pytest.raises(ValueError, match="too small for float32"):
        data.normalise(X)
    Xn, _, _ = data.normalise(X, dtype=np.float64)
    assert np.isfinite(Xn).all() and np.abs(Xn).max() == pytest.approx(1.0)


@pytest.mark.parametrize("how", ["source", "env"])
def test_a_symlink_loop_as_the_folder_says_so(tmp_path, monkeypatch, how):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    if how == "env":
        monkeypatch.setenv("WORKBOOK_DATA", str(loop))
        call = lambda: data.load_dataset(n_val=2, verbose=False)       # noqa: E731
    else:
        call = lambda: data.load_dataset(source=loop, n_val=2)          # noqa: E731
    with pytest.raises(images.ImageFolderError) as exc:
        call()
    msg = str(exc.value)
    assert "symbolic link loop" in msg and str(loop) in msg and "not an image folder" not in msg


def test_a_loop_inside_the_folder_is_named_by_load_dataset(tmp_path):
    folder = tmp_path / "f"
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    (folder / "train" / "a").symlink_to(folder / "train" / "a")
    (folder / "test" / "a").symlink_to(folder / "test" / "a")
    with pytest.raises(images.ImageFolderError) as exc:
        data.load_dataset(source=folder, n_val=1, verbose=False)
    assert "symbolic link loop" in str(exc.value) and str(folder / "train" / "a") in str(exc.value)
