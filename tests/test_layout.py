"""Tests for workbook/layout.py: batch-first MX (n, n_p, f*f*3) is the spec's MX
(helpers.build_mx) transposed, whatever the chunking, threads and dtype."""
import numpy as np
import pytest

import helpers as H
from workbook.layout import as_batch_first, mx_batch_first


@pytest.mark.parametrize("f", [1, 2, 4, 8, 16, 32])
def test_mx_batch_first_is_build_mx_transposed(f):
    X = np.random.default_rng(f).standard_normal((3072, 5))
    want = H.build_mx(H.to_images(X), f)                       # (n_p, d, n)
    got = mx_batch_first(X, f, dtype=np.float64)
    assert got.shape == (5, (32 // f) ** 2, f * f * 3) and got.flags.c_contiguous
    assert np.array_equal(got.transpose(1, 2, 0), want), f"f={f}: not build_mx transposed"
    assert np.array_equal(as_batch_first(want), got)
    for i in range(5):
        assert np.array_equal(got[i], want[:, :, i])


def test_chunks_threads_and_dtype_change_nothing():
    X = np.random.default_rng(0).standard_normal((3072, 23))
    ref = mx_batch_first(X, 4, dtype=np.float64, chunk=1024, workers=1)
    for chunk, workers in ((5, 1), (5, 3), (1, 2), (23, 4)):
        got = mx_batch_first(X, 4, dtype=np.float64, chunk=chunk, workers=workers)
        assert np.array_equal(got, ref), f"chunk={chunk}, workers={workers} changed MX"
    f32 = mx_batch_first(X, 4)
    assert f32.dtype == np.float32 and np.array_equal(f32, ref.astype(np.float32))
    assert mx_batch_first(X[:, :0], 8).shape == (0, 16, 192)


def test_as_batch_first_of_a_view_is_contiguous():
    MX = np.random.default_rng(1).standard_normal((7, 4, 3)).transpose(1, 2, 0).copy()
    out = as_batch_first(MX)
    assert out.flags.c_contiguous and out.shape == (7, 4, 3)
    assert np.array_equal(out.transpose(1, 2, 0), MX)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"X must have shape \(3072, n\)"):
        mx_batch_first(np.zeros((5, 3072)), 4)
    with pytest.raises(ValueError, match="divides 32"):
        mx_batch_first(np.zeros((3072, 2)), 3)
    with pytest.raises(ValueError, match="MX must have shape"):
        as_batch_first(np.zeros((3, 4)))
