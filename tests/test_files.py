"""Tests for workbook/files.py: the atomic writer, safe JSON, the lock (issue 21).

Everything is written in tmp_path; the concurrency test runs real processes."""
import errno
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
import json
import multiprocessing
import os
import stat
import threading

import pytest

from workbook import data, files


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------- atomic_write
def test_atomic_write_writes_all_at_once_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.bin"                       # the folder is created
    assert files.atomic_write(target, lambda fh: fh.write(b"hello")) == target
    assert target.read_bytes() == b"hello"
    assert _listing(target.parent) == ["out.bin"]
    os.chmod(target, 0o640)                                    # a replaced file keeps its mode
    files.atomic_write(str(target), lambda fh: fh.write(b"again"))
    assert target.read_bytes() == b"again"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   KeyboardInterrupt(), ValueError("bad content")])
def test_a_failed_write_leaves_the_target_untouched_and_no_temp_file(tmp_path, error):
    target = tmp_path / "results.json"
    target.write_text('{"rows": [1, 2, 3]}')

    def half_then_fail(fh):
        fh.write(b'{"rows": [1')                              # half a file, then the disk fills
        raise error
    with pytest.raises(type(error)):
        files.atomic_write(target, half_then_fail)
    assert target.read_text() == '{"rows": [1, 2, 3]}'
    assert _listing(tmp_path) == ["results.json"]


def test_a_failed_fsync_or_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    target.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        files.write_json(target, {"a": 1})
    assert target.read_text() == "old" and _listing(tmp_path) == ["x.json"]


def test_concurrent_writers_never_share_a_temp_name(tmp_path):
    target = tmp_path / "r.json"
    temps = []

    def outer(fh):
        fh.write(b"outer")
        files.atomic_write(target, inner)                     # a second writer, meanwhile

    def inner(fh):
        fh.write(b"inner")
        temps.extend(_listing(tmp_path))                      # both temporary files exist
    files.atomic_write(target, outer)
    assert len(temps) == 2 and all(t.startswith(".r.json.") for t in temps)
    assert target.read_bytes() == b"outer"                   # the last rename wins, whole
    assert _listing(tmp_path) == ["r.json"]


def test_a_folder_as_target_is_refused_before_writing(tmp_path):
    (tmp_path / "d").mkdir()
    called = []
    with pytest.raises(ValueError, match="is a folder"):
        files.atomic_write(tmp_path / "d", called.append)
    assert called == [] and _listing(tmp_path) == ["d"]


# --------------------------------------------------------------------------------- JSON
def test_write_json_round_trip_and_unserialisable_object_writes_nothing(tmp_path):
    p = files.write_json(tmp_path / "a.json", {"rows": [{"x": 1.5, "p": tmp_path}]})
    assert files.read_json(p) == {"rows": [{"x": 1.5, "p": str(tmp_path)}]}
    assert p.read_text().startswith('{\n "rows"')               # indent 1, like docs/results
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        files.write_json(tmp_path / "b.json", loop)
    assert _listing(tmp_path) == ["a.json"]


@pytest.mark.parametrize("content,problem", [
    (b"", "empty"), (b"   \n", "empty"), (b'{"rows": [1, 2', "not valid JSON"),
    (b"\xff\xfe garbage", "not UTF-8"), (b"{'single': 'quotes'}", "not valid JSON")])
def test_read_json_of_a_damaged_file_names_the_file_and_the_problem(tmp_path, content, problem):
    p = tmp_path / "damaged.json"
    p.write_bytes(content)
    with pytest.raises(ValueError) as exc:
        files.read_json(p)
    assert str(p) in str(exc.value) and problem in str(exc.value)
    assert not isinstance(exc.value, json.JSONDecodeError)


def test_read_json_missing_file_and_folder(tmp_path):
    assert files.read_json(tmp_path / "none.json", default=None) is None
    assert files.read_json(tmp_path / "none.json", default={"rows": []}) == {"rows": []}
    with pytest.raises(FileNotFoundError, match="none.json"):
        files.read_json(tmp_path / "none.json")
    with pytest.raises(ValueError, match="is a folder"):
        files.read_json(tmp_path)


# --------------------------------------------------------------------------------- lock
def _add_many(path, n, start):
    """In a child process: append n numbers to the JSON list at path, one update each."""
    for i in range(n):
        files.update_json(path, lambda v: v + [start + i], default=[])


def test_update_json_under_the_lock_keeps_every_concurrent_change(tmp_path):
    path = tmp_path / "counter.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(path), 30, k * 100)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    got = files.read_json(path)
    assert sorted(got) == list(range(30)) + list(range(100, 130))   # no update lost
    assert _listing(tmp_path) == ["counter.json"]                   # no temp or lock file left


