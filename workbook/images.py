"""An image-folder data source: ``train/<class>/*`` and ``test/<class>/*`` (torchvision's
ImageFolder layout) read into the same dict as the CIFAR-10 batch loader.

    folder/
        train/<class>/<anything>.png|.jpg|.jpeg     32x32 images, any Pillow mode
        test/<class>/<anything>.png|.jpg|.jpeg      the same class folders as train/

Extensions are matched case-insensitively; hidden files and folders (".DS_Store",
".ipynb_checkpoints") and files with other extensions are skipped; sub-folders inside a class
folder are not searched. Symbolic links are followed; a broken one or a loop (where a class
folder or an image should be) is an error naming it, never silently dropped.

Pixel modes: 8-bit images of any Pillow mode are converted to RGB; 16-bit greyscale (modes
"I;16*", and "I" with values 0..65535) is scaled to 8 bits (value >> 8, so an 8-bit image
saved as 16-bit comes back exactly); floating-point images (mode "F") are refused. Images with
transparent pixels (an alpha channel below 255, or a palette/colour-key transparency) are
composited onto BLACK, and every load says so in a warning and in the returned "converted"
counts (as it does for 16-bit images). Class names are the folder names, sorted, except that CIFAR-10's ten
names get CIFAR-10's label order (airplane=0 ... truck=9), so a CIFAR-10 copy has the official
labels.

    load_image_folder(folder)   -> dict like the CIFAR-10 loader's, plus "name", "converted"
    folder_summary(folder)      -> label names and image counts (layout checked, nothing decoded)
    image_folder_label(folder)  -> "CIFAR-10 (JPEG q75 copy)", "my-images (image folder)", ...
    is_image_folder(path)       -> bool, a cheap layout check (nothing decoded)
    path_problem(path)          -> why a path is no usable folder (link loop, broken link, ...)

Every problem with the folder raises ImageFolderError (a ValueError) saying what is wrong and
what to do. The decoded images are cached as uint8 in an .npz (see load_image_folder).

Decoding is serial: a 32x32 image is mostly Python overhead in Pillow (open, header parsing),
not GIL-free pixel decoding, and a thread pool measured no faster (about 135 us/image either
way with 1, 2 or 4 threads on a 2-core machine), so it is not used.
"""
from __future__ import annotations

import errno
import hashlib
import operator
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from . import config
from .files import atomic_write

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
SIDE = 32                 # the workbook's networks take 32x32x3 images (3072 values)
CACHE_FORMAT = 2          # bump when the cache's content or layout changes (2: 16-bit, alpha)
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
    return _listing(split_dir)[0]


