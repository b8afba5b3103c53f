"""Augmentation on batch-first MX (Exercise 5): every mirror/shift of an image is a fixed
permutation of its MX row (with zeros shifted in), so it is precomputed once as a gather table
and a batch is transformed by one flat ``take``. Tested equal to MX of the shifted images."""
from __future__ import annotations

import functools

import numpy as np

from helpers import check_f
from workbook.layout import mx_batch_first


def aug_transforms(flip: bool = False, max_shift: int = 0) -> list:
    """The (flip, dy, dx) of every row of ``aug_tables``: identity first, then the other shifts
    in row-major order, for flip=False and then (if ``flip``) flip=True."""
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1)
              for dx in range(-max_shift, max_shift + 1)]
    shifts.sort(key=lambda s: (s != (0, 0)))
    return [(fl, dy, dx) for fl in ((False, True) if flip else (False,)) for dy, dx in shifts]


def aug_tables(f: int, flip: bool = False, max_shift: int = 0) -> np.ndarray:
    """Gather tables (n_t, 3072) int32, read-only and cached, that transform batch-first MX rows.

    For a batch's rows (b, 3072) padded with one zero column, ``padded[i, idx[k]]`` is the MX
    row of image i mirrored (if asked) and shifted by (dy, dx) with zero fill (zero = the
    training mean), transform k of ``aug_transforms``.
    """
    check_f(f)
    aug_transforms(flip, max_shift)
    return _tables(int(f), bool(flip), int(max_shift))


@functools.lru_cache(maxsize=64)
def _tables(f: int, flip: bool, max_shift: int) -> np.ndarray:
    ident = np.arange(3072, dtype=np.float64)[:, None]
    x_of_q = mx_batch_first(ident, f, dtype=np.float64)[0].ravel().astype(np.int64)  # MX -> X index
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
    """Transform ``choice[i]`` applied to image i: mxb (b, n_p, d), tables (n_t, 3072) -> (b, n_p, d)."""
    b = mxb.shape[0]
    padded = np.empty((b, 3073), dtype=mxb.dtype)
    padded[:, :3072] = mxb.reshape(b, 3072)
    padded[:, 3072] = 0              # one flat gather: 2x faster than take_along_axis
    return padded.ravel().take(tables[choice] + np.arange(0, b * 3073, 3073)[:, None]).reshape(mxb.shape)


def mirror_tables(fs) -> list:
    """For test-time flips (TTA: test-time augmentation): the mirror table of each filter size."""
    return [aug_tables(f, flip=True)[1] for f in fs]
