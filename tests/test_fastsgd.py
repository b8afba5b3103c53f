"""Tests for workbook/fastsgd.py: the speed machinery changes no number. Fused BLAS SGD updates
equal the plain update W <- W - eta (g + 2 lam W) up to float rounding, fall back to numpy for
arrays BLAS cannot update in place, tall skinny products split in pieces equal the plain ones,
and the engine's update with reused buffers equals the one with fresh memory."""
import numpy as np
import pytest

from workbook import engine, fastsgd

TOL = {np.float32: 1e-6, np.float64: 1e-12}


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _unfused(W, A, B, decay):
    return decay * W - (A.T @ B).reshape(W.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,N", [((7, 11), 5), ((4, 4, 3, 6), 300), ((1, 9), 3), ((10, 1), 4)])
def test_gemm_update_equals_unfused(dtype, shape, N):
    rng = np.random.default_rng(0)
    W = rng.standard_normal(shape).astype(dtype)
    rows = int(np.prod(shape[:-1])) if len(shape) > 2 else shape[0]
    A = rng.standard_normal((N, rows)).astype(dtype)
    B = rng.standard_normal((N, shape[-1])).astype(dtype)
    want = _unfused(W, A, B, 0.97)
    assert fastsgd.fused_ok(W, A, B)
    ptr = W.ctypes.data
    out = fastsgd.gemm_update(W, A, B, 0.97)
    assert out is W and W.ctypes.data == ptr, "the update must happen in place"
    assert W.dtype == dtype
    assert _rel(W, want) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scipy_blas_fallback_equals_unfused(monkeypatch, dtype):
    """Without numpy's own cblas (another BLAS build), scipy.linalg.blas does the fused GEMM."""
    monkeypatch.setattr(fastsgd, "_CBLAS", {})
    monkeypatch.setattr(fastsgd, "_GEMM", fastsgd._scipy_blas())
    rng = np.random.default_rng(6)
    W = rng.standard_normal((5, 3, 2)).astype(dtype)
    A, B = rng.standard_normal((9, 15)).astype(dtype), rng.standard_normal((9, 2)).astype(dtype)
    want, ptr = _unfused(W, A, B, 0.8), W.ctypes.data
    fastsgd.gemm_update(W, A, B, 0.8)
    assert W.ctypes.data == ptr and _rel(W, want) < TOL[dtype]


def test_gemm_update_with_aliased_inputs_falls_back():
    W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    A = np.random.default_rng(7).standard_normal((3, 3)).astype(np.float32)
    assert fastsgd.fused_ok(W, A, W.copy())
    B = W                                       # W is also the right factor: BLAS must not see it
    assert not fastsgd.fused_ok(W, A, B)
    want = _unfused(W.astype(np.float64), A.astype(np.float64), W.astype(np.float64), 0.5)
    fastsgd.gemm_update(W, A, B, 0.5)
    assert _rel(W, want) < 1e-6


@pytest.mark.parametrize("case", ["noncontig_W", "mixed_dtype", "noncontig_A", "int_W"])
def test_gemm_update_falls_back_to_numpy(case):
    rng = np.random.default_rng(1)
    big = rng.standard_normal((6, 10)).astype(np.float32)
    W = big[:, ::2] if case == "noncontig_W" else big[:, :5].copy()
    A = rng.standard_normal((8, 6)).astype(np.float64 if case == "mixed_dtype" else np.float32)
    B = rng.standard_normal((8, 5)).astype(np.float32)
    if case == "noncontig_A":
        A = np.asfortranarray(A)
    if case == "int_W":
        W = np.zeros((6, 5), np.float16)
    assert not fastsgd.fused_ok(W, A, B)
    want = _unfused(W.astype(np.float64), A.astype(np.float64), B.astype(np.float64), 0.9)
    fastsgd.gemm_update(W, A, B, 0.9)
    assert _rel(W.astype(np.float64), want) < (1e-2 if case == "int_W" else 1e-6)
    if case == "noncontig_W":
        assert np.shares_memory(W, big), "the non-contiguous view itself must be updated"


def test_gemm_update_refuses_read_only_and_bad_shapes():
    W = np.ones((3, 4), np.float32)
    W.setflags(write=False)
    A, B = np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="read-only"):
        fastsgd.gemm_update(W, A, B, 0.5)
    assert np.all(W == 1)
    with pytest.raises(ValueError, match="shape"):
        fastsgd.gemm_update(np.ones((3, 5), np.float32), A, B)


@pytest.mark.parametrize("n,groups", [(10, 1), (10, 64), (7, 3)])
def test_colsum_equals_sum(n, groups):
    G = np.random.default_rng(2).standard_normal((n * groups, 5)).astype(np.float32)
    assert _rel(fastsgd.colsum(G, n), G.sum(axis=0, dtype=np.float64)) < 1e-5
    assert _rel(fastsgd.colsum(G), G.sum(axis=0, dtype=np.float64)) < 1e-5