def _link_problem(path) -> str | None:
    """"is a symbolic link loop ..." / "is a broken symbolic link ..." for such a path, else None."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ("is a symbolic link loop (following it leads back to itself); fix or remove "
                    "the link")
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return (f"is a broken symbolic link (to {target}, which does not exist); fix or "
                    f"remove the link")
        return None


def path_problem(path) -> str | None:
    """Why ``path`` cannot be used as a folder, as words after the path ("is a symbolic link
    loop ...", "is a broken symbolic link ...", "does not exist", "is not a folder", "cannot
    be read (...)"), or None when it is a readable folder. Never raises."""
    try:
        st = os.stat(path)
    except OSError as exc:
        link = _link_problem(path)
        if link:
            return link
        if exc.errno == errno.ENOENT:
            return "does not exist"
        return f"cannot be read ({exc.strerror or exc})"
    except (TypeError, ValueError) as exc:
        return f"is not a usable path ({exc})"
    return None if stat.S_ISDIR(st.st_mode) else "is not a folder"


def _listing(folder: Path) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(sub-folder names, file names, [(name, problem)] of broken links and link loops) of the
    non-hidden entries of ``folder``; ImageFolderError when it cannot be listed."""
    dirs, files, links = [], [], []
    try:
        with os.scandir(folder) as it:
            for e in it:
                if _is_hidden(e.name):
                    continue
                try:
                    kind = "dir" if e.is_dir() else "file" if e.is_file() else None
                except OSError:                  # e.g. ELOOP: a link loop
                    kind = None
                if kind == "dir":
                    dirs.append(e.name)
                elif kind == "file":
                    files.append(e.name)
                elif e.is_symlink():
                    why = _link_problem(e.path)
                    if why:
                        links.append((e.name, f"{e.path} {why}"))
    except OSError as exc:
        raise ImageFolderError(f"cannot list {folder} ({exc.strerror or exc}); check that it "
                               f"exists and that you may read it") from None
    return dirs, files, links


def _raise_links(problems: list[str], folder: Path) -> None:
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = (f"\n  ... and {len(problems) - _MAX_LISTED} more"
                if len(problems) > _MAX_LISTED else "")
        raise ImageFolderError(
            f"{len(problems)} symbolic link(s) in {folder} lead nowhere:\n  {listed}{more}\n"
            f"Nothing was decoded. Fix or remove these links (a broken link is never skipped "
            f"silently: it may be an image or a class you meant to include).")


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
    then by file name. Raises ImageFolderError for any layout problem, including broken
    symbolic links and link loops (all of them listed at once).
    """
    how = ("Lay it out as train/<class>/*.png|.jpg|.jpeg and test/<class>/*.png|.jpg|.jpeg "
           "(one folder per class, the same classes in both).")
    why = path_problem(folder)
    if why:
        raise ImageFolderError(f"image folder {folder} {why}. {how}")
    classes, links = {}, []
    for split in SPLITS:
        why = path_problem(folder / split)
        if why == "does not exist":
            raise ImageFolderError(f"image folder {folder} has no {split}/ sub-folder. {how}")
        if why:
            raise ImageFolderError(f"{folder / split} {why}. {how}")
        dirs, _, bad = _listing(folder / split)
        classes[split] = set(dirs)
        links += [msg for _, msg in bad]
    _raise_links(links, folder)
    for split in SPLITS:
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
            _, entries, bad = _listing(class_dir)
            links += [msg for n, msg in bad if n.lower().endswith(IMAGE_EXTENSIONS)]
            images = sorted(n for n in entries if n.lower().endswith(IMAGE_EXTENSIONS))
            if not images:
                other = sorted(set(entries) - set(images))
                note = f" (it holds {len(other)} other file(s), e.g. {other[0]})" if other else ""
                empty.append(f"{split}/{name}{note}")
            files[split] += [(class_dir / n, label) for n in images]
    _raise_links(links, folder)
    if empty:
        raise ImageFolderError(
            f"{len(empty)} class folder(s) of {folder} hold no .png/.jpg/.jpeg images: "
            f"{'; '.join(empty)}. Every class needs images in both train/ and test/: add "
            f"some, or remove that class folder from both.")
    return names, files


def _resolved(folder) -> Path:
    """Path(folder) made absolute and resolved, or ImageFolderError (link loop, ...)."""
    p = Path(folder).expanduser()
    why = path_problem(p)
    if why and why != "does not exist":
        raise ImageFolderError(f"image folder {p} {why}.")
    try:
        return p.resolve()
    except (OSError, RuntimeError) as exc:      # RuntimeError: a loop, on Python < 3.13
        raise ImageFolderError(f"image folder {p} cannot be resolved ({exc}); fix or remove "
                               f"the symbolic link that loops.") from None


def folder_summary(folder) -> dict:
    """The layout of an image folder, checked, with nothing decoded: {"folder": resolved
    Path, "label_names": K names in label order, "n_train": images in train/, "n_test":
    images in test/}. Raises ImageFolderError for any layout problem (as load_image_folder)."""
    folder = _resolved(folder)
    names, files = _scan(folder)
    return {"folder": folder, "label_names": names, "n_train": len(files["train"]),
            "n_test": len(files["test"])}


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
    folder = _resolved(folder)
    names, files = _scan(folder)
    return _label(folder, names, files["train"][0][0])


# ------------------------------------------------------------------------------ decode
CONVERSIONS = ("16-bit", "transparent")   # what _decode may have to say about an image


def _composite(rgb: np.ndarray, alpha: np.ndarray):
    """rgb (32, 32, 3) uint8 over black with alpha (32, 32) uint8 -> (uint8 image, note)."""
    if alpha.min() == 255:
        return rgb, None
    a = alpha.astype(np.uint16)[..., None]
    return ((rgb.astype(np.uint16) * a + 127) // 255).astype(np.uint8), "transparent"


def _to_rgb(im, path: Path):
    """(32, 32, 3) uint8 of an opened image and None, or "16-bit"/"transparent" when it had
    to be scaled from 16 bits or composited onto black; ImageFolderError when refused."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageFolderError(f"{path} is a 32-bit integer image (mode {mode}) with values "
                                   f"outside 0..65535; save it as 8-bit RGB")
        g = (a >> 8).astype(np.uint8)
        alpha = np.full(g.shape, 255, np.uint8)
        key = im.info.get("transparency")
        if isinstance(key, int):                     # a grey colour key (PNG tRNS)
            alpha[a == key] = 0
        rgb, note = _composite(np.stack([g] * 3, axis=2), alpha)
        return rgb, note or "16-bit"
    if mode == "F" or mode.startswith("BGR"):
        raise ImageFolderError(f"{path} has pixel mode {mode} (floating point or an unusual "
                               f"layout), which is not read; save it as 8-bit RGB (PNG or JPEG)")
    if "A" in mode or "a" in mode or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"))
        return _composite(rgba[..., :3], rgba[..., 3])
    rgb = im if mode == "RGB" else im.convert("RGB")
    return np.asarray(rgb), None


def _decode(path: Path):
    """(row, note): row (3072,) uint8, one image in CIFAR-10's layout (R plane 32x32
    row-major, then G, then B); note None, "16-bit" or "transparent" (see _to_rgb).

    The size is checked from the header, before the pixels are decoded. Raises
    ImageFolderError naming the file for a wrong size, a refused pixel mode or an
    undecodable/truncated file.
    """
    try:
        with Image.open(path) as im:
            if im.size != (SIDE, SIDE):
                raise ImageFolderError(f"{path} is {im.size[0]}x{im.size[1]}")
            im.load()
            rgb, note = _to_rgb(im, path)
            return rgb.transpose(2, 0, 1).reshape(3 * SIDE * SIDE), note
    except ImageFolderError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageFolderError(f"{path} is far larger than 32x32 ({exc})") from exc
    except Exception as exc:   # UnidentifiedImageError, OSError (truncated), SyntaxError, ...
        raise ImageFolderError(f"{path} cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _decode_all(items: list, progress: bool, desc: str, rows: np.ndarray,
                dest: np.ndarray, notes: dict) -> list[str]:
    """Decode items[i] = (path, label) into rows[dest[i]]; rows (n, 3072) uint8. The files
    that had to be converted are appended to notes["16-bit"] / notes["transparent"].

    Every file is tried; returns the problems (one message per bad file, [] if none).
    """
    from tqdm.auto import tqdm
    bad = []
    with tqdm(total=len(items), desc=desc, unit="img", disable=not progress,
              mininterval=0.5) as bar:
        for i, (path, _) in enumerate(items):
            try:
                rows[dest[i]], note = _decode(path)
                if note:
                    notes[note].append(str(path))
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
            f"Pillow's Image.resize), save images in other pixel modes as 8-bit RGB, and "
            f"replace or delete files that cannot be decoded.")


def _warn_converted(folder: Path, counts: dict, first: dict) -> None:
    """One warning saying which images were converted (16-bit scaled, transparency composited
    onto black), with a count and the first file of each kind; nothing when none were."""
    parts = []
    if counts.get("transparent"):
        parts.append(f"{counts['transparent']} image(s) with transparent pixels were "
                     f"composited onto black (first: {first['transparent']})")
    if counts.get("16-bit"):
        parts.append(f"{counts['16-bit']} 16-bit image(s) were scaled to 8 bits (first: "
                     f"{first['16-bit']})")
    if parts:
        warnings.warn(f"image folder {folder}: {'; '.join(parts)}. Convert them to 8-bit RGB "
                      f"yourself if you want another result.", UserWarning, stacklevel=3)


# ------------------------------------------------------------------------------- cache
def _cache_key(folder: Path, files: dict, names: list[str], seed: int) -> str:
    """sha256 hex of the format version, seed, class order and every image's relative path,
    size, mtime (ns), inode and ctime (ns): any added, removed, changed, touched, renamed or
    replaced image gives a new key, even one copied over with its size and mtime kept
    (``cp -p``, ``rsync -t``, shutil.copy2): that changes its ctime, which no user can set."""
    h = hashlib.sha256(f"image-folder-cache v{CACHE_FORMAT}\nseed={seed}\n"
                       f"classes={names!r}\n".encode())
    start = len(str(folder).rstrip(os.sep)) + 1     # paths are <resolved folder>/split/class/file
    for split in SPLITS:
        for path, _ in files[split]:
            path = str(path)                  # plain strings: 3x faster than pathlib here
            st = os.stat(path)
            rel = path[start:].replace(os.sep, "/")
            h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}\t"
                     f"{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


def _cache_path(cache_dir: Path, folder: Path, seed: int, key: str) -> Path:
    """cache_dir/imagefolder_<name>_<path hash>_seed<seed>_<key>.npz (one folder, one seed:
    one prefix, so stale caches of the same folder and seed can be found and deleted)."""
    where = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in folder.name)
    return cache_dir / f"imagefolder_{safe or 'root'}_{where}_seed{seed}_{key[:20]}.npz"


def _read_cache(path: Path, key: str, names: list[str], n: dict):
    """The cached ((rows_train, y_train, rows_test, y_test), counts, first), or None when the
    file is missing, unreadable, corrupt or not for this key (never raises)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or z["label_names"].tolist() != names:
                return None
            out = tuple(z[k] for k in ("X_train", "y_train", "X_test", "y_test"))
            counts = dict(zip(CONVERSIONS, z["converted"].tolist()))
            first = dict(zip(CONVERSIONS, z["converted_first"].tolist()))
        for split, (X, y) in zip(SPLITS, (out[:2], out[2:])):
            if (X.dtype != np.uint8 or X.shape != (n[split], 3 * SIDE * SIDE)
                    or y.dtype != np.int64 or y.shape != (n[split],)
                    or (y.size and not 0 <= y.min() <= y.max() < len(names))):
                return None
        return out, counts, first
    except Exception:   # BadZipFile, OSError, KeyError, ValueError, EOFError, ...
        return None


def _write_cache(path: Path, arrays: dict) -> None:
    """Write the .npz atomically (files.atomic_write), then delete stale caches of the same
    folder and seed. On failure: warn (the data is still returned), and no file is left."""
    try:
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    except Exception as exc:
        warnings.warn(f"could not write the image cache {path} ({exc}); the data is returned "
                      f"anyway, but the next load decodes every image again. Pass a writable "
                      f"cache_dir= to load_image_folder.", RuntimeWarning, stacklevel=3)
        return
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
        converted    dict              {"16-bit": count, "transparent": count}: images scaled
                                       from 16 bits / composited onto black (a UserWarning
                                       says so on every load, from the cache too)

    The whole layout is validated before anything is decoded; every image must be 32x32
    (grayscale, palette, 16-bit and RGBA images are converted to RGB, see the module
    docstring). Any problem raises ImageFolderError. The cache, an uncompressed .npz (about
    185 MB for CIFAR-10), is keyed by a hash of the sorted relative file list, sizes, mtimes,
    inodes and ctimes (ns), the seed and CACHE_FORMAT: a changed folder is decoded again and
    the stale cache replaced; an unreadable cache is rebuilt; a cache folder that cannot be
    written only warns.
    """
    if isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    seed = operator.index(seed)
    rng = np.random.default_rng(seed)        # raises for a negative seed, before any work
    folder = _resolved(folder)
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
        arrays, bad, notes = {}, [], {c: [] for c in CONVERSIONS}
        for split in SPLITS:
            perm = rng.permutation(n[split])     # new position p holds file perm[p]
            dest = np.empty_like(perm)
            dest[perm] = np.arange(n[split])     # file i goes to row dest[i]
            rows = np.empty((n[split], 3 * SIDE * SIDE), dtype=np.uint8)
            bad += _decode_all(files[split], progress, f"{label}: decoding {split}", rows, dest,
                               notes)
            labels = np.array([lab for _, lab in files[split]], dtype=np.int64)
            arrays[f"X_{split}"], arrays[f"y_{split}"] = rows, labels[perm]
        _raise_bad(bad)                          # all bad files of train/ and test/ at once
        counts = {c: len(notes[c]) for c in CONVERSIONS}
        first = {c: notes[c][0] if notes[c] else "" for c in CONVERSIONS}
        if cache_path is not None:
            _write_cache(cache_path, {**arrays, "label_names": np.array(names),
                                      "key": np.array(key),
                                      "converted": np.array([counts[c] for c in CONVERSIONS]),
                                      "converted_first": np.array([first[c]
                                                                   for c in CONVERSIONS])})
        cached = tuple(arrays[k] for k in ("X_train", "y_train", "X_test", "y_test"))
    else:
        cached, counts, first = cached
    _warn_converted(folder, counts, first)

    X_train, y_train, X_test, y_test = cached
    return {"X_train": X_train.T, "y_train": y_train, "X_test": X_test.T, "y_test": y_test,
            "label_names": list(names), "folder": folder, "name": label,
            "converted": {c: int(counts[c]) for c in CONVERSIONS}}
