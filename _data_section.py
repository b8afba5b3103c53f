"""Data section of helpers.py (kept in its own file during development)."""
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "CIFAR10_URL", "CIFAR10_MD5", "CIFAR10_LABELS", "CIFAR10_FILES", "SYNTHETIC_LABELS",
    "SYNTHETIC_VERSION", "FAST_SIZES", "DownloadError",
    "md5_file", "download_file", "safe_extract", "cifar10_dir", "cifar10_available",
    "load_cifar10", "fetch_cifar10_or_explain", "make_synthetic", "one_hot", "mean_std",
    "normalise", "load_dataset",
]

# TODO(merge): helpers.py already defines these two; dedupe when this file is inlined.
DATA_DIR = Path(__file__).resolve().parent / "data"


def is_fast() -> bool:
    """True when WORKBOOK_FAST is set to 1/true/yes/on (CI sets it): small data, few updates."""
    return os.environ.get("WORKBOOK_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


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
