"""Data: the official CIFAR-10 archive (download, md5, safe extraction, batch files), the
image-folder and synthetic sources, normalisation, and ``load_dataset``, the one call the
notebooks use."""
from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from helpers import one_hot
from workbook import config
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


def download_file(url: str, dest, md5: str | None = None, retries: int = 1,
                  chunk: int = 1 << 20, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and an md5 check.

    The bytes go to a temporary file in dest's folder; only when the transfer is complete
    and (if ``md5`` is given) the checksum matches is it renamed onto ``dest`` with
    ``os.replace``. A checksum mismatch or a transfer cut short is retried ``retries`` more
    times. Whatever happens (mismatch, network error, Ctrl-C) no partial or temporary file
    is left behind. Returns ``dest`` as a Path.

    Raises DownloadError (a RuntimeError) when the server cannot be reached, answers with an
    HTTP error, or the checksum never matches; the message names the URL and CIFAR10_DIR.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    last = ""
    try:
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
        tmp.unlink(missing_ok=True)        # no partial file, whatever happened


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


def safe_extract(tar_path, dest) -> list[Path]:
    """Extract the (gzipped) tar archive ``tar_path`` into the folder ``dest``, safely.

    Every member is checked before anything is written: absolute paths, paths that resolve
    outside ``dest`` (``..``), symbolic/hard links and special files raise ValueError and
    nothing is extracted. The archive is unpacked into a temporary folder inside ``dest``
    and each top-level entry is then renamed into place (replacing an existing entry of the
    same name), so a truncated or corrupt archive raises RuntimeError and leaves no
    half-extracted folder behind. Returns the top-level paths created in ``dest``.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest_resolved = dest.resolve()
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(tar_path, "r:*") as tar:
                members = tar.getmembers()          # reads the whole archive: finds truncation
                for m in members:
                    _check_member(m, dest_resolved)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:                                # pragma: no cover (Python < 3.11.4)
                    tar.extractall(tmp, members=members)
        except ValueError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, getattr(tarfile, "FilterError", ())):
                raise ValueError(f"refusing to extract {tar_path}: {exc}") from exc
            raise RuntimeError(
                f"the archive {tar_path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                f"nothing was extracted. Delete it and download it again.") from exc
        created = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            created.append(target)
        return created
    finally:
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


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
    except FileNotFoundError:
        raise
    except Exception as exc:   # UnpicklingError, EOFError, ValueError, ... all mean "corrupt"
        raise RuntimeError(f"CIFAR-10 file {path} is corrupt or truncated ({exc!r}); delete "
                           f"{path.parent} and run `make data` again.") from exc
    if not isinstance(d, dict):
        raise RuntimeError(f"CIFAR-10 file {path} does not hold a dict; it is not a CIFAR-10 "
                           f"python batch. Delete {path.parent} and run `make data` again.")
    return d


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    try:
        rows = np.asarray(d[b"data"])
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except KeyError as exc:
        raise RuntimeError(f"CIFAR-10 file {path} has no {exc.args[0]!r} entry; it is not a "
                           f"CIFAR-10 python batch.") from exc
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
        raise RuntimeError(f"CIFAR-10 file {path}: data is {rows.dtype} {rows.shape}, "
                           f"expected uint8 (m, 3072)")
    if labels.shape != (rows.shape[0],) or (labels.size and (labels.min() < 0
                                                             or labels.max() > 9)):
        raise RuntimeError(f"CIFAR-10 file {path}: labels do not match the data "
                           f"({labels.shape} labels for {rows.shape[0]} images, or out of 0..9)")
    return rows, labels


def load_cifar10(root=None, download: bool = True, url: str = CIFAR10_URL,
                 md5: str | None = CIFAR10_MD5) -> dict:
    """Load the official CIFAR-10 python batches, downloading them first if needed.

    The folder is $CIFAR10_DIR when set (an existing cifar-10-batches-py folder, or its
    parent), otherwise ``root``/cifar-10-batches-py with root defaulting to config.DATA_DIR. When
    files are missing there (and CIFAR10_DIR is not set) the archive is downloaded to
    ``root`` (kept as a cache), md5-checked and safely extracted; with ``download=False``
    a FileNotFoundError says how to get it. Missing or corrupt batch files raise a clear
    error naming the file.

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
                f"batches (missing {', '.join(missing)}). Point it at the extracted "
                f"{_CIFAR10_FOLDER} folder, or unset it to download into {config.DATA_DIR}.")
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
    if names is None or len(names) != 10:
        raise RuntimeError(f"{folder / 'batches.meta'} has no 10 label_names; it is corrupt.")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    rows = np.concatenate([r for r, _ in train], axis=0)
    return {
        "X_train": rows.T,
        "y_train": np.concatenate([lab for _, lab in train]),
        "X_test": X_test_rows.T,
        "y_test": y_test,
        "label_names": names,
        "folder": folder,
    }


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


