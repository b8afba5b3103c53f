"""Shared helpers for the NumPy ConvNet workbook (KTH DD2424 Assignment 3).

Every notebook imports this one module. It is flat and sectioned:

    1. data         CIFAR-10 download/cache/load, the synthetic stand-in, normalisation
    2. convolution  patchify convolution (stride f) three ways, MX construction, debug file
    3. network      He init, forward, loss, gradients (spec layout at the boundary)
    4. training     cyclic learning rates, TrainConfig, train(), checkpoints, augmentation
    5. plots        curves, schedules, bar charts (each saves a PNG to figures/)

Each notebook's widget and table helpers sit in a marked block ("notebook 01 helpers" in the
convolution section, "notebook 03/04/05 helpers" at the end of the training section): plain
functions that the widgets, a normal notebook cell and a test all call.

Layout conventions (the assignment's names and shapes at every public boundary):

    X        (3072, n)          one image per column, CIFAR-10's row order (R, G, B planes)
    X_ims    (32, 32, 3, n)     X_ims[row, col, channel, i]
    Fs       (f, f, 3, nf)      the convolution filters;  Fs_flat = Fs.reshape((f*f*3, nf), order='C')
    MX       (n_p, f*f*3, n)    patch p of image i, flattened in order='C'; n_p = (32/f)**2
    W1       (nh, n_p*nf),  b1 (nh, 1),  W2 (K, nh),  b2 (K, 1),  b0 (nf, 1) the conv bias
    Y        (K, n)             one-hot (or label-smoothed) targets;  y (n,) int labels

Internally the training path keeps MX batch-first, (n, n_p, f*f*3), so a mini-batch is one
contiguous gather and every layer is a single BLAS GEMM; tests prove it equals the spec layout.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DATA_DIR = ROOT / "data"
FIG_DIR = ROOT / "figures"


def fig_dir() -> Path:
    """Where figures and results JSON go: figures/, or figures/fast-mode/ in fast mode, so that
    running the tests never overwrites the figures of a real (full-mode) run."""
    return FIG_DIR / "fast-mode" if is_fast() else FIG_DIR


def is_fast() -> bool:
    """True when WORKBOOK_FAST is set to 1/true/yes (CI sets it): small data, few updates."""
    return os.environ.get("WORKBOOK_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


# =====================================================================================
# 1. data
# =====================================================================================
import hashlib  # noqa: E402
import http.client  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
import zlib  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck"]
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TAR = "cifar-10-python.tar.gz"

# The synthetic stand-in: one procedural object per image (see make_synthetic).
SYNTHETIC_LABELS = ["disc", "ring", "square", "diamond", "cross",
                    "triangle", "striped disc", "checker square", "soft blob", "bar"]
SYNTHETIC_VERSION = 1          # bump whenever the generator's output changes (cache key)
FAST_SIZES = {"n_train": 2000, "n_val": 500, "n_test": 1000}
_N_POOL = {"train": 50000, "test": 10000}   # CIFAR-10's sizes; the synthetic pools match
_STREAM = {"train": 0, "test": 1}           # synthetic train/test use separate RNG streams
_CACHE_MIN = 5000           # synthetic requests larger than this use the on-disk pool cache

_HOW_TO_GET = (f"download {CIFAR10_URL} yourself, extract it and set "
               f"CIFAR10_DIR=/path/to/{_CIFAR10_FOLDER} (or put the folder in {DATA_DIR})")


class DownloadError(RuntimeError):
    """A download failed (network error, HTTP error, or a checksum that never matched)."""


# ---------------------------------------------------------------------------- download
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


# ---------------------------------------------------------------------------- extract
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


# ---------------------------------------------------------------------------- CIFAR-10
def cifar10_dir(root=None) -> Path:
    """The cifar-10-batches-py folder to use: $CIFAR10_DIR if set, else root/cifar-10-batches-py.

    CIFAR10_DIR may point at the cifar-10-batches-py folder itself or at its parent.
    ``root`` defaults to DATA_DIR. The folder need not exist.
    """
    env = os.environ.get("CIFAR10_DIR", "").strip()
    if env:
        p = Path(env).expanduser()
        if not (p / "batches.meta").exists() and (p / _CIFAR10_FOLDER).is_dir():
            p = p / _CIFAR10_FOLDER
        return p
    return Path(root if root is not None else DATA_DIR) / _CIFAR10_FOLDER


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
    parent), otherwise ``root``/cifar-10-batches-py with root defaulting to DATA_DIR. When
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
                f"{_CIFAR10_FOLDER} folder, or unset it to download into {DATA_DIR}.")
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


# ---------------------------------------------------------------------------- synthetic
_CHUNK = 1000                           # images per RNG chunk: part of the generator's definition
_G = np.arange(32, dtype=np.float32)    # pixel centres

# Per-class appearance: base hue (HSV, 0..1), size range (px, "radius"), mean position offset
# (dx, dy) in px. Hues overlap on purpose (disc/ring/blob are reds, square/diamond blues,
# cross/bar greens), so colour alone cannot separate them.
_HUE = np.array([0.00, 0.05, 0.60, 0.65, 0.33, 0.15, 0.50, 0.80, 0.97, 0.38], np.float32)
_RMIN = np.array([5.0, 6.0, 5.0, 6.0, 6.5, 7.0, 7.0, 6.0, 6.0, 7.5], np.float32)
_RMAX = np.array([9.0, 10.0, 9.0, 10.0, 10.5, 11.0, 11.0, 10.0, 10.0, 11.5], np.float32)
_DXY = np.array([[-2, -2], [2, -2], [-2, 2], [2, 2], [0, -3],
                 [0, 3], [-3, 0], [3, 0], [0, 0], [0, 0]], np.float32)


def _hsv_to_rgb(h, s, v):
    """(m,) hue/saturation/value in [0, 1] -> (m, 3) RGB in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0], np.float32) + 6.0 * (h[:, None] % 1.0)) % 6.0
    return v[:, None] * (1.0 - s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


def _bilinear_tables(n_ctrl: int):
    """Index/weight tables for linear interpolation from n_ctrl control points to 32 pixels."""
    pos = _G * ((n_ctrl - 1) / 31.0)
    lo = np.minimum(pos.astype(np.int64), n_ctrl - 2)
    return lo, lo + 1, (pos - lo).astype(np.float32)


_N_CTRL = 5
_LO, _HI, _FR = _bilinear_tables(_N_CTRL)
_CTRL_POS = np.linspace(0.0, 31.0, _N_CTRL, dtype=np.float32) - 15.5


def _upsample(ctrl):
    """(m, 3, n_ctrl, n_ctrl) control values -> (m, 3, 32, 32) bilinear image (no BLAS)."""
    a = ctrl[..., _LO] * (1.0 - _FR) + ctrl[..., _HI] * _FR            # along columns
    lo, hi = a[:, :, _LO, :], a[:, :, _HI, :]
    hi -= lo
    hi *= _FR[:, None]
    hi += lo
    return hi


def _frame(cx, cy, theta, grid=_G):
    """Offsets of the pixels ``grid`` (px) from (cx, cy), rotated by -theta: two (m, g, g)."""
    dx = grid[None, None, :] - cx[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    return dx * c + dy * s, dy * c - dx * s


def _coverage(d_px):
    """Anti-aliased coverage from a signed distance in pixels (negative inside), in place."""
    np.subtract(0.5, d_px, out=d_px)
    np.minimum(d_px, 1.0, out=d_px)
    return np.maximum(d_px, 0.0, out=d_px)


def _box(u, v, a, b):
    """Signed distance (px, approximate outside corners) to the box |u| <= a, |v| <= b."""
    return np.maximum(np.abs(u) - a, np.abs(v) - b)


def _object_alpha(cls: int, u, v, r, p):
    """Coverage (m, 32, 32) and brightness pattern (m, 32, 32) or None for one class.

    u, v: (m, 32, 32) rotated offsets in px; r: (m,) size in px; p: (m, 2) extra params in [0,1).
    """
    r3 = r[:, None, None]
    p0, p1 = p[:, 0, None, None], p[:, 1, None, None]
    if cls in (0, 1, 6, 8):
        q = np.sqrt(u * u + v * v)
    if cls == 0:                                          # disc
        return _coverage(q - r3), None
    if cls == 1:                                          # ring: hole 30-55% of the radius
        half = r3 * (0.22 + 0.12 * p0)
        return _coverage(np.abs(q - (r3 - half)) - half), None
    if cls in (2, 3):                                     # square / diamond (= rotated square)
        return _coverage(_box(u, v, 0.82 * r3, 0.82 * r3)), None
    if cls == 4:                                          # cross (plus sign)
        w = r3 * (0.28 + 0.1 * p0)
        return _coverage(np.minimum(_box(u, v, r3, w), _box(u, v, w, r3))), None
    if cls == 5:                                          # triangle (3 half-planes)
        d = v - 0.5 * r3                                  # bottom edge, then the slanted ones
        c, s = np.float32(np.cos(np.pi / 6)), np.float32(0.5)
        d = np.maximum(d, np.maximum(-c * u - s * v, c * u - s * v) - 0.5 * r3)
        return _coverage(d), None
    if cls == 6:                                          # disc with stripes (period 3-5 px)
        period = 3.0 + 2.0 * p0
        pat = 0.5 + 0.5 * np.sin((2 * np.pi) * u / period + (2 * np.pi) * p1)
        return _coverage(q - r3), pat
    if cls == 7:                                          # square with a checkerboard
        w = (2 * np.pi) / (4.0 + 3.0 * p0)
        pat = 0.5 + 0.5 * np.tanh(4.0 * np.sin(w * u) * np.sin(w * v + 6.3 * p1))
        return _coverage(_box(u, v, 0.82 * r3, 0.82 * r3)), pat
    if cls == 8:                                          # soft gaussian blob, no edge
        return np.exp(-1.6 * (q / r3) ** 2), None
    if cls == 9:                                          # bar (thick line), any orientation
        return _coverage(_box(u, v, r3, r3 * (0.2 + 0.1 * p0))), None
    raise ValueError(cls)


def _draw_params(seed: int, stream: int, k: int) -> dict:
    """All random parameters of chunk k of a stream (``_CHUNK`` images).

    Drawn from one RNG seeded by (seed, stream, k), with sizes that never depend on how many
    images the caller wants, so image i only depends on (seed, stream, i).
    """
    m = _CHUNK
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(k)]))
    f32 = np.float32
    uni = lambda lo, hi, size=m: rng.uniform(lo, hi, size).astype(f32)  # noqa: E731
    P = {}
    # labels: every block of 10 consecutive images holds each class once (shuffled), so any
    # prefix is balanced to within one image per class.
    y = P["y"] = np.argsort(rng.random((m // 10, 10)), axis=1).reshape(-1)
    # background: a colour gradient plus smooth low-frequency clutter
    c0 = rng.random((m, 3), dtype=f32)
    c1 = rng.random((m, 3), dtype=f32)
    phi = uni(0, 2 * np.pi)
    strength = uni(0.0, 1.0)
    clutter = uni(0.1, 0.6)[:, None, None, None] * (
        rng.random((m, 3, _N_CTRL, _N_CTRL), dtype=f32) - 0.5)
    # a linear gradient is exactly bilinear, so it lives in the control points too
    t = 0.5 + (strength / 31.0)[:, None, None] * (
        np.cos(phi)[:, None, None] * _CTRL_POS[None, None, :]
        + np.sin(phi)[:, None, None] * _CTRL_POS[None, :, None])          # (m, rows, cols)
    P["bg"] = (c0[:, :, None, None] + (c1 - c0)[:, :, None, None] * t[:, None]
               + clutter).astype(f32)
    # distractors: _N_DISTRACT slots, each present with prob 0.6: small disc/square/bar
    nd = _N_DISTRACT
    P["d_on"] = rng.random((m, nd)) < 0.6
    kind = rng.integers(0, 3, (m, nd))                   # disc, square, bar
    d_r = rng.uniform(1.5, 4.0, (m, nd)).astype(f32)
    P["d_xy"] = rng.uniform(1, 31, (m, nd, 2)).astype(f32)
    shape = np.array([[1.0, 1.0, 1.0], [0.8, 0.8, 0.0], [1.3, 0.35, 0.0]], f32)  # a, b, rc / r
    P["d_half"] = shape[kind] * d_r[..., None]           # (m, nd, 3)
    P["d_th"] = rng.uniform(0, np.pi, (m, nd)).astype(f32)
    P["d_col"] = rng.random((m, nd, 3), dtype=f32)
    # the object: colour (35% of the time a hue unrelated to the class), size, place, pose
    hue_rand = rng.random(m) < 0.35
    hue = np.where(hue_rand, rng.random(m), _HUE[y] + 0.05 * rng.standard_normal(m)).astype(f32)
    P["col"] = _hsv_to_rgb(hue, uni(0.35, 1.0), uni(0.45, 1.0))
    P["r"] = _RMIN[y] + (_RMAX[y] - _RMIN[y]) * rng.random(m, dtype=f32)
    P["cxy"] = 16.0 + _DXY[y] + rng.uniform(-6.0, 6.0, (m, 2)).astype(f32)
    jitter = uni(-0.3, 0.3)
    P["theta"] = np.select([y == 3, y == 5, np.isin(y, (0, 1, 6, 7, 8, 9))],
                           [np.pi / 4 + jitter, 1.2 * jitter, uni(0, 2 * np.pi)],
                           jitter).astype(f32)
    P["extra"] = rng.random((m, 2), dtype=f32)
    P["shade_dir"] = uni(0, 2 * np.pi)
    P["shade_amt"] = uni(0.0, 0.35)
    P["depth"] = uni(0.35, 0.8)                           # texture contrast
    # global photometric jitter and sensor noise (uniform, std sigma)
    P["contrast"] = uni(0.7, 1.15)
    P["offset"] = uni(-0.1, 0.1)
    P["sigma"] = uni(0.02, 0.07)
    P["noise"] = np.frombuffer(rng.bytes(m * 3072), np.int8).reshape(m, 3, 32, 32)
    return P


def _render(P: dict) -> np.ndarray:
    """Render the images described by the parameter dict P (m images): (m, 3072) uint8 rows."""
    y = P["y"]
    m = y.shape[0]
    f32 = np.float32
    # background, on a canvas with a margin so that distractor windows never fall off it
    canvas = np.empty((m, 3, 32 + 2 * _DPAD, 32 + 2 * _DPAD), f32)
    for margin in (np.s_[:, :, :_DPAD], np.s_[:, :, -_DPAD:],
                   np.s_[:, :, :, :_DPAD], np.s_[:, :, :, -_DPAD:]):
        canvas[margin] = 0.0
    img = canvas[:, :, _DPAD:_DPAD + 32, _DPAD:_DPAD + 32]
    img[...] = _upsample(P["bg"])
    tmp = np.empty((m, 3, 32, 32), f32)
    # distractors (behind the object), each rendered in a (_DWIN, _DWIN) window around it
    s0, s1, s2, s3 = canvas.strides
    windows = np.lib.stride_tricks.as_strided(           # windows[i, :, oy, ox] is a view
        canvas, (m, 3, 32, 32, _DWIN, _DWIN), (s0, s1, s2, s3, s2, s3), writeable=True)
    ar = np.arange(m)
    off = np.arange(_DWIN, dtype=f32) - _DPAD
    for j in range(P["d_on"].shape[1]):
        cx, cy = P["d_xy"][:, j, 0], P["d_xy"][:, j, 1]
        ox, oy = np.rint(cx).astype(np.int64), np.rint(cy).astype(np.int64)
        u, v = _frame(cx - ox, cy - oy, P["d_th"][:, j], off)
        half = P["d_half"][:, j]                            # (m, 3): a, b, corner radius
        qu = np.abs(u) - (half[:, 0] - half[:, 2])[:, None, None]
        qv = np.abs(v) - (half[:, 1] - half[:, 2])[:, None, None]
        d = np.sqrt(np.maximum(qu, 0.0) ** 2 + np.maximum(qv, 0.0) ** 2)
        d += np.minimum(np.maximum(qu, qv), 0.0)
        d -= half[:, 2, None, None]                       # rounded box: disc, square or bar
        a = _coverage(d) * P["d_on"][:, j, None, None]
        win = windows[ar, :, oy, ox]                      # (m, 3, _DWIN, _DWIN) copy
        win += a[:, None] * (P["d_col"][:, j, :, None, None] - win)
        windows[ar, :, oy, ox] = win
    # the object
    u, v = _frame(P["cxy"][:, 0], P["cxy"][:, 1], P["theta"])
    alpha = np.empty((m, 32, 32), f32)
    pattern = np.ones((m, 32, 32), f32)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        if idx.size == 0:
            continue
        a, pat = _object_alpha(c, u[idx], v[idx], P["r"][idx], P["extra"][idx])
        alpha[idx] = a
        if pat is not None:
            pattern[idx] = 1.0 - P["depth"][idx, None, None] * pat
    cs = (np.cos(P["shade_dir"]) * P["shade_amt"] / P["r"])[:, None, None]
    sn = (np.sin(P["shade_dir"]) * P["shade_amt"] / P["r"])[:, None, None]
    u *= cs
    v *= sn
    u += v
    u += 1.0
    u *= pattern                                          # shade * pattern
    np.multiply(P["col"][:, :, None, None], u[:, None], out=tmp)
    tmp -= img
    tmp *= alpha[:, None]
    img += tmp
    # photometric jitter + noise, quantise to uint8 (0..255)
    gain = (255.0 * P["contrast"])[:, None, None, None]
    img -= 0.5
    img *= gain
    img += (127.5 + 255.0 * P["offset"] + 0.5)[:, None, None, None]
    noise_scale = (P["sigma"] * (255.0 * np.sqrt(3.0) / 128.0)).astype(f32)  # int8 -> std sigma
    np.multiply(P["noise"], noise_scale[:, None, None, None], out=tmp)
    img += tmp
    np.clip(img, 0.0, 255.0, out=img)
    return img.reshape(m, 3072).astype(np.uint8)


_N_DISTRACT = 3
_DPAD = 7                   # distractors reach < 6 px from their centre: 15x15 windows suffice
_DWIN = 2 * _DPAD + 1
_MAX_WORKERS = 4           # threads for make_synthetic (results do not depend on it)
_BLOCK = 100                # render in blocks of this many images (cache-friendly)


def _synth_chunk(seed: int, stream: int, k: int, lo: int = 0, hi: int = _CHUNK):
    """Images k*_CHUNK+lo .. k*_CHUNK+hi-1 of a stream: rows (hi-lo, 3072) uint8, labels
    (hi-lo,) int64. The whole chunk's parameters are drawn; only the rows asked for are drawn
    (rendering is per image, so the result does not depend on lo/hi)."""
    P = _draw_params(seed, stream, k)
    rows = np.empty((hi - lo, 3072), np.uint8)
    for b in range(lo, hi, _BLOCK):
        e = min(b + _BLOCK, hi)
        rows[b - lo:e - lo] = _render({key: val[b:e] for key, val in P.items()})
    return rows, P["y"][lo:hi].astype(np.int64)


def make_synthetic(n: int, seed: int = 0, *, start: int = 0, stream: int = 0):
    """A procedural, learnable 10-class stand-in for CIFAR-10 (class names: SYNTHETIC_LABELS).

    Each 32x32 RGB image shows one object (disc, ring, square, diamond, cross, triangle,
    striped disc, checker square, soft blob, bar) with random position, size, rotation,
    colour (class hues overlap, and 35% of objects get an unrelated hue), shading and
    texture, over a random gradient-plus-clutter background with up to three small
    distractor shapes, then contrast/brightness jitter and pixel noise. No label noise.

    Returns images ``start .. start+n-1`` of the stream (seed, stream):
        X  (3072, n) uint8   CIFAR-10's layout: column i = R plane, G plane, B plane, each
                             row-major 32x32 (X_ims[r, c, ch, i] == X[ch*1024 + r*32 + c, i])
        y  (n,) int64        labels 0..9; every aligned block of 10 images holds each class
                             once, so any n has exactly n//10 per class (+1 for n % 10 of them)
    Bit-identical for the same (seed, stream, start, n); image i depends only on
    (seed, stream, i), so make_synthetic(100, s)[0][:, :50] == make_synthetic(50, s)[0].
    Generated in chunks of 1000 images (about 20 MB of scratch per chunk).
    """
    n, start = int(n), int(start)
    if n < 0 or start < 0 or int(seed) < 0 or int(stream) < 0:
        raise ValueError("n, start, seed and stream must be >= 0")
    rows = np.empty((n, 3072), np.uint8)
    y = np.empty(n, np.int64)
    stop = start + n

    def work(k):
        lo, hi = max(start, k * _CHUNK), min(stop, (k + 1) * _CHUNK)
        rows[lo - start:hi - start], y[lo - start:hi - start] = _synth_chunk(
            seed, stream, k, lo - k * _CHUNK, hi - k * _CHUNK)

    chunks = range(start // _CHUNK, -(-stop // _CHUNK))
    workers = min(len(chunks), _MAX_WORKERS, os.cpu_count() or 1)
    if workers > 1:         # numpy releases the GIL in its loops; chunks are independent
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, chunks))
    else:
        for k in chunks:
            work(k)
    return rows.T, y


# ---------------------------------------------------------------------------- preprocessing
def one_hot(y, K: int = 10, dtype=np.float32) -> np.ndarray:
    """y (n,) int labels in 0..K-1  ->  Y (K, n) ``dtype`` one-hot, Y[y[i], i] = 1."""
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= K)):
        raise ValueError(f"labels must be a 1-D array of ints in 0..{K - 1}")
    Y = np.zeros((K, y.size), dtype=dtype)
    Y[y, np.arange(y.size)] = 1
    return Y


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


