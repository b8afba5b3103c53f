"""Data: the official CIFAR-10 archive (download, md5, safe extraction, batch files), the
image-folder and synthetic sources, normalisation, and ``load_dataset``, the one call the
notebooks use. Untrusted input: batch files are unpickled with a restricted unpickler (nothing
in them is ever run), extraction never replaces or deletes anything, and every problem raises
an error naming the file before any work is done."""
from __future__ import annotations

import codecs
import glob
import hashlib
import http.client
import os
import pickle
import shutil
import signal
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from helpers import one_hot
from workbook import config, images
from workbook.checks import nonfinite_columns
from workbook.config import is_fast
from workbook.synthetic import (SYNTHETIC_LABELS, _N_POOL, _synthetic_part)


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck"]
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TAR = "cifar-10-python.tar.gz"
FAST_SIZES = {"n_train": 2000, "n_val": 500, "n_test": 1000}
_HOW_TO_GET = (f"download {CIFAR10_URL} yourself, extract it and set "
               f"CIFAR10_DIR=/path/to/{_CIFAR10_FOLDER} (or put the folder in {config.DATA_DIR})")


class DownloadError(RuntimeError):
    """A download failed (network error, HTTP error, or a checksum that never matched)."""


def md5_file(path, chunk: int = 1 << 20) -> str:
    """Hex md5 digest of the file at ``path``, read in ``chunk``-byte pieces."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _fetch_once(url: str, tmp: Path, chunk: int, timeout: float, progress: bool,
                desc: str) -> str:
    """Stream ``url`` into the file ``tmp``; return the md5 of what was written."""
    h = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        got = 0
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                          unit_divisor=1024, desc=desc,
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
    return h.hexdigest()


_STALE_PART_S = 3600      # a .part file untouched this long belongs to a killed download


class _Terminated(BaseException):
    """SIGTERM arrived while download_file ran (raised by its temporary handler)."""

    @classmethod
    def raise_(cls, signum, frame):
        raise cls(signum)


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


def download_file(url: str, dest, md5: str | None = None, retries: int = 1,
                  chunk: int = 1 << 20, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and an md5 check.

    The bytes go to a temporary file ``.<name>.XXXX.part`` in dest's folder, renamed onto
    ``dest`` only when complete and (if ``md5`` is given) checksum-correct; a mismatch or a
    transfer cut short is retried ``retries`` more times. No partial file is left behind
    (mismatch, network error, Ctrl-C, or SIGTERM: from the main thread, a temporary handler
    deletes it, then hands the signal on, so the process still dies of it by default).
    Stale .part files of ``dest`` (untouched for an hour: SIGKILL) are deleted first.
    Two downloads to the same ``dest`` at once are not supported. Returns ``dest`` (Path).

    Raises DownloadError (a RuntimeError) when the server cannot be reached, answers with an
    HTTP error, or the checksum never matches; the message names the URL and CIFAR10_DIR.
    """
    dest = Path(dest)
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
        return _download(url, dest, md5, retries, chunk, timeout, progress)
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


def _download(url, dest: Path, md5, retries, chunk, timeout, progress) -> Path:
    """The body of download_file (dest's folder exists)."""
    tmp, last = None, ""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                        dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        for _ in range(retries + 1):
            try:
                digest = _fetch_once(url, tmp, chunk, timeout, progress, dest.name)
            except DownloadError as exc:           # cut short: worth another try
                last = str(exc)
                continue
            except http.client.IncompleteRead as exc:
                last = f"download of {url} was cut short ({exc!r})"
                continue
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
                # URLError/HTTPError/timeouts/connection resets are all OSError;
                # ValueError is urllib's "unknown url type".
                reason = getattr(exc, "reason", None) or exc
                raise DownloadError(
                    f"could not download {url}: {reason}. If you are offline, "
                    f"{_HOW_TO_GET}.") from exc
            if md5 is None or digest == md5.lower():
                os.chmod(tmp, 0o644)               # mkstemp makes it private (0600)
                os.replace(tmp, dest)
                return dest
            last = f"md5 mismatch (expected {md5}, got {digest})"
            tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"download of {url} failed {retries + 1} time(s): {last}. The file was deleted; "
            f"a proxy or a broken mirror may be interfering. To continue, {_HOW_TO_GET}.")
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)    # no partial file, whatever happened


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


