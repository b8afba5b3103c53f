"""Tests for workbook/augment.py: flips and shifts done on batch-first MX by gather tables are
exactly MX of the flipped/shifted images (zeros shifted in), written here with index arithmetic."""
import numpy as np
import pytest

import helpers as H
from workbook.augment import aug_tables, aug_transforms, augment_mx, mirror_tables
from workbook.layout import mx_batch_first


def shift_reference(X, dy, dx, flip):
    """out[r, c] = in'[r - dy, c - dx] (zero outside), in' the image mirrored left-right when flip."""
    ims = H.to_images(X)
    out = np.zeros_like(ims)
    for r in range(32):
        for c in range(32):
            rs, cs = r - dy, c - dx
            if 0 <= rs < 32 and 0 <= cs < 32:
                out[r, c] = ims[rs, 31 - cs if flip else cs]
    return H.to_columns(out)


def expected_transforms(flip, s):
    shifts = [(0, 0)] + [(dy, dx) for dy in range(-s, s + 1) for dx in range(-s, s + 1)
                         if (dy, dx) != (0, 0)]
    return [(fl, dy, dx) for fl in ((False, True) if flip else (False,)) for dy, dx in shifts]


@pytest.mark.parametrize("flip,s", [(False, 0), (True, 0), (False, 2), (True, 1)])
def test_aug_transforms_order(flip, s):
    assert aug_transforms(flip, s) == expected_transforms(flip, s)


@pytest.mark.parametrize("f", [2, 4, 8])
def test_augment_mx_equals_mx_of_transformed_images(f):
    n, s = 3, 2
    X = np.random.default_rng(f).standard_normal((3072, n))
    mxb = mx_batch_first(X, f, dtype=np.float64)
    tables = aug_tables(f, flip=True, max_shift=s)
    transforms = expected_transforms(True, s)
    assert tables.shape == (len(transforms), 3072) == (2 * (2 * s + 1) ** 2, 3072)
    assert len(aug_tables(f, flip=False, max_shift=s)) == (2 * s + 1) ** 2
    assert np.array_equal(aug_tables(f)[0], np.arange(3072)), "table 0 must be the identity"
    for k, (fl, dy, dx) in enumerate(transforms):
        want = mx_batch_first(shift_reference(X, dy, dx, fl), f, dtype=np.float64)
        got = augment_mx(mxb, tables, np.full(n, k))
        assert np.array_equal(got, want), f"f={f}: table row {k} is not flip={fl}, shift ({dy}, {dx})"
    choice = np.array([len(transforms) - 1, 0, len(transforms) // 2 + 3])   # one per image
    got = augment_mx(mxb, tables, choice)
    for i, k in enumerate(choice):
        fl, dy, dx = transforms[k]
        want = mx_batch_first(shift_reference(X[:, i:i + 1], dy, dx, fl), f, dtype=np.float64)[0]
        assert np.array_equal(got[i], want), f"f={f}: image {i} with transform {k}"
    # a flip on MX is the MX of the mirrored images, built by the spec's route
    mirrored = H.to_images(X)[:, ::-1]
    want = H.build_mx(mirrored, f).transpose(2, 0, 1)
    assert np.array_equal(augment_mx(mxb, tables, np.full(n, (2 * s + 1) ** 2)), want)
    assert np.array_equal(mirror_tables([f])[0], tables[(2 * s + 1) ** 2])


def test_shift_reference_moves_pixels_the_right_way():
    X = np.zeros((3072, 1))
    ims = H.to_images(X)
    ims[3, 5, 1, 0] = 1.0                     # row 3, column 5, green
    out = H.to_images(shift_reference(H.to_columns(ims), 2, -1, False))
    assert out[5, 4, 1, 0] == 1.0 and out.sum() == 1.0
    out = H.to_images(shift_reference(H.to_columns(ims), 0, 0, True))
    assert out[3, 26, 1, 0] == 1.0 and out.sum() == 1.0


def test_tables_are_cached_and_read_only():
    a, b = aug_tables(4, True, 1), aug_tables(4, True, 1)
    assert a is b and not a.flags.writeable and a.dtype == np.int32
    assert a.min() >= 0 and a.max() == 3072              # 3072: the zero column


def test_augment_keeps_dtype_and_input():
    X = np.random.default_rng(0).standard_normal((3072, 4))
    mxb = mx_batch_first(X, 4)
    copy = mxb.copy()
    out = augment_mx(mxb, aug_tables(4, True, 2), np.array([1, 2, 3, 30]))
    assert out.dtype == np.float32 and out.shape == mxb.shape
    assert np.array_equal(mxb, copy), "augment_mx changed its input"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_shift_is_refused(bad):
    with pytest.raises(ValueError, match="max_shift"):
        aug_tables(4, False, bad)
    with pytest.raises(ValueError, match="divides 32"):
        aug_tables(5, False, 1)