# ---------------------------------------------------------------------------- load_dataset
def _synthetic_pool(seed: int, part: str):
    """The whole synthetic pool for ``part`` ("train" 50k / "test" 10k), cached in DATA_DIR.

    Returns X (3072, N) uint8, y (N,) int64. The cache is keyed by SYNTHETIC_VERSION, seed
    and size, and is also checked against a freshly generated first chunk, so a stale cache
    from an older generator is never used. A cache that cannot be read or written is ignored.
    """
    N = _N_POOL[part]
    path = DATA_DIR / f"synthetic-v{SYNTHETIC_VERSION}-seed{seed}-{part}-{N}.npz"
    head, _ = make_synthetic(min(N, 200), seed, stream=_STREAM[part])
    try:
        with np.load(path) as z:
            X, y = z["X"], z["y"]
        if (X.shape == (3072, N) and X.dtype == np.uint8 and y.shape == (N,)
                and np.array_equal(X[:, :head.shape[1]], head)):
            return X, y.astype(np.int64)
    except (OSError, KeyError, ValueError, EOFError, zlib.error):
        pass
    X, y = make_synthetic(N, seed, stream=_STREAM[part])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, X=X, y=y)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError:
        pass
    return X, y


def _synthetic_part(seed: int, part: str, ranges) -> list:
    """[(X, y) for each (start, stop) in ranges] from the synthetic pool ``part``."""
    if sum(b - a for a, b in ranges) > _CACHE_MIN:     # big: generate/cache the whole pool
        X, y = _synthetic_pool(seed, part)
        return [(X[:, a:b], y[a:b]) for a, b in ranges]
    return [make_synthetic(b - a, seed, start=a, stream=_STREAM[part]) for a, b in ranges]


def load_dataset(source: str = "auto", n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None, seed: int = 0, dtype=np.float32,
                 verbose: bool = True) -> dict:
    """The one call the notebooks use: train/val/test data, normalised, with one-hot targets.

    source: "cifar10" (real CIFAR-10, downloaded if missing), "synthetic" (the procedural
    stand-in, see make_synthetic), or "auto": CIFAR-10 when it is already on disk
    ($CIFAR10_DIR or DATA_DIR/cifar-10-batches-py; never downloads) and not in fast mode,
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

# =====================================================================================
# 2. convolution
# =====================================================================================

def _check_f(f: int) -> int:
    """Return n_p = (32/f)**2, or raise if f does not tile a 32x32 image."""
    if not isinstance(f, (int, np.integer)) or f < 1 or 32 % f != 0:
        raise ValueError(
            f"filter width f={f!r} must be a positive integer that divides 32 "
            "(the patchify convolution uses stride f with non-overlapping patches); "
            "use one of 1, 2, 4, 8, 16, 32")
    return (32 // int(f)) ** 2


def _check_X(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != 3072:
        raise ValueError(
            f"{name} must have shape (3072, n), one flattened 32x32x3 image per column; "
            f"got {X.shape}. If your images are (n, 3072), pass X.T")
    return X


def _check_ims(X_ims: np.ndarray) -> np.ndarray:
    X_ims = np.asarray(X_ims)
    if X_ims.ndim == 3:
        X_ims = X_ims[..., None]
    if X_ims.ndim != 4 or X_ims.shape[:3] != (32, 32, 3):
        raise ValueError(
            f"X_ims must have shape (32, 32, 3, n); got {X_ims.shape}. "
            "Build it from X (3072, n) with to_images(X)")
    return X_ims


def to_images(X: np.ndarray) -> np.ndarray:
    """Spec reshape of flattened images to image arrays.

    X: (3072, n) any dtype  ->  X_ims: (32, 32, 3, n), X_ims[row, col, channel, i].
    Exactly ``np.transpose(X.reshape((32, 32, 3, n), order='F'), (1, 0, 2, 3))`` (a view).
    """
    X = _check_X(X)
    n = X.shape[1]
    return np.transpose(X.reshape((32, 32, 3, n), order="F"), (1, 0, 2, 3))


def to_columns(X_ims: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_images`. X_ims: (32, 32, 3, n) -> X: (3072, n)."""
    X_ims = _check_ims(X_ims)
    n = X_ims.shape[3]
    return np.transpose(X_ims, (1, 0, 2, 3)).reshape((3072, n), order="F")


def flatten_filters(Fs: np.ndarray) -> np.ndarray:
    """Fs: (f, f, 3, nf) -> Fs_flat: (f*f*3, nf), ``Fs.reshape((f*f*3, nf), order='C')``."""
    Fs = np.asarray(Fs)
    if Fs.ndim != 4 or Fs.shape[0] != Fs.shape[1] or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    f, nf = Fs.shape[0], Fs.shape[3]
    return Fs.reshape((f * f * 3, nf), order="C")


def conv_loops(X_ims: np.ndarray, Fs: np.ndarray) -> np.ndarray:
    """Slow reference convolution with stride f: one dot product per image, patch, filter.

    X_ims: (32, 32, 3, n);  Fs: (f, f, 3, nf)  ->  conv_outputs: (32/f, 32/f, nf, n)
    conv_outputs[r, c, k, i] = sum(X_ims[r*f:(r+1)*f, c*f:(c+1)*f, :, i] * Fs[:, :, :, k]).
    """
    X_ims = _check_ims(X_ims)
    Fs = np.asarray(Fs)
    if Fs.ndim != 4 or Fs.shape[0] != Fs.shape[1] or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    f, nf, n = Fs.shape[0], Fs.shape[3], X_ims.shape[3]
    _check_f(f)
    g = 32 // f
    out = np.zeros((g, g, nf, n), dtype=np.result_type(X_ims.dtype, Fs.dtype))
    for i in range(n):
        for r in range(g):
            for c in range(g):
                patch = X_ims[r * f:(r + 1) * f, c * f:(c + 1) * f, :, i]
                for k in range(nf):
                    out[r, c, k, i] = np.sum(np.multiply(patch, Fs[:, :, :, k]))
    return out


def build_mx_naive(X_ims: np.ndarray, f: int) -> np.ndarray:
    """The spec's loop construction of MX (for checking): X_ims (32,32,3,n) -> MX (n_p, f*f*3, n).

    Patches are visited with the second image dimension (column) changing first.
    """
    X_ims = _check_ims(X_ims)
    n_p = _check_f(f)
    g, n = 32 // f, X_ims.shape[3]
    MX = np.zeros((n_p, f * f * 3, n), dtype=X_ims.dtype)
    for i in range(n):
        p = 0
        for r in range(g):
            for c in range(g):
                X_patch = X_ims[r * f:(r + 1) * f, c * f:(c + 1) * f, :, i]
                MX[p, :, i] = X_patch.reshape((1, f * f * 3), order="C")
                p += 1
    return MX


def build_mx(X_ims: np.ndarray, f: int) -> np.ndarray:
    """Vectorised MX (no Python loop): X_ims (32, 32, 3, n) -> MX (n_p, f*f*3, n).

    MX[p, :, i] is patch p = r*(32/f) + c of image i, flattened (dy, dx, channel) in order='C'.
    The result is C-contiguous in the spec layout.
    """
    X_ims = _check_ims(X_ims)
    n_p = _check_f(f)
    g, n = 32 // f, X_ims.shape[3]
    # X_ims[r*f + dy, c*f + dx, ch, i] -> (r, c, dy, dx, ch, i)
    v = X_ims.reshape(g, f, g, f, 3, n).transpose(0, 2, 1, 3, 4, 5)
    return np.ascontiguousarray(v).reshape(n_p, f * f * 3, n)


def mx_batch_first(X: np.ndarray, f: int, dtype=np.float32, chunk: int = 1024,
                   workers: int | None = None) -> np.ndarray:
    """MX straight from flattened images, stored batch-first for training.

    X: (3072, n)  ->  MXb: (n, n_p, f*f*3) C-contiguous ``dtype``, with
    ``MXb[i] == build_mx(to_images(X), f)[:, :, i]``. ``MXb.transpose(1, 2, 0)`` is the spec-layout
    MX (n_p, f*f*3, n) as a view, so no copy is needed to hand it to the public functions.
    Built in chunks of ``chunk`` images, on ``workers`` threads (default: the cores, at most
    4; numpy releases the GIL while copying, and the copy is bound by memory and page faults).
    """
    X = _check_X(X)
    n_p = _check_f(f)
    g, n, d = 32 // f, X.shape[1], f * f * 3
    out = np.empty((n, n_p, d), dtype=dtype)

    def job(s):
        xb = X[:, s:s + chunk].T  # (b, 3072): channel planes, row-major pixels
        b = xb.shape[0]
        # x index = ch*1024 + (r*f + dy)*32 + c*f + dx  ->  (b, r, c, dy, dx, ch)
        v = xb.reshape(b, 3, g, f, g, f).transpose(0, 2, 4, 3, 5, 1)
        np.copyto(out[s:s + b].reshape(b, g, g, f, f, 3), v, casting="unsafe")  # no temporary

    starts = range(0, n, chunk)
    workers = min(workers or os.cpu_count() or 1, 4, len(starts))
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(job, starts))
    else:
        for s in starts:
            job(s)
    return out


def as_batch_first(MX: np.ndarray) -> np.ndarray:
    """Spec MX (n_p, d, n) -> batch-first (n, n_p, d) C-contiguous (free if MX came from
    ``mx_batch_first(...).transpose(1, 2, 0)``)."""
    MX = np.asarray(MX)
    if MX.ndim != 3:
        raise ValueError(f"MX must have shape (n_p, f*f*3, n); got {MX.shape}")
    return np.ascontiguousarray(MX.transpose(2, 0, 1))


def _check_mx_filters(MX: np.ndarray, Fs_flat: np.ndarray) -> None:
    if MX.ndim != 3:
        raise ValueError(f"MX must have shape (n_p, f*f*3, n); got {MX.shape}")
    if Fs_flat.ndim != 2 or Fs_flat.shape[0] != MX.shape[1]:
        raise ValueError(
            f"Fs_flat must have shape (f*f*3, nf) = ({MX.shape[1]}, nf) to match MX {MX.shape}; "
            f"got {Fs_flat.shape}. Flatten filters with flatten_filters(Fs)")


def conv_matmul(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """Convolution as one matrix product per image (the spec's loop).

    MX: (n_p, f*f*3, n);  Fs_flat: (f*f*3, nf)  ->  conv_outputs_mat: (n_p, nf, n)
    """
    MX, Fs_flat = np.asarray(MX), np.asarray(Fs_flat)
    _check_mx_filters(MX, Fs_flat)
    n = MX.shape[2]
    out = np.empty((MX.shape[0], Fs_flat.shape[1], n), dtype=np.result_type(MX, Fs_flat))
    for i in range(n):
        out[:, :, i] = np.matmul(MX[:, :, i], Fs_flat)
    return out


def conv_einsum(MX: np.ndarray, Fs_flat: np.ndarray, optimize=True) -> np.ndarray:
    """Convolution with ``np.einsum('ijn,jl->iln', MX, Fs_flat)``.

    MX: (n_p, f*f*3, n);  Fs_flat: (f*f*3, nf)  ->  conv_outputs_mat: (n_p, nf, n)
    """
    MX, Fs_flat = np.asarray(MX), np.asarray(Fs_flat)
    _check_mx_filters(MX, Fs_flat)
    return np.einsum("ijn,jl->iln", MX, Fs_flat, optimize=optimize)


def conv_fast(MX: np.ndarray, Fs_flat: np.ndarray) -> np.ndarray:
    """The training path's convolution: one GEMM (n*n_p, d) @ (d, nf) on batch-first MX.

    MX: (n_p, f*f*3, n);  Fs_flat: (f*f*3, nf)  ->  conv_outputs_mat: (n_p, nf, n)
    (returned as a transposed view of the batch-first result).
    """
    MX, Fs_flat = np.asarray(MX), np.asarray(Fs_flat)
    _check_mx_filters(MX, Fs_flat)
    n_p, d, n = MX.shape
    mxb = as_batch_first(MX)
    return (mxb.reshape(n * n_p, d) @ Fs_flat).reshape(n, n_p, -1).transpose(1, 2, 0)

DEBUG_KEYS = ("X", "Fs", "conv_outputs", "conv_outputs_mat", "conv_flat", "W1", "W2", "b1", "b2",
              "X1", "P", "Y", "grad_Fs_flat", "grad_W1", "grad_W2", "grad_b1", "grad_b2")


def torch_available() -> bool:
    """True when torch can be imported (it is only the independent oracle)."""
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def _require_torch(what: str):
    try:
        import torch
    except Exception as e:  # pragma: no cover - exercised only without torch
        raise ImportError(
            f"{what} needs torch as an independent oracle, and torch is not installed. "
            "Install the CPU build with `pip install torch==2.13.0` (or `pip install -e .[oracle]`)"
        ) from e
    return torch


def _torch_net(torch, t: dict, X_ims: np.ndarray, Y: np.ndarray, lam: float = 0.0,
               eps: float = 0.0) -> dict:
    """The network and its cost written in torch: the independent oracle (float64).

    t: torch tensors Fs (f, f, 3, nf), W1 (nh, n_p*nf), b1 (nh, 1), W2 (K, nh), b2 (K, 1) and,
    optionally, b0 (nf, 1) the conv bias;  X_ims: (32, 32, 3, n);  Y: (K, n) one-hot.
    The convolution is conv2d with stride f on NCHW images, permuted back to conv_outputs
    (32/f, 32/f, nf, n) and flattened in the spec's order='C'. Returns tensors conv_outputs,
    conv_outputs_mat (n_p, nf, n), conv_flat (n_p*nf, n), X1 (nh, n), S (K, n), loss (mean
    cross-entropy against 1-eps / eps/(K-1) targets) and cost = loss + lam (|Fs|^2+|W1|^2+|W2|^2).
    """
    f, nf = t["Fs"].shape[0], t["Fs"].shape[3]
    n, K, n_p = X_ims.shape[3], t["W2"].shape[0], _check_f(t["Fs"].shape[0])
    x = torch.tensor(np.ascontiguousarray(X_ims.transpose(3, 2, 0, 1)), dtype=torch.float64)
    b0 = t["b0"].reshape(nf) if "b0" in t else None
    conv = torch.nn.functional.conv2d(x, t["Fs"].permute(3, 2, 0, 1), bias=b0, stride=f)
    o = {"conv_outputs": conv.permute(2, 3, 1, 0)}                   # (n, nf, g, g) -> (g, g, nf, n)
    o["conv_outputs_mat"] = o["conv_outputs"].reshape(n_p, nf, n)    # row-major == order='C'
    o["conv_flat"] = torch.relu(o["conv_outputs_mat"].reshape(n_p * nf, n))
    o["X1"] = torch.relu(t["W1"] @ o["conv_flat"] + t["b1"])
    o["S"] = t["W2"] @ o["X1"] + t["b2"]
    Yt = torch.tensor(np.asarray(Y, np.float64), dtype=torch.float64)
    Ys = Yt * (1 - eps) + (1 - Yt) * (eps / (K - 1))
    o["loss"] = -(Ys * torch.log_softmax(o["S"], dim=0)).sum() / n
    o["cost"] = o["loss"] + lam * ((t["Fs"] ** 2).sum() + (t["W1"] ** 2).sum()
                                   + (t["W2"] ** 2).sum())
    return o


def make_debug_file(path, seed: int = 0, f: int = 4, nf: int = 2, nh: int = 50, n: int = 5) -> Path:
    """Write a debug npz with the course file's keys and shapes, computed by torch (the oracle).

    Keys (shapes): X (3072, n), Fs (f, f, 3, nf), conv_outputs (32/f, 32/f, nf, n),
    conv_outputs_mat (n_p, nf, n), conv_flat (n_p*nf, n), W1 (nh, n_p*nf), W2 (10, nh),
    b1 (nh, 1), b2 (10, 1), X1 (nh, n), P (10, n), Y (10, n), grad_Fs_flat (f*f*3, nf),
    grad_W1, grad_W2, grad_b1, grad_b2 (shapes of their parameters). All float64.
    The network has no conv bias and no regularisation (as in the course file); the loss is the
    mean cross-entropy. Nothing is computed with this module's numpy code: torch's conv2d with
    stride f and autograd give every number. X holds synthetic images, normalised.
    """
    torch = _require_torch("make_debug_file")
    n_p = _check_f(f)
    K = 10
    rng = np.random.default_rng(seed)
    Xraw, y = make_synthetic(n, seed=seed)
    X = Xraw.astype(np.float64) / 255.0
    X = (X - X.mean()) / X.std()
    Fs = rng.standard_normal((f, f, 3, nf)) * np.sqrt(2.0 / (f * f * 3))
    W1 = rng.standard_normal((nh, n_p * nf)) * np.sqrt(2.0 / (n_p * nf))
    W2 = rng.standard_normal((K, nh)) * np.sqrt(2.0 / nh)
    b1 = rng.standard_normal((nh, 1)) * 0.01
    b2 = rng.standard_normal((K, 1)) * 0.01
    Y = one_hot(y, K, np.float64)

    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
         for k, v in dict(Fs=Fs, W1=W1, b1=b1, W2=W2, b2=b2).items()}
    o = _torch_net(torch, t, to_images(X), Y)
    o["loss"].backward()
    num = {k: v.detach().numpy() for k, v in o.items()}
    out = dict(X=X, Fs=Fs, conv_outputs=num["conv_outputs"],
               conv_outputs_mat=num["conv_outputs_mat"], conv_flat=num["conv_flat"],
               W1=W1, W2=W2, b1=b1, b2=b2, X1=num["X1"],
               P=torch.softmax(o["S"], dim=0).detach().numpy(), Y=Y,
               grad_Fs_flat=t["Fs"].grad.numpy().reshape(f * f * 3, nf), grad_W1=t["W1"].grad.numpy(),
               grad_W2=t["W2"].grad.numpy(), grad_b1=t["b1"].grad.numpy(),
               grad_b2=t["b2"].grad.numpy())
    path = Path(path)
    _atomic_savez(path, **{k: np.ascontiguousarray(v) for k, v in out.items()})
    return path


