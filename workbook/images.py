"""An image-folder data source: ``train/<class>/*`` and ``test/<class>/*`` (torchvision's
ImageFolder layout) read into the same dict as the CIFAR-10 batch loader.

    folder/
        train/<class>/<anything>.png|.jpg|.jpeg     32x32 images, any Pillow mode
        test/<class>/<anything>.png|.jpg|.jpeg      the same class folders as train/

Extensions are matched case-insensitively; hidden files and folders (".DS_Store",
".ipynb_checkpoints") and files with other extensions are skipped; sub-folders inside a class
folder are not searched. Class names are the folder names, sorted, except that CIFAR-10's ten
names get CIFAR-10's label order (airplane=0 ... truck=9), so a CIFAR-10 copy has the official
labels.

    load_image_folder(folder)   -> dict like the CIFAR-10 loader's, plus "name"
    image_folder_label(folder)  -> "CIFAR-10 (JPEG q75 copy)", "my-images (image folder)", ...
    is_image_folder(path)       -> bool, a cheap layout check (nothing decoded)

Every problem with the folder raises ImageFolderError (a ValueError) saying what is wrong and
what to do. The decoded images are cached as uint8 in an .npz (see load_image_folder).

Decoding is serial: a 32x32 image is mostly Python overhead in Pillow (open, header parsing),
not GIL-free pixel decoding, and a thread pool measured no faster (about 135 us/image either
way with 1, 2 or 4 threads on a 2-core machine), so it is not used.
"""
from __future__ import annotations

import hashlib
import operator
import os
import secrets
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from . import config

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
SIDE = 32                 # the workbook's networks take 32x32x3 images (3072 values)
CACHE_FORMAT = 1          # bump when the cache's content or layout changes
_MAX_LISTED = 10          # problems listed by name in one error message