def _reference_step(params, mxs, y, eta, lam, eps, mask):
    """The spec update, unfused: gradients (numpy), then W <- W - eta (g + 2 lam W)."""
    fw = engine.forward_batch(params, mxs, mask)
    T = engine.targets(y, params["W2"].shape[0], eps, fw["P"].dtype)
    g = engine.backward_batch(params, mxs, fw, T, lam, mask)
    return {k: v - eta * g[k] for k, v in params.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f,nf", [(4, 5), ((4, 8), (3, 2))])
@pytest.mark.parametrize("eps,dropout", [(0.0, False), (0.1, True)])
def test_fused_train_step_equals_unfused_update(dtype, f, nf, eps, dropout, monkeypatch):
    rng = np.random.default_rng(3)
    nh, n, eta, lam = 80, 12, 0.07, 0.02          # W1 has > fastsgd.FUSE_MIN weights: fused
    params = engine.init_params(f, nf, nh, seed=4, dtype=dtype)
    for k in params:
        if k.startswith("b"):
            params[k] = (0.1 * rng.standard_normal(params[k].shape)).astype(dtype)
    X = rng.standard_normal((3072, n))
    y = rng.integers(0, 10, n)
    mask = ((rng.random((n, nh)) < 0.6) / 0.6).astype(dtype) if dropout else None
    mxs = engine.mx_for(params, X)
    want = _reference_step(params, mxs, y, eta, lam, eps, mask)
    got = {k: v.copy() for k, v in params.items()}
    fused = []
    blas = fastsgd._blas_update
    monkeypatch.setattr(fastsgd, "_blas_update", lambda W2, *a: (fused.append(W2.shape), blas(W2, *a)))
    engine.train_step(got, mxs, y, eta, lam, eps, mask)
    assert fused == [(nh, params["W1"].shape[1])], f"expected one fused update, of W1; got {fused}"
    for k in params:
        step = np.max(np.abs(want[k] - params[k]))
        assert got[k].dtype == dtype and step > 0
        err = np.max(np.abs(got[k] - want[k]))
        assert err <= TOL[dtype] * max(np.max(np.abs(want[k])), step), (
            f"{k} ({np.dtype(dtype)}): fused update differs from the unfused one by {err:.3g}")


@pytest.mark.parametrize("fs", [4, (4, 8)])
def test_train_step_with_reused_buffers_equals_fresh_memory(fs):
    """train() passes a workspace dict so the big intermediates are not page-faulted in every
    update: the updates must be bit-identical to those without it, and the buffers reused."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3072, 40)).astype(np.float32)
    p0 = engine.init_params(fs, 6, 16, seed=1)
    mxs = engine.mx_for(p0, X)
    a, b = ({k: v.copy() for k, v in p0.items()} for _ in range(2))
    ws, ids = {}, None
    for t in range(3):
        idx = rng.choice(40, 10, replace=False)
        y = rng.integers(0, 10, 10)
        mask = (rng.random((10, 16)) < 0.7).astype(np.float32) / 0.7
        mb = [m[idx] for m in mxs]
        la = engine.train_step(a, mb, y, 0.05, 0.01, 0.1, mask)
        lb = engine.train_step(b, mb, y, 0.05, 0.01, 0.1, mask, ws=ws)
        assert la == lb
        if ids is None:
            ids = {k: id(v) for k, v in ws.items()}
        assert ids == {k: id(v) for k, v in ws.items()}, "buffers must be reused, not remade"
    assert {"GH", "mask"} <= set(ws) and len(ws) >= 3
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs with reused buffers"


@pytest.mark.parametrize("N, d, c", [(6400, 48, 10), (5000, 48, 3), (6400, 12, 3), (6400, 48, 40), (100, 48, 10)])
def test_chunked_skinny_products_equal_the_plain_ones(N, d, c):
    """matmul_rows / gradient split tall, skinny products into row pieces (arch2's conv): the
    same numbers up to float32 rounding, whether or not a shape is split."""
    rng = np.random.default_rng(N + d + c)
    A = rng.standard_normal((N, d)).astype(np.float32)
    B = rng.standard_normal((d, c)).astype(np.float32)
    G = rng.standard_normal((N, c)).astype(np.float32)
    want = A.astype(np.float64) @ B
    got = fastsgd.matmul_rows(A, B)
    out = np.empty((N, c), np.float32)
    assert fastsgd.matmul_rows(A, B, out=out) is out
    for x in (got, out):
        err = np.max(np.abs(x - want))
        assert err < 1e-4 * np.max(np.abs(want)), f"matmul_rows off by {err:.3g} for {(N, d, c)}"
    want_g = A.astype(np.float64).T @ G
    g = fastsgd.gradient(A, G, (d, c))
    err = np.max(np.abs(g - want_g))
    assert g.shape == (d, c) and err < 1e-4 * np.max(np.abs(want_g)), f"gradient off by {err:.3g}"
    assert fastsgd._skinny(A, c) == (N > fastsgd.CHUNK and c <= fastsgd.SKINNY and d >= 32)