def _atomic_savez(path: Path, **arrays) -> None:
    """np.savez to a temp file in the same folder, then rename: a written file is a whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_debug_file(path=None, seed: int = 0):
    """The course's ``data/debug_conv_info.npz`` if present, else a generated one.

    Returns ``(dict of arrays, description)``; the description says which file it is.
    Generating needs torch; without it (and without the course file) this raises ImportError.
    """
    course = DATA_DIR / "debug_conv_info.npz"
    if path is None and course.exists():
        path, what = course, "the course's debug_conv_info.npz"
    elif path is None:
        path = DATA_DIR / "debug_conv_info_generated.npz"
        if not path.exists():
            make_debug_file(path, seed=seed)
        what = "a generated debug file (torch conv2d + autograd as the oracle; course file not found)"
    else:
        what = f"debug file {path}"
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    missing = [k for k in DEBUG_KEYS if k not in d]
    if missing:
        raise ValueError(f"{path} is not a debug file: keys {missing} are missing")
    return d, what


# ---- notebook 01 helpers (widgets call these; tests call them too) ----
# Notebook 01 (convolution) and notebook 02 (gradients) helpers. Plain functions over arrays;
# the notebooks' widgets, tables and figures call these, and tests/test_notebook_helpers_01_02.py
# checks them.

def conv_shapes(f: int, nf: int, n: int) -> dict:
    """The shapes of every array of the convolution layer, as tuples.

    f: filter width (divides 32), nf: number of filters, n: number of images.
    Returns {name: shape}: X (3072, n), X_ims (32, 32, 3, n), Fs (f, f, 3, nf),
    Fs_flat (f*f*3, nf), MX (n_p, f*f*3, n), conv_outputs (32/f, 32/f, nf, n),
    conv_outputs_mat (n_p, nf, n), conv_flat (n_p*nf, n), with n_p = (32/f)**2.
    """
    n_p = _check_f(f)
    if int(nf) < 1 or int(n) < 1:
        raise ValueError(f"nf and n must be positive integers; got nf={nf!r}, n={n!r}")
    f, nf, n, g, d = int(f), int(nf), int(n), 32 // int(f), int(f) * int(f) * 3
    return {"X": (3072, n), "X_ims": (32, 32, 3, n), "Fs": (f, f, 3, nf), "Fs_flat": (d, nf),
            "MX": (n_p, d, n), "conv_outputs": (g, g, nf, n), "conv_outputs_mat": (n_p, nf, n),
            "conv_flat": (n_p * nf, n)}


def torch_conv2d(X_ims: np.ndarray, Fs: np.ndarray) -> np.ndarray:
    """torch's conv2d with stride f, as an independent oracle for the patchify convolution.

    X_ims: (32, 32, 3, n);  Fs: (f, f, 3, nf)  ->  conv_outputs (32/f, 32/f, nf, n) float64.
    Raises ImportError (saying how to install torch) when torch is absent.
    """
    torch = _require_torch("torch_conv2d")
    X_ims, Fs = _check_ims(X_ims), np.asarray(Fs)
    if Fs.ndim != 4 or Fs.shape[0] != Fs.shape[1] or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    f = Fs.shape[0]
    _check_f(f)
    x = torch.tensor(np.ascontiguousarray(X_ims.transpose(3, 2, 0, 1)), dtype=torch.float64)
    w = torch.tensor(np.ascontiguousarray(Fs.transpose(3, 2, 0, 1)), dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, w, stride=f)          # (n, nf, 32/f, 32/f)
    return out.permute(2, 3, 1, 0).numpy().copy()


def conv_agreement(X_ims: np.ndarray, Fs: np.ndarray, reference: np.ndarray | None = None) -> dict:
    """Max abs differences between the convolution methods (and an optional reference).

    X_ims: (32, 32, 3, n);  Fs: (f, f, 3, nf);  reference: conv_outputs (32/f, 32/f, nf, n) or None.
    Every method is compared with conv_loops in the (n_p, nf, n) layout (conv_outputs reshaped
    with order='C'). Returns {description: float}, including the MX constructions compared with
    the spec's loop construction (build_mx_naive) and, with a reference, loops vs reference.
    """
    X_ims, Fs = _check_ims(X_ims), np.asarray(Fs)
    f, nf, n = Fs.shape[0], Fs.shape[3], X_ims.shape[3]
    n_p = _check_f(f)
    loops = conv_loops(X_ims, Fs)
    flat = loops.reshape((n_p, nf, n), order="C")
    MX_naive = build_mx_naive(X_ims, f)
    MX = build_mx(X_ims, f)
    MXb = mx_batch_first(to_columns(X_ims), f, dtype=X_ims.dtype)
    Fs_flat = flatten_filters(Fs)
    mad = lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))  # noqa: E731
    out = {
        "build_mx vs build_mx_naive": mad(MX, MX_naive),
        "mx_batch_first vs build_mx_naive": mad(MXb.transpose(1, 2, 0), MX_naive),
        "matmul vs loops": mad(conv_matmul(MX_naive, Fs_flat), flat),
        "einsum (optimize=True) vs loops": mad(conv_einsum(MX_naive, Fs_flat, optimize=True), flat),
        "einsum (optimize=False) vs loops": mad(conv_einsum(MX_naive, Fs_flat, optimize=False), flat),
        "conv_fast vs loops": mad(conv_fast(MX_naive, Fs_flat), flat),
    }
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape != loops.shape:
            raise ValueError(f"reference must be conv_outputs with shape {loops.shape}; "
                             f"got {reference.shape}")
        out["loops vs reference"] = mad(loops, reference)
    return out


def _blas_threads(threads):
    """A context manager limiting BLAS to ``threads`` threads (None: leave the default)."""
    if threads is None:
        from contextlib import nullcontext
        return nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=int(threads), user_api="blas")


def time_conv_methods(f: int = 4, nf: int = 10, n: int = 100, repeats: int = 3, seed: int = 0,
                      dtype=np.float32, loops_max_calls: int = 200_000, threads=None) -> list:
    """Time the convolution methods on random data; best (minimum) of ``repeats`` runs.

    Inputs are what each method gets in use: loops X_ims (32, 32, 3, n); matmul and einsum the
    C-contiguous spec MX (n_p, f*f*3, n); conv_fast the batch-first-backed MX view that
    precompute_mx returns (so its transpose is free). MX construction is not timed (it is done
    once per dataset). When n*n_p*nf exceeds ``loops_max_calls`` the loops are timed on fewer
    images and the time scaled linearly to n (row key ``n_timed`` says how many).
    ``threads``: BLAS threads while timing (None: the library default; 1 avoids thread overhead
    on a busy machine). Returns one dict per method: method, seconds (for n images),
    ms_per_image, n_timed, speedup_vs_loops, max_abs_diff_vs_loops (on the images the loops
    computed), threads, f, nf, n, dtype.
    """
    return _timed_rows(threads, _time_conv_methods, f, nf, n, repeats, seed, dtype,
                       loops_max_calls)


def _timed_rows(threads, fn, *args) -> list:
    """Run a timing routine under a BLAS thread limit and tag its rows with the setting."""
    with _blas_threads(threads):
        rows = fn(*args)
    for r in rows:
        r["threads"] = "default" if threads is None else int(threads)
    return rows


def _time_conv_methods(f, nf, n, repeats, seed, dtype, loops_max_calls) -> list:
    import time
    n_p = _check_f(f)
    if int(n) < 1 or int(nf) < 1 or int(repeats) < 1:
        raise ValueError(f"n, nf and repeats must be positive; got n={n}, nf={nf}, repeats={repeats}")
    n, nf, repeats, d = int(n), int(nf), int(repeats), f * f * 3
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3072, n)).astype(dtype)
    Fs = (rng.standard_normal((f, f, 3, nf)) * np.sqrt(2.0 / d)).astype(dtype)
    X_ims, Fs_flat = to_images(X), flatten_filters(Fs)
    MX = build_mx(X_ims, f)
    MXv = mx_batch_first(X, f, dtype=dtype).transpose(1, 2, 0)

    def best(fn, k):
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t0)
        return min(ts), out

    n_loop = max(1, min(n, loops_max_calls // max(1, n_p * nf)))
    t_loop, ref = best(lambda: conv_loops(X_ims[..., :n_loop], Fs), repeats)
    t_loop *= n / n_loop
    ref = ref.reshape((n_p, nf, n_loop), order="C").astype(np.float64)
    rows = [{"method": "loops", "seconds": t_loop, "n_timed": n_loop, "max_abs_diff_vs_loops": 0.0}]
    methods = [("matmul", lambda: conv_matmul(MX, Fs_flat)),
               ("einsum (optimize=True)", lambda: conv_einsum(MX, Fs_flat, optimize=True)),
               ("einsum (optimize=False)", lambda: conv_einsum(MX, Fs_flat, optimize=False)),
               ("conv_fast (one GEMM)", lambda: conv_fast(MXv, Fs_flat))]
    for name, fn in methods:
        fn()  # warm-up (einsum path search, BLAS thread start)
        t, out = best(fn, repeats)
        diff = float(np.max(np.abs(np.asarray(out[..., :n_loop], np.float64) - ref)))
        rows.append({"method": name, "seconds": t, "n_timed": n, "max_abs_diff_vs_loops": diff})
    for r in rows:
        r["seconds"] = max(r["seconds"], 1e-9)
        r["ms_per_image"] = 1e3 * r["seconds"] / n
        r["speedup_vs_loops"] = t_loop / r["seconds"]
        r.update(f=f, nf=nf, n=n, dtype=np.dtype(dtype).name)
    return rows


def format_table(rows: list, cols, fmt: str = "{:.3g}") -> str:
    """A plain-text table of dict rows (floats formatted with ``fmt``), for printing."""
    cols = list(cols)
    cells = [[c for c in cols]] + [[fmt.format(r.get(c)) if isinstance(r.get(c), float)
                                    else str(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    lines = ["  ".join(s.ljust(w[j]) for j, s in enumerate(row)) for row in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def conv_widget_report(f: int = 4, nf: int = 10, n: int = 20, repeats: int = 1, seed: int = 0) -> str:
    """What the notebook-01 widget shows for (f, nf): the array shapes and a timing table.

    Returns a printable string (the widget prints it; a normal cell and a test call it too).
    """
    shapes = conv_shapes(f, nf, n)
    rows = time_conv_methods(f, nf, n, repeats=repeats, seed=seed)
    lines = [f"f={f}, nf={nf}, n={n} images, n_p=(32/f)^2={(32 // f) ** 2}"]
    lines += [f"  {k:<17s}{v}" for k, v in shapes.items()]
    lines += ["", format_table(rows, ["method", "seconds", "ms_per_image", "speedup_vs_loops",
                                      "n_timed"])]
    return "\n".join(lines)


def _show_image(x: np.ndarray) -> np.ndarray:
    """(3072,) normalised column -> (32, 32, 3) in [0, 1] for display (min-max per image)."""
    im = to_images(np.asarray(x, np.float64).reshape(3072, 1))[..., 0]
    lo, hi = im.min(), im.max()
    return (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)


def plot_patch_grid(X: np.ndarray, y: np.ndarray, label_names, f: int = 4, n_show: int = 4,
                    data_name: str = "", name: str | None = None):
    """The first ``n_show`` images of X with the f x f patch grid (stride f) drawn on top.

    X: (3072, n) normalised (each image is min-max scaled for display);  y: (n,) int labels.
    Saves figures/<name>.png when ``name`` is given. Returns the figure.
    """
    plt = _plt()
    X = _check_X(X)
    _check_f(f)
    n_show = min(int(n_show), X.shape[1])
    fig, axes = plt.subplots(1, n_show, figsize=(2.6 * n_show, 2.9), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.imshow(_show_image(X[:, j]), interpolation="nearest", extent=(0, 32, 32, 0))
        for t in range(0, 33, f):
            ax.axhline(t, color="w", lw=0.6, alpha=0.8)
            ax.axvline(t, color="w", lw=0.6, alpha=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{label_names[int(y[j])]}", fontsize=9)
    tag = data_label(data_name)
    fig.suptitle(f"{(32 // f) ** 2} patches of {f}x{f}x3 per image (stride {f})"
                 + (f" - {tag}" if tag else ""), fontsize=10)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def plot_filters(Fs: np.ndarray, title: str = "filters", name: str | None = None):
    """Each filter Fs[:, :, :, k] as a small RGB image (one common min-max scale).

    Fs: (f, f, 3, nf). Saves figures/<name>.png when ``name`` is given. Returns the figure.
    """
    plt = _plt()
    Fs = np.asarray(Fs, np.float64)
    if Fs.ndim != 4 or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    nf = Fs.shape[3]
    cols = min(nf, 10)
    rows = -(-nf // cols)
    lo, hi = Fs.min(), Fs.max()
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 0.4, 1.2 * rows + 0.6), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < nf:
            ax.imshow((Fs[:, :, :, k] - lo) / (hi - lo if hi > lo else 1.0), interpolation="nearest")
            ax.set_title(str(k), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


# -- notebook 02 (gradients) --

def debug_params(d: dict) -> dict:
    """The debug file's network as a params dict (float64; no conv bias, so b0 = zeros).

    d: the dict from load_debug_file. Returns Fs (f, f, 3, nf), b0 (nf, 1) zeros,
    W1 (nh, n_p*nf), b1 (nh, 1), W2 (K, nh), b2 (K, 1).
    """
    missing = [k for k in ("Fs", "W1", "b1", "W2", "b2") if k not in d]
    if missing:
        raise ValueError(f"not a debug dict (from load_debug_file): {missing} missing")
    p = {k: np.asarray(d[k], np.float64) for k in ("Fs", "W1", "b1", "W2", "b2")}
    p["b0"] = np.zeros((p["Fs"].shape[3], 1))
    return check_params(p)


def grads_spec_layout(params: dict, MX: np.ndarray, Y: np.ndarray, lam: float = 0.0,
                      eps: float = 0.0) -> dict:
    """The backward pass written out in the spec layout (for teaching and as a second check).

    params: one filter size (see init_params);  MX: (n_p, f*f*3, n);  Y: (K, n) one-hot.
    G = (P - Y_smooth)/n (K, n);  grad W2 = G X1^T, grad b2 = G 1;  G1 = W2^T G * (X1 > 0);
    grad W1 = G1 conv_flat^T, grad b1 = G1 1;  G_batch = W1^T G1 * (conv_flat > 0) (n_p*nf, n);
    GG = G_batch.reshape((n_p, nf, n), order='C');  grad Fs_flat = einsum('ijn,jln->il', MXt, GG);
    grad b0 = GG summed over patches and images;  + 2 lam W for Fs, W1, W2.
    Returns a dict with params' keys and shapes plus Fs_flat (f*f*3, nf) and G_batch (n_p*nf, n).
    """
    check_params(params)
    if "Fs" not in params:
        raise ValueError("grads_spec_layout handles one filter size (key 'Fs'); "
                         "use compute_grads for multi-size filters")
    MX = np.asarray(MX)
    n_p, d, n = MX.shape
    nf = params["Fs"].shape[3]
    fw = forward(params, MX)
    K = params["W2"].shape[0]
    Y = _check_Y(Y, n, K)
    G = (fw["P"] - smooth_targets(Y.astype(fw["P"].dtype), eps)) / n
    g = {"W2": G @ fw["X1"].T, "b2": G.sum(axis=1, keepdims=True)}
    G1 = (params["W2"].T @ G) * (fw["X1"] > 0)
    g["W1"] = G1 @ fw["conv_flat"].T
    g["b1"] = G1.sum(axis=1, keepdims=True)
    G_batch = (params["W1"].T @ G1) * (fw["conv_flat"] > 0)
    GG = G_batch.reshape((n_p, nf, n), order="C")
    g["Fs_flat"] = grad_Fs_einsum(MX, G_batch, nf)
    g["b0"] = GG.sum(axis=(0, 2)).reshape(nf, 1)
    if lam:
        g["Fs_flat"] = g["Fs_flat"] + 2 * lam * flatten_filters(params["Fs"])
        g["W1"] = g["W1"] + 2 * lam * params["W1"]
        g["W2"] = g["W2"] + 2 * lam * params["W2"]
    g["Fs"] = g["Fs_flat"].reshape(params["Fs"].shape, order="C")
    g["G_batch"] = G_batch
    return g


def _max_rel(a: np.ndarray, b: np.ndarray, floor: float) -> float:
    """max |a-b| / max(|a|+|b|, floor), elementwise (0 for empty arrays)."""
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)))


def debug_check_rows(d: dict) -> list:
    """Compare this module's forward pass and gradients with a debug file's arrays.

    d: the dict from load_debug_file (keys X (3072, n), Fs, W1, b1, W2, b2, Y (K, n),
    conv_flat, X1, P, grad_Fs_flat, grad_W1, grad_b1, grad_W2, grad_b2). float64 throughout.
    Returns rows {array, source, shape, max_abs, max_rel} where source says which code made our
    number (forward; compute_grads = the training path; spec einsum = grads_spec_layout).
    """
    p = debug_params(d)
    f = p["Fs"].shape[0]
    MX = build_mx(to_images(np.asarray(d["X"], np.float64)), f)
    Y = np.asarray(d["Y"], np.float64)
    fw = forward(p, MX)
    g = compute_grads(p, MX, Y)
    gs = grads_spec_layout(p, MX, Y)
    ours = [("conv_flat", "forward", fw["conv_flat"]), ("X1", "forward", fw["X1"]),
            ("P", "forward", fw["P"]),
            ("grad_Fs_flat", "compute_grads", flatten_filters(g["Fs"])),
            ("grad_Fs_flat", "spec einsum", gs["Fs_flat"])]
    for k in ("W1", "b1", "W2", "b2"):
        ours += [(f"grad_{k}", "compute_grads", g[k]), (f"grad_{k}", "spec einsum", gs[k])]
    rows = []
    for key, src, a in ours:
        b = np.asarray(d[key], np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{key}: ours has shape {a.shape}, the debug file {b.shape}")
        rows.append({"array": key, "source": src, "shape": a.shape,
                     "max_abs": float(np.max(np.abs(a - b))), "max_rel": _max_rel(a, b, 1e-12)})
    return rows


def mx_to_images(MX: np.ndarray, f: int) -> np.ndarray:
    """Inverse of build_mx: MX (n_p, f*f*3, n) -> X_ims (32, 32, 3, n) (same dtype)."""
    n_p = _check_f(f)
    MX = np.asarray(MX)
    if MX.ndim != 3 or MX.shape[:2] != (n_p, f * f * 3):
        raise ValueError(f"MX must have shape ({n_p}, {f * f * 3}, n) for f={f}; got {MX.shape}")
    g, n = 32 // f, MX.shape[2]
    return np.ascontiguousarray(MX.reshape(g, g, f, f, 3, n).transpose(0, 2, 1, 3, 4, 5)
                                ).reshape(32, 32, 3, n)


def torch_grads(params: dict, MX: np.ndarray, Y: np.ndarray, lam: float = 0.0,
                eps: float = 0.0, return_cost: bool = False):
    """Gradients of the cost from a torch twin of the network (autograd, float64).

    params: one filter size (Fs (f, f, 3, nf), b0 (nf, 1), W1, b1, W2, b2);
    MX: (n_p, f*f*3, n) (turned back into images with mx_to_images);  Y: (K, n) one-hot.
    The twin: conv2d with stride f and bias b0 on the images, conv_outputs permuted to
    (32/f, 32/f, nf, n) and flattened in the spec's order='C'; ReLU; W1, b1; ReLU; W2, b2;
    loss = mean cross-entropy against targets with 1-eps on the true class and eps/(K-1) off it;
    cost = loss + lam (|Fs|^2 + |W1|^2 + |W2|^2).
    Returns {key: float64 array of params[key].shape}, and the cost too if ``return_cost``.
    Raises ImportError (saying how to install torch) when torch is absent.
    """
    torch = _require_torch("torch_grads")
    check_params(params)
    if "Fs" not in params:
        raise ValueError("torch_grads handles one filter size (key 'Fs')")
    X_ims = mx_to_images(MX, params["Fs"].shape[0])
    Y = _check_Y(Y, X_ims.shape[3], params["W2"].shape[0])
    t = {k: torch.tensor(np.asarray(params[k], np.float64), dtype=torch.float64,
                         requires_grad=True) for k in ("Fs", "b0", "W1", "b1", "W2", "b2")}
    cost = _torch_net(torch, t, X_ims, Y, lam, eps)["cost"]
    cost.backward()
    out = {k: v.grad.numpy().copy() for k, v in t.items()}
    return (out, float(cost.detach())) if return_cost else out


def tiny_net(f: int = 8, nf: int = 2, nh: int = 6, n: int = 5, X: np.ndarray | None = None,
             y: np.ndarray | None = None, seed: int = 0):
    """A small float64 network and batch for gradient checks.

    Returns (params, MX, Y): He-initialised params with small random (non-zero) biases,
    MX (n_p, f*f*3, n) float64 built from X[:, :n] (3072, >=n) or from random images,
    Y (10, n) one-hot float64 from y[:n] or random labels.
    """
    rng = np.random.default_rng(seed)
    p = init_params(f, nf, nh, seed=seed, dtype=np.float64)
    for k in ("b0", "b1", "b2"):
        p[k] = rng.standard_normal(p[k].shape) * 0.1
    if X is None:
        X = rng.standard_normal((3072, n))
    X = _check_X(X)[:, :n].astype(np.float64)
    if X.shape[1] < n:
        raise ValueError(f"X has {X.shape[1]} images; need n={n}")
    y = rng.integers(0, 10, n) if y is None else np.asarray(y)[:n]
    return p, build_mx(to_images(X), f), one_hot(y, 10, np.float64)


def numerical_grads(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
                    h: float = 1e-5, max_entries: int | None = 20, seed: int = 0) -> dict:
    """Centred finite differences of compute_loss's cost, in float64, on a subset of entries.

    params, MX (n_p, f*f*3, n), Y (K, n) as for compute_grads (converted to float64 copies).
    For each array, ``max_entries`` entries chosen at random (all when None or larger) get
    (cost(w + h) - cost(w - h)) / (2h). Returns {key: float64 array of params[key].shape}
    with NaN at the entries that were not evaluated.
    """
    if h <= 0:
        raise ValueError(f"step h must be positive; got {h}")
    p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    MX = {k: np.asarray(v, np.float64) for k, v in MX.items()} if isinstance(MX, dict) \
        else np.asarray(MX, np.float64)
    Y = np.asarray(Y, np.float64)
    rng = np.random.default_rng(seed)
    out = {}
    for k in p:
        w = p[k].reshape(-1)          # a view: edits change p[k]
        idx = np.arange(w.size)
        if max_entries is not None and w.size > max_entries:
            idx = np.sort(rng.choice(w.size, max_entries, replace=False))
        g = np.full(w.size, np.nan)
        for i in idx:
            old = w[i]
            w[i] = old + h
            cp = compute_loss(p, MX, Y, lam, eps)[1]
            w[i] = old - h
            cm = compute_loss(p, MX, Y, lam, eps)[1]
            w[i] = old
            g[i] = (cp - cm) / (2 * h)
        out[k] = g.reshape(p[k].shape)
    return out


def grad_error_table(params: dict, MX, Y: np.ndarray, lam: float, eps: float,
                     reference: dict, floor: float = 1e-8) -> list:
    """Compare compute_grads with reference gradients, one row per parameter array.

    reference: {key: array of params[key].shape}, e.g. from torch_grads or numerical_grads
    (NaN entries are skipped). Rows: param, shape, checked (entries compared), max_abs,
    max_rel = max |a-b| / max(|a|+|b|, floor) over the compared entries.
    """
    g = compute_grads(params, MX, Y, lam, eps)
    rows = []
    for k in params:
        if k not in reference:
            raise ValueError(f"reference has no gradient for {k!r}")
        a = np.asarray(g[k], np.float64)
        b = np.asarray(reference[k], np.float64)
        if a.shape != b.shape:
            raise ValueError(f"reference[{k!r}] has shape {b.shape}; expected {a.shape}")
        m = np.isfinite(b)
        rows.append({"param": k, "shape": a.shape, "checked": int(m.sum()),
                     "max_abs": float(np.max(np.abs(a[m] - b[m]))) if m.any() else 0.0,
                     "max_rel": _max_rel(a[m], b[m], floor)})
    return rows


def time_grads_dtype(f: int = 4, nf: int = 10, nh: int = 50, n: int = 100, repeats: int = 5,
                     seed: int = 0, X: np.ndarray | None = None, threads=None) -> list:
    """Time compute_grads (forward + backward of one batch) in float32 and float64.

    X: (3072, >=n) images (random when None). Best of ``repeats`` after one warm-up call.
    ``threads``: BLAS threads while timing (None: the library default).
    Returns rows {dtype, seconds, ms_per_batch, speedup_vs_float64, threads, f, nf, nh, n}.
    """
    return _timed_rows(threads, _time_grads_dtype, f, nf, nh, n, repeats, seed, X)


def _time_grads_dtype(f, nf, nh, n, repeats, seed, X) -> list:
    import time
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3072, n)) if X is None else _check_X(X)[:, :n]
    y = rng.integers(0, 10, X.shape[1])
    rows = []
    for dt in (np.float64, np.float32):
        p = init_params(f, nf, nh, seed=seed, dtype=dt)
        MX = mx_batch_first(X, f, dtype=dt).transpose(1, 2, 0)
        Y = one_hot(y, 10, dt)
        compute_grads(p, MX, Y)
        ts = []
        for _ in range(max(1, int(repeats))):
            t0 = time.perf_counter()
            compute_grads(p, MX, Y)
            ts.append(time.perf_counter() - t0)
        rows.append({"dtype": np.dtype(dt).name, "seconds": max(min(ts), 1e-9)})
    for r in rows:
        r["ms_per_batch"] = 1e3 * r["seconds"]
        r["speedup_vs_float64"] = rows[0]["seconds"] / r["seconds"]
        r.update(f=f, nf=nf, nh=nh, n=int(X.shape[1]))
    return rows


def mx_build_times(X: np.ndarray, f: int = 4, n_naive: int = 200, cache_dir=None) -> list:
    """How long MX takes for a whole split, four ways.

    X: (3072, n). Rows {how, images, seconds, source}: mx_batch_first (vectorised, no cache);
    precompute_mx called twice (the first builds the cache file or loads one from an earlier
    run, the second loads it: ``source`` says which); build_mx_naive (the spec's loops) timed on
    the first ``n_naive`` images and scaled linearly to n (``images`` says how many were timed).
    """
    import time
    X = _check_X(X)
    n = X.shape[1]
    rows = []
    t0 = time.perf_counter()
    mx_batch_first(X, f)
    rows.append({"how": "mx_batch_first (vectorised, no cache)", "images": n,
                 "seconds": time.perf_counter() - t0, "source": "built"})
    for j in (1, 2):
        _, info = precompute_mx(X, f, cache_dir=cache_dir)
        rows.append({"how": f"precompute_mx call {j}", "images": n, "seconds": info["seconds"],
                     "source": info["source"]})
    k = max(1, min(int(n_naive), n))
    t0 = time.perf_counter()
    build_mx_naive(to_images(X[:, :k]), f)
    t = time.perf_counter() - t0
    rows.append({"how": f"build_mx_naive (spec loops), timed on {k}, scaled to {n}", "images": k,
                 "seconds": t * n / k, "source": "extrapolated" if k < n else "built"})
    return rows


def grouped_bars(groups: dict, ylabel: str, title: str, name: str | None = None, log: bool = True,
                 data: str = ""):
    """Grouped bar chart: groups = {series label: {bar label: value}} (bars in first-seen order).

    Log y-axis by default. The title gets data_label(data). Saves figures/<name>.png when given.
    Returns the figure.
    """
    plt = _plt()
    labels = list(groups)
    if not labels:
        raise ValueError("groups is empty: pass {series label: {bar label: value}}")
    xs = []
    for lab in labels:
        xs += [x for x in groups[lab] if x not in xs]
    fig, ax = plt.subplots(figsize=(1.3 * len(xs) + 3, 3.8))
    w = 0.8 / len(labels)
    for j, lab in enumerate(labels):
        vals = [groups[lab].get(x, np.nan) for x in xs]
        if log:
            vals = [max(v, 1e-18) if np.isfinite(v) else np.nan for v in vals]
        ax.bar(np.arange(len(xs)) + (j - (len(labels) - 1) / 2) * w, vals, width=w, label=str(lab))
    ax.set_xticks(np.arange(len(xs)), [str(x) for x in xs], fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    tag = data_label(data)
    ax.set_title(f"{title} - {tag}" if tag else title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if len(labels) > 1:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncol=min(3, len(labels)), frameon=False)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def plot_grad_errors(tables: dict, title: str = "gradient check", name: str | None = None,
                     data: str = ""):
    """Grouped bars of max relative error per parameter, log scale.

    tables: {label: rows from grad_error_table}. Saves figures/<name>.png when given.
    """
    groups = {lab: {r["param"]: r["max_rel"] for r in rows} for lab, rows in tables.items()}
    return grouped_bars(groups, "max relative error", title, name=name, log=True, data=data)
# (end of notebook 01 helpers)


# =====================================================================================
# 3. network
# =====================================================================================
#   conv_outputs_mat = MX (x) Fs_flat + b0      (n_p, nf, n)
#   conv_flat = max(0, conv_outputs_mat.reshape((n_p*nf, n), order='C'))
#   X1 = max(0, W1 conv_flat + b1),  S = W2 X1 + b2,  P = softmax(S)
#   loss = -1/n sum_i y_smooth_i . log p_i,   cost = loss + lam (|Fs|^2 + |W1|^2 + |W2|^2)
# Multi-size filters (bonus): params holds Fs_f{f}, b0_f{f} per branch; the branches' conv_flat
# are stacked (in increasing f) before W1. A single branch uses the plain keys Fs and b0.

def _branches(params: dict) -> list:
    """[(f, Fs key, b0 key), ...] in the order their outputs are stacked before W1."""
    if "Fs" in params:
        return [(params["Fs"].shape[0], "Fs", "b0")]
    out = sorted((params[k].shape[0], k, "b0" + k[2:]) for k in params if k.startswith("Fs_f"))
    if not out:
        raise ValueError("params has no filters: expected key 'Fs' (or 'Fs_f4', 'Fs_f8', ...)")
    return out


def filter_sizes(params: dict) -> tuple:
    """The filter widths f of every branch, e.g. (4,) or (4, 8)."""
    return tuple(f for f, _, _ in _branches(params))


def check_params(params: dict) -> dict:
    """Validate keys and shapes; returns params. Raises ValueError naming the bad array."""
    need = ["W1", "b1", "W2", "b2"]
    for k in need:
        if k not in params:
            raise ValueError(f"params is missing {k!r}; expected keys Fs, b0, W1, b1, W2, b2")
    width = 0
    for f, kF, kb in _branches(params):
        Fs = params[kF]
        n_p = _check_f(f)
        if Fs.ndim != 4 or Fs.shape[:3] != (f, f, 3):
            raise ValueError(f"{kF} must have shape (f, f, 3, nf); got {Fs.shape}")
        nf = Fs.shape[3]
        if kb not in params or params[kb].shape != (nf, 1):
            raise ValueError(f"{kb} must have shape ({nf}, 1) to match {kF} {Fs.shape}")
        width += n_p * nf
    nh, K = params["W1"].shape[0], params["W2"].shape[0]
    for k, shape in (("W1", (nh, width)), ("b1", (nh, 1)), ("W2", (K, nh)), ("b2", (K, 1))):
        if params[k].shape != shape:
            raise ValueError(f"{k} must have shape {shape} for this architecture; got {params[k].shape}")
    return params


def init_params(f, nf, nh: int, K: int = 10, seed: int = 0, dtype=np.float32) -> dict:
    """He-initialised parameters in the spec layout (biases zero).

    f, nf: ints for one conv layer, or equal-length tuples for multi-size filters (bonus).
    Returns Fs (f, f, 3, nf), b0 (nf, 1), W1 (nh, n_p*nf), b1 (nh, 1), W2 (K, nh), b2 (K, 1);
    with tuples, Fs_f{f}/b0_f{f} per branch and W1 (nh, sum_b n_p_b*nf_b).
    He: std = sqrt(2 / fan_in), fan_in = f*f*3, n_p*nf and nh.
    """
    rng = np.random.default_rng(seed)
    multi = isinstance(f, (tuple, list))
    fs = tuple(f) if multi else (f,)
    nfs = tuple(nf) if isinstance(nf, (tuple, list)) else (nf,) * len(fs)
    if len(nfs) != len(fs) or len(set(fs)) != len(fs):
        raise ValueError(f"need one nf per distinct filter size; got f={f}, nf={nf}")
    p, width = {}, 0
    for fi, nfi in sorted(zip(fs, nfs)):
        n_p = _check_f(fi)
        kF, kb = ("Fs", "b0") if not multi else (f"Fs_f{fi}", f"b0_f{fi}")
        p[kF] = (rng.standard_normal((fi, fi, 3, nfi)) * np.sqrt(2.0 / (fi * fi * 3))).astype(dtype)
        p[kb] = np.zeros((nfi, 1), dtype)
        width += n_p * nfi
    p["W1"] = (rng.standard_normal((nh, width)) * np.sqrt(2.0 / width)).astype(dtype)
    p["b1"] = np.zeros((nh, 1), dtype)
    p["W2"] = (rng.standard_normal((K, nh)) * np.sqrt(2.0 / nh)).astype(dtype)
    p["b2"] = np.zeros((K, 1), dtype)
    return p


def _check_eps(eps: float) -> float:
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label smoothing eps must be in [0, 1); got {eps}")
    return float(eps)


def smooth_targets(Y: np.ndarray, eps: float) -> np.ndarray:
    """Label smoothing of one-hot targets: 1-eps on the true class, eps/(K-1) elsewhere.

    Y: (K, n) one-hot  ->  (K, n) same dtype. eps=0 returns Y unchanged.
    """
    if _check_eps(eps) == 0:
        return Y
    K = Y.shape[0]
    return Y * (1.0 - eps) + (1.0 - Y) * (eps / (K - 1))


# ---- the batch-first core: every product is one GEMM; used by the spec functions and train ----

def _targets(y: np.ndarray, K: int, eps: float, dtype) -> np.ndarray:
    """int labels (n,) -> smoothed targets (n, K)."""
    T = np.full((y.shape[0], K), eps / (K - 1) if eps else 0.0, dtype=dtype)
    T[np.arange(y.shape[0]), y] = 1.0 - eps
    return T


def _forward_core(params: dict, mxs: list, drop_mask=None) -> dict:
    """Batch-first forward. mxs: one (n, n_p, d) array per branch. Returns H (n, sum n_p*nf)
    after ReLU, X1 (n, nh) after ReLU (and dropout), S (n, K), P (n, K), logP (n, K)."""
    hs = []
    for (f, kF, kb), mx in zip(_branches(params), mxs):
        n, n_p, d = mx.shape
        Fs = params[kF]
        nf = Fs.shape[3]
        c = (mx.reshape(n * n_p, d) @ Fs.reshape(d, nf)).reshape(n, n_p * nf)
        # the bias tiled along a row: a broadcast over an inner axis of only nf is ~5x slower
        c += np.tile(params[kb].reshape(nf), n_p)
        np.maximum(c, 0, out=c)
        hs.append(c)
    H = hs[0] if len(hs) == 1 else np.concatenate(hs, axis=1)
    X1 = H @ params["W1"].T
    X1 += params["b1"].T
    np.maximum(X1, 0, out=X1)
    if drop_mask is not None:
        X1 *= drop_mask
    S = X1 @ params["W2"].T
    S += params["b2"].T
    Z = S - S.max(axis=1, keepdims=True)
    E = np.exp(Z)
    se = E.sum(axis=1, keepdims=True)
    P = E / se
    logP = Z - np.log(se)
    return {"H": H, "X1": X1, "S": S, "P": P, "logP": logP}


def _reg(params: dict) -> float:
    return float(sum(np.sum(params[k] * params[k], dtype=np.float64)
                     for k in params if k.startswith(("Fs", "W"))))


def _backward_core(params: dict, mxs: list, fw: dict, T: np.ndarray, lam: float,
                   drop_mask=None, scale: float = 1.0) -> dict:
    """Gradients of the cost for the batch-first forward ``fw`` with targets T (n, K).

    Every gradient is linear in G = P - T, so ``scale`` (the SGD step eta) is applied once to
    the small (n, K) matrix G instead of to every gradient array."""
    n = T.shape[0]
    G = fw["P"] - T
    G *= scale / n
    X1, H = fw["X1"], fw["H"]
    g = {"W2": G.T @ X1, "b2": G.sum(axis=0).reshape(-1, 1)}
    G1 = G @ params["W2"]
    if drop_mask is not None:
        G1 *= drop_mask
    G1 *= X1 > 0
    g["W1"] = G1.T @ H
    g["b1"] = G1.sum(axis=0).reshape(-1, 1)
    GH = G1 @ params["W1"]
    GH *= H > 0
    off = 0
    for (f, kF, kb), mx in zip(_branches(params), mxs):
        n_, n_p, d = mx.shape
        Fs = params[kF]
        nf = Fs.shape[3]
        Gc = GH[:, off:off + n_p * nf]
        off += n_p * nf
        Gc = np.ascontiguousarray(Gc).reshape(n * n_p, nf)
        g[kF] = (mx.reshape(n * n_p, d).T @ Gc).reshape(Fs.shape)
        # column sums as a GEMV: Gc.sum(axis=0) on this tall, narrow matrix is ~8x slower
        g[kb] = (np.ones(n * n_p, Gc.dtype) @ Gc).reshape(-1, 1)
    if lam:
        for k in g:
            if k.startswith(("Fs", "W")):
                g[k] += (2.0 * lam * scale) * params[k]
    return g


def _as_branch_list(params: dict, MX) -> list:
    """Spec MX (n_p, d, n) or {f: MX} -> list of batch-first arrays, one per branch."""
    br = _branches(params)
    if isinstance(MX, dict):
        try:
            mxs = [MX[f] for f, _, _ in br]
        except KeyError as e:
            raise ValueError(f"MX dict needs one MX per filter size {filter_sizes(params)}") from e
    elif len(br) == 1:
        mxs = [MX]
    else:
        raise ValueError(f"this network has filter sizes {filter_sizes(params)}: pass MX as a dict {{f: MX_f}}")
    out = []
    for (f, kF, _), m in zip(br, mxs):
        m = np.asarray(m)
        d = f * f * 3
        if m.ndim != 3 or m.shape[:2] != (_check_f(f), d):
            raise ValueError(f"MX for f={f} must have shape ({_check_f(f)}, {d}, n); got {m.shape}")
        if m.dtype != params[kF].dtype:
            raise ValueError(f"MX is {m.dtype} but the parameters are {params[kF].dtype}; "
                             f"convert one of them (e.g. MX.astype(np.{params[kF].dtype}))")
        out.append(as_batch_first(m))
    return out


def forward(params: dict, MX) -> dict:
    """Forward pass in the spec layout.

    params: see init_params.  MX: (n_p, f*f*3, n) (or {f: MX_f} for multi-size filters).
    Returns conv_outputs_mat (n_p, nf, n) before ReLU (single branch only),
    conv_flat (n_p*nf, n) after ReLU, X1 (nh, n), S (K, n), P (K, n).
    """
    check_params(params)
    mxs = _as_branch_list(params, MX)
    fw = _forward_core(params, mxs)
    out = {"conv_flat": fw["H"].T, "X1": fw["X1"].T, "S": fw["S"].T, "P": fw["P"].T}
    if len(mxs) == 1:
        f, kF, kb = _branches(params)[0]
        n, n_p, d = mxs[0].shape
        out["conv_outputs_mat"] = conv_fast(MX if not isinstance(MX, dict) else MX[f],
                                            flatten_filters(params[kF])) + params[kb][None]
    return out


def _check_Y(Y: np.ndarray, n: int, K: int) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.shape != (K, n):
        raise ValueError(f"Y must be one-hot with shape (K, n) = ({K}, {n}); got {Y.shape}. "
                         "Use one_hot(y) for int labels")
    return Y


def compute_loss(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0):
    """Mean cross-entropy against label-smoothed targets, and the L2-regularised cost.

    MX: (n_p, f*f*3, n);  Y: (K, n) one-hot.  Returns (loss, cost) as Python floats, with
    cost = loss + lam * (|Fs|^2 + |W1|^2 + |W2|^2).
    """
    check_params(params)
    mxs = _as_branch_list(params, MX)
    n, K = mxs[0].shape[0], params["W2"].shape[0]
    Y = _check_Y(Y, n, K)
    fw = _forward_core(params, mxs)
    Ys = smooth_targets(Y.astype(fw["logP"].dtype), eps)
    loss = float(-np.sum(Ys.T * fw["logP"], dtype=np.float64) / n)
    return loss, loss + lam * _reg(params)


def compute_grads(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0) -> dict:
    """Gradients of the cost, a dict with the same keys and shapes as params.

    MX: (n_p, f*f*3, n);  Y: (K, n) one-hot.  grad Fs is the spec's
    ``einsum('ijn,jln->il', MXt, GG)`` reshaped to Fs's shape, computed here as one GEMM.
    """
    check_params(params)
    mxs = _as_branch_list(params, MX)
    n, K = mxs[0].shape[0], params["W2"].shape[0]
    Y = _check_Y(Y, n, K)
    fw = _forward_core(params, mxs)
    T = np.ascontiguousarray(smooth_targets(Y.astype(fw["P"].dtype), eps).T)
    return _backward_core(params, mxs, fw, T, lam)


def grad_Fs_einsum(MX: np.ndarray, G_batch: np.ndarray, nf: int) -> np.ndarray:
    """The spec's gradient for the filters, for teaching and checking.

    MX: (n_p, f*f*3, n);  G_batch: (n_p*nf, n) gradient at conv_flat's input
    -> grad_Fs_flat: (f*f*3, nf) = einsum('ijn,jln->il', MXt, GG), GG = G_batch.reshape((n_p, nf, n)).
    """
    n_p, d, n = MX.shape
    GG = G_batch.reshape((n_p, nf, n), order="C")
    MXt = np.transpose(MX, (1, 0, 2))
    return np.einsum("ijn,jln->il", MXt, GG, optimize=True)

# =====================================================================================
# 4. training
# =====================================================================================
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402


def n_updates(n_cycles: int, step: int, increasing: bool = False) -> int:
    """Total updates: 2*step*n_cycles, or 2*step*(2**n_cycles - 1) with doubling cycles."""
    return 2 * step * ((2 ** n_cycles - 1) if increasing else n_cycles)


def cyclic_eta(t, eta_min: float, eta_max: float, n_s: int, increasing: bool = False,
               decay: float = 1.0):
    """Triangular cyclic learning rate (Assignment 2), optionally with doubling cycle lengths.

    t: int or (T,) int array of update indices (0-based).  Cycle i has step n_s (or n_s*2**i
    when ``increasing``) and peak eta_max * decay**i:  eta rises linearly from eta_min at the
    cycle start to the peak after one step, and falls back to eta_min after the second.
    Returns a float (scalar t) or a (T,) float64 array.
    """
    t_arr = np.asarray(t, dtype=np.float64)
    if np.any(t_arr < 0):
        raise ValueError("update index t must be >= 0")
    if increasing:
        # cycle i covers [2 n_s (2^i - 1), 2 n_s (2^(i+1) - 1))
        i = np.floor(np.log2(t_arr / (2.0 * n_s) + 1.0))
        # guard against floating error at the exact boundaries
        start = 2.0 * n_s * (2.0 ** i - 1.0)
        i = np.where(t_arr < start, i - 1, i)
        i = np.where(t_arr >= 2.0 * n_s * (2.0 ** (i + 1) - 1.0), i + 1, i)
        start = 2.0 * n_s * (2.0 ** i - 1.0)
        step = n_s * 2.0 ** i
    else:
        i = np.floor(t_arr / (2.0 * n_s))
        start = 2.0 * n_s * i
        step = np.full_like(t_arr, float(n_s))
    top = eta_max * decay ** i
    u = (t_arr - start) / step            # in [0, 2)
    eta = np.where(u <= 1.0, eta_min + u * (top - eta_min), top - (u - 1.0) * (top - eta_min))
    return float(eta) if np.ndim(t) == 0 else eta


@dataclass
class TrainConfig:
    """Everything that defines a training run (the defaults are the spec's arch2 protocol).

    Cyclic LR: n_cycles, step (n_s, or step_1 when ``increasing``), eta_min, eta_max,
    eta_decay (peak multiplier per cycle, 1 = off).  batch_size, lam (L2), eps (label smoothing).
    eval_every: metrics every this many updates (default step//2) on ``eval_train_n`` fixed
    training images and on the test data.  Bonus options, all off by default:
    flip (random horizontal flips), translate (max random shift in pixels), dropout (drop
    probability on the hidden layer), tta (average flip/no-flip at evaluation).
    threads: BLAS threads while training (None: ``auto_threads``, 1 for small nets).
    """
    n_cycles: int = 3
    step: int = 800
    eta_min: float = 1e-5
    eta_max: float = 1e-1
    batch_size: int = 100
    lam: float = 0.003
    eps: float = 0.0
    increasing: bool = False
    eval_every: int | None = None
    seed: int = 0
    eval_train_n: int = 10000
    eta_decay: float = 1.0
    flip: bool = False
    translate: int = 0
    dropout: float = 0.0
    tta: bool = False
    progress: bool = True
    threads: int | None = None

    @property
    def n_updates(self) -> int:
        return n_updates(self.n_cycles, self.step, self.increasing)

    @property
    def eval_period(self) -> int:
        return int(self.eval_every or max(1, self.step // 2))

    def etas(self) -> np.ndarray:
        """(n_updates,) the learning rate of every update."""
        return cyclic_eta(np.arange(self.n_updates), self.eta_min, self.eta_max, self.step,
                          self.increasing, self.eta_decay)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)

    def validate(self) -> "TrainConfig":
        if self.step < 1 or self.n_cycles < 1 or self.batch_size < 1:
            raise ValueError("step, n_cycles and batch_size must be >= 1")
        if not 0 < self.eta_min <= self.eta_max:
            raise ValueError(f"need 0 < eta_min <= eta_max; got {self.eta_min}, {self.eta_max}")
        if not 0 <= self.eps < 1 or not 0 <= self.dropout < 1 or self.lam < 0:
            raise ValueError("need 0 <= eps < 1, 0 <= dropout < 1 and lam >= 0")
        if self.translate < 0:
            raise ValueError("translate is a maximum shift in pixels and must be >= 0")
        return self


@dataclass
class History:
    """What a training run measured. Metric lists are aligned with ``t`` (update index).

    loss: cross-entropy against the hard labels; loss_ls: against the smoothed targets the
    run optimised (equal to loss when eps=0); cost: loss_ls + lam*|W|^2; acc in [0, 1].
    eta: (n_updates,) the schedule. time_train / time_eval: wall seconds spent in updates and
    in evaluation. interrupted: True when stopped early by Ctrl-C.
    """
    t: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_loss_ls: list = field(default_factory=list)
    train_cost: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_loss_ls: list = field(default_factory=list)
    test_cost: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    eta: list = field(default_factory=list)
    time_train: float = 0.0
    time_eval: float = 0.0
    updates_done: int = 0
    interrupted: bool = False
    data: str = ""
    config: dict = field(default_factory=dict)

    @property
    def final_test_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    @property
    def time_total(self) -> float:
        return self.time_train + self.time_eval

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)


class TrainingDiverged(FloatingPointError):
    """Raised when the training loss becomes NaN or inf. ``.history`` holds the partial run."""

    def __init__(self, msg: str, history: "History"):
        super().__init__(msg)
        self.history = history


# ---- augmentation on MX: every flip/shift is a precomputed gather on the flat MX row ----

def aug_transforms(flip: bool = False, max_shift: int = 0) -> list:
    """The transform of every row of ``aug_tables(f, flip, max_shift)``, in table order:
    a list of (flip, dy, dx) meaning ``shift_images(X, dy, dx, flip)``. Row 0 is (False, 0, 0);
    then the other shifts in row-major order, for flip=False and then (if ``flip``) flip=True."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1)
              for dx in range(-max_shift, max_shift + 1)]
    shifts.sort(key=lambda s: (s != (0, 0)))           # identity first
    return [(fl, dy, dx) for fl in ((False, True) if flip else (False,)) for dy, dx in shifts]


def aug_tables(f: int, flip: bool = False, max_shift: int = 0) -> np.ndarray:
    """Gather tables that apply an image transform directly to batch-first MX rows.

    Returns idx: (n_t, 3072) int32, read-only (built once per (f, flip, max_shift) and cached).
    For a batch MXb (b, n_p, d) flattened to rows (b, 3072) and padded with one zero column,
    ``padded[i, idx[k]]`` is the MX row of image i transformed by transform k =
    ``aug_transforms(flip, max_shift)[k]``: a horizontal flip and/or a shift by (dy, dx) in
    [-max_shift, max_shift]^2 pixels with zero fill (zero = the training mean after
    normalisation). Row 0 is the identity. Tests check it equals ``mx_batch_first`` of the
    transformed images exactly.
    """
    _check_f(f)
    return _aug_tables(int(f), bool(flip), int(max_shift))


@functools.lru_cache(maxsize=64)
def _aug_tables(f: int, flip: bool, max_shift: int) -> np.ndarray:
    ident = np.arange(3072, dtype=np.float64)[:, None]
    x_of_q = mx_batch_first(ident, f, dtype=np.float64)[0].ravel().astype(np.int64)  # MX pos -> X index
    q_of_x = np.empty(3072, np.int64)
    q_of_x[x_of_q] = np.arange(3072)
    ch, rem = np.divmod(x_of_q, 1024)
    r, c = np.divmod(rem, 32)
    tables = []
    for fl, dy, dx in aug_transforms(flip, max_shift):
        rr, cc = r - dy, c - dx                           # out[r, c] = in[r - dy, c - dx] ...
        ok = (rr >= 0) & (rr < 32) & (cc >= 0) & (cc < 32)
        if fl:
            cc = 31 - cc                                  # ... of the mirrored image
        src = q_of_x[ch * 1024 + np.clip(rr, 0, 31) * 32 + np.clip(cc, 0, 31)]
        tables.append(np.where(ok, src, 3072).astype(np.int32))
    out = np.stack(tables)
    out.setflags(write=False)
    return out


def augment_mx(mxb: np.ndarray, tables: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Apply transform ``choice[i]`` (row of ``tables``) to image i of batch-first MX.

    mxb: (b, n_p, d);  tables: (n_t, 3072) from aug_tables;  choice: (b,) ints  ->  (b, n_p, d).
    """
    b = mxb.shape[0]
    padded = np.empty((b, 3073), dtype=mxb.dtype)
    padded[:, :3072] = mxb.reshape(b, 3072)
    padded[:, 3072] = 0
    return np.take_along_axis(padded, tables[choice], axis=1).reshape(mxb.shape)


def shift_images(X: np.ndarray, dy: int, dx: int, flip: bool = False) -> np.ndarray:
    """Reference transform in image space: X (3072, n) -> (3072, n), optionally mirrored
    left-right, then shifted down by dy and right by dx pixels with zero fill."""
    ims = to_images(_check_X(X))
    if flip:
        ims = ims[:, ::-1]
    out = np.zeros_like(ims)
    H = W = 32
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = ims[ys, xs]
    return to_columns(out)

def mx_for(params: dict, X: np.ndarray) -> list:
    """Batch-first MX for every filter size of ``params``: X (3072, n) -> [(n, n_p, d), ...]."""
    dt = params["W1"].dtype
    return [mx_batch_first(X, f, dtype=dt) for f in filter_sizes(params)]


def evaluate(params: dict, mxs: list, y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
             chunk: int = 2500, tta: bool = False, P_out: bool = False) -> dict:
    """Metrics on a whole split, in chunks. mxs: batch-first MX per branch (see mx_for);
    y: (n,) int labels. Returns loss (hard labels), loss_ls (smoothed), cost, acc, and P (K, n)
    if ``P_out``. ``tta`` averages the probabilities of each image and its mirror image."""
    n, K = y.shape[0], params["W2"].shape[0]
    flips = [aug_tables(f, flip=True)[1] for f in filter_sizes(params)] if tta else None
    hard = soft = 0.0
    correct = 0
    Ps = []
    for s in range(0, n, chunk):
        mb = [m[s:s + chunk] for m in mxs]
        P = _forward_core(params, mb)["P"]
        if tta:
            mf = [augment_mx(m, fl[None], np.zeros(len(m), int)) for m, fl in zip(mb, flips)]
            P = 0.5 * (P + _forward_core(params, mf)["P"])
        logP = np.log(np.maximum(P, np.finfo(P.dtype).tiny))
        yb = y[s:s + chunk]
        ar = np.arange(len(yb))
        hard -= float(logP[ar, yb].sum(dtype=np.float64))
        soft -= float(np.sum(_targets(yb, K, eps, logP.dtype) * logP, dtype=np.float64))
        correct += int(np.sum(P.argmax(axis=1) == yb))
        if P_out:
            Ps.append(P)
    out = {"loss": hard / n, "loss_ls": soft / n, "acc": correct / n}
    out["cost"] = out["loss_ls"] + lam * _reg(params)
    if P_out:
        out["P"] = np.concatenate(Ps).T
    return out


def predict(params: dict, X: np.ndarray, tta: bool = False) -> np.ndarray:
    """Class probabilities. X: (3072, n) normalised -> P: (K, n)."""
    y0 = np.zeros(_check_X(X).shape[1], dtype=np.int64)
    return evaluate(params, mx_for(params, X), y0, tta=tta, P_out=True)["P"]


def train_step(params: dict, mxs: list, y: np.ndarray, eta: float, lam: float = 0.0,
               eps: float = 0.0, drop_mask=None) -> float:
    """One SGD update in place on a batch. mxs: batch-first MX per branch, (b, n_p, d);
    y: (b,) int labels. Returns the batch loss (smoothed targets, before the update)."""
    K = params["W2"].shape[0]
    fw = _forward_core(params, mxs, drop_mask)
    T = _targets(y, K, eps, fw["P"].dtype)
    loss = -float(np.sum(T * fw["logP"], dtype=np.float64)) / len(y)
    # W <- W - eta (g + 2 lam W)  is done as  W <- (1 - 2 eta lam) W - (eta g):  eta is folded
    # into G inside the backward pass and the L2 term becomes one in-place scaling.
    g = _backward_core(params, mxs, fw, T, 0.0, drop_mask, scale=eta)
    decay = 1.0 - 2.0 * eta * lam
    for k, gk in g.items():
        if lam and k.startswith(("Fs", "W")):
            params[k] *= decay
        params[k] -= gk
    return loss


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except Exception:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)


def auto_threads(params: dict, batch_size: int = 100) -> int:
    """BLAS threads ``train`` uses when ``cfg.threads`` is None: all cores only when one update
    is big enough (over ~150 MFLOP, e.g. arch5) to gain from them; 1 otherwise, because thread
    hand-offs cost more than GEMMs this small save, and 1 thread is robust on a busy machine."""
    width = params["W1"].shape[1]
    nh = params["W1"].shape[0]
    flops = 6 * batch_size * (width * nh + sum(_check_f(f) * f * f * 3 * params[k].shape[3]
                                                for f, k, _ in _branches(params)))
    return (os.cpu_count() or 1) if flops > 150e6 else 1


def _eval_threads(cfg: TrainConfig) -> int:
    """BLAS threads for evaluation: its GEMMs span thousands of images, big enough for every
    core to pay off (cfg.threads overrides)."""
    return cfg.threads or os.cpu_count() or 1


def train(params: dict, X_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig | None = None,
          X_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *,
          data_name: str = "", callback=None):
    """Mini-batch SGD with cyclic learning rates. Updates a copy of ``params``.

    X_train: (3072, n) float32 normalised, y_train: (n,) int;  X_test/y_test likewise (optional).
    Mini-batches come from a seeded shuffle every epoch (the remainder of an epoch is dropped).
    Every ``cfg.eval_period`` updates and at the end, metrics are computed on a fixed chunk
    (the first ``cfg.eval_train_n`` training images) and on the whole test set. ``callback(history)`` is
    called after each evaluation (the widgets use it to redraw).
    Returns ``(params, history)``. A NaN/inf loss raises TrainingDiverged (with the partial
    history); Ctrl-C returns the partial history with ``history.interrupted = True``.
    """
    cfg = (cfg or TrainConfig()).validate()
    threads = cfg.threads if cfg.threads is not None else auto_threads(params, cfg.batch_size)
    with _blas_threads(threads):
        return _train(params, X_train, y_train, cfg, X_test, y_test, data_name=data_name,
                      callback=callback)


def _train(params: dict, X_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig,
           X_test=None, y_test=None, *, data_name: str = "", callback=None):
    """The body of :func:`train` (cfg already validated), run under its BLAS thread limit."""
    params = {k: v.copy() for k, v in check_params(params).items()}
    dt = params["W1"].dtype
    X_train = _check_X(X_train, "X_train")
    y_train = np.asarray(y_train).astype(np.int64).ravel()
    if y_train.shape[0] != X_train.shape[1]:
        raise ValueError(f"y_train has {y_train.shape[0]} labels for {X_train.shape[1]} images")
    n, B = X_train.shape[1], cfg.batch_size
    if B > n:
        raise ValueError(f"batch_size {B} is larger than the training set ({n} images)")
    rng = np.random.default_rng(cfg.seed)
    mx_tr = mx_for(params, X_train.astype(dt, copy=False))
    # the fixed training chunk for metrics: the first eval_train_n images (a view, no copy;
    # the splits are in random order)
    n_ev = min(cfg.eval_train_n, n)
    mx_ev = [m[:n_ev] for m in mx_tr]
    y_ev = y_train[:n_ev]
    has_test = X_test is not None
    if has_test:
        X_test = _check_X(X_test, "X_test")
        mx_te = mx_for(params, X_test.astype(dt, copy=False))
        y_te = np.asarray(y_test).astype(np.int64).ravel()
    etas = cfg.etas()
    T = len(etas)
    hist = History(eta=etas.tolist(), data=data_name, config=cfg.to_dict())
    tables = None
    if cfg.flip or cfg.translate:
        tables = [aug_tables(f, cfg.flip, cfg.translate) for f in filter_sizes(params)]
    keep = 1.0 - cfg.dropout
    nh = params["W1"].shape[0]

    eval_threads = _eval_threads(cfg)

    def do_eval(t):
        t0 = time.perf_counter()
        with _blas_threads(eval_threads):
            tr = evaluate(params, mx_ev, y_ev, cfg.lam, cfg.eps, tta=cfg.tta)
            te = evaluate(params, mx_te, y_te, cfg.lam, cfg.eps, tta=cfg.tta) if has_test else None
        hist.t.append(int(t))
        for k in ("loss", "loss_ls", "cost", "acc"):
            getattr(hist, "train_" + k).append(tr[k])
            if te is not None:
                getattr(hist, "test_" + k).append(te[k])
        hist.time_eval += time.perf_counter() - t0
        if callback is not None:
            callback(hist)

    per_epoch = n // B
    order = None

    def draw(t):
        """Update t's random choices (batch, transforms, dropout), always drawn in update order
        in this thread, so a seed gives the same run with or without prefetching."""
        nonlocal order
        j = t % per_epoch
        if j == 0:
            order = rng.permutation(n)
        idx = np.sort(order[j * B:(j + 1) * B])
        choice = rng.integers(0, len(tables[0]), size=B) if tables is not None else None
        mask = None
        if cfg.dropout:
            mask = (rng.random((B, nh), dtype=np.float32) < keep).astype(dt)
            mask *= 1.0 / keep
        return idx, choice, mask

    def fetch(idx, choice):
        """Gather (and augment) a batch of MX rows: memory-bound, so it runs on a spare core."""
        mb = [m[idx] for m in mx_tr]
        if choice is not None:
            mb = [augment_mx(m, tb, choice) for m, tb in zip(mb, tables)]
        return mb

    # Double buffering: while update t computes, a helper thread gathers batch t+1 (numpy
    # releases the GIL while copying). It saves ~15% per update on small nets.
    pool = None
    if (os.cpu_count() or 1) > 1:
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(1, thread_name_prefix="batch-prefetch")
    bar = _progress(T, cfg.progress, data_name or "train")
    nxt = None
    t = 0
    try:
        t_start = time.perf_counter()
        for t in range(T):
            if t % cfg.eval_period == 0:
                t_ev = hist.time_eval
                do_eval(t)
                t_start += hist.time_eval - t_ev
            if nxt is None:
                idx, choice, mask = draw(t)
                mb = fetch(idx, choice)
            else:
                idx, choice, mask, fut = nxt
                mb = fut.result()
                nxt = None
            if pool is not None and t + 1 < T:
                i2, c2, m2 = draw(t + 1)
                nxt = (i2, c2, m2, pool.submit(fetch, i2, c2))
            loss = train_step(params, mb, y_train[idx], float(etas[t]), cfg.lam, cfg.eps, mask)
            if not np.isfinite(loss):
                hist.updates_done = t
                hist.time_train = time.perf_counter() - t_start
                raise TrainingDiverged(
                    f"training diverged: the loss became {loss} at update {t} (eta={etas[t]:.3g}). "
                    f"Lower eta_max (now {cfg.eta_max:g}), e.g. to {cfg.eta_max / 3:.2g}, or check "
                    "that the data is normalised", hist)
            if bar is not None and (t + 1) % 50 == 0:
                bar.update(50)
        hist.updates_done = T
        hist.time_train = time.perf_counter() - t_start
        do_eval(T)
    except KeyboardInterrupt:
        hist.interrupted = True
        if hist.updates_done < T:  # (else it came during the final evaluation: all updates done)
            hist.updates_done = t
            hist.time_train = time.perf_counter() - t_start
        print(f"interrupted at update {hist.updates_done}/{T}: returning the partial history")
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return params, hist


# ---- MX for a whole split, cached on disk ----

def data_hash(X: np.ndarray) -> str:
    """A short blake2b fingerprint of an array's bytes, shape and dtype."""
    import hashlib
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{X.shape}{X.dtype}".encode())
    h.update(np.ascontiguousarray(X).data)
    return h.hexdigest()


def precompute_mx(X: np.ndarray, f: int, dtype=np.float32, cache_dir=None, mmap: bool = True):
    """MX for a whole split, saved once with np.save and reloaded after that.

    X: (3072, n)  ->  MX: (n_p, f*f*3, n) in the spec layout, a transposed view of the
    batch-first array that is stored (so ``as_batch_first(MX)`` is free). The file name holds f,
    the dtype and a hash of X, so changed data never reuses a stale file. ``cache_dir=None``
    uses data/mx_cache; ``cache_dir=False`` disables the cache. Returns (MX, info) where info
    says whether it was loaded or built, the path and the seconds it took.
    """
    X = _check_X(X)
    _check_f(f)
    t0 = time.perf_counter()
    if cache_dir is False:
        mxb = mx_batch_first(X, f, dtype)
        return mxb.transpose(1, 2, 0), {"source": "built", "path": None,
                                        "seconds": time.perf_counter() - t0}
    d = Path(cache_dir) if cache_dir else DATA_DIR / "mx_cache"
    path = d / f"mx_f{f}_{np.dtype(dtype).name}_{data_hash(X)}.npy"
    if path.exists():
        try:
            mxb = np.load(path, mmap_mode="r" if mmap else None)
            if mxb.shape == (X.shape[1], (32 // f) ** 2, f * f * 3):
                return mxb.transpose(1, 2, 0), {"source": "loaded", "path": path,
                                                "seconds": time.perf_counter() - t0}
        except Exception:
            pass  # a damaged cache file is rebuilt below
    mxb = mx_batch_first(X, f, dtype)
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
    try:
        np.save(tmp, mxb)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return mxb.transpose(1, 2, 0), {"source": "built", "path": path,
                                    "seconds": time.perf_counter() - t0}


# ---- checkpoints ----

def save_checkpoint(path, params: dict, cfg: TrainConfig | None = None,
                    history: History | None = None) -> Path:
    """Write params + config + history to one .npz, atomically (temp file, then rename)."""
    check_params(params)
    meta = {"config": cfg.to_dict() if cfg else None,
            "history": history.to_dict() if history else None, "format": 1}
    arrays = {"param_" + k: v for k, v in params.items()}
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    _atomic_savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def load_checkpoint(path, like: dict | None = None):
    """Read a checkpoint written by save_checkpoint -> (params, cfg or None, history or None).

    Keys and shapes are validated; with ``like`` (e.g. init_params(...) of the architecture you
    expect) every array must also match its shape and dtype. Raises ValueError saying which.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            params = {k[6:]: z[k] for k in files if k.startswith("param_")}
            meta = json.loads(str(z["meta"])) if "meta" in files else None
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e}); was it written by "
                         "save_checkpoint?") from e
    if meta is None or not params:
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint (no meta/params)")
    try:
        check_params(params)
    except ValueError as e:
        raise ValueError(f"checkpoint {path} has inconsistent parameters: {e}") from e
    if like is not None:
        if set(like) != set(params):
            raise ValueError(f"checkpoint {path} has keys {sorted(params)}, expected {sorted(like)}")
        for k in like:
            if params[k].shape != like[k].shape or params[k].dtype != like[k].dtype:
                raise ValueError(
                    f"checkpoint {path}: {k} is {params[k].shape} {params[k].dtype}, expected "
                    f"{like[k].shape} {like[k].dtype}; it was saved for another architecture")
    cfg = TrainConfig.from_dict(meta["config"]) if meta.get("config") else None
    hist = History.from_dict(meta["history"]) if meta.get("history") else None
    return params, cfg, hist

def for_mode(cfg: TrainConfig, shrink: int = 20) -> TrainConfig:
    """The config to run now: unchanged normally; in fast mode (WORKBOOK_FAST=1) the step is
    divided by ``shrink`` (at least 10 updates) and evaluation uses at most 1000 training
    images, so a notebook cell finishes in seconds. Fast-mode results are not real results."""
    if not is_fast():
        return cfg
    return dataclasses.replace(cfg, step=max(10, cfg.step // shrink),
                               eval_every=None, eval_train_n=min(cfg.eval_train_n, 1000),
                               progress=False)


def result_row(label: str, params: dict, cfg: TrainConfig, hist: History) -> dict:
    """One results-table row: architecture, settings, final metrics, times, and the data."""
    br = _branches(params)
    return {"run": label, "f": [f for f, _, _ in br] if len(br) > 1 else br[0][0],
            "nf": [params[k].shape[3] for _, k, _ in br] if len(br) > 1 else params[br[0][1]].shape[3],
            "nh": params["W1"].shape[0], "updates": hist.updates_done,
            "n_cycles": cfg.n_cycles, "step": cfg.step, "increasing": cfg.increasing,
            "lam": cfg.lam, "eps": cfg.eps,
            "train_acc": hist.train_acc[-1] if hist.train_acc else None,
            "test_acc": hist.test_acc[-1] if hist.test_acc else None,
            "test_loss": hist.test_loss[-1] if hist.test_loss else None,
            "time_train_s": round(hist.time_train, 3), "time_eval_s": round(hist.time_eval, 3),
            "data": data_label(hist.data), "fast_mode": is_fast()}


def write_results(name: str, rows: list) -> Path:
    """Write rows (dicts, e.g. from result_row) to <fig_dir()>/<name>.json (atomically); return
    the path. The README's results tables are made from these files."""
    d = fig_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"fast_mode": is_fast(), "rows": rows}, indent=1))
    os.replace(tmp, path)
    return path


def results_markdown(rows: list, cols=("run", "f", "nf", "nh", "updates", "lam", "eps",
                                       "test_acc", "time_train_s", "data")) -> str:
    """A markdown table of result rows (accuracies shown in %)."""
    def fmt(k, v):
        if k.endswith("acc") and isinstance(v, float):
            return f"{100 * v:.2f}%"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(k, r.get(k, "")) for k in cols) + " |" for r in rows]
    return "\n".join(lines)