def mean_std(X, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over the columns of X (d, n), in float64, chunked.

    Returns mean (d, 1) float64 and std (d, 1) float64 (population std; zeros become 1 so
    that dividing by it is always safe). Integer data (e.g. uint8 pixels) is summed exactly
    in one pass; float data uses two passes.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (d, n), got shape {X.shape}")
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
    ``dtype``, std (3072, 1) ``dtype``.
    """
    mean, std = mean_std(X_train)
    out = [_standardise(X, mean, std, dtype) for X in (X_train, *others)]
    return (*out, mean.astype(dtype), std.astype(dtype))


def load_dataset(source: str = "auto", n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None, seed: int = 0, dtype=np.float32,
                 verbose: bool = True) -> dict:
    """The one call the notebooks use: train/val/test data, normalised, with one-hot targets.

    source: "cifar10" (real CIFAR-10, downloaded if missing), "synthetic" (the procedural
    stand-in, see make_synthetic), or "auto": CIFAR-10 when it is already on disk
    ($CIFAR10_DIR or config.DATA_DIR/cifar-10-batches-py; never downloads) and not in fast mode,
    else synthetic. Fast mode (WORKBOOK_FAST=1) uses FAST_SIZES for any size left as None.

    Split (the spec's 49k/1k): validation = the LAST n_val (default 1000) images of the
    50,000-image training pool; training = the first n_train (default: all the rest) of the
    remaining ones; test = the first n_test (default all 10,000) test images. The synthetic
    pools have the same sizes (train/test from separate RNG streams; ``seed`` selects them).
    Normalised with the training split's per-dimension mean/std (float64, then cast).

    Returns a dict:
        X_train (3072, n_train) dtype   Y_train (10, n_train) dtype   y_train (n_train,) int64
        X_val   (3072, n_val)   dtype   Y_val   (10, n_val)   dtype   y_val   (n_val,)   int64
        X_test  (3072, n_test)  dtype   Y_test  (10, n_test)  dtype   y_test  (n_test,)  int64
        mean (3072, 1) dtype, std (3072, 1) dtype   the training statistics used
        label_names list[str], source "CIFAR-10" | "synthetic", synthetic bool, fast bool,
        name str (for plot titles: "CIFAR-10" or "SYNTHETIC (not CIFAR-10)", plus
        " [FAST MODE]" in fast mode)
    The X arrays are image-contiguous (each column is contiguous in memory).
    """
    if source not in ("auto", "cifar10", "synthetic"):
        raise ValueError(f"source must be 'auto', 'cifar10' or 'synthetic', not {source!r}")
    fast = is_fast()
    if fast:
        n_train = FAST_SIZES["n_train"] if n_train is None else n_train
        n_val = FAST_SIZES["n_val"] if n_val is None else n_val
        n_test = FAST_SIZES["n_test"] if n_test is None else n_test
    n_val = 1000 if n_val is None else int(n_val)
    if source == "auto":
        source = "cifar10" if (not fast and cifar10_available()) else "synthetic"

    if source == "cifar10":
        raw = load_cifar10()
        N, N_test = raw["X_train"].shape[1], raw["X_test"].shape[1]
    else:
        N, N_test = _N_POOL["train"], _N_POOL["test"]
    if not 0 <= n_val < N:
        raise ValueError(f"n_val must be in 0..{N - 1}, got {n_val}")
    n_train = N - n_val if n_train is None else int(n_train)
    n_test = N_test if n_test is None else int(n_test)
    if not 0 < n_train <= N - n_val:
        raise ValueError(f"n_train must be in 1..{N - n_val} (with n_val={n_val}), got {n_train}")
    if not 0 <= n_test <= N_test:
        raise ValueError(f"n_test must be in 0..{N_test}, got {n_test}")

    if source == "cifar10":
        Xtr, ytr = raw["X_train"][:, :n_train], raw["y_train"][:n_train]
        Xva, yva = raw["X_train"][:, N - n_val:], raw["y_train"][N - n_val:]
        Xte, yte = raw["X_test"][:, :n_test], raw["y_test"][:n_test]
        label_names = raw["label_names"]
    else:
        (Xtr, ytr), (Xva, yva) = _synthetic_part(seed, "train",
                                                 [(0, n_train), (N - n_val, N)])
        ((Xte, yte),) = _synthetic_part(seed, "test", [(0, n_test)])
        label_names = list(SYNTHETIC_LABELS)

    Xtr_n, Xva_n, Xte_n, mean, std = normalise(Xtr, Xva, Xte, dtype=dtype)
    synthetic = source == "synthetic"
    name = "SYNTHETIC (not CIFAR-10)" if synthetic else "CIFAR-10"
    if fast:
        name += " [FAST MODE]"
    if verbose:
        what = "SYNTHETIC 10-class stand-in (not CIFAR-10)" if synthetic else "CIFAR-10"
        print(f"data: {what} - train {n_train}, val {n_val}, test {n_test}"
              + (" [fast mode]" if fast else ""), flush=True)
    return {
        "X_train": Xtr_n, "Y_train": one_hot(ytr, 10, dtype), "y_train": np.array(ytr),
        "X_val": Xva_n, "Y_val": one_hot(yva, 10, dtype), "y_val": np.array(yva),
        "X_test": Xte_n, "Y_test": one_hot(yte, 10, dtype), "y_test": np.array(yte),
        "mean": mean, "std": std, "label_names": label_names,
        "source": "synthetic" if synthetic else "CIFAR-10", "synthetic": synthetic,
        "fast": fast, "name": name,
    }
