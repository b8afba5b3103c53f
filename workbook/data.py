"""Data: the official CIFAR-10 archive (download, md5, safe extraction, batch files), the
image-folder and synthetic sources, normalisation, and ``load_dataset``, the one call the
notebooks use. Untrusted input: batch files are unpickled with a restricted unpickler (nothing
in them is ever run), extraction never replaces or deletes anything, and every problem raises
an error naming the file before any work is done."""
from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path

import numpy as np

from helpers import one_hot
from workbook import config, files, images, synthetic
from workbook.checks import nonfinite_columns
from workbook.config import is_fast
from workbook.files import DownloadError, md5_file, safe_extract  # noqa: F401 (public here too)


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


def download_file(url: str, dest, md5: str | None = None, retries: int = 1,
                  chunk: int = 1 << 20, timeout: float = 60.0, progress: bool = True) -> Path:
    """files.download_file (atomic, md5-checked, retried, no partial file on any failure),
    with errors that say how to get CIFAR-10 by hand (CIFAR10_DIR). Returns ``dest``."""
    return files.download_file(url, dest, md5=md5, retries=retries, chunk=chunk,
                               timeout=timeout, progress=progress, advice=_HOW_TO_GET)



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

    Returns mean (d, 1) float64 and std (d, 1) float64 (population std; a dimension that is
    constant, std 0 or only rounding noise below 1e-9 of its mean, gets std 1, so that
    dividing by it is always safe and maps it to 0, never NaN or noise). Integer data (e.g. uint8 pixels) is summed exactly
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
    std[(std == 0) | (std <= 1e-9 * np.abs(mean))] = 1.0     # constant: no spread to divide
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


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    """np.dtype(dtype) when it is float32 or float64, else ValueError naming ``name``
    (normalised data must be floating point: an integer dtype would round it all to 0)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.float32, np.float64):
        raise ValueError(f"{name} must be np.float32 or np.float64 (normalised data is "
                         f"floating point); got {dtype!r}")
    return dt


def normalise(X_train, *others, dtype=np.float32):
    """Standardise with the training set's per-dimension statistics.

    X_train (3072, n) any real dtype (e.g. uint8); others: any number of (3072, m) arrays.
    The mean and std are computed over the training columns only (in float64), then every
    array is mapped to (X - mean) * (1 / std), computed in ``dtype``.
    Returns (X_train_n, *others_n, mean, std): each X (3072, ·) ``dtype``, mean (3072, 1)
    ``dtype``, std (3072, 1) ``dtype``. Every array is checked first (2-D, real, no NaN/inf,
    the same number of rows): ValueError naming it, before any work; so is a ``dtype`` other
    than float32/float64, and a spread too small for ``dtype`` (1/std overflows).
    """
    dtype = check_dtype(dtype)
    X_train = _check_data(X_train, "X_train")
    others = [_check_data(X, f"array {i + 2} (after X_train)", X_train.shape[0])
              for i, X in enumerate(others)]
    mean, std = mean_std(X_train)
    with np.errstate(over="ignore"):
        if not np.isfinite((1.0 / std).astype(dtype)).all():
            raise ValueError(f"X_train's per-dimension spread is too small for {dtype} (min "
                             f"std {std.min():.3g}); pass dtype=np.float64 or rescale the data")
    out = [_standardise(X, mean, std, dtype) for X in (X_train, *others)]
    return (*out, mean.astype(dtype), std.astype(dtype))


_SOURCES = ("auto", "cifar10", "synthetic")


def _image_folder(value, what: str) -> Path:
    """The image folder named by ``what`` (source= or WORKBOOK_DATA), or ImageFolderError."""
    p = Path(value).expanduser()
    if images.is_image_folder(p):
        return p
    layout = "train/<class>/*.png|.jpg and test/<class>/*.png|.jpg (32x32 images)"
    why = images.path_problem(p)
    if why is None:
        try:                                 # a link inside: the scan names it precisely
            images.folder_summary(p)
        except images.ImageFolderError as exc:
            if "symbolic link" in str(exc):
                raise images.ImageFolderError(f"{what}={str(value)!r}: {exc}") from None
    why = why or f"is not an image folder (no {layout})"
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


MAX_CLASSES = 10     # the workbook's networks, plots and checks are made for up to 10 classes


def _check_int(name: str, value, low: int = 0, none_ok: bool = True):
    """value as an int >= low (None passes when none_ok), else ValueError naming ``name``:
    bools, floats (4.5 and 4.0 alike) and strings are refused, not rounded or parsed."""
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r} "
                         f"({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value}")
    return int(value)


def _sizes(n_train, n_val, n_test, N: int, N_test: int, what: str) -> tuple[int, int, int]:
    """The split sizes (Nones filled in) for a pool of N training and N_test test images, or
    ValueError naming the field, its value and the limit."""
    n_val = 1000 if n_val is None else n_val
    if not 0 <= n_val < N:
        raise ValueError(f"n_val must be in 0..{N - 1} ({what} has {N} training images), "
                         f"got {n_val}")
    n_train = N - n_val if n_train is None else n_train
    if not 0 < n_train <= N - n_val:
        raise ValueError(f"n_train must be in 1..{N - n_val} ({what} has {N} training images, "
                         f"and n_val={n_val} of them are validation), got {n_train}")
    n_test = N_test if n_test is None else n_test
    if not 0 <= n_test <= N_test:
        raise ValueError(f"n_test must be in 0..{N_test} ({what} has {N_test} test images), "
                         f"got {n_test}")
    return n_train, n_val, n_test


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
    training split's per-dimension mean/std (float64, then cast to ``dtype``).

    Checked before any data is loaded or decoded (ValueError naming the field and value):
    n_train/n_val/n_test integers (not bools, floats or strings) within the pool's sizes,
    seed an integer >= 0, dtype np.float32 or np.float64, verbose a bool, WORKBOOK_FAST
    unset/0/1, and an image folder's layout and number of classes (2..MAX_CLASSES).

    Returns a dict (K = len(label_names): 10 for CIFAR-10 and synthetic, the number of class
    folders for an image folder; build the network with K outputs):
        X_train (3072, n_train) dtype   Y_train (K, n_train) dtype   y_train (n_train,) int64
        X_val, Y_val, y_val (n_val images), X_test, Y_test, y_test (n_test) likewise
        mean, std (3072, 1) dtype: the training statistics; label_names list[str]; K int
        source "CIFAR-10" | "synthetic" | the folder's label; synthetic bool; fast bool
        name: "CIFAR-10", "SYNTHETIC (not CIFAR-10)" or the folder's label (e.g. "CIFAR-10
        (JPEG q75 copy)"), plus " [FAST MODE]" in fast mode: for titles and printouts
    The X arrays are image-contiguous (each column is contiguous in memory).
    """
    fast = is_fast()
    sizes = {k: _check_int(k, v) for k, v in
             (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))}
    seed = _check_int("seed", seed, none_ok=False)
    dtype = check_dtype(dtype)
    if not isinstance(verbose, (bool, np.bool_)):
        raise ValueError(f"verbose must be True or False; got {verbose!r}")
    if fast:
        sizes = {k: FAST_SIZES[k] if v is None else v for k, v in sizes.items()}
    kind, folder, note = _pick_source(source, fast)

    # the sizes and classes, known before anything is loaded or decoded
    if kind == "synthetic":
        N, N_test, K, what = synthetic.N_POOL["train"], synthetic.N_POOL["test"], 10, "synthetic"
    elif kind == "cifar10":      # the official sizes; a modified copy is checked again below
        N, N_test, K, what = 50000, 10000, 10, "CIFAR-10"
    else:
        summary = images.folder_summary(folder)
        N, N_test, K = summary["n_train"], summary["n_test"], len(summary["label_names"])
        what = f"the image folder {summary['folder']}"
        if K > MAX_CLASSES:
            raise images.ImageFolderError(
                f"{what} has {K} classes ({', '.join(summary['label_names'])}); the workbook's "
                f"networks, figures and checks are made for 2..{MAX_CLASSES} classes. Nothing "
                f"was decoded. Use a folder with at most {MAX_CLASSES} class folders (merge or "
                f"remove some).")
    n_train, n_val, n_test = _sizes(*sizes.values(), N, N_test, what)

    if kind == "synthetic":
        (Xtr, ytr), (Xva, yva) = synthetic.synthetic_part(seed, "train",
                                                          [(0, n_train), (N - n_val, N)])
        ((Xte, yte),) = synthetic.synthetic_part(seed, "test", [(0, n_test)])
        label_names, label = list(synthetic.SYNTHETIC_LABELS), "SYNTHETIC (not CIFAR-10)"
    else:
        raw = (load_cifar10(download=source == "cifar10") if kind == "cifar10"
               else images.load_image_folder(folder, progress=verbose))
        N, N_test = raw["X_train"].shape[1], raw["X_test"].shape[1]
        n_train, n_val, n_test = _sizes(*sizes.values(), N, N_test, what)
        Xtr, ytr = raw["X_train"][:, :n_train], raw["y_train"][:n_train]
        Xva, yva = raw["X_train"][:, N - n_val:], raw["y_train"][N - n_val:]
        Xte, yte = raw["X_test"][:, :n_test], raw["y_test"][:n_test]
        label_names, label = raw["label_names"], raw.get("name", "CIFAR-10")

    Xtr_n, Xva_n, Xte_n, mean, std = normalise(Xtr, Xva, Xte, dtype=dtype)
    synthetic_, K = kind == "synthetic", len(label_names)
    if verbose:
        what = ("SYNTHETIC 10-class stand-in (not CIFAR-10)" if synthetic_ else label
                + (f" from {raw['folder']}" if kind == "folder" else ""))
        tag = f" [fast mode{note}]" if fast else (f" [{note[2:]}]" if note else "")
        print(f"data: {what} - train {n_train}, val {n_val}, test {n_test}{tag}", flush=True)
    return {
        "X_train": Xtr_n, "Y_train": one_hot(ytr, K, dtype), "y_train": np.array(ytr),
        "X_val": Xva_n, "Y_val": one_hot(yva, K, dtype), "y_val": np.array(yva),
        "X_test": Xte_n, "Y_test": one_hot(yte, K, dtype), "y_test": np.array(yte),
        "mean": mean, "std": std, "label_names": label_names, "K": K,
        "source": "synthetic" if synthetic_ else label, "synthetic": synthetic_,
        "fast": fast, "name": label + (" [FAST MODE]" if fast else ""),
    }