# ---- notebook 03 helpers (widgets call these; tests call them too) ----

# Exercise 3's four architectures: n_p * nf is (about) the same for each, so the conv layer's
# output width stays near 640-768 while f grows.
EX3_ARCHS = {
    "arch1": {"f": 2, "nf": 3, "nh": 50},
    "arch2": {"f": 4, "nf": 10, "nh": 50},
    "arch3": {"f": 8, "nf": 40, "nh": 50},
    "arch4": {"f": 16, "nf": 160, "nh": 50},
}

_DATA_KEYS = ("X_train", "y_train", "X_test", "y_test")


def _check_data(data) -> None:
    if not isinstance(data, dict) or any(k not in data for k in _DATA_KEYS):
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"data must be a dict with keys {list(_DATA_KEYS)} (and 'name'), as "
                         f"returned by load_dataset(); got {have}")


def _arch_args(label: str, spec) -> tuple:
    if not isinstance(spec, dict) or any(k not in spec for k in ("f", "nf", "nh")):
        raise ValueError(f"architecture {label!r} must be a dict with keys 'f', 'nf' and 'nh', "
                         f"e.g. {{'f': 4, 'nf': 10, 'nh': 50}}; got {spec!r}")
    return spec["f"], spec["nf"], spec["nh"]


def _same_protocol(hist: History, cfg: TrainConfig) -> bool:
    a, b = dict(hist.config), cfg.to_dict()
    a.pop("progress", None)
    b.pop("progress", None)
    return a == b


