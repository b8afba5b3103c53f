"""A tiny CIFAR-10 look-alike and a local HTTP server, shared by test_data.py and test_files.py:
the official folder layout and pickle format with a few random images per batch, built in
tmp_path and served from 127.0.0.1 (everything offline)."""
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
import time

import numpy as np
import pytest

from workbook import data

FOLDER = "cifar-10-batches-py"


M = 6


def batch_dict(rng, m, name):
    return {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, m).tolist(),
            b"data": rng.integers(0, 256, (m, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(m)]}


def add_bytes(tar, name, data, **attrs):
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
    batches = {f"data_batch_{i}": batch_dict(rng, M, f"training batch {i} of 5") for i in range(1, 6)}
    batches["test_batch"] = batch_dict(rng, M, "testing batch 1 of 1")
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
    ``srv.short[path] = k`` announces the full length but sends only k bytes;
    ``srv.slow[path] = s`` sends 1 KiB every s seconds."""
    routes, hits, short, slow = {}, {}, {}, {}

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
            body = body[:short.get(self.path, len(body))]
            try:
                if self.path in slow:
                    for i in range(0, len(body), 1024):
                        self.wfile.write(body[i:i + 1024])
                        self.wfile.flush()
                        time.sleep(slow[self.path])
                else:
                    self.wfile.write(body)
            except OSError:          # the client went away (e.g. killed): fine
                pass
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
    s.routes, s.hits, s.short, s.slow = routes, hits, short, slow
    s.url = lambda path: f"http://127.0.0.1:{httpd.server_port}{path}"
    yield s
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def evil_tar(path, name, **attrs):
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, f"{FOLDER}/data_batch_1", b"fine")
        add_bytes(tar, name, b"evil", **attrs)
    return path
