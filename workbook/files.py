"""Files that are never lost or half-written: one atomic writer, JSON read and written safely,
a lock for read-modify-write, and the two ways data arrives from outside (a download checked
against its md5, and an archive extracted without replacing anything).

    atomic_write(path, write)     write(fh) fills a unique temp file; fsync; os.replace
    write_json(path, obj)         JSON through atomic_write (indent 1, like docs/results/)
    read_json(path, default=...)  a damaged file: ValueError naming the file and the problem
    locked(path)                  with locked(path): read, change, write (fcntl.flock)
    update_json(path, change, default)   read-modify-write of a JSON file under the lock
    download_file(url, dest, md5=...)    atomic download with retries and an md5 check
    safe_extract(tar_path, dest)         checked extraction, never replacing anything

Every temporary file is created with tempfile.mkstemp in the target's folder, so two writers
never share a temporary name, and it is deleted on any failure (an exception in ``write``, a
full disk, Ctrl-C): the target is then exactly as it was.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import http.client
import json
import os
import shutil
import signal
import stat
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

try:
    import fcntl
except ImportError:                                    # pragma: no cover (Windows)
    fcntl = None

_MISSING = object()


# ------------------------------------------------------------------------ atomic writes
def _umask() -> int:
    """The process umask (read from /proc where possible: os.umask would change it briefly)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)                              # pragma: no cover (no /proc)
    os.umask(old)
    return old


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a crash (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, *, suffix: str = ".tmp", mode: int | None = None) -> Path:
    """Write ``path`` all at once: ``write(fh)`` fills a new temporary file (binary, opened for
    writing) in path's folder, which is flushed, fsynced and renamed onto ``path``.

    The temporary file is ``.<name>.<random><suffix>`` (tempfile.mkstemp: unique, so
    concurrent writers never share one). On any failure, an exception in ``write`` (e.g. a
    full disk), Ctrl-C or a failed rename, it is deleted and ``path`` is untouched. The
    folder is created if needed. The file gets ``mode``, or the permissions of the file it
    replaces, or 0o666 minus the umask for a new file. Returns ``path`` (a Path).
    A ``path`` that is a folder raises ValueError before anything is written.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder; choose a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)
    return path


def write_json(path, obj) -> Path:
    """Write ``obj`` as JSON (indent 1; values JSON cannot hold become strings) to ``path``
    through atomic_write. The text is made before any file is touched. Returns the Path."""
    text = json.dumps(obj, indent=1, default=str).encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(text))


def read_json(path, default=_MISSING):
    """The JSON value in ``path``; ``default`` when the file does not exist (if given, else
    FileNotFoundError). A file that cannot be read, is not UTF-8, is empty or is not valid JSON
    raises ValueError naming the file and the problem (never a raw JSONDecodeError)."""
    path = Path(path)
    how = "restore it (e.g. `git checkout -- <file>`) or move it away, then try again"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if default is not _MISSING:
            return default
        raise FileNotFoundError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a JSON file; move it away") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror or exc}); {how}") from None
    if not raw.strip():
        raise ValueError(f"{path} is empty (damaged or half-written?); {how}")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (damaged?): {exc}; {how}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno}; damaged or half-written?); {how}") from None


@contextlib.contextmanager
def locked(path, timeout: float | None = 120.0):
    """Hold an exclusive lock for ``path`` while the with-block runs (read-modify-write).

    The lock is fcntl.flock on the sidecar file ``.<name>.lock`` in path's folder, created
    when needed and deleted on release, so no lock file stays behind (a waiter that then
    holds the lock of a deleted file sees it and locks the new one). Processes (and threads
    with their own ``locked`` call) wait for each other; the lock goes away with a process
    that dies (its file may then stay; it is harmless). After ``timeout`` seconds of waiting
    (None: forever) TimeoutError says which lock file is held.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            if fcntl is not None:
                _flock(fd, deadline, lock, timeout, path)
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same or fcntl is None:
            break
        os.close(fd)                 # the holder before us deleted this file: lock the new one
    try:
        yield path
    finally:
        if fcntl is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock)      # while still locked: the next holder makes a new one
        os.close(fd)                 # closing releases the flock