def run_architectures(archs: dict, cfg: TrainConfig, data: dict, seed: int = 0,
                      reuse: dict | None = None, verbose: bool = True):
    """Train every architecture in ``archs`` with the same config on the same data.

    archs: {label: {"f": int, "nf": int, "nh": int}} in the order wanted (e.g. EX3_ARCHS);
        f and nf may be equal-length tuples (multi-size filters, see init_params).
    cfg: the TrainConfig for every run, used as given (wrap it in for_mode yourself).
    data: dict from load_dataset(): X_train (3072, n) float32 normalised, y_train (n,) int64,
        X_test (3072, m) float32, y_test (m,) int64, name str (the data label on every row).
    seed: the He-initialisation seed of every network (cfg.seed drives the batch order).
    reuse: {label: (row, History)} of runs already trained with this same cfg (e.g. arch2 from
        an earlier cell); they are taken as they are instead of being retrained.
    Returns (rows, histories): rows a list of result_row dicts in the order of ``archs``
    (JSON-ready), histories {label: History}. With ``verbose`` one line per run is printed.
    """
    _check_data(data)
    if not archs:
        raise ValueError("archs is empty: pass {label: {'f': .., 'nf': .., 'nh': ..}, ...}")
    reuse = dict(reuse or {})
    unknown = set(reuse) - set(archs)
    if unknown:
        raise ValueError(f"reuse has runs {sorted(unknown)} that are not in archs {list(archs)}")
    cfg = cfg.validate()
    rows, hists = [], {}
    for label, spec in archs.items():
        f, nf, nh = _arch_args(label, spec)
        if label in reuse:
            row, hist = reuse[label]
            if not _same_protocol(hist, cfg):
                raise ValueError(f"reuse[{label!r}] was trained with another config; retrain it "
                                 "or pass the config it was trained with")
            how = "reused"
        else:
            params = init_params(f, nf, nh, seed=seed)
            params, hist = train(params, data["X_train"], data["y_train"], cfg,
                                 data["X_test"], data["y_test"], data_name=data.get("name", ""))
            row = result_row(label, params, cfg, hist)
            how = "trained"
        rows.append(row)
        hists[label] = hist
        if verbose:
            print(f"{label} (f={f}, nf={nf}, nh={nh}) {how}: {hist.updates_done} updates, "
                  f"final test acc {100 * hist.final_test_acc:.2f}%, train {hist.time_train:.1f} s, "
                  f"eval {hist.time_eval:.1f} s - {data_label(hist.data)}", flush=True)
    return rows, hists


