"""Tests for helpers.py section 1 (data): download, safe extraction, CIFAR-10 loading, the
synthetic stand-in and load_dataset.

Everything runs offline: a tiny CIFAR-10 look-alike (the official folder layout and pickle
format, a few random images per batch) is built in tmp_path and served from a local HTTP
server on 127.0.0.1. Nothing is written to the repository's data/ folder."""
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
import urllib.request
import numpy as np
import pytest
import helpers as H
from workbook import config, data, synthetic


FOLDER = "cifar-10-batches-py"


M = 6


def _batch(rng, m, name):
    return {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, m).tolist(),
            b"data": rng.integers(0, 256, (m, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(m)]}


def _add_bytes(tar, name, data, **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_cifar(tmp_path):
    """A CIFAR-10 look-alike: folder, tar.gz of it, md5 and the pickled rows/labels."""
    rng = np.random.default_rng(123)
    src = tmp_path / "src"
    folder = src / FOLDER
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _batch(rng, M, f"training batch {i} of 5") for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, M, "testing batch 1 of 1")
    names = [s.encode() for s in data.CIFAR10_LABELS]
    files = dict(batches)
    files["batches.meta"] = {b"label_names": names, b"num_cases_per_batch": M,
                             b"num_vis": 3072}
    for name, d in files.items():
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    tar_path = src / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    raw = tar_path.read_bytes()

    class Fake:
        pass
    f = Fake()
    f.folder, f.tar, f.tar_bytes = folder, tar_path, raw
    f.md5 = hashlib.md5(raw).hexdigest()
    f.batches = batches
    f.rows_train = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    f.y_train = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    f.rows_test = batches["test_batch"][b"data"]
    f.y_test = np.array(batches["test_batch"][b"labels"])
    return f


@pytest.fixture
def server():
    """A local HTTP server: ``srv.routes[path] = bytes``; ``srv.hits[path]`` counts GETs.
    ``srv.short[path] = k`` announces the full length but sends only k bytes."""
    routes, hits, short = {}, {}, {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits[self.path] = hits.get(self.path, 0) + 1
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:short.get(self.path, len(body))])
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()

    class Srv:
        pass
    s = Srv()
    s.routes, s.hits, s.short = routes, hits, short
    s.url = lambda path: f"http://127.0.0.1:{httpd.server_port}{path}"
    yield s
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No CIFAR10_DIR / fast mode from the caller's shell, and DATA_DIR is a temp folder."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.delenv("WORKBOOK_FAST", raising=False)
    data_dir = tmp_path / "data_dir"
    monkeypatch.setattr(config, "DATA_DIR", data_dir)
    return data_dir


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def _spec_ims(X):
    """The spec's reshape: X (3072, n) -> X_ims (32, 32, 3, n)."""
    n = X.shape[1]
    return np.transpose(X.reshape((32, 32, 3, n), order="F"), (1, 0, 2, 3))


def _evil_tar(path, name, **attrs):
    with tarfile.open(path, "w:gz") as tar:
        _add_bytes(tar, f"{FOLDER}/data_batch_1", b"fine")
        _add_bytes(tar, name, b"evil", **attrs)
    return path


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
def test_download_verifies_md5_and_leaves_only_the_file(tmp_path, server, fake_cifar):
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    out = tmp_path / "dl"
    dest = data.download_file(server.url("/c.tgz"), out / "c.tgz", md5=fake_cifar.md5,
                           progress=False)
    assert dest == out / "c.tgz"
    assert dest.read_bytes() == fake_cifar.tar_bytes
    assert data.md5_file(dest) == fake_cifar.md5
    assert sorted(p.name for p in out.iterdir()) == ["c.tgz"]
    assert server.hits["/c.tgz"] == 1