def _flock(fd: int, deadline, lock: Path, timeout, path: Path) -> None:
    """flock(fd, LOCK_EX), waiting until ``deadline`` (None: forever), else TimeoutError."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{lock} has been locked by another process for {timeout} s (it is "
                    f"writing {path.name}); wait for it to finish and try again") from None
            time.sleep(0.02)


def update_json(path, change, default=_MISSING, timeout: float | None = 120.0) -> Path:
    """Read-modify-write of a JSON file under ``locked(path)``: ``change(value)`` gets the
    current value (``default`` when the file does not exist) and returns the new one, which is
    written with write_json. If ``change`` raises, nothing is written. Returns the Path."""
    with locked(path, timeout):
        new = change(read_json(path, default))
        return write_json(path, new)


# --------------------------------------------------------------------------- downloads
class DownloadError(RuntimeError):
    """A download failed (network error, HTTP error, or a checksum that never matched)."""


def md5_file(path, chunk: int = 1 << 20) -> str:
    """Hex md5 digest of the file at ``path``, read in ``chunk``-byte pieces."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class _Mismatch(Exception):
    """The downloaded bytes have another md5 (raised inside atomic_write: nothing is kept)."""


class _Terminated(BaseException):
    """SIGTERM arrived while download_file ran (raised by its temporary handler)."""

    @classmethod
    def raise_(cls, signum, frame):
        raise cls(signum)


_LOCAL_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_STALE_PART_S = 3600      # a .part file untouched this long belongs to a killed download


def _remove_stale_parts(dest: Path) -> None:
    """Delete dest's ``.<name>.*.part`` files untouched for _STALE_PART_S (SIGKILL leftovers:
    a live download rewrites its .part every chunk, and times out after ``timeout`` s)."""
    now = time.time()
    for p in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime > _STALE_PART_S:
                p.unlink()
        except OSError:
            pass


def _stream(url: str, out, md5, chunk: int, timeout: float, progress: bool, desc: str) -> None:
    """Copy ``url`` into the open file ``out``; DownloadError when cut short, _Mismatch when
    the md5 is not ``md5`` (None: not checked)."""
    from tqdm.auto import tqdm
    h = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        got = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                  disable=not progress, leave=False) as bar:
            while True:
                block = resp.read(chunk)
                if not block:
                    break
                out.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
    if total is not None and got != total:
        raise DownloadError(f"download of {url} was cut short ({got} of {total} bytes)")
    if md5 is not None and h.hexdigest() != md5.lower():
        raise _Mismatch(f"md5 mismatch (expected {md5}, got {h.hexdigest()})")


def download_file(url: str, dest, md5: str | None = None, retries: int = 1,
                  chunk: int = 1 << 20, timeout: float = 60.0, progress: bool = True,
                  advice: str = "") -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and an md5 check.

    The bytes go through atomic_write (temporary file ``.<name>.XXXX.part`` in dest's
    folder), renamed onto ``dest`` only when complete and (if ``md5`` is given)
    checksum-correct; a mismatch or a transfer cut short is retried ``retries`` more times.
    No partial file is left behind (mismatch, network error, Ctrl-C, or SIGTERM: from the
    main thread, a temporary handler deletes it, then hands the signal on, so the process
    still dies of it by default). Stale .part files of ``dest`` (untouched for an hour:
    SIGKILL) are deleted first. Returns ``dest`` (Path).

    Raises DownloadError (a RuntimeError) when the server cannot be reached, answers with an
    HTTP error, or the checksum never matches; the message names the URL and ends with
    ``advice`` (what to do instead).
    """
    dest = Path(dest)
    if dest.is_dir():
        raise ValueError(f"cannot download {url} to {dest}: it is a folder; give a file name")
    advice = advice or f"download {url} yourself and save it as {dest}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    prev = None
    if threading.current_thread() is threading.main_thread():
        prev = signal.getsignal(signal.SIGTERM)
        if prev is signal.SIG_DFL or callable(prev):
            signal.signal(signal.SIGTERM, _Terminated.raise_)
        else:                                   # SIG_IGN, or a handler set outside Python
            prev = None
    try:
        return _download(url, dest, md5, retries, chunk, timeout, progress, advice)
    except _Terminated as exc:                  # the .part file is already deleted
        signal.signal(signal.SIGTERM, prev)
        if callable(prev):
            prev(exc.args[0], None)
        else:                                   # SIG_DFL: die of SIGTERM, as without us
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        raise DownloadError(f"download of {url} was stopped by SIGTERM; the partial file "
                            f"was deleted") from None
    finally:
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def _download(url, dest: Path, md5, retries, chunk, timeout, progress, advice) -> Path:
    """The body of download_file (dest's folder exists)."""
    last = ""
    for _ in range(retries + 1):
        try:
            return atomic_write(dest, lambda fh: _stream(url, fh, md5, chunk, timeout,
                                                         progress, dest.name),
                                suffix=".part", mode=0o644)
        except (DownloadError, _Mismatch) as exc:        # cut short or wrong bytes: retry
            last = str(exc)
        except http.client.IncompleteRead as exc:
            last = f"download of {url} was cut short ({exc!r})"
        except OSError as exc:
            if isinstance(exc, urllib.error.URLError) or exc.errno not in _LOCAL_ERRORS:
                raise DownloadError(f"could not download {url}: {exc}. If you are offline, "
                                    f"{advice}.") from exc
            raise DownloadError(f"could not save {url} to {dest}: {exc}. Nothing was kept; "
                                f"free some space or choose another folder.") from exc
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            # URLError/HTTPError/timeouts/connection resets are all OSError;
            # ValueError is urllib's "unknown url type".
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"could not download {url}: {reason}. If you are offline, "
                                f"{advice}.") from exc
    raise DownloadError(
        f"download of {url} failed {retries + 1} time(s): {last}. The file was deleted; "
        f"a proxy or a broken mirror may be interfering. To continue, {advice}.")