def train_preview(data: dict, f: int = 4, nf: int = 10, nh: int = 50, eta_min: float = 1e-5,
                  eta_max: float = 1e-1, step: int = 100, n_cycles: int = 1,
                  lam: float = 0.003, batch_size: int = 100, n_train: int = 2000,
                  n_test: int = 1000, increasing: bool = False, seed: int = 0, callback=None):
    """A quick training run on a subset of ``data`` (seconds), for the widget panel.

    data: dict from load_dataset() (X_train (3072, n) float32, y_train (n,) int64, X_test
    (3072, m) float32, y_test (m,) int64, name str). The first ``n_train`` training and first
    ``n_test`` test images are used; metrics every step//2 updates on min(n_train, 1000)
    training images and on those test images. ``callback(history)`` runs after each
    evaluation (e.g. to redraw a plot). Returns (params, history) as train() does: params in
    the spec layout (float32), history a History whose ``data`` says which data (and that it is
    a subset). Bad settings (e.g. batch_size > n_train, eta_min > eta_max, f not dividing 32)
    raise ValueError; a diverging run raises TrainingDiverged.
    """
    _check_data(data)
    n_all, m_all = data["X_train"].shape[1], data["X_test"].shape[1]
    if not 1 <= n_train or not 0 <= n_test:
        raise ValueError(f"n_train must be >= 1 and n_test >= 0; got {n_train}, {n_test}")
    n_train, n_test = min(int(n_train), n_all), min(int(n_test), m_all)
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} is larger than the {n_train} training images "
                         "of the preview; lower batch_size or raise n_train")
    cfg = TrainConfig(n_cycles=int(n_cycles), step=int(step), eta_min=float(eta_min),
                      eta_max=float(eta_max), batch_size=int(batch_size), lam=float(lam),
                      increasing=bool(increasing), seed=seed,
                      eval_train_n=min(n_train, 1000), progress=False).validate()
    params = init_params(int(f), int(nf), int(nh), seed=seed)
    name = f"{data.get('name', '')} - subset {n_train} train / {n_test} test".strip(" -")
    X_te = data["X_test"][:, :n_test] if n_test else None
    y_te = data["y_test"][:n_test] if n_test else None
    return train(params, data["X_train"][:, :n_train], data["y_train"][:n_train], cfg,
                 X_te, y_te, data_name=name, callback=callback)