def cifar10_dir(root=None) -> Path:
    """The cifar-10-batches-py folder to use: $CIFAR10_DIR if set, else root/cifar-10-batches-py.

    CIFAR10_DIR may point at the cifar-10-batches-py folder itself or at its parent.
    ``root`` defaults to config.DATA_DIR. The folder need not exist.
    """
    env = os.environ.get("CIFAR10_DIR", "").strip()
    if env:
        p = Path(env).expanduser()
        if not (p / "batches.meta").exists() and (p / _CIFAR10_FOLDER).is_dir():
            p = p / _CIFAR10_FOLDER
        return p
    return Path(root if root is not None else config.DATA_DIR) / _CIFAR10_FOLDER


def _missing_files(folder: Path) -> list[str]:
    return [f for f in CIFAR10_FILES if not (folder / f).is_file()]


def cifar10_available(root=None) -> bool:
    """True when all seven CIFAR-10 batch files exist locally (never downloads)."""
    return not _missing_files(cifar10_dir(root))


class UnsafePickleError(RuntimeError):
    """A batch file asks for a Python global that no CIFAR-10 batch needs (it was not run)."""


def _latin1(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 writes bytes into protocol-2 pickles (latin-1 only)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return codecs.encode(text, "latin1")


try:
    from numpy._core import multiarray as _ma, numeric as _nu       # NumPy >= 2
except ImportError:                                                   # pragma: no cover
    from numpy.core import multiarray as _ma, numeric as _nu          # NumPy 1.x
# What a batch may name: arrays (b'data'; _frombuffer: protocol 5), NumPy scalars (re-saved
# labels), and bytes the way Python 3 writes them at protocol 2. Nothing else.
_ALLOWED_GLOBALS = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                    ("_codecs", "encode"): _latin1}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS.update({(f"{_core}.multiarray", "_reconstruct"): _ma._reconstruct,
                             (f"{_core}.multiarray", "scalar"): _ma.scalar,
                             (f"{_core}.numeric", "_frombuffer"): _nu._frombuffer})


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only dicts, lists, bytes, numbers and NumPy arrays: any other global (how a
    pickle runs code: os.system, eval, a class's __reduce__) raises before it is called."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(f"{module}.{name}")
        return _ALLOWED_GLOBALS[module, name]


def _fix(folder: Path) -> str:
    """What to do about a bad file in ``folder``: the user's own copy is never ours to delete."""
    if os.environ.get("CIFAR10_DIR", "").strip():
        return (f"re-extract your copy of CIFAR-10 from the official archive, or point "
                f"CIFAR10_DIR at an intact {_CIFAR10_FOLDER} folder")
    return f"delete {folder} and run `make data` again"


def _bad(path: Path, what: str) -> RuntimeError:
    return RuntimeError(f"CIFAR-10 file {path}: {what}; {_fix(path.parent)}.")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            d = _BatchUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except UnsafePickleError as exc:
        raise UnsafePickleError(
            f"CIFAR-10 file {path} refers to the Python global {exc}, which no CIFAR-10 batch "
            f"needs: it is not an official batch file and may run code when unpickled. It was "
            f"NOT loaded and nothing in it was run. Do not use this copy; "
            f"{_fix(path.parent)}.") from None
    except Exception as exc:   # UnpicklingError, EOFError, ValueError, ... all mean "corrupt"
        raise _bad(path, f"corrupt or truncated ({exc!r})") from exc
    if not isinstance(d, dict):
        raise _bad(path, "does not hold a dict, so it is not a CIFAR-10 python batch")
    return d


def _batch_labels(raw, path: Path) -> np.ndarray:
    """b'labels' of a batch as (m,) int64, or a RuntimeError naming the file: a list (or 1-D
    integer array) of integers 0..9, never floats (1.7), strings or bools."""
    bad = "labels must be a list of integers 0..9"
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise _bad(path, f"{bad}; got a {raw.dtype} array of shape {raw.shape}")
        out = np.flatnonzero((raw < 0) | (raw > 9))[:1].tolist()
    elif isinstance(raw, (list, tuple)):
        for i, v in enumerate(raw):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise _bad(path, f"{bad}; label {i} is {v!r} ({type(v).__name__})")
        out = [i for i, v in enumerate(raw) if not 0 <= v <= 9][:1]
    else:
        raise _bad(path, f"{bad}; got {type(raw).__name__}")
    if out:
        raise _bad(path, f"{bad}; label {out[0]} is {raw[out[0]]}, out of range")
    return np.array(raw, dtype=np.int64)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if b"data" not in d or b"labels" not in d:
        raise _bad(path, "no b'data' or b'labels' entry, so it is not a CIFAR-10 python batch")
    rows, labels = d[b"data"], _batch_labels(d[b"labels"], path)
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.shape[1:] != (3072,):
        what = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise _bad(path, f"data is {what}, expected a uint8 array (m, 3072)")
    if labels.shape != (rows.shape[0],):
        raise _bad(path, f"{labels.size} labels for {rows.shape[0]} images")
    return rows, labels


def load_cifar10(root=None, download: bool = True, url: str = CIFAR10_URL,
                 md5: str | None = CIFAR10_MD5) -> dict:
    """Load the official CIFAR-10 python batches, downloading them first if needed.

    The folder is $CIFAR10_DIR when set (an existing cifar-10-batches-py folder, or its
    parent), otherwise ``root``/cifar-10-batches-py with root defaulting to config.DATA_DIR. When
    files are missing there (and CIFAR10_DIR is not set) the archive is downloaded to
    ``root`` (kept as a cache), md5-checked and safely extracted; with ``download=False``
    a FileNotFoundError says how to get it. An incomplete folder is never deleted or
    replaced (FileExistsError: move it away). Bad batch files raise an error naming the file;
    they are unpickled with a restricted unpickler, so one that would run code raises
    UnsafePickleError and nothing in it is run. Labels must be integers 0..9.

    Returns a dict:
        X_train      (3072, 50000) uint8   column i = row i of data_batch_1..5 (in order)
        y_train      (50000,) int64        labels 0..9
        X_test       (3072, 10000) uint8   column i = row i of test_batch
        y_test       (10000,) int64
        label_names  list[str]             10 class names from batches.meta
        folder       Path                  where the batches were read from
    The X arrays are transposes of the pickled (n, 3072) rows (so each image is contiguous).
    """
    folder = cifar10_dir(root)
    missing = _missing_files(folder)
    if missing:
        if os.environ.get("CIFAR10_DIR", "").strip():
            raise FileNotFoundError(
                f"CIFAR10_DIR={os.environ['CIFAR10_DIR']} does not hold the CIFAR-10 python "
                f"batches (missing {', '.join(missing)} in {folder}). Point it at an intact "
                f"extracted {_CIFAR10_FOLDER} folder (re-extract your copy if files are "
                f"missing), or unset it to use {config.DATA_DIR}.")
        if os.path.lexists(folder):
            raise FileExistsError(
                f"{folder} exists but is incomplete (missing {', '.join(missing)}). It is not "
                f"deleted or replaced: move it away (e.g. rename it to {folder.name}.old), then "
                f"run `make data` again to download and extract a fresh copy.")
        if not download:
            raise FileNotFoundError(
                f"CIFAR-10 not found in {folder} (missing {', '.join(missing)}). Run "
                f"`make data` (or load_cifar10(download=True)), or {_HOW_TO_GET}.")
        root_dir = folder.parent
        tar = root_dir / _CIFAR10_TAR
        if not (tar.is_file() and (md5 is None or md5_file(tar) == md5.lower())):
            download_file(url, tar, md5=md5)
        safe_extract(tar, root_dir)
        missing = _missing_files(folder)
        if missing:
            raise RuntimeError(f"{tar} did not contain {_CIFAR10_FOLDER}/"
                               f"{', '.join(missing)}; is it the CIFAR-10 python archive?")
    train = [_read_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    X_test_rows, y_test = _read_batch(folder / "test_batch")
    meta = _unpickle(folder / "batches.meta")
    names = meta.get(b"label_names")
    if (not isinstance(names, (list, tuple)) or len(names) != 10
            or not all(isinstance(n, (bytes, str)) for n in names)):
        raise _bad(folder / "batches.meta", "no 10 label_names; it is corrupt")
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    rows = np.concatenate([r for r, _ in train], axis=0)
    return {"X_train": rows.T, "y_train": np.concatenate([lab for _, lab in train]),
            "X_test": X_test_rows.T, "y_test": y_test, "label_names": names, "folder": folder}


def fetch_cifar10_or_explain(root=None, url: str = CIFAR10_URL,
                             md5: str | None = CIFAR10_MD5) -> bool:
    """For ``make data``: make sure CIFAR-10 is available locally, or say why it is not.

    Returns True when the batches are present (downloading them if needed). On any failure
    (offline, checksum, corrupt archive) prints one line saying the workbook will use the
    SYNTHETIC dataset instead, and returns False; it never raises for network problems.
    """
    try:
        d = load_cifar10(root=root, download=True, url=url, md5=md5)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means "use the stand-in"
        msg = " ".join(str(exc).split())
        what = ("could not fetch CIFAR-10 (offline?)" if isinstance(exc, DownloadError)
                else f"could not fetch CIFAR-10 ({type(exc).__name__})")
        print(f"data: {what}: {msg} - the workbook will use the SYNTHETIC 10-class stand-in "
              f"(not CIFAR-10) instead.", flush=True)
        return False
    print(f"data: CIFAR-10 ready in {d['folder']} - train {d['X_train'].shape[1]}, "
          f"test {d['X_test'].shape[1]}", flush=True)
    return True


def _check_data(X, name: str, rows: int | None = None, chunk: int = 1024) -> np.ndarray:
    """X as a 2-D real array (with ``rows`` rows), or a ValueError naming it; NaN/inf too."""
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "uif" or X.shape[0] != (rows or X.shape[0]):
        raise ValueError(f"{name} must be a 2-D array ({rows or 3072}, n) of real numbers (e.g. "
                         f"uint8 pixels), one image per column; got {X.dtype} {X.shape}")
    bad = nonfinite_columns(X, chunk)
    if bad.size:
        raise ValueError(f"{name} holds NaN or inf in {bad.size} image(s) (first: column "
                         f"{bad[0]}); the mean/std would be NaN, and so every result. "
                         f"Repair or drop those images before normalising.")
    return X


def mean_std(X, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over the columns of X (d, n), in float64, chunked.

    Returns mean (d, 1) float64 and std (d, 1) float64 (population std; zeros become 1 so
    that dividing by it is always safe). Integer data (e.g. uint8 pixels) is summed exactly
    in one pass; float data uses two passes. NaN/inf or a non-numeric dtype: ValueError.
    """
    X = _check_data(X, "X")
    d, n = X.shape
    if n == 0:
        raise ValueError("cannot compute statistics of an empty training set")
    R = X.T                                              # (n, d): one image per row
    exact = np.issubdtype(X.dtype, np.integer)
    s1, s2 = np.zeros(d), np.zeros(d)
    for j in range(0, n, chunk):
        B = np.array(R[j:j + chunk], dtype=np.float64, order="C")
        s1 += B.sum(axis=0)
        if exact:                                        # sums of squares of ints: exact
            B *= B
            s2 += B.sum(axis=0)
    mean = s1 / n
    if exact:
        var = np.maximum(s2 / n - mean * mean, 0.0)
    else:
        for j in range(0, n, chunk):
            B = np.array(R[j:j + chunk], dtype=np.float64, order="C")
            B -= mean
            B *= B
            s2 += B.sum(axis=0)
        var = s2 / n
    std = np.sqrt(var)
    std[std == 0] = 1.0
    return mean[:, None], std[:, None]


def _standardise(X, mean, std, dtype, chunk: int = 256) -> np.ndarray:
    """(X - mean) / std as ``dtype``, computed in ``dtype``; returned image-contiguous."""
    d, n = X.shape
    R = X.T
    m = mean.astype(dtype).ravel()
    inv = (1.0 / std).astype(dtype).ravel()
    out = np.empty((n, d), dtype=dtype)
    for j in range(0, n, chunk):
        o = out[j:j + chunk]
        np.subtract(R[j:j + chunk], m, out=o, dtype=dtype, casting="unsafe")
        o *= inv
    return out.T


def normalise(X_train, *others, dtype=np.float32):
    """Standardise with the training set's per-dimension statistics.

    X_train (3072, n) any real dtype (e.g. uint8); others: any number of (3072, m) arrays.
    The mean and std are computed over the training columns only (in float64), then every
    array is mapped to (X - mean) * (1 / std), computed in ``dtype``.
    Returns (X_train_n, *others_n, mean, std): each X (3072, ·) ``dtype``, mean (3072, 1)
    ``dtype``, std (3072, 1) ``dtype``. Every array is checked first (2-D, real, no NaN/inf,
    the same number of rows): ValueError naming it, before any work.
    """
    X_train = _check_data(X_train, "X_train")
    others = [_check_data(X, f"array {i + 2} (after X_train)", X_train.shape[0])
              for i, X in enumerate(others)]
    mean, std = mean_std(X_train)
    out = [_standardise(X, mean, std, dtype) for X in (X_train, *others)]
    return (*out, mean.astype(dtype), std.astype(dtype))


_SOURCES = ("auto", "cifar10", "synthetic")


def _image_folder(value, what: str) -> Path:
    """The image folder named by ``what`` (source= or WORKBOOK_DATA), or ImageFolderError."""
    p = Path(value).expanduser()
    if images.is_image_folder(p):
        return p
    layout = "train/<class>/*.png|.jpg and test/<class>/*.png|.jpg (32x32 images)"
    why = "does not exist" if not p.exists() else f"is not an image folder (no {layout})"
    do = (f"point it at an image folder laid out as {layout}, or unset it"
          if what == "WORKBOOK_DATA" else f"source must be 'auto', 'cifar10', 'synthetic' or "
          f"the path of an image folder laid out as {layout}")
    raise images.ImageFolderError(f"{what}={str(value)!r} {why}; {do}.")


def _pick_source(source, fast: bool) -> tuple[str, Path | None, str]:
    """(kind "cifar10" | "synthetic" | "folder", the image folder or None, a printout note)."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and source not in _SOURCES):
        return "folder", _image_folder(source, "source"), ""
    if not isinstance(source, str):
        raise ValueError(f"source must be one of {_SOURCES} or a path; got {source!r}")
    if source != "auto":
        return source, None, ""
    env = {k: os.environ.get(k, "").strip() for k in ("WORKBOOK_DATA", "CIFAR10_DIR")}
    if fast:
        set_ = [f"{k}={v}" for k, v in env.items() if v]
        return "synthetic", None, f": {' and '.join(set_)} ignored" if set_ else ""
    if env["WORKBOOK_DATA"]:
        note = ": CIFAR10_DIR ignored, WORKBOOK_DATA wins" if env["CIFAR10_DIR"] else ""
        return "folder", _image_folder(env["WORKBOOK_DATA"], "WORKBOOK_DATA"), note
    # load_cifar10(download=False) reads it or says what is wrong (no silent fall-back)
    if env["CIFAR10_DIR"] or os.path.lexists(cifar10_dir()):
        return "cifar10", None, ""
    return "synthetic", None, ""


def load_dataset(source="auto", n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None, seed: int = 0, dtype=np.float32,
                 verbose: bool = True) -> dict:
    """The one call the notebooks use: train/val/test data, normalised, with one-hot targets.

    source: "cifar10" (official batches, downloaded if missing), "synthetic" (the stand-in),
    an image folder's path (str or Path; see images.load_image_folder), or "auto": in fast
    mode (WORKBOOK_FAST=1) always synthetic (a set WORKBOOK_DATA/CIFAR10_DIR is ignored and
    the printout says so); else $WORKBOOK_DATA (an image folder) if set, else the batches if
    $CIFAR10_DIR is set or config.DATA_DIR/cifar-10-batches-py exists (never downloads),
    else synthetic. A WORKBOOK_DATA/CIFAR10_DIR without the data raises, never falls back.
    Fast mode uses FAST_SIZES for any size left as None.

    Split (the spec's 49k/1k): validation = the LAST n_val (default 1000) images of the
    training pool (an image folder's is shuffled with a fixed seed by load_image_folder);
    training = the first n_train (default: the rest); test = the first n_test (default all).
    Synthetic pools have CIFAR-10's sizes (``seed`` selects them). Normalised with the
    training split's per-dimension mean/std (float64, then cast).

    Returns a dict (K = len(label_names), 10 for CIFAR-10 and synthetic):
        X_train (3072, n_train) dtype   Y_train (K, n_train) dtype   y_train (n_train,) int64
        X_val, Y_val, y_val (n_val images), X_test, Y_test, y_test (n_test) likewise
        mean, std (3072, 1) dtype: the training statistics; label_names list[str]
        source "CIFAR-10" | "synthetic" | the folder's label; synthetic bool; fast bool
        name: "CIFAR-10", "SYNTHETIC (not CIFAR-10)" or the folder's label (e.g. "CIFAR-10
        (JPEG q75 copy)"), plus " [FAST MODE]" in fast mode: for titles and printouts
    The X arrays are image-contiguous (each column is contiguous in memory).
    """
    fast, sizes = is_fast(), {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    for k, v in sizes.items():
        if v is not None and (isinstance(v, (bool, np.bool_))
                              or not isinstance(v, (int, np.integer))):
            raise ValueError(f"{k} must be an integer number of images; got {v!r}")
        sizes[k] = FAST_SIZES[k] if fast and v is None else v
    n_train, n_val, n_test = sizes.values()
    n_val = 1000 if n_val is None else int(n_val)
    kind, folder, note = _pick_source(source, fast)

    if kind == "synthetic":
        N, N_test = _N_POOL["train"], _N_POOL["test"]
    else:
        raw = (load_cifar10(download=source == "cifar10") if kind == "cifar10"
               else images.load_image_folder(folder, progress=verbose))
        N, N_test = raw["X_train"].shape[1], raw["X_test"].shape[1]
    if not 0 <= n_val < N:
        raise ValueError(f"n_val must be in 0..{N - 1}, got {n_val}")
    n_train = N - n_val if n_train is None else int(n_train)
    n_test = N_test if n_test is None else int(n_test)
    if not 0 < n_train <= N - n_val:
        raise ValueError(f"n_train must be in 1..{N - n_val} (with n_val={n_val}), got {n_train}")
    if not 0 <= n_test <= N_test:
        raise ValueError(f"n_test must be in 0..{N_test}, got {n_test}")

    if kind == "synthetic":
        (Xtr, ytr), (Xva, yva) = _synthetic_part(seed, "train",
                                                 [(0, n_train), (N - n_val, N)])
        ((Xte, yte),) = _synthetic_part(seed, "test", [(0, n_test)])
        label_names, label = list(SYNTHETIC_LABELS), "SYNTHETIC (not CIFAR-10)"
    else:
        Xtr, ytr = raw["X_train"][:, :n_train], raw["y_train"][:n_train]
        Xva, yva = raw["X_train"][:, N - n_val:], raw["y_train"][N - n_val:]
        Xte, yte = raw["X_test"][:, :n_test], raw["y_test"][:n_test]
        label_names, label = raw["label_names"], raw.get("name", "CIFAR-10")

    Xtr_n, Xva_n, Xte_n, mean, std = normalise(Xtr, Xva, Xte, dtype=dtype)
    synthetic, K = kind == "synthetic", len(label_names)
    if verbose:
        what = ("SYNTHETIC 10-class stand-in (not CIFAR-10)" if synthetic else label
                + (f" from {raw['folder']}" if kind == "folder" else ""))
        tag = f" [fast mode{note}]" if fast else (f" [{note[2:]}]" if note else "")
        print(f"data: {what} - train {n_train}, val {n_val}, test {n_test}{tag}", flush=True)
    return {
        "X_train": Xtr_n, "Y_train": one_hot(ytr, K, dtype), "y_train": np.array(ytr),
        "X_val": Xva_n, "Y_val": one_hot(yva, K, dtype), "y_val": np.array(yva),
        "X_test": Xte_n, "Y_test": one_hot(yte, K, dtype), "y_test": np.array(yte),
        "mean": mean, "std": std, "label_names": label_names,
        "source": "synthetic" if synthetic else label, "synthetic": synthetic,
        "fast": fast, "name": label + (" [FAST MODE]" if fast else ""),
    }