def test_download_bad_md5_retries_once_then_fails_cleanly(tmp_path, server, fake_cifar):
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    out = tmp_path / "dl"
    with pytest.raises(RuntimeError) as exc:
        data.download_file(server.url("/c.tgz"), out / "c.tgz", md5="0" * 32, progress=False)
    msg = str(exc.value)
    assert "md5" in msg and "CIFAR10_DIR" in msg and server.url("/c.tgz") in msg
    assert server.hits["/c.tgz"] == 2                  # the first try and one retry
    assert list(out.iterdir()) == []                   # no partial or temporary file


def test_download_cut_short_is_retried_then_fails_cleanly(tmp_path, server, fake_cifar):
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    server.short["/c.tgz"] = len(fake_cifar.tar_bytes) // 2
    out = tmp_path / "dl"
    with pytest.raises(data.DownloadError, match="cut short"):
        data.download_file(server.url("/c.tgz"), out / "c.tgz", md5=fake_cifar.md5,
                        progress=False)
    assert server.hits["/c.tgz"] == 2
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["refused", "404"])
def test_download_network_errors_are_clear(tmp_path, server, kind):
    url = _closed_port_url() if kind == "refused" else server.url("/missing.tgz")
    out = tmp_path / "dl"
    with pytest.raises(data.DownloadError) as exc:
        data.download_file(url, out / "c.tgz", progress=False)
    assert url in str(exc.value) and "CIFAR10_DIR" in str(exc.value)
    assert list(out.iterdir()) == []


def test_download_interrupted_leaves_no_partial_file(tmp_path, monkeypatch):
    class Resp:
        headers = {"Content-Length": "300"}
        calls = 0

        def read(self, n):
            Resp.calls += 1
            if Resp.calls > 1:
                raise KeyboardInterrupt
            return b"x" * 100

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Resp())
    out = tmp_path / "dl"
    with pytest.raises(KeyboardInterrupt):
        data.download_file("http://127.0.0.1:9/x.tgz", out / "x.tgz", progress=False)
    assert Resp.calls == 2
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------- extraction
def test_safe_extract_roundtrip(tmp_path, fake_cifar):
    dest = tmp_path / "out"
    created = data.safe_extract(fake_cifar.tar, dest)
    assert created == [dest / FOLDER]
    assert sorted(p.name for p in dest.iterdir()) == [FOLDER]        # no temp folder left
    for name in data.CIFAR10_FILES:
        assert (dest / FOLDER / name).read_bytes() == (fake_cifar.folder / name).read_bytes()


def test_safe_extract_truncated_archive(tmp_path, fake_cifar):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(fake_cifar.tar_bytes[: len(fake_cifar.tar_bytes) * 2 // 3])
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError, match="truncated or corrupt"):
        data.safe_extract(bad, dest)
    assert list(dest.iterdir()) == []                 # no half-extracted folder


@pytest.mark.parametrize("name,attrs,why", [
    (f"{FOLDER}/../../escaped.txt", {}, "outside"),
    ("/tmp/absolute-evil.txt", {}, "absolute"),
    (f"{FOLDER}/link", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "link"),
    (f"{FOLDER}/hard", {"type": tarfile.LNKTYPE, "linkname": f"{FOLDER}/data_batch_1"}, "link"),
])
def test_safe_extract_refuses_unsafe_members(tmp_path, name, attrs, why):
    tar = _evil_tar(tmp_path / "evil.tar.gz", name, **attrs)
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(ValueError, match=why):
        data.safe_extract(tar, dest)
    assert list(dest.iterdir()) == []                 # nothing at all was extracted
    assert not (tmp_path / "a" / "escaped.txt").exists()


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
    assert data.fetch_cifar10_or_explain(root=tmp_path / "r1", url=_closed_port_url()) is False
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


def test_load_dataset_fast_mode_is_synthetic(monkeypatch, fake_cifar, capsys, _isolated):
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
    assert not _isolated.exists()                      # small requests never touch the cache
    # explicit sizes win over FAST_SIZES
    _check_split(data.load_dataset(n_train=100, n_val=20, n_test=30, verbose=False), 100, 20, 30)