def test_locked_excludes_others_and_times_out_with_a_clear_message(tmp_path):
    path = tmp_path / "r.json"
    with files.locked(path):
        assert (tmp_path / ".r.json.lock").exists()
        with pytest.raises(TimeoutError, match=r"\.r\.json\.lock"):
            with files.locked(path, timeout=0.1):
                pass
    order = []

    def other():
        with files.locked(path):
            order.append("other")
    with files.locked(path):
        t = threading.Thread(target=other)
        t.start()
        t.join(0.3)
        order.append("first")                        # the other thread is still waiting
    t.join(10)
    assert order == ["first", "other"]
    assert _listing(tmp_path) == []                  # the lock file goes with the lock


def test_update_json_that_raises_writes_nothing(tmp_path):
    path = files.write_json(tmp_path / "r.json", [1])

    def boom(v):
        raise ValueError("refused")
    with pytest.raises(ValueError, match="refused"):
        files.update_json(path, boom)
    assert files.read_json(path) == [1] and _listing(tmp_path) == ["r.json"]


def test_download_to_a_folder_is_refused_before_any_network(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("must not connect")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(ValueError, match="is a folder"):
        files.download_file("http://127.0.0.1:9/x.tgz", tmp_path, progress=False)


# ------------------------------------------------------------------ download and extraction
# (moved from test_data.py with the code: data.download_file and data.safe_extract are files')
from _cifar import FOLDER, add_bytes, closed_port_url, evil_tar  # noqa: E402
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("isolated_data")


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
    url = closed_port_url() if kind == "refused" else server.url("/missing.tgz")
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
    tar = evil_tar(tmp_path / "evil.tar.gz", name, **attrs)
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(ValueError, match=why):
        data.safe_extract(tar, dest)
    assert list(dest.iterdir()) == []                 # nothing at all was extracted
    assert not (tmp_path / "a" / "escaped.txt").exists()


def test_safe_extract_never_replaces_or_deletes_existing_entries(tmp_path, fake_cifar):
    dest = tmp_path / "out"
    mine = dest / FOLDER
    mine.mkdir(parents=True)
    (mine / "my_notes.txt").write_text("mine")
    (mine / "data_batch_1").write_bytes(b"my own bytes")
    with pytest.raises(FileExistsError) as exc:
        data.safe_extract(fake_cifar.tar, dest)
    assert FOLDER in str(exc.value) and "Move or rename" in str(exc.value)
    assert sorted(p.name for p in dest.iterdir()) == [FOLDER]       # no temp folder left
    assert (mine / "my_notes.txt").read_text() == "mine"
    assert (mine / "data_batch_1").read_bytes() == b"my own bytes"
    # a top-level *file* of the same name as an archive entry is not replaced either
    tar = tmp_path / "files.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        add_bytes(t, "notes.txt", b"from the archive")
        add_bytes(t, "new.txt", b"new")
    (dest / "notes.txt").write_text("user's notes")
    with pytest.raises(FileExistsError, match="notes.txt"):
        data.safe_extract(tar, dest)
    assert (dest / "notes.txt").read_text() == "user's notes"
    assert not (dest / "new.txt").exists()                          # nothing was extracted


def test_sigterm_during_download_leaves_no_part_file(tmp_path, server):
    server.routes["/big.tgz"] = os.urandom(2 << 20)
    server.slow["/big.tgz"] = 0.01                                  # ~100 KiB/s: minutes
    out = tmp_path / "dl"
    out.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            f"from workbook import data\n"
            f"data.download_file({server.url('/big.tgz')!r}, {str(out / 'big.tgz')!r}, "
            f"chunk=1024, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not any(p.stat().st_size > 0 for p in out.glob("*.part")):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the download never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM          # it still dies of SIGTERM ...
    assert list(out.iterdir()) == []                   # ... but without the .part file


def test_download_removes_stale_part_files_of_the_same_file(tmp_path, server, fake_cifar):
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    out = tmp_path / "dl"
    out.mkdir()
    stale, fresh, other = (out / ".c.tgz.k1ll3d.part", out / ".c.tgz.l1v3.part",
                           out / ".other.tgz.k1ll3d.part")
    for p in (stale, fresh, other):
        p.write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    data.download_file(server.url("/c.tgz"), out / "c.tgz", md5=fake_cifar.md5, progress=False)
    assert not stale.exists()                          # killed download's leftover: gone
    assert fresh.exists() and other.exists()           # maybe live / another file's: kept


def test_download_still_goes_through_one_atomic_writer(tmp_path, server, fake_cifar,
                                                       monkeypatch):
    """A download that fails while being written (disk full) leaves no .part file and keeps
    an older file of the same name; the md5 is still the official one by default."""
    from workbook import files
    assert data.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert data.CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    server.routes["/c.tgz"] = fake_cifar.tar_bytes
    out = tmp_path / "dl"
    out.mkdir()
    (out / "c.tgz").write_bytes(b"an older copy")

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(data.DownloadError, match=r"could not save .*No space"):
        data.download_file(server.url("/c.tgz"), out / "c.tgz", md5=fake_cifar.md5,
                           progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["c.tgz"]
    assert (out / "c.tgz").read_bytes() == b"an older copy"
