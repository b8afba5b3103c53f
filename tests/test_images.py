"""Tests for workbook/images.py, the image-folder data source (train/<class>/*, test/<class>/*).

Every folder is built in tmp_path from a seeded RNG (a few 32x32 PNG/JPEG images per class,
written with Pillow); no test reads real images from outside the repository, and every cache goes to tmp_path.
"""
import os

import numpy as np
import pytest
from PIL import Image

from workbook import images as I
from workbook.images import (CIFAR10_NAMES, ImageFolderError, image_folder_label,
                             is_image_folder, load_image_folder)


# ----------------------------------------------------------------------------- helpers
def _save(path, arr, quality=None, mode=None):
    """Write arr (32, 32, 3) or (32, 32) uint8 as an image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    kw = {"quality": quality} if quality is not None else {}
    im.save(path, **kw)
    return path


def _official(arr):
    """(3072,) uint8: an (H, W, 3) image in CIFAR-10's layout (R plane, G plane, B plane)."""
    return np.asarray(arr).transpose(2, 0, 1).reshape(3072)


def _make(root, classes, n_train=3, n_test=2, ext=".png", seed=0, quality=None):
    """Build root/train/<c>/ and root/test/<c>/ of random RGB images.

    Returns {(split, class, file name): (32, 32, 3) uint8 array written}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for c in classes:
            for i in range(n):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                _save(root / split / c / f"{i:04d}{ext}", arr, quality=quality)
                written[(split, c, f"{i:04d}{ext}")] = arr
    return written


def _column_of(X, vec):
    """Index of the unique column of X equal to vec (asserts there is exactly one)."""
    hits = np.flatnonzero((X == vec[:, None]).all(axis=0))
    assert hits.size == 1, f"expected one matching column, found {hits.size}"
    return int(hits[0])


def _no_decoding(monkeypatch):
    def boom(path):
        raise AssertionError(f"decoded {path}, but nothing should be decoded")
    monkeypatch.setattr(I, "_decode", boom)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "my-images"
    return root, _make(root, ["bee", "ant", "cat"], n_train=4, n_test=2)


# ----------------------------------------------------------------------- pixels, labels
def test_png_round_trip_into_official_layout_with_labels(folder, tmp_path):
    root, written = folder
    # one image with a known pixel: row 5, column 7 = (11, 22, 33)
    arr = written[("train", "bee", "0001.png")]
    arr[5, 7] = (11, 22, 33)
    _save(root / "train" / "bee" / "0001.png", arr)

    d = load_image_folder(root, cache_dir=tmp_path / "cache", progress=False)
    assert set(d) == {"X_train", "y_train", "X_test", "y_test", "label_names", "folder", "name",
                      "converted"}
    assert d["converted"] == {"16-bit": 0, "transparent": 0}
    assert d["label_names"] == ["ant", "bee", "cat"]               # sorted folder names
    assert d["X_train"].shape == (3072, 12) and d["X_train"].dtype == np.uint8
    assert d["X_test"].shape == (3072, 6) and d["X_test"].dtype == np.uint8
    assert d["y_train"].dtype == np.int64 and d["y_test"].dtype == np.int64
    assert d["X_train"].T.flags.c_contiguous                      # columns contiguous
    assert d["folder"] == root.resolve()

    j = _column_of(d["X_train"], _official(arr))
    for c, v in enumerate((11, 22, 33)):
        assert d["X_train"][c * 1024 + 5 * 32 + 7, j] == v
    for (split, c, _), a in written.items():           # every image exact, with its label
        X, y = d[f"X_{split}"], d[f"y_{split}"]
        assert y[_column_of(X, _official(a))] == d["label_names"].index(c)
    assert np.bincount(d["y_train"]).tolist() == [4, 4, 4]
    assert not np.array_equal(d["y_train"], np.sort(d["y_train"]))     # shuffled


def test_cifar10_names_get_cifar10_label_order(tmp_path):
    # batches.meta's order (which happens to be alphabetical)
    assert CIFAR10_NAMES == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                             "horse", "ship", "truck"]
    root = tmp_path / "c10"
    shuffled = list(reversed(CIFAR10_NAMES))
    written = _make(root, shuffled, n_train=1, n_test=1)
    d = load_image_folder(root, cache_dir=False, progress=False)
    assert d["label_names"] == CIFAR10_NAMES
    for (split, c, _), a in written.items():
        assert d[f"y_{split}"][_column_of(d[f"X_{split}"], _official(a))] == \
            CIFAR10_NAMES.index(c)
    # a subset of CIFAR-10's names is just sorted
    sub = tmp_path / "sub"
    _make(sub, ["truck", "airplane", "cat"], n_train=1, n_test=1)
    assert load_image_folder(sub, cache_dir=False, progress=False)["label_names"] == \
        ["airplane", "cat", "truck"]


def test_seed_fixes_the_shuffle(folder):
    root, _ = folder
    a = load_image_folder(root, cache_dir=False, seed=3, progress=False)
    b = load_image_folder(root, cache_dir=False, seed=3, progress=False)
    c = load_image_folder(root, cache_dir=False, seed=4, progress=False)
    for k in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["X_train"], c["X_train"])
    # the same images, only reordered
    assert np.array_equal(np.sort(a["X_train"], axis=1), np.sort(c["X_train"], axis=1))


def test_grayscale_palette_rgba_and_upper_case_extensions(tmp_path):
    root = tmp_path / "modes"
    _make(root, ["a", "b"], n_train=1, n_test=1)
    gray = np.arange(1024, dtype=np.uint8).reshape(32, 32)
    _save(root / "train" / "a" / "gray.PNG", gray)                     # mode L
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _save(root / "train" / "b" / "rgba.png", rgb, mode="RGBA")
    _save(root / "test" / "a" / "q.JPEG", rgb, quality=95)
    d = load_image_folder(root, cache_dir=False, progress=False)
    assert d["X_train"].shape == (3072, 4) and d["X_test"].shape == (3072, 3)
    j = _column_of(d["X_train"], _official(np.stack([gray] * 3, axis=2)))   # R = G = B
    assert d["y_train"][j] == 0
    assert d["y_train"][_column_of(d["X_train"], _official(rgb))] == 1      # alpha dropped


def test_hidden_and_other_files_are_skipped(folder):
    root, _ = folder
    (root / "train" / "ant" / ".DS_Store").write_bytes(os.urandom(100))
    (root / "train" / "ant" / "._0000.png").write_bytes(os.urandom(100))   # macOS junk
    (root / "train" / "bee" / "notes.txt").write_text("not an image")
    (root / "test" / ".ipynb_checkpoints").mkdir()                          # hidden folder
    (root / "train" / "README.md").write_text("top-level file, not a class")
    d = load_image_folder(root, cache_dir=False, progress=False)
    assert d["label_names"] == ["ant", "bee", "cat"]
    assert d["X_train"].shape == (3072, 12) and d["X_test"].shape == (3072, 6)


# ---------------------------------------------------------------------------- errors
def test_wrong_size_names_the_file(folder, tmp_path):
    root, _ = folder
    bad = _save(root / "train" / "cat" / "odd.png", np.zeros((32, 31, 3), np.uint8))
    big = _save(root / "test" / "ant" / "big.jpg", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ImageFolderError) as e:
        load_image_folder(root, cache_dir=tmp_path / "cache", progress=False)
    msg = str(e.value)
    assert str(bad) in msg and "31x32" in msg and "32x32" in msg and "resize" in msg
    assert f"{big} is 64x64" in msg and msg.startswith("2 image(s)")   # both splits listed
    assert not (tmp_path / "cache").exists()                           # nothing cached


@pytest.mark.parametrize("kind", ["random bytes", "truncated"])
def test_corrupt_image_names_the_file(folder, kind):
    root, _ = folder
    bad = root / "test" / "bee" / "broken.jpg"
    if kind == "random bytes":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes())
    else:
        good = _save(root / "test" / "bee" / "full.jpg",
                     np.random.default_rng(2).integers(0, 256, (32, 32, 3), np.uint8))
        data = good.read_bytes()
        good.unlink()
        bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFolderError, match="cannot be decoded") as e:
        load_image_folder(root, cache_dir=False, progress=False)
    assert str(bad) in str(e.value)


def test_class_missing_on_one_side_is_named(folder, monkeypatch):
    root, _ = folder
    _make(root / "x", ["dog"], n_train=1, n_test=0)
    os.replace(root / "x" / "train" / "dog", root / "train" / "dog")
    _no_decoding(monkeypatch)                       # the layout is checked before decoding
    with pytest.raises(ImageFolderError, match=r"missing in test/: dog") as e:
        load_image_folder(root, cache_dir=False, progress=False)
    assert "missing in train/" not in str(e.value)


@pytest.mark.parametrize("what", ["empty", "only other files"])
def test_class_without_images_is_an_error(folder, monkeypatch, what):
    root, _ = folder
    target = root / "test" / "cat"
    for p in target.iterdir():
        p.unlink()
    if what == "only other files":
        (target / "cat.bmp").write_bytes(b"BM")
    _no_decoding(monkeypatch)
    with pytest.raises(ImageFolderError, match=r"test/cat") as e:
        load_image_folder(root, cache_dir=False, progress=False)
    assert ("cat.bmp" in str(e.value)) == (what == "only other files")


def test_layout_errors(tmp_path):
    with pytest.raises(ImageFolderError, match="does not exist"):
        load_image_folder(tmp_path / "nope", cache_dir=False)
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ImageFolderError, match="no test/"):
        load_image_folder(tmp_path / "half", cache_dir=False)
    _make(tmp_path / "one", ["only"], n_train=1, n_test=1)
    with pytest.raises(ImageFolderError, match="at least 2"):
        load_image_folder(tmp_path / "one", cache_dir=False)
    assert issubclass(ImageFolderError, ValueError)


def test_is_image_folder(folder, tmp_path):
    root, _ = folder
    assert is_image_folder(root) and is_image_folder(str(root))
    assert not is_image_folder(tmp_path / "nope")
    assert not is_image_folder(root / "train" / "ant" / "0000.png")
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "test" / "a").mkdir(parents=True)
    assert not is_image_folder(tmp_path / "flat")       # train/ holds no class folders


# ----------------------------------------------------------------------------- cache
def _cache_files(cache):
    return sorted(p.name for p in cache.iterdir())


def test_second_load_reads_the_cache_written_atomically(folder, tmp_path, monkeypatch):
    root, _ = folder
    cache = tmp_path / "cache"
    first = load_image_folder(root, cache_dir=cache, progress=False)
    names = _cache_files(cache)
    assert len(names) == 1 and names[0].endswith(".npz")    # no temp file left over
    _no_decoding(monkeypatch)
    second = load_image_folder(root, cache_dir=cache, progress=False)
    for k in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(first[k], second[k]) and first[k].dtype == second[k].dtype
    assert second["X_train"].T.flags.c_contiguous
    assert second["label_names"] == first["label_names"] and second["name"] == first["name"]
    # another seed is another cache entry, and does not delete the first (progress bar on)
    monkeypatch.undo()
    load_image_folder(root, cache_dir=cache, seed=1, progress=True)
    assert len(_cache_files(cache)) == 2


def test_stale_cache_is_not_used(folder, tmp_path):
    root, _ = folder
    cache = tmp_path / "cache"
    load_image_folder(root, cache_dir=cache, progress=False)
    new = np.full((32, 32, 3), 7, np.uint8)
    _save(root / "train" / "ant" / "new.png", new)                         # added
    d = load_image_folder(root, cache_dir=cache, progress=False)
    assert d["X_train"].shape == (3072, 13)
    assert d["y_train"][_column_of(d["X_train"], _official(new))] == 0
    assert len(_cache_files(cache)) == 1                                   # old one replaced

    path = root / "test" / "cat" / "0000.png"                              # changed in place
    st = path.stat()
    changed = np.full((32, 32, 3), 200, np.uint8)
    _save(path, changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    d = load_image_folder(root, cache_dir=cache, progress=False)
    assert d["y_test"][_column_of(d["X_test"], _official(changed))] == 2


def test_touched_file_invalidates_the_cache(folder, tmp_path, monkeypatch):
    root, _ = folder
    cache = tmp_path / "cache"
    load_image_folder(root, cache_dir=cache, progress=False)
    path = root / "train" / "bee" / "0002.png"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))       # same bytes
    _no_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="decoded"):
        load_image_folder(root, cache_dir=cache, progress=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong key"])
def test_corrupt_cache_is_rebuilt(folder, tmp_path, damage):
    root, _ = folder
    cache = tmp_path / "cache"
    good = load_image_folder(root, cache_dir=cache, progress=False)
    (path,) = cache.iterdir()
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:   # a valid .npz, but another folder's arrays under this name
        other = {k: v for k, v in np.load(path).items()}
        other["key"] = np.array("0" * 64)
        other["X_train"] = np.zeros_like(other["X_train"])
        with open(path, "wb") as fh:
            np.savez(fh, **other)
    d = load_image_folder(root, cache_dir=cache, progress=False)
    assert np.array_equal(d["X_train"], good["X_train"])
    with np.load(path, allow_pickle=False) as z:                 # rewritten, readable
        assert np.array_equal(z["X_train"], good["X_train"].T)


def test_unwritable_cache_warns_and_still_returns_data(folder, tmp_path, monkeypatch):
    root, _ = folder
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="could not write the image cache") as rec:
        d = load_image_folder(root, cache_dir=not_a_dir / "cache", progress=False)
    assert len(rec) == 1 and d["X_train"].shape == (3072, 12)

    cache = tmp_path / "cache"                        # a failed write leaves no temp file
    cache.mkdir()

    def broken_savez(fh, **arrays):
        fh.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(I.np, "savez", broken_savez)
    with pytest.warns(RuntimeWarning, match="disk full"):
        d2 = load_image_folder(root, cache_dir=cache, progress=False)
    assert np.array_equal(d2["X_train"], d["X_train"])
    assert _cache_files(cache) == []


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("quality", [75, 90])
def test_jpeg_quality_label_for_cifar10_names(tmp_path, quality):
    root = tmp_path / f"c10-q{quality}"
    _make(root, CIFAR10_NAMES, n_train=1, n_test=1, ext=".jpg", quality=quality)
    label = f"CIFAR-10 (JPEG q{quality} copy)"
    assert image_folder_label(root) == label
    assert load_image_folder(root, cache_dir=False, progress=False)["name"] == label


def test_jpeg_quality_estimate_across_qualities(tmp_path):
    arr = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for q in (10, 25, 50, 60, 75, 85, 95):
        with Image.open(_save(tmp_path / f"q{q}.jpg", arr, quality=q)) as im:
            table = np.asarray(im.quantization[0])
        assert I.estimate_jpeg_quality(table) == q
        assert I.estimate_jpeg_quality(table[I._ZIGZAG]) == q      # older Pillow's order


def test_png_and_other_folder_labels(tmp_path, folder):
    png = tmp_path / "c10png"
    _make(png, CIFAR10_NAMES, n_train=1, n_test=1)
    assert image_folder_label(png) == "CIFAR-10 (PNG copy)"
    root, _ = folder
    assert image_folder_label(root) == "my-images (image folder)"
    assert load_image_folder(root, cache_dir=False, progress=False)["name"] == \
        "my-images (image folder)"


def test_relative_folder_path(folder, tmp_path, monkeypatch):
    root, _ = folder
    monkeypatch.chdir(root)
    d = load_image_folder(".", cache_dir=tmp_path / "cache", progress=False)
    assert d["folder"] == root.resolve() and d["name"] == "my-images (image folder)"
    assert image_folder_label(".") == d["name"]
    _no_decoding(monkeypatch)
    again = load_image_folder(".", cache_dir=tmp_path / "cache", progress=False)  # cached
    assert np.array_equal(again["X_train"], d["X_train"])


# ------------------------------------------------------------------ issue 21: data checks
def test_an_image_replaced_with_size_and_mtime_kept_is_decoded_again(folder, tmp_path):
    """cp -p / rsync -t / shutil.copy2 over an image keep its size and mtime: the cache must
    still see the new pixels (it keys on inode and ctime too)."""
    import shutil
    root, written = folder
    cache = tmp_path / "cache"
    load_image_folder(root, cache_dir=cache, progress=False)
    target = root / "train" / "bee" / "0001.png"
    new = np.full((32, 32, 3), 77, np.uint8)
    other = _save(tmp_path / "elsewhere" / "new.png", new)
    st = target.stat()
    padded = other.read_bytes()
    assert len(padded) <= st.st_size                      # pad the PNG to the same byte size
    other.write_bytes(padded + b"\0" * (st.st_size - len(padded)))
    shutil.copy2(other, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    d = load_image_folder(root, cache_dir=cache, progress=False)
    assert d["y_train"][_column_of(d["X_train"], _official(new))] == 1
    assert len(_cache_files(cache)) == 1                  # the stale cache was replaced


def test_two_images_swapped_by_rename_are_decoded_again(folder, tmp_path):
    root, written = folder
    cache = tmp_path / "cache"
    load_image_folder(root, cache_dir=cache, progress=False)
    a, b = root / "train" / "ant" / "0000.png", root / "train" / "cat" / "0000.png"
    sa, sb = a.stat(), b.stat()
    os.replace(a, root / "tmp.png")
    os.replace(b, a)
    os.replace(root / "tmp.png", b)
    os.utime(a, ns=(sa.st_atime_ns, sa.st_mtime_ns))
    os.utime(b, ns=(sb.st_atime_ns, sb.st_mtime_ns))
    d = load_image_folder(root, cache_dir=cache, progress=False)
    moved = written[("train", "cat", "0000.png")]            # now in ant/: label 0
    assert d["y_train"][_column_of(d["X_train"], _official(moved))] == 0


def test_16_bit_greyscale_is_scaled_not_white(tmp_path):
    root = tmp_path / "deep"
    _make(root, ["a", "b"], n_train=1, n_test=1)
    grey8 = np.arange(1024, dtype=np.uint16).reshape(32, 32) % 256
    im = Image.fromarray((grey8 * 257).astype(np.uint16))      # 16-bit: 0..65535
    assert im.mode.startswith("I")
    im.save(root / "train" / "a" / "deep.png")
    with Image.open(root / "train" / "a" / "deep.png") as check:
        assert check.mode.startswith("I")                       # really read back as 16-bit
    with pytest.warns(UserWarning, match=r"1 16-bit image\(s\) were scaled to 8 bits"):
        d = load_image_folder(root, cache_dir=tmp_path / "cache", progress=False)
    want = _official(np.stack([grey8.astype(np.uint8)] * 3, axis=2))
    assert d["y_train"][_column_of(d["X_train"], want)] == 0
    assert d["converted"] == {"16-bit": 1, "transparent": 0}
    with pytest.warns(UserWarning, match="16-bit"):              # said again from the cache
        again = load_image_folder(root, cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(again["X_train"], d["X_train"]) and again["converted"] == d["converted"]


def test_transparent_pixels_are_composited_onto_black_and_said(tmp_path):
    root = tmp_path / "alpha"
    _make(root, ["a", "b"], n_train=1, n_test=1)
    rgb = np.full((32, 32, 3), 200, np.uint8)
    alpha = np.full((32, 32), 255, np.uint8)
    alpha[:16] = 0                                              # top half transparent
    alpha[16:, :8] = 128                                        # a half-transparent strip
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(root / "train" / "a" / "rgba.png")
    pal = Image.fromarray(np.full((32, 32), 3, np.uint8), "P")  # palette, index 3 transparent
    pal.putpalette([0, 0, 0, 10, 10, 10, 20, 20, 20, 250, 250, 250] + [0] * 756)
    pal.save(root / "test" / "b" / "pal.png", transparency=3)
    with pytest.warns(UserWarning, match=r"2 image\(s\) with transparent pixels.*onto black"):
        d = load_image_folder(root, cache_dir=False, progress=False)
    want = rgb.copy()
    want[:16] = 0
    want[16:, :8] = (200 * 128 + 127) // 255
    assert d["y_train"][_column_of(d["X_train"], _official(want))] == 0
    assert d["y_test"][_column_of(d["X_test"], np.zeros(3072, np.uint8))] == 1
    assert d["converted"] == {"16-bit": 0, "transparent": 2}


def test_opaque_alpha_changes_nothing_and_says_nothing(tmp_path, recwarn):
    root = tmp_path / "opaque"
    _make(root, ["a", "b"], n_train=1, n_test=1)
    rgb = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _save(root / "train" / "b" / "rgba.png", rgb, mode="RGBA")
    d = load_image_folder(root, cache_dir=False, progress=False)
    assert d["y_train"][_column_of(d["X_train"], _official(rgb))] == 1
    assert d["converted"] == {"16-bit": 0, "transparent": 0}
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_a_symlink_loop_is_named_not_a_raw_oserror(tmp_path, monkeypatch):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ImageFolderError, match="symbolic link loop") as exc:
        load_image_folder(loop, cache_dir=False, progress=False)
    assert str(loop) in str(exc.value)
    with pytest.raises(ImageFolderError, match="symbolic link loop"):
        I.folder_summary(loop)
    assert "loop" in I.path_problem(loop)


@pytest.mark.parametrize("where", ["class folder", "image", "split"])
def test_broken_links_and_loops_inside_the_folder_are_named(folder, monkeypatch, where):
    root, _ = folder
    if where == "class folder":
        bad = root / "train" / "dog"
        bad.symlink_to(root / "train" / "dog")                  # a loop
        why = "loop"
    elif where == "image":
        bad = root / "test" / "bee" / "gone.png"
        bad.symlink_to(root / "nowhere" / "gone.png")           # broken
        why = "broken"
    else:
        (root / "test").rename(root / "test-real")
        bad = root / "test"
        bad.symlink_to(root / "moved-away")
        why = "broken"
    _no_decoding(monkeypatch)                                    # found before decoding
    with pytest.raises(ImageFolderError) as exc:
        load_image_folder(root, cache_dir=False, progress=False)
    assert str(bad) in str(exc.value) and why in str(exc.value)


def test_a_link_with_another_extension_is_skipped_like_other_files(folder):
    root, _ = folder
    (root / "train" / "bee" / "notes.txt").symlink_to(root / "nowhere.txt")
    d = load_image_folder(root, cache_dir=False, progress=False)
    assert d["X_train"].shape == (3072, 12)


def test_folder_summary_counts_without_decoding(folder, monkeypatch):
    root, _ = folder
    _no_decoding(monkeypatch)
    s = I.folder_summary(root)
    assert s == {"folder": root.resolve(), "label_names": ["ant", "bee", "cat"],
                 "n_train": 12, "n_test": 6}


def test_bool_seed_is_refused(folder):
    root, _ = folder
    with pytest.raises(ValueError, match="seed"):
        load_image_folder(root, cache_dir=False, seed=True, progress=False)