# The IJG (libjpeg) standard luminance quantization table at quality 50, natural (row-major)
# order, which is the order recent Pillow's ``im.quantization`` uses (older Pillow gave the
# file's zigzag order; estimate_jpeg_quality accepts either).
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
# _ZIGZAG[k] = natural index of the k-th entry in JPEG's zigzag order
_ZIGZAG = np.array(sorted(range(64), key=lambda i: (i // 8 + i % 8,
                                                   i // 8 if (i // 8 + i % 8) % 2 else i % 8)))


class ImageFolderError(ValueError):
    """The image folder is not usable as it is; the message says what is wrong and what to do."""


# ------------------------------------------------------------------------------ layout
def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _class_dirs(split_dir: Path) -> list[str]:
    """Names of the non-hidden sub-folders of split_dir (unsorted); [] if it is no folder."""
    if not split_dir.is_dir():
        return []
    with os.scandir(split_dir) as it:
        return [e.name for e in it if e.is_dir() and not _is_hidden(e.name)]


def _order_classes(names) -> list[str]:
    """CIFAR-10's label order when the names are exactly CIFAR-10's ten, else sorted.

    (CIFAR-10's order happens to be alphabetical, so this only makes the intent explicit and
    stays right if the sort rule here ever changes.)"""
    names = set(names)
    return list(CIFAR10_NAMES) if names == set(CIFAR10_NAMES) else sorted(names)


def _scan(folder: Path) -> tuple[list[str], dict]:
    """Check the whole layout (nothing decoded) and list the images.

    Returns ``(label_names, files)``: label_names list[str] of K >= 2 class names in label
    order; files {"train": [(Path, label), ...], "test": [...]}, sorted by class (label order),
    then by file name. Raises ImageFolderError for any layout problem.
    """
    how = ("Lay it out as train/<class>/*.png|.jpg|.jpeg and test/<class>/*.png|.jpg|.jpeg "
           "(one folder per class, the same classes in both).")
    if not folder.is_dir():
        raise ImageFolderError(f"image folder {folder} does not exist or is not a folder. {how}")
    classes = {}
    for split in SPLITS:
        if not (folder / split).is_dir():
            raise ImageFolderError(f"image folder {folder} has no {split}/ sub-folder. {how}")
        classes[split] = set(_class_dirs(folder / split))
        if not classes[split]:
            raise ImageFolderError(f"{folder / split} holds no class folders. {how}")
    if classes["train"] != classes["test"]:
        parts = [f"missing in {s}/: {', '.join(sorted(classes[o] - classes[s]))}"
                 for s, o in (("test", "train"), ("train", "test")) if classes[o] - classes[s]]
        raise ImageFolderError(
            f"train/ and test/ of {folder} must hold the same class folders; "
            f"{'; '.join(parts)}. Add the missing class folders (with images) or remove the "
            f"extra ones.")
    names = _order_classes(classes["train"])
    if len(names) < 2:
        raise ImageFolderError(f"{folder} has only one class ({names[0]}); a classifier needs at "
                               f"least 2 class folders in train/ and test/.")
    files, empty = {}, []
    for split in SPLITS:
        files[split] = []
        for label, name in enumerate(names):
            class_dir = folder / split / name
            with os.scandir(class_dir) as it:
                entries = [e.name for e in it if e.is_file() and not _is_hidden(e.name)]
            images = sorted(n for n in entries if n.lower().endswith(IMAGE_EXTENSIONS))
            if not images:
                other = sorted(set(entries) - set(images))
                note = f" (it holds {len(other)} other file(s), e.g. {other[0]})" if other else ""
                empty.append(f"{split}/{name}{note}")
            files[split] += [(class_dir / n, label) for n in images]
    if empty:
        raise ImageFolderError(
            f"{len(empty)} class folder(s) of {folder} hold no .png/.jpg/.jpeg images: "
            f"{'; '.join(empty)}. Every class needs images in both train/ and test/: add "
            f"some, or remove that class folder from both.")
    return names, files


def is_image_folder(path) -> bool:
    """True when ``path`` has train/ and test/ sub-folders that both hold class folders.

    A cheap check (two directory listings, nothing decoded, never raises); load_image_folder
    validates the rest.
    """
    try:
        p = Path(path)
        return all(_class_dirs(p / split) for split in SPLITS)
    except (OSError, TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------- label
def _ijg_table(quality: int) -> np.ndarray:
    """(64,) int64: the IJG luminance table scaled as libjpeg's jpeg_set_quality does."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMINANCE * scale + 50) // 100, 1, 255)


def estimate_jpeg_quality(luminance_table) -> int:
    """The libjpeg quality 1..100 whose scaled IJG luminance table is closest (L1) to the given
    64-entry table (Pillow's ``im.quantization[0]``, in natural or zigzag order)."""
    table = np.asarray(list(luminance_table), dtype=np.int64)
    if table.shape != (64,):
        raise ValueError(f"a JPEG quantization table has 64 entries, got shape {table.shape}")
    errors = [min(np.abs(ref - table).sum(), np.abs(ref[_ZIGZAG] - table).sum())
              for ref in (_ijg_table(q) for q in range(1, 101))]
    return int(np.argmin(errors)) + 1


def _label(folder: Path, names: list[str], first_image: Path) -> str:
    """The data label: what the images are, for every printout and figure title."""
    if set(names) != set(CIFAR10_NAMES):
        return f"{folder.name} (image folder)"
    try:
        with Image.open(first_image) as im:
            fmt = im.format or "image"
            if fmt == "JPEG" and getattr(im, "quantization", None):
                return f"CIFAR-10 (JPEG q{estimate_jpeg_quality(im.quantization[0])} copy)"
    except Exception as exc:   # Pillow raises many types for a bad file
        raise ImageFolderError(f"cannot read image {first_image} ({exc}); replace or delete "
                               f"it.") from exc
    return f"CIFAR-10 ({fmt} copy)"


def image_folder_label(folder) -> str:
    """The data label for an image folder, e.g. "CIFAR-10 (JPEG q75 copy)".

    CIFAR-10's ten classes as JPEG: the quality estimated from the first image's quantization
    table (first file of train/airplane), "CIFAR-10 (JPEG q<Q> copy)"; as PNG "CIFAR-10 (PNG
    copy)"; any other classes: "<folder name> (image folder)". Validates the layout first.
    """
    folder = Path(folder).resolve()
    names, files = _scan(folder)
    return _label(folder, names, files["train"][0][0])


# ------------------------------------------------------------------------------ decode
def _decode(path: Path) -> np.ndarray:
    """(3072,) uint8: one image in CIFAR-10's layout (R plane 32x32 row-major, then G, then B).

    The size is checked from the header, before the pixels are decoded. Raises
    ImageFolderError naming the file for a wrong size or an undecodable/truncated file.
    """
    try:
        with Image.open(path) as im:
            if im.size != (SIDE, SIDE):
                raise ImageFolderError(f"{path} is {im.size[0]}x{im.size[1]}")
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            return np.asarray(rgb).transpose(2, 0, 1).reshape(3 * SIDE * SIDE)
    except ImageFolderError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageFolderError(f"{path} is far larger than 32x32 ({exc})") from exc
    except Exception as exc:   # UnidentifiedImageError, OSError (truncated), SyntaxError, ...
        raise ImageFolderError(f"{path} cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _decode_all(items: list, progress: bool, desc: str, rows: np.ndarray,
                dest: np.ndarray) -> list[str]:
    """Decode items[i] = (path, label) into rows[dest[i]]; rows (n, 3072) uint8.

    Every file is tried; returns the problems (one message per bad file, [] if none).
    """
    from tqdm.auto import tqdm
    bad = []
    with tqdm(total=len(items), desc=desc, unit="img", disable=not progress,
              mininterval=0.5) as bar:
        for i, (path, _) in enumerate(items):
            try:
                rows[dest[i]] = _decode(path)
            except ImageFolderError as exc:
                bad.append(str(exc))
            if i % 256 == 255:
                bar.update(256)
        bar.update(len(items) - bar.n)
    return bad


def _raise_bad(bad: list[str]) -> None:
    """One ImageFolderError listing the first bad files (wrong size or undecodable), if any."""
    if bad:
        listed = "\n  ".join(bad[:_MAX_LISTED])
        more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise ImageFolderError(
            f"{len(bad)} image(s) cannot be used:\n  {listed}{more}\nThe workbook's networks "
            f"need 32x32 RGB images: resize images of another size to 32x32 first (e.g. "
            f"Pillow's Image.resize), and replace or delete files that cannot be decoded.")


# ------------------------------------------------------------------------------- cache
def _cache_key(folder: Path, files: dict, names: list[str], seed: int) -> str:
    """sha256 hex of the format version, seed, class order and every image's relative path,
    size and mtime (ns): any added, removed, changed or touched image gives a new key."""
    h = hashlib.sha256(f"image-folder-cache v{CACHE_FORMAT}\nseed={seed}\n"
                       f"classes={names!r}\n".encode())
    start = len(str(folder).rstrip(os.sep)) + 1     # paths are <resolved folder>/split/class/file
    for split in SPLITS:
        for path, _ in files[split]:
            path = str(path)                  # plain strings: 3x faster than pathlib here
            st = os.stat(path)
            rel = path[start:].replace(os.sep, "/")
            h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _cache_path(cache_dir: Path, folder: Path, seed: int, key: str) -> Path:
    """cache_dir/imagefolder_<name>_<path hash>_seed<seed>_<key>.npz (one folder, one seed:
    one prefix, so stale caches of the same folder and seed can be found and deleted)."""
    where = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in folder.name)
    return cache_dir / f"imagefolder_{safe or 'root'}_{where}_seed{seed}_{key[:20]}.npz"


def _read_cache(path: Path, key: str, names: list[str], n: dict):
    """The cached (rows_train, y_train, rows_test, y_test), or None when the file is missing,
    unreadable, corrupt or not for this key (never raises)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or z["label_names"].tolist() != names:
                return None
            out = tuple(z[k] for k in ("X_train", "y_train", "X_test", "y_test"))
        for split, (X, y) in zip(SPLITS, (out[:2], out[2:])):
            if (X.dtype != np.uint8 or X.shape != (n[split], 3 * SIDE * SIDE)
                    or y.dtype != np.int64 or y.shape != (n[split],)
                    or (y.size and not 0 <= y.min() <= y.max() < len(names))):
                return None
        return out
    except Exception:   # BadZipFile, OSError, KeyError, ValueError, EOFError, ...
        return None


def _write_cache(path: Path, arrays: dict) -> None:
    """Write the .npz atomically (temp file in the same folder, then os.replace), then delete
    stale caches of the same folder and seed. On failure: warn (the data is still returned)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        with open(tmp, "xb") as fh:       # a new file, with the umask's permissions
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        tmp = None
    except Exception as exc:
        warnings.warn(f"could not write the image cache {path} ({exc}); the data is returned "
                      f"anyway, but the next load decodes every image again. Pass a writable "
                      f"cache_dir= to load_image_folder.", RuntimeWarning, stacklevel=3)
        return
    finally:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
    prefix = path.name[: path.name.rindex("_") + 1]
    for old in path.parent.glob(prefix + "*.npz"):
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass


# -------------------------------------------------------------------------------- load
def load_image_folder(folder, *, cache_dir=None, seed: int = 0, progress: bool = True) -> dict:
    """Load train/<class>/* and test/<class>/* into the CIFAR-10 loader's dict.

    folder     the image folder (see the module docstring for its layout)
    cache_dir  where the uint8 cache goes: None = workbook.config.DATA_DIR (data/), or any
               folder; False = no cache (always decode)
    seed       the fixed shuffle: np.random.default_rng(seed).permutation of train, then of
               test, so the validation split (the LAST images of train) mixes every class
    progress   a tqdm progress bar while decoding

    Returns a dict (N = n_train images in train/, M = n_test in test/, K classes):
        X_train      (3072, N) uint8   column i = image i: R plane 32x32 row-major, then G,
                                       then B (CIFAR-10's official layout); each column is
                                       contiguous (the array is the transpose of (N, 3072) rows)
        y_train      (N,) int64        labels 0..K-1, in the shuffled order
        X_test       (3072, M) uint8   as X_train
        y_test       (M,) int64
        label_names  list[str]         K class names; CIFAR-10's order for CIFAR-10's names
        folder       Path              the resolved image folder
        name         str               image_folder_label(folder), e.g. "CIFAR-10 (JPEG q75 copy)"

    The whole layout is validated before anything is decoded; every image must be 32x32
    (grayscale, palette and RGBA images are converted to RGB). Any problem raises
    ImageFolderError. The cache, an uncompressed .npz (about 185 MB for CIFAR-10), is keyed by
    a hash of the sorted relative file list, sizes, mtimes (ns), the seed and CACHE_FORMAT: a
    changed folder is decoded again and the stale cache replaced; an unreadable cache is
    rebuilt; a cache folder that cannot be written only warns.
    """
    folder = Path(folder).resolve()
    seed = operator.index(seed)
    rng = np.random.default_rng(seed)        # raises for a negative seed, before any work
    names, files = _scan(folder)
    n = {split: len(files[split]) for split in SPLITS}
    label = _label(folder, names, files["train"][0][0])

    cache_path = key = None
    if cache_dir is not False:
        key = _cache_key(folder, files, names, seed)
        cache_path = _cache_path(Path(config.DATA_DIR if cache_dir is None else cache_dir),
                                 folder, seed, key)
        cached = _read_cache(cache_path, key, names, n)
    else:
        cached = None

    if cached is None:
        arrays, bad = {}, []
        for split in SPLITS:
            perm = rng.permutation(n[split])     # new position p holds file perm[p]
            dest = np.empty_like(perm)
            dest[perm] = np.arange(n[split])     # file i goes to row dest[i]
            rows = np.empty((n[split], 3 * SIDE * SIDE), dtype=np.uint8)
            bad += _decode_all(files[split], progress, f"{label}: decoding {split}", rows, dest)
            labels = np.array([lab for _, lab in files[split]], dtype=np.int64)
            arrays[f"X_{split}"], arrays[f"y_{split}"] = rows, labels[perm]
        _raise_bad(bad)                          # all bad files of train/ and test/ at once
        if cache_path is not None:
            _write_cache(cache_path, {**arrays, "label_names": np.array(names),
                                      "key": np.array(key)})
        cached = tuple(arrays[k] for k in ("X_train", "y_train", "X_test", "y_test"))

    X_train, y_train, X_test, y_test = cached
    return {"X_train": X_train.T, "y_train": y_train, "X_test": X_test.T, "y_test": y_test,
            "label_names": list(names), "folder": folder, "name": label}
