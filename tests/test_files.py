"""Tests for workbook/files.py: the atomic writer, safe JSON, the lock (issue 21).

Everything is written in tmp_path; the concurrency test runs real processes."""
import errno
import json
import multiprocessing
import os
import stat
import threading

import pytest

from workbook import files


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