# -------------------------------------------------------------------------- extraction
def _check_member(m: tarfile.TarInfo, dest_resolved: Path) -> None:
    name = m.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"refusing to extract {name!r}: absolute path in archive")
    if m.issym() or m.islnk():
        raise ValueError(f"refusing to extract {name!r}: links are not allowed in the archive")
    if not (m.isfile() or m.isdir()):
        raise ValueError(f"refusing to extract {name!r}: not a regular file or folder")
    target = (dest_resolved / name).resolve()
    if target != dest_resolved and dest_resolved not in target.parents:
        raise ValueError(f"refusing to extract {name!r}: it would land outside {dest_resolved}")


def _refuse_existing(names, dest: Path, tar_path: Path) -> None:
    """FileExistsError when any of the top-level ``names`` already exists in dest."""
    clash = sorted(n for n in names if os.path.lexists(dest / n))
    if clash:
        raise FileExistsError(
            f"refusing to extract {tar_path} into {dest}: {', '.join(clash)} already "
            f"exist(s) there and would be replaced. Nothing was extracted and nothing was "
            f"changed. Move or rename {'it' if len(clash) == 1 else 'them'} (or extract "
            f"somewhere else), then try again.")


def safe_extract(tar_path, dest) -> list[Path]:
    """Extract the (gzipped) tar archive ``tar_path`` into the folder ``dest``, safely.

    Every member is checked before anything is written: absolute paths, paths that resolve
    outside ``dest`` (``..``), links and special files raise ValueError; a top-level entry
    that already exists in ``dest`` raises FileExistsError (nothing in ``dest`` is ever
    replaced or deleted). The archive is unpacked into a temporary folder inside ``dest``,
    then each top-level entry is renamed into place, so a truncated or corrupt archive
    raises RuntimeError and leaves nothing behind. Returns the top-level paths created.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest_resolved = dest.resolve()
    tmp = None
    try:
        try:
            with tarfile.open(tar_path, "r:*") as tar:
                members = tar.getmembers()          # reads the whole archive: finds truncation
                for m in members:
                    _check_member(m, dest_resolved)
                _refuse_existing({Path(m.name).parts[0] for m in members
                                  if Path(m.name).parts}, dest, tar_path)
                tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:                                # pragma: no cover (Python < 3.11.4)
                    tar.extractall(tmp, members=members)
        except (ValueError, FileExistsError):
            raise
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, getattr(tarfile, "FilterError", ())):
                raise ValueError(f"refusing to extract {tar_path}: {exc}") from exc
            raise RuntimeError(
                f"the archive {tar_path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                f"nothing was extracted. Delete it and download it again.") from exc
        entries = sorted(tmp.iterdir())
        _refuse_existing([e.name for e in entries], dest, tar_path)   # again: just in case
        for entry in entries:
            os.rename(entry, dest / entry.name)
        return [dest / e.name for e in entries]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
