"""Tests for helpers.py sections 1-2 (layouts, convolution) and the engine's batch-first MX
(workbook/layout.py) beside them: the MX constructions, the convolutions, the debug file.

The independent oracle is torch.nn.functional.conv2d with stride f (workbook.oracle.torch_conv2d);
the spec formulas (CIFAR-10's pixel order, the spec's loop MX) are written out here too.
"""
import numpy as np
import pytest

import helpers as H
from workbook import fastsgd, oracle
from workbook.layout import as_batch_first, mx_batch_first
from _common import rel_err


def engine_conv(MX, Fs_flat):
    """The engine's convolution: one GEMM over the batch-first MX (n*n_p, d) @ Fs_flat, returned
    in the spec layout (n_p, nf, n)."""
    mxb = as_batch_first(MX)
    n, n_p, d = mxb.shape
    return fastsgd.matmul_rows(mxb.reshape(n * n_p, d), Fs_flat).reshape(n, n_p, -1).transpose(1, 2, 0)


CONVS = {"conv_matmul": H.conv_matmul, "conv_einsum": H.conv_einsum, "engine GEMM": engine_conv}


def rand_X(n, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal((3072, n)).astype(dtype)


def assert_close(name, got, want, tol):
    assert got.shape == want.shape, f"{name}: shape {got.shape} != expected {want.shape}"
    e = rel_err(got, want)
    assert e < tol, f"{name}: max abs error relative to max |value| is {e:.3g} (tolerance {tol:g})"


# ------------------------------------------------------------------------ layouts and MX

def test_to_images_is_cifar_pixel_order_and_spec_formula():
    n = 3
    X = rand_X(n)
    ims = H.to_images(X)
    assert ims.shape == (32, 32, 3, n)
    # the spec's formula, written out
    spec = np.transpose(X.reshape((32, 32, 3, n), order="F"), (1, 0, 2, 3))
    assert np.array_equal(ims, spec), "to_images differs from the spec's reshape/transpose"
    # CIFAR-10's layout: R, G, B planes, each row-major 32x32
    r, c, ch, i = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), np.arange(n),
                              indexing="ij")
    assert np.array_equal(ims, X[ch * 1024 + r * 32 + c, i]), \
        "to_images(X)[r, c, ch, i] != X[ch*1024 + r*32 + c, i]"


def test_to_columns_inverts_to_images():
    X = rand_X(4, np.float32, seed=1)
    back = H.to_columns(H.to_images(X))
    assert back.shape == X.shape and back.dtype == X.dtype
    assert np.array_equal(back, X), "to_columns(to_images(X)) != X"
    ims = np.random.default_rng(2).standard_normal((32, 32, 3, 2))
    assert np.array_equal(H.to_images(H.to_columns(ims)), ims), "to_images(to_columns(ims)) != ims"