def live_plot(output, title: str = "preview", metrics=("loss", "acc")):
    """A train() callback that redraws the curves inside an ipywidgets.Output.

    output: an ipywidgets.Output (anything usable as a context manager with clear_output).
    Returns callback(history) -> None; each call replaces the plot (clear_output(wait=True)),
    so the panel updates live while training runs.
    """
    from IPython.display import clear_output, display

    def callback(hist: History) -> None:
        plt = _plt()
        with output:
            clear_output(wait=True)
            fig = plot_history(hist, metrics=metrics,
                               title=f"{title} (update {hist.t[-1] if hist.t else 0})")
            display(fig)
            plt.close(fig)
    return callback


def preview_panel(data: dict, n_train: int = 2000, n_test: int = 1000):
    """The notebook's ipywidgets panel: architecture and training settings plus a Train button.

    data: dict from load_dataset() (see train_preview). Clicking Train calls train_preview
    with the widget values on the first ``n_train``/``n_test`` images and redraws the curves
    live via live_plot. Returns the panel (an ipywidgets.VBox); ``panel.button`` is the
    Train button and ``panel.output`` the plot area, so a test can ``panel.button.click()``.
    """
    import ipywidgets as W
    from IPython.display import display
    _check_data(data)
    style = {"description_width": "90px"}
    log = dict(base=10, readout_format=".1e", continuous_update=False, style=style)
    w = {
        "f": W.Dropdown(options=[2, 4, 8, 16], value=4, description="f", style=style),
        "nf": W.IntSlider(value=10, min=1, max=160, description="nf", style=style),
        "nh": W.IntSlider(value=50, min=5, max=400, step=5, description="nh", style=style),
        "eta_min": W.FloatLogSlider(value=1e-5, min=-7, max=-2, description="eta_min", **log),
        "eta_max": W.FloatLogSlider(value=1e-1, min=-4, max=0, description="eta_max", **log),
        "step": W.IntSlider(value=100, min=10, max=1000, step=10, description="step",
                            style=style),
        "n_cycles": W.IntSlider(value=1, min=1, max=4, description="cycles", style=style),
        "increasing": W.Checkbox(value=False, description="doubling cycles"),
        "lam": W.FloatLogSlider(value=3e-3, min=-6, max=-1, description="lam", **log),
        "batch_size": W.Dropdown(options=[25, 50, 100, 200, 500], value=100,
                                 description="batch size", style=style),
    }
    button = W.Button(description="Train", button_style="primary", icon="play")
    status = W.HTML(value=f"<i>trains on {n_train} images of {data.get('name', '')}</i>")
    output = W.Output()

    def on_click(_):
        button.disabled = True
        kw = {k: v.value for k, v in w.items()}
        status.value = "<b>training...</b>"
        try:
            _, hist = train_preview(data, n_train=n_train, n_test=n_test,
                                    callback=live_plot(output, "preview"), **kw)
            status.value = (f"final test acc {100 * hist.final_test_acc:.2f}% after "
                            f"{hist.updates_done} updates; train {hist.time_train:.1f} s, "
                            f"eval {hist.time_eval:.1f} s - {data_label(hist.data)}")
        except (ValueError, TrainingDiverged) as e:
            status.value = f"<b>not trained:</b> {e}"
            with output:
                print(e)
        finally:
            button.disabled = False

    button.on_click(on_click)
    keys = list(w)
    panel = W.VBox([W.HBox([W.VBox([w[k] for k in keys[:5]]), W.VBox([w[k] for k in keys[5:]])]),
                    W.HBox([button, status]), output])
    panel.button, panel.output, panel.controls, panel.status = button, output, w, status
    return panel


def compare_longer_runs(a_short: float, b_short: float, a_long: float, b_long: float,
                        a_wide_long: float, a: str = "arch2", b: str = "arch3",
                        wide: str = "arch2 with nf=40") -> list:
    """Sentences comparing test accuracies (fractions in [0, 1]) of the longer-training study.

    a_short/b_short: final test accuracy of architectures a and b with the short protocol;
    a_long/b_long: the same with the longer (doubling-cycle) protocol; a_wide_long: a made as
    wide as b, longer protocol. Returns a list of str, every number computed from the inputs:
    the gain from longer training for each, b's lead over a, and how much of that lead the
    extra width recovers.
    """
    vals = np.array([a_short, b_short, a_long, b_long, a_wide_long], dtype=float)
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"accuracies must be finite numbers; got {vals.tolist()}")
    pts = lambda x: f"{100 * x:+.2f} points"  # noqa: E731
    ga, gb = a_long - a_short, b_long - b_short
    who = b if gb > ga else a if ga > gb else "neither (equal gains)"
    lines = [f"longer training: {a} {pts(ga)}, {b} {pts(gb)}; bigger gain: {who}"]
    lead = b_long - a_long
    lines.append(f"after longer training {b} vs {a}: {pts(lead)}")
    width = a_wide_long - a_long
    if lead > 0:
        share = width / lead
        how = ("all of it (or more)" if share >= 1 else "most of it" if share >= 0.75
               else "part of it" if share >= 0.25 else "little or none of it")
        lines.append(f"{wide}: {pts(width)} vs {a}, i.e. {100 * share:.0f}% of {b}'s lead: "
                     f"width explains {how}")
    else:
        lines.append(f"{wide}: {pts(width)} vs {a}; {b} has no lead over {a} here, so there "
                     "is no gap for width to explain")
    rest = a_wide_long - b_long
    lines.append(f"at equal width ({wide} vs {b}): {pts(rest)} for the smaller filters")
    return lines

# (end of notebook 03 helpers)

# ---- notebook 04 helpers (widgets call these; tests call them too) ----
# Label smoothing in the spec's form (targets 1-eps / eps/(K-1)), a data-driven comparison of two
# runs, a small retraining experiment for the widget, and calibration (ECE, reliability diagram).

def _check_scores_labels(S: np.ndarray, y: np.ndarray, what: str = "S") -> tuple:
    S = np.asarray(S)
    if S.ndim != 2 or S.shape[0] < 2:
        raise ValueError(f"{what} must have shape (K, n) with K >= 2 classes; got {S.shape}")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != S.shape[1]:
        raise ValueError(f"y must be (n,) int labels with n = {S.shape[1]} (the columns of "
                         f"{what}); got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= S.shape[0]):
        raise ValueError(f"y must hold int labels in [0, {S.shape[0]}); got dtype {y.dtype}, "
                         f"range [{y.min()}, {y.max()}]")
    return S, y.astype(np.int64)


def ls_targets(y: np.ndarray, K: int, eps: float, dtype=np.float64) -> np.ndarray:
    """Label-smoothed targets in the spec layout: (K, n) ``dtype``, 1-eps on the true class and
    eps/(K-1) on every other class (eq. 23). y: (n,) int labels. eps=0 gives one-hot."""
    eps = _check_eps(eps)
    y = np.asarray(y).astype(np.int64).ravel()
    if K < 2 or (y.size and (y.min() < 0 or y.max() >= K)):
        raise ValueError(f"need K >= 2 and labels in [0, K); got K={K}")
    return np.ascontiguousarray(_targets(y, K, eps, dtype).T)


def ls_cross_entropy(S: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
    """The spec's label-smoothed loss on class scores, written out independently of the network:
    mean over the n columns of  -sum_k y_smooth[k] * log softmax(S)[k].

    S: (K, n) float scores (logits);  y: (n,) int labels;  eps in [0, 1).
    Returns a Python float (computed in float64). eps=0 is the plain cross-entropy.
    """
    S, y = _check_scores_labels(S, y)
    eps = _check_eps(eps)
    Z = S.astype(np.float64) - S.max(axis=0, keepdims=True)
    logP = Z - np.log(np.exp(Z).sum(axis=0, keepdims=True))
    return float(-np.sum(ls_targets(y, S.shape[0], eps) * logP) / S.shape[1])


def ls_grad_scores(S: np.ndarray, y: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Gradient of ls_cross_entropy w.r.t. the scores: -(y_smooth - p) / n  (eq. 24).

    S: (K, n) float;  y: (n,) int  ->  (K, n) float64.
    """
    S, y = _check_scores_labels(S, y)
    Z = S.astype(np.float64) - S.max(axis=0, keepdims=True)
    E = np.exp(Z)
    P = E / E.sum(axis=0, keepdims=True)
    return -(ls_targets(y, S.shape[0], eps) - P) / S.shape[1]


def ls_optimal_margin(eps: float, K: int = 10) -> float:
    """The score gap s_true - s_other at which the label-smoothed loss of one example is
    minimal (p = y_smooth): log((1-eps)(K-1)/eps); infinite for eps=0."""
    eps = _check_eps(eps)
    return float("inf") if eps == 0 else float(np.log((1.0 - eps) * (K - 1) / eps))


def ls_summary(hist_a: History, hist_b: History, labels=("no LS", "LS")) -> dict:
    """Numbers that compare two runs (e.g. without and with label smoothing) on the HARD loss.

    For each run (a dict under its label): final train_loss, test_loss and their gap
    (test - train), the minimum test loss and the update t where it occurred, the rise of the
    test loss from that minimum to the end (loss overfitting), and final train/test accuracy.
    Differences, second run minus first: d_gap, d_rise, d_test_loss, d_test_acc.
    All values are Python floats/ints; 'labels' holds the two labels.
    """
    out = {"labels": tuple(labels)}
    if len(labels) != 2:
        raise ValueError("labels must be two names, one per history")
    for lab, h in zip(labels, (hist_a, hist_b)):
        if not isinstance(h, History):
            raise ValueError(f"{lab!r}: expected a History (the second value returned by train)")
        if not h.train_loss or not h.test_loss:
            raise ValueError(f"{lab!r}: the History has no train/test losses; train with "
                             "X_test and y_test so the test curves are recorded")
        te = np.asarray(h.test_loss, dtype=np.float64)
        i = int(np.argmin(te))
        out[lab] = {"train_loss": float(h.train_loss[-1]), "test_loss": float(te[-1]),
                    "gap": float(te[-1] - h.train_loss[-1]),
                    "test_loss_min": float(te[i]), "t_min": int(h.t[i]),
                    "rise": float(te[-1] - te[i]),
                    "train_acc": float(h.train_acc[-1]), "test_acc": float(h.test_acc[-1]),
                    "eps": float(h.config.get("eps", float("nan"))) if h.config else float("nan")}
    a, b = out[labels[0]], out[labels[1]]
    out["d_gap"] = b["gap"] - a["gap"]
    out["d_rise"] = b["rise"] - a["rise"]
    out["d_test_loss"] = b["test_loss"] - a["test_loss"]
    out["d_test_acc"] = b["test_acc"] - a["test_acc"]
    return out


def ls_summary_text(summary: dict) -> str:
    """Sentences describing an ls_summary dict, generated from its numbers (nothing assumed)."""
    la, lb = summary["labels"]
    a, b = summary[la], summary[lb]

    def cmp(x, y, tol, smaller, larger):
        return "about the same as" if abs(x - y) <= tol else (smaller if x < y else larger)
    s = [f"Final train/test gap in the hard loss: {a['gap']:.3f} ({la}) vs {b['gap']:.3f} ({lb}); "
         f"{lb}'s gap is {cmp(b['gap'], a['gap'], 0.01, 'smaller than', 'larger than')} {la}'s.",
         f"The test loss rose {a['rise']:.3f} from its minimum (at update {a['t_min']}) to the end "
         f"for {la} and {b['rise']:.3f} (minimum at update {b['t_min']}) for {lb}: "
         + ("neither run overfits in the loss." if max(a['rise'], b['rise']) <= 0.01 else
            f"{lb} overfits the loss {cmp(b['rise'], a['rise'], 0.01, 'less than', 'more than')} "
            f"{la}."),
         f"Final test accuracy: {100 * a['test_acc']:.2f}% ({la}) vs {100 * b['test_acc']:.2f}% "
         f"({lb}), a difference of {100 * summary['d_test_acc']:+.2f} percentage points."]
    return "\n".join(s)


def ls_compare(data: dict, eps: float = 0.1, lam: float = 0.0025, n_train: int = 1000,
               n_test: int = 1000, arch=(4, 10, 50), n_cycles: int = 2, step: int = 50,
               seed: int = 0, callback=None) -> dict:
    """Train one small network twice, without and with label smoothing, from the same
    initialisation and mini-batch order (the widget and the tests call this).

    data: a load_dataset() dict (X_train (3072, N) float32, y_train (N,), X_test, y_test).
    Uses the first n_train training and n_test test images, arch = (f, nf, nh), a cyclic
    schedule of n_cycles cycles with the given step, batch size min(100, n_train), and
    evaluation every step//5 updates on all n_train training images.
    Returns {"eps=0": History, f"eps={eps:g}": History} (a single entry when eps == 0).
    """
    eps = _check_eps(eps)
    _check_data(data)
    N, Nt = data["X_train"].shape[1], data["X_test"].shape[1]
    if not 1 <= n_train <= N or not 1 <= n_test <= Nt:
        raise ValueError(f"need 1 <= n_train <= {N} and 1 <= n_test <= {Nt}; got "
                         f"n_train={n_train}, n_test={n_test}")
    f, nf, nh = arch
    base = TrainConfig(n_cycles=n_cycles, step=step, lam=lam, batch_size=min(100, n_train),
                       eval_every=max(1, step // 5), eval_train_n=n_train, seed=seed,
                       progress=False)
    name = data.get("name", "")
    out = {}
    for e in ((0.0,) if eps == 0 else (0.0, eps)):
        params0 = init_params(f, nf, nh, seed=seed, dtype=data["X_train"].dtype)
        _, hist = train(params0, data["X_train"][:, :n_train], data["y_train"][:n_train],
                        dataclasses.replace(base, eps=e), data["X_test"][:, :n_test],
                        data["y_test"][:n_test], data_name=name, callback=callback)
        out[f"eps={e:g}"] = hist
    return out


def _check_probs(P: np.ndarray, y: np.ndarray) -> tuple:
    P, y = _check_scores_labels(P, y, "P")
    if P.size and (P.min() < 0 or not np.allclose(P.sum(axis=0), 1.0, atol=1e-3)):
        raise ValueError("P must hold class probabilities, (K, n) with columns summing to 1; "
                         "if you have scores S, pass softmax(S) (e.g. predict(params, X))")
    return P, y


def reliability(P: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Confidence-binned statistics for a reliability diagram.

    P: (K, n) float class probabilities (columns sum to 1);  y: (n,) int labels.
    The confidence of a prediction is max_k P[k, i]; it goes to bin b when
    edges[b] < conf <= edges[b+1] (bin 0 also takes conf = 0), edges = linspace(0, 1, n_bins+1).
    Returns edges (n_bins+1,) float64, count (n_bins,) int64, frac (n_bins,) float64
    (= count / n), conf (n_bins,) float64 mean confidence and acc (n_bins,) float64 accuracy
    per bin (NaN for empty bins), and the per-sample confidence (n,) and correct (n,) bool.
    """
    P, y = _check_probs(P, y)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    n_bins = int(n_bins)
    conf = P.max(axis=0).astype(np.float64)
    correct = P.argmax(axis=0) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mconf = np.bincount(b, weights=conf, minlength=n_bins) / count
        macc = np.bincount(b, weights=correct.astype(np.float64), minlength=n_bins) / count
    return {"edges": edges, "count": count, "frac": count / max(1, conf.size),
            "conf": mconf, "acc": macc, "confidence": conf, "correct": correct}


def ece(P: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of (count_b / n) * |acc_b - conf_b|, with the
    bins of ``reliability``. P: (K, n) float probabilities (columns sum to 1), y: (n,) int
    labels -> Python float in [0, 1]."""
    r = reliability(P, y, n_bins)
    used = r["count"] > 0
    return float(np.sum(r["frac"][used] * np.abs(r["acc"][used] - r["conf"][used])))


def plot_ls_losses(runs: dict, title: str = "hard-label cross-entropy", name: str | None = None,
                   data: str = ""):
    """One panel per run (e.g. {"no LS": hist_a, "LS eps=0.1": hist_b}), side by side with a
    shared y axis: train loss (solid) and test loss (dashed) against the HARD labels, with the
    test loss's minimum marked. Saves figures/<name>.png when ``name`` is given."""
    if not runs:
        raise ValueError("runs must map at least one label to a History")
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.8 * len(runs), 3.6), sharey=True,
                             squeeze=False)
    for ax, (label, h) in zip(axes[0], runs.items()):
        ax.plot(h.t, h.train_loss, "-", color="tab:blue", label="train")
        if h.test_loss:
            ax.plot(h.t, h.test_loss, "--", color="tab:orange", label="test")
            i = int(np.argmin(h.test_loss))
            ax.plot(h.t[i], h.test_loss[i], "o", color="tab:orange", ms=5, label="test minimum")
        ax.set_title(label)
        ax.set_xlabel("update step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (hard labels)")
    axes[0][0].legend(fontsize=8)
    return _finish_fig(fig, title, data or next(iter(runs.values())).data, name)


def plot_reliability(runs: dict, n_bins: int = 15, name: str | None = None, data: str = ""):
    """Reliability diagram (accuracy vs mean confidence per bin, with the diagonal of perfect
    calibration) and the confidence histogram (fraction of test images per bin), one colour
    per run. runs: {label: (P (K, n) float probabilities, y (n,) int labels)}. The legend shows
    each run's ECE. Saves figures/<name>.png when ``name`` is given. Returns the figure."""
    if not runs:
        raise ValueError("runs must map at least one label to a (P, y) pair")
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    width = 1.0 / n_bins / (len(runs) + 0.5)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (label, (P, y)) in enumerate(runs.items()):
        r = reliability(P, y, n_bins)
        c = colors[j % len(colors)]
        used = r["count"] > 0
        e = ece(P, y, n_bins)
        ax1.plot(r["conf"][used], r["acc"][used], "o-", color=c, ms=4,
                 label=f"{label} (ECE {e:.3f})")
        ax2.bar(r["edges"][:-1] + (j + 0.25) * width, r["frac"], width=width, align="edge",
                color=c, alpha=0.8, label=f"{label} (mean conf {r['confidence'].mean():.2f})")
    ax1.set_xlabel("confidence (max p)")
    ax1.set_ylabel("accuracy")
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1)
    ax1.set_title("reliability diagram")
    ax2.set_xlabel("confidence (max p)")
    ax2.set_ylabel("fraction of images")
    ax2.set_xlim(0, 1)
    ax2.set_title("confidence histogram")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    tag = data_label(data)
    fig.suptitle(f"calibration on the test set - {tag}" if tag else "calibration on the test set")
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig
# (end of notebook 04 helpers)

# ---- notebook 05 helpers (widgets call these; tests call them too) ----
# Exercise 5.1: one-factor-at-a-time ablations, the best recipe, and seeds. Every run trains on
# X_train and is *monitored and compared on the validation split*; the test split is scored
# once per final model, at the end (the assignment allows test-as-validation; we do not need to).

def recipe_arch(recipe: dict) -> dict:
    """The architecture part of a recipe/arch dict: {'f', 'nf', 'nh'} (init_params's arguments)."""
    missing = [k for k in ("f", "nf", "nh") if k not in recipe]
    if missing:
        raise ValueError(f"an architecture needs keys f, nf, nh; {missing} missing from {sorted(recipe)}")
    return {k: recipe[k] for k in ("f", "nf", "nh")}


def _val_split(data: dict):
    """(X_val, y_val), or (None, None) when the data has no validation images."""
    Xv = data.get("X_val")
    if Xv is None or Xv.shape[1] == 0:
        return None, None
    return Xv, data["y_val"]


def train_recipe(arch: dict, cfg: TrainConfig, data: dict, seed: int = 0, label: str = "recipe",
                 score_test: bool = True, callback=None):
    """Train one model of architecture ``arch`` with ``cfg`` (its seed replaced by ``seed``).

    arch: {'f', 'nf', 'nh'} (ints, or tuples for multi-size filters);  data: load_dataset's dict,
    whose X_train (3072, n) float, y_train (n,) int are trained on, X_val/y_val are the monitored
    ('test_*' curves of the History) and compared split, and X_test/y_test (3072, m)/(m,) are
    scored once at the end when ``score_test`` (with cfg.tta).
    Returns (params, history, row): row = result_row(...) plus val_acc, test_acc (None when not
    scored), seed and eval_split='val'. The history's test_* lists are VALIDATION metrics.
    """
    arch = recipe_arch(arch)
    cfg = dataclasses.replace(cfg, seed=int(seed))
    params = init_params(**arch, seed=int(seed), dtype=data["X_train"].dtype)
    Xv, yv = _val_split(data)
    params, hist = train(params, data["X_train"], data["y_train"], cfg, Xv, yv,
                         data_name=data.get("name", ""), callback=callback)
    row = result_row(label, params, cfg, hist)
    row["val_acc"] = row.pop("test_acc") if Xv is not None else None
    row.pop("test_loss", None)
    row["test_acc"] = None
    if score_test and data.get("X_test") is not None and data["X_test"].shape[1] > 0:
        t0 = time.perf_counter()
        with _blas_threads(_eval_threads(cfg)):
            te = evaluate(params, mx_for(params, data["X_test"]), np.asarray(data["y_test"]).ravel(),
                          tta=cfg.tta)
        row["test_acc"] = te["acc"]
        row["time_test_s"] = round(time.perf_counter() - t0, 3)
    row.update(seed=int(seed), eval_split="val", dropout=cfg.dropout, flip=cfg.flip,
               translate=cfg.translate, eta_decay=cfg.eta_decay, tta=cfg.tta)
    return params, hist, row


def run_ablation(base_arch: dict, base_cfg: TrainConfig, variants: dict, data: dict,
                 seed: int = 0, include_base: bool = True, verbose: bool = True) -> list:
    """One-factor-at-a-time ablation: the base run plus one run per variant, all with ``seed``.

    base_arch: {'f', 'nf', 'nh'};  base_cfg: TrainConfig;  variants: {name: (arch_overrides,
    cfg_overrides)} with dicts that replace keys of base_arch / fields of base_cfg, e.g.
    {'flip': ({}, {'flip': True}), 'multi-size': ({'f': (4, 8), 'nf': (40, 40)}, {})}.
    data: load_dataset's dict (trained on X_train, compared on X_val; the test split is NOT used).
    Returns a list of rows (dicts, see train_recipe) with 'run' = 'base' or the variant name,
    'val_acc', and 'delta_pp' = its val accuracy minus the base's, in percentage points.
    """
    if not isinstance(variants, dict):
        raise ValueError("variants must be a dict {name: (arch_overrides, cfg_overrides)}")
    if _val_split(data)[0] is None:
        raise ValueError("run_ablation compares runs on data['X_val']; load the data with n_val > 0")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    runs = [("base", {}, {})] if include_base else []
    for name, spec in variants.items():
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2
                and all(isinstance(s, dict) for s in spec)):
            raise ValueError(f"variant {name!r} must be a pair (arch_overrides: dict, cfg_overrides: dict)")
        a_over, c_over = spec
        bad = set(a_over) - {"f", "nf", "nh"} or set(c_over) - fields
        if bad:
            raise ValueError(f"variant {name!r} overrides unknown keys {sorted(bad)}; architecture keys "
                             f"are f, nf, nh and config keys are TrainConfig fields")
        runs.append((str(name), a_over, c_over))
    rows, base_acc = [], None
    for name, a_over, c_over in runs:
        arch = {**recipe_arch(base_arch), **a_over}
        cfg = dataclasses.replace(base_cfg, **c_over)
        _, hist, row = train_recipe(arch, cfg, data, seed=seed, label=name, score_test=False)
        if name == "base":
            base_acc = row["val_acc"]
        rows.append(row)
        if verbose:
            print(f"{name:>24s}: val acc {100 * row['val_acc']:.2f}%  "
                  f"({row['updates']} updates, {row['time_train_s']:.1f} s)")
    for r in rows:
        r["delta_pp"] = None if base_acc is None else round(100 * (r["val_acc"] - base_acc), 2)
    return rows