@pytest.mark.parametrize("f", [1, 2, 4, 8, 16, 32])
def test_build_mx_equals_spec_loop_exactly(f):
    n = 3
    ims = H.to_images(rand_X(n, seed=f))
    MX = H.build_mx(ims, f)
    ref = H.build_mx_naive(ims, f)
    n_p = (32 // f) ** 2
    assert MX.shape == ref.shape == (n_p, f * f * 3, n)
    assert MX.flags.c_contiguous
    assert np.array_equal(MX, ref), f"build_mx != build_mx_naive for f={f}"
    # one patch written out independently: patch p = r*(32/f) + c, flattened (dy, dx, ch) in C order
    g = 32 // f
    r, c, i = g - 1, g // 2, n - 1
    patch = ims[r * f:(r + 1) * f, c * f:(c + 1) * f, :, i].reshape(-1, order="C")
    assert np.array_equal(MX[r * g + c, :, i], patch), f"MX patch (r={r}, c={c}) wrong for f={f}"


@pytest.mark.parametrize("f", [2, 4, 8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mx_batch_first_equals_build_mx(f, dtype):
    n = 7
    X = rand_X(n, dtype, seed=3)
    ref = H.build_mx(H.to_images(X), f)
    for chunk in (8192, 3):  # one chunk, and several chunks with a remainder
        mxb = mx_batch_first(X, f, dtype=dtype, chunk=chunk)
        assert mxb.shape == (n, (32 // f) ** 2, f * f * 3) and mxb.dtype == dtype
        assert mxb.flags.c_contiguous
        for i in range(n):
            assert np.array_equal(mxb[i], ref[:, :, i]), \
                f"mx_batch_first(X, {f})[{i}] != build_mx(to_images(X), {f})[:, :, {i}] (chunk={chunk})"
        assert np.array_equal(mxb.transpose(1, 2, 0), ref)
        assert np.array_equal(as_batch_first(ref), mxb)


# ------------------------------------------------------------------------ the convolutions

CONV_CASES = [(2, 3, 2), (2, 1, 3), (4, 2, 5), (4, 10, 3), (8, 40, 2), (8, 5, 4),
              (16, 160, 2), (16, 7, 3)]


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("f,nf,n", CONV_CASES)
def test_all_convolutions_agree_with_torch_conv2d(f, nf, n, dtype, tol):
    if not oracle.torch_available():
        pytest.skip("torch is not installed (the optional oracle); test_conv_outputs_reshape_is_"
                    "conv_outputs_mat checks the methods exactly without it")
    rng = np.random.default_rng(f * 100 + nf + n)
    X = rng.standard_normal((3072, n)).astype(dtype)
    Fs = rng.standard_normal((f, f, 3, nf)).astype(dtype)
    ims = H.to_images(X)
    n_p = (32 // f) ** 2

    ref = oracle.torch_conv2d(ims, Fs)
    loops = H.conv_loops(ims, Fs)
    assert loops.dtype == dtype, f"conv_loops returned {loops.dtype} for {dtype.__name__} input"
    assert_close(f"conv_loops vs torch conv2d (f={f}, nf={nf}, n={n})", loops, ref, tol)

    MX = H.build_mx(ims, f)
    Fs_flat = H.flatten_filters(Fs)
    assert np.array_equal(Fs_flat, Fs.reshape((f * f * 3, nf), order="C"))
    ref_mat = ref.reshape((n_p, nf, n), order="C")
    for name, conv in CONVS.items():
        out = conv(MX, Fs_flat)
        assert out.dtype == dtype, f"{name} returned {out.dtype} for {dtype.__name__} input"
        assert_close(f"{name} vs torch conv2d (f={f}, nf={nf}, n={n})", out, ref_mat, tol)
        assert_close(f"{name} vs conv_loops reshaped", out,
                     loops.reshape((n_p, nf, n), order="C"), tol)


def test_conv_outputs_reshape_is_conv_outputs_mat():
    """The spec's link: conv_outputs.reshape((n_p, nf, n), order='C') == conv_outputs_mat,
    element by element: conv_outputs[r, c, k, i] == conv_outputs_mat[r*(32/f) + c, k, i]."""
    f, nf, n = 8, 3, 2
    rng = np.random.default_rng(5)
    # integer-valued data: every sum is exact in float64, so the comparison can be exact
    X = rng.integers(-5, 6, (3072, n)).astype(np.float64)
    Fs = rng.integers(-3, 4, (f, f, 3, nf)).astype(np.float64)
    co = H.conv_loops(H.to_images(X), Fs)
    MX, Fs_flat = H.build_mx(H.to_images(X), f), H.flatten_filters(Fs)
    g = 32 // f
    for name, conv in CONVS.items():
        assert np.array_equal(co.reshape((g * g, nf, n), order="C"), conv(MX, Fs_flat)), \
            f"{name} != conv_loops reshaped (integer data: the sums are exact)"
    mat = H.conv_matmul(MX, Fs_flat)
    assert co[2, 1, 1, 1] == mat[2 * g + 1, 1, 1]


# ------------------------------------------------------------------------ debug file

@pytest.mark.parametrize("kw", [{}, {"f": 8, "nf": 3, "nh": 7, "n": 4, "seed": 3}])
def test_debug_file_round_trip_and_numpy_reproduces_it(tmp_path, kw):
    if not oracle.torch_available():
        pytest.skip("torch is not installed: the debug file is generated by the torch twin")
    f, nf, nh, n = kw.get("f", 4), kw.get("nf", 2), kw.get("nh", 50), kw.get("n", 5)
    n_p = (32 // f) ** 2
    path = oracle.make_debug_file(tmp_path / "debug.npz", **kw)
    assert path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debug.npz"], "temporary files left"
    shapes = {"X": (3072, n), "Fs": (f, f, 3, nf), "conv_outputs": (32 // f, 32 // f, nf, n),
              "conv_outputs_mat": (n_p, nf, n), "conv_flat": (n_p * nf, n),
              "W1": (nh, n_p * nf), "W2": (10, nh), "b1": (nh, 1), "b2": (10, 1),
              "X1": (nh, n), "P": (10, n), "Y": (10, n), "grad_Fs_flat": (f * f * 3, nf),
              "grad_W1": (nh, n_p * nf), "grad_W2": (10, nh), "grad_b1": (nh, 1), "grad_b2": (10, 1)}
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    assert set(d) == set(shapes) == set(oracle.DEBUG_KEYS)
    for k, s in shapes.items():
        assert d[k].shape == s, f"debug file {k} has shape {d[k].shape}, expected {s}"
        assert d[k].dtype == np.float64, f"debug file {k} is {d[k].dtype}, expected float64"
    loaded, what = oracle.load_debug_file(path)
    assert str(path) in what
    for k in shapes:
        assert np.array_equal(loaded[k], d[k]), f"load_debug_file changed {k}"

    # our numpy code reproduces every number
    ims = H.to_images(d["X"])
    tol = 1e-10
    def check(name, got):
        err = np.max(np.abs(got - d[name]))
        assert err < tol, f"{name}: max abs error {err:.3g} vs the debug file"
    check("conv_outputs", H.conv_loops(ims, d["Fs"]))
    MX = H.build_mx(ims, f)
    Fs_flat = H.flatten_filters(d["Fs"])
    for conv in CONVS.values():
        check("conv_outputs_mat", conv(MX, Fs_flat))
    params = {"Fs": d["Fs"], "b0": np.zeros((nf, 1)), "W1": d["W1"], "b1": d["b1"],
              "W2": d["W2"], "b2": d["b2"]}
    fw = H.forward(params, MX)
    for k in ("conv_flat", "X1", "P", "conv_outputs_mat"):
        check(k, fw[k])
    g = H.compute_grads(params, MX, d["Y"], lam=0.0)
    check("grad_Fs_flat", H.flatten_filters(g["Fs"]))
    for k in ("W1", "W2", "b1", "b2"):
        check("grad_" + k, g[k])


# ------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("f", [3, 5, 0, -4, 64, 4.0])
def test_filter_width_must_divide_32(f):
    ims = np.zeros((32, 32, 3, 1))
    with pytest.raises(ValueError, match="divides 32"):
        H.build_mx(ims, f)
    with pytest.raises(ValueError, match="divides 32"):
        H.build_mx_naive(ims, f)
    with pytest.raises(ValueError, match="divides 32"):
        mx_batch_first(np.zeros((3072, 1)), f)


def test_conv_loops_rejects_filters_that_do_not_tile():
    with pytest.raises(ValueError, match="divides 32"):
        H.conv_loops(np.zeros((32, 32, 3, 1)), np.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"Fs must have shape"):
        H.conv_loops(np.zeros((32, 32, 3, 1)), np.zeros((4, 4, 2, 2)))


@pytest.mark.parametrize("shape", [(3071, 2), (2, 3072), (32, 32, 3, 2), (3072, 2, 1)])
def test_wrong_X_shape_is_refused(shape):
    X = np.zeros(shape)
    with pytest.raises(ValueError, match=r"\(3072, n\)"):
        H.to_images(X)
    with pytest.raises(ValueError, match=r"\(3072, n\)"):
        mx_batch_first(X, 4)


@pytest.mark.parametrize("shape", [(32, 32, 4, 2), (31, 32, 3, 1), (3072, 2), (32, 32, 3, 1, 1)])
def test_wrong_X_ims_shape_is_refused(shape):
    ims = np.zeros(shape)
    with pytest.raises(ValueError, match=r"\(32, 32, 3, n\)"):
        H.build_mx(ims, 4)
    with pytest.raises(ValueError, match=r"\(32, 32, 3, n\)"):
        H.build_mx_naive(ims, 4)
    with pytest.raises(ValueError, match=r"\(32, 32, 3, n\)"):
        H.conv_loops(ims, np.zeros((4, 4, 3, 2)))
    with pytest.raises(ValueError, match=r"\(32, 32, 3, n\)"):
        H.to_columns(ims)


@pytest.mark.parametrize("conv", [H.conv_matmul, H.conv_einsum])
def test_filters_must_match_mx_rows(conv):
    MX = H.build_mx(np.zeros((32, 32, 3, 2)), 4)        # (64, 48, 2)
    with pytest.raises(ValueError, match="Fs_flat must have shape"):
        conv(MX, np.zeros((47, 3)))
    with pytest.raises(ValueError, match="Fs_flat must have shape"):
        conv(MX, np.zeros((4, 4, 3, 3)))                 # unflattened filters
    with pytest.raises(ValueError, match="MX must have shape"):
        conv(MX[:, :, 0], np.zeros((48, 3)))