def ablation_setup(fast: bool | None = None):
    """The notebook's ablation: (base_arch, base_cfg, variants) for run_ablation.

    Full mode: f=4, nf=40, nh=300 (Exercise 4's architecture 5), 2 fixed cycles of step 800,
    lam=0.003, no label smoothing. Fast mode (``fast`` defaults to is_fast()): a tiny network and
    for_mode's shrunken schedule, so all runs take seconds (their numbers mean nothing).
    Variants change one factor each: flip, translate 2 px, dropout 0.3, 2x wider, filters of
    sizes (4, 8), label smoothing 0.1 with lam 0.001, eta_max decay 0.5, flip TTA.
    """
    fast = is_fast() if fast is None else fast
    arch = dict(f=4, nf=8, nh=32) if fast else dict(f=4, nf=40, nh=300)
    cfg = TrainConfig(n_cycles=2, step=800, lam=0.003, eps=0.0, eval_every=800, eval_train_n=2000)
    if fast:
        cfg = dataclasses.replace(cfg, step=20, eval_every=None, eval_train_n=500, progress=False)
    nf, nh = arch["nf"], arch["nh"]
    variants = {
        "flip": ({}, {"flip": True}),
        "translate 2px": ({}, {"translate": 2}),
        "dropout 0.3": ({}, {"dropout": 0.3}),
        "wider 2x": ({"nf": 2 * nf, "nh": 2 * nh}, {}),
        "multi-size f=(4,8)": ({"f": (4, 8), "nf": (nf, nf)}, {}),
        "LS 0.1 + lam 0.001": ({}, {"eps": 0.1, "lam": 0.001}),
        "eta decay 0.5": ({}, {"eta_decay": 0.5}),
        "TTA flip": ({}, {"tta": True}),
    }
    return arch, cfg, variants


# The recipe we propose for >= 73% on CIFAR-10 within ~15 min on 2 CPU cores. NOT verified on
# CIFAR-10 here (only on the synthetic stand-in): each choice is a hypothesis, see notebook 05.
BEST_RECIPE = dict(
    f=4, nf=100, nh=800,
    cfg=TrainConfig(n_cycles=4, step=400, increasing=True, eta_min=1e-5, eta_max=0.1,
                    eta_decay=0.8, batch_size=100, lam=0.0015, eps=0.1, flip=True, translate=2,
                    dropout=0.3, tta=True, eval_every=400, eval_train_n=2000),
)


def recipe_for_mode(recipe: dict | None = None, fast: bool | None = None) -> dict:
    """The recipe to run now: unchanged normally; in fast mode (``fast`` defaults to is_fast())
    a tiny stand-in with the same options (nf/8, nh/16, 2 cycles, for_mode's short steps)."""
    recipe = BEST_RECIPE if recipe is None else recipe
    cfg = recipe["cfg"]
    fast = is_fast() if fast is None else fast
    if not fast:
        return dict(recipe)
    nf = recipe["nf"]
    nf = tuple(max(4, n // 8) for n in nf) if isinstance(nf, (tuple, list)) else max(4, nf // 8)
    cfg = dataclasses.replace(cfg, n_cycles=min(cfg.n_cycles, 2), step=max(10, cfg.step // 40),
                              eval_every=None, eval_train_n=min(cfg.eval_train_n, 500),
                              progress=False)
    return dict(f=recipe["f"], nf=nf, nh=max(16, recipe["nh"] // 16), cfg=cfg)


def time_per_update(arch: dict, cfg: TrainConfig, data: dict, n: int = 20, seed: int = 0) -> float:
    """Seconds per SGD update of ``arch`` trained with ``cfg``'s options (augmentation, dropout,
    batch size, threads): the mean update time of a short ``train`` run of about ``n`` updates
    on data['X_train'] (evaluation excluded). Multiply by cfg.n_updates for a training-time
    estimate."""
    cfg = cfg.validate()
    if cfg.batch_size > data["X_train"].shape[1]:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set")
    short = dataclasses.replace(cfg, n_cycles=1, step=max(1, (int(n) + 1) // 2), increasing=False,
                                eval_every=10 ** 9, eval_train_n=cfg.batch_size, seed=seed,
                                progress=False)
    params = init_params(**recipe_arch(arch), seed=seed, dtype=data["X_train"].dtype)
    _, hist = train(params, data["X_train"], data["y_train"], short)
    return hist.time_train / max(1, hist.updates_done)


def ablation_time_estimate(base_arch: dict, base_cfg: TrainConfig, variants: dict, data: dict,
                           n: int = 10) -> dict:
    """Estimated training seconds of every run_ablation run (evaluation not included):
    {'base': s, name: s, ...} = time_per_update(arch, cfg, data, n) * cfg.n_updates."""
    out = {"base": time_per_update(base_arch, base_cfg, data, n) * base_cfg.n_updates}
    for name, (a_over, c_over) in variants.items():
        cfg = dataclasses.replace(base_cfg, **c_over)
        out[name] = time_per_update({**recipe_arch(base_arch), **a_over}, cfg, data, n) * cfg.n_updates
    return out


def run_seeds(arch: dict, cfg: TrainConfig, data: dict, seeds=(0, 1, 2), label: str = "recipe",
              reuse: dict | None = None) -> dict:
    """Train the same recipe once per seed (init + data order + augmentation + dropout).

    reuse: {seed: row} of runs already done with exactly this arch/cfg/data (e.g. train_recipe's
    row for seed 0), which are not retrained.
    Returns {'rows': [row per seed] (see train_recipe), 'val_mean', 'val_std', 'test_mean',
    'test_std'} with accuracies in [0, 1] and std the sample std (ddof=1; 0 for one seed)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    reuse = reuse or {}
    rows = [reuse[s] if s in reuse else
            train_recipe(arch, cfg, data, seed=s, label=f"{label} seed {s}")[2] for s in seeds]
    out = {"rows": rows}
    for k in ("val", "test"):
        v = np.array([r[k + "_acc"] for r in rows if r.get(k + "_acc") is not None], float)
        out[k + "_mean"] = float(v.mean()) if v.size else None
        out[k + "_std"] = float(v.std(ddof=1)) if v.size > 1 else (0.0 if v.size else None)
    return out


def train_best_recipe(seed: int = 0, source: str = "cifar10", recipe: dict | None = None,
                      checkpoint: bool = True) -> dict:
    """The one-command reproduction of the bonus recipe (Exercise 5.1) on the FULL data:
    49,000 training / 1,000 validation / 10,000 test images of ``source`` ('cifar10' needs
    $CIFAR10_DIR or data/cifar-10-batches-py, or downloads it). Prints the estimated and the
    measured training time, validation and test accuracy, saves data/best_recipe_seed{seed}.npz
    when ``checkpoint``, and returns the result row (see train_recipe)."""
    recipe = BEST_RECIPE if recipe is None else recipe
    data = load_dataset(source=source, n_train=49000, n_val=1000, n_test=10000)
    arch, cfg = recipe_arch(recipe), recipe["cfg"]
    tpu = time_per_update(arch, cfg, data)
    print(f"{data['name']}: {arch}, {cfg.n_updates} updates x {1000 * tpu:.0f} ms "
          f"= about {cfg.n_updates * tpu / 60:.1f} min of training (plus evaluation)")
    params, hist, row = train_recipe(arch, cfg, data, seed=seed, label=f"best recipe seed {seed}")
    print(f"{data['name']}: val acc {100 * row['val_acc']:.2f}%, TEST acc {100 * row['test_acc']:.2f}% "
          f"(train {row['time_train_s'] / 60:.1f} min, eval {row['time_eval_s']:.0f} s)")
    if checkpoint:
        save_checkpoint(DATA_DIR / f"best_recipe_seed{seed}.npz", params, dataclasses.replace(cfg, seed=seed), hist)
    return row


def plot_ablation(rows: list, name: str | None = None, data: str = ""):
    """Bar chart of the ablation's validation accuracy (%) per run, with the base as a line."""
    labels = [r["run"] for r in rows]
    vals = [100 * r["val_acc"] for r in rows]
    fig = bar_chart(labels, vals, "validation accuracy (%)", "ablation (one factor at a time)",
                    fmt="{:.1f}", data=data or (rows[0].get("data", "") if rows else ""))
    ax = fig.axes[0]
    base = [100 * r["val_acc"] for r in rows if r["run"] == "base"]
    if base:
        ax.axhline(base[0], color="k", ls="--", lw=1, label="base")
        ax.legend(fontsize=8)
    lo = min(vals)
    ax.set_ylim(max(0.0, lo - 5), max(vals) + 3)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def plot_speed_ratio(rows: list, name: str | None = None, title: str = ""):
    """Speed-up of NumPy over torch per (f, nf): torch seconds / numpy seconds against nf, one
    line per filter size f (> 1 means our NumPy code is faster). rows: dicts with keys f, nf,
    numpy_s, torch_s (rows without a torch time are skipped)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    fs = sorted({r["f"] for r in rows if r.get("torch_s")})
    for f in fs:
        rs = sorted((r for r in rows if r["f"] == f and r.get("torch_s")), key=lambda r: r["nf"])
        ax.plot([r["nf"] for r in rs], [r["torch_s"] / r["numpy_s"] for r in rs], "o-", label=f"f={f}")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xscale("log", base=2)
    nfs = sorted({r["nf"] for r in rows if r.get("torch_s")})
    if nfs:
        ax.set_xticks(nfs, [str(v) for v in nfs])
        ax.minorticks_off()
    ax.set_xlabel("number of filters nf")
    ax.set_ylabel("torch time / numpy time")
    ax.set_title(title or "training speed: > 1 means NumPy is faster")
    ax.grid(alpha=0.3)
    if fs:
        ax.legend(fontsize=8)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig
# (end of notebook 05 helpers)


# =====================================================================================
# 5. plots
# =====================================================================================

def _plt():
    import matplotlib
    if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower() \
            and "ipykernel" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def save_fig(fig, name: str) -> Path:
    """Save ``fig`` as <fig_dir()>/<name>.png (folder created) and return the path."""
    d = fig_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / (name if name.endswith(".png") else name + ".png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _finish_fig(fig, title: str, data: str, name: str | None):
    """Title the figure with its data label (SYNTHETIC / FAST MODE), lay it out, save it."""
    tag = data_label(data)
    fig.suptitle(f"{title} - {tag}" if tag else title)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def data_label(name: str = "") -> str:
    """A title suffix that never lets synthetic or fast-mode numbers pass as CIFAR-10."""
    tag = name or ""
    if is_fast() and "FAST" not in tag.upper():
        tag = (tag + " [FAST MODE]").strip()
    return tag


def plot_history(runs, metrics=("loss", "cost", "acc"), title: str = "", name: str | None = None,
                 data: str = ""):
    """Training curves, train (solid) vs test (dashed), one panel per metric.

    runs: a History or a dict {label: History}. metrics from loss, loss_ls, cost, acc.
    Saves figures/<name>.png when ``name`` is given. Returns the figure.
    """
    plt = _plt()
    if isinstance(runs, History):
        runs = {"": runs}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes[0], metrics):
        for j, (label, h) in enumerate(runs.items()):
            c = colors[j % len(colors)]
            lab = f"{label} " if label else ""
            ax.plot(h.t, getattr(h, "train_" + m), "-", color=c, label=lab + "train")
            if getattr(h, "test_" + m):
                ax.plot(h.t, getattr(h, "test_" + m), "--", color=c, label=lab + "test")
        ax.set_xlabel("update step")
        ax.set_ylabel({"acc": "accuracy", "loss_ls": "loss (smoothed targets)"}.get(m, m))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _finish_fig(fig, title, data or next(iter(runs.values())).data, name)


def plot_eta(cfg: TrainConfig, name: str | None = None):
    """The learning-rate schedule of ``cfg`` against the update step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(cfg.etas())
    ax.set_xlabel("update step")
    ax.set_ylabel("eta")
    ax.set_title(f"cyclic learning rate ({'doubling' if cfg.increasing else 'fixed'} cycles, "
                 f"step {cfg.step}, {cfg.n_cycles} cycles)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def bar_chart(labels, values, ylabel: str, title: str, name: str | None = None,
              fmt: str = "{:.3g}", data: str = ""):
    """A labelled bar chart (e.g. final test accuracy or training time per architecture)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 2, 3.6))
    bars = ax.bar([str(x) for x in labels], values, color="tab:blue")
    for b, v in zip(bars, values):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    tag = data_label(data)
    ax.set_title(f"{title} - {tag}" if tag else title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig
