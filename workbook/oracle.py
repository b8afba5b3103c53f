"""Independent checks: torch as the oracle (conv2d, autograd), finite differences, the debug
file with the course's keys and shapes, and reference transforms in image space."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import _atomic_savez, build_mx, build_mx_naive, check_params, compute_grads, compute_loss, conv_einsum, conv_fast, conv_loops, conv_matmul, flatten_filters, forward, grads_spec_layout, init_params, mx_batch_first, one_hot, to_columns, to_images
from workbook.checks import _check_X, _check_Y, _check_f, _check_ims
from workbook import config
from workbook.synthetic import (make_synthetic)


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


def load_debug_file(path=None, seed: int = 0):
    """The course's ``data/debug_conv_info.npz`` if present, else a generated one.

    Returns ``(dict of arrays, description)``; the description says which file it is.
    Generating needs torch; without it (and without the course file) this raises ImportError.
    """
    course = config.DATA_DIR / "debug_conv_info.npz"
    if path is None and course.exists():
        path, what = course, "the course's debug_conv_info.npz"
    elif path is None:
        path = config.DATA_DIR / "debug_conv_info_generated.npz"
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



def mx_to_images(MX: np.ndarray, f: int) -> np.ndarray:
    """Inverse of build_mx: MX (n_p, f*f*3, n) -> X_ims (32, 32, 3, n) (same dtype)."""
    n_p = _check_f(f)
    MX = np.asarray(MX)
    if MX.ndim != 3 or MX.shape[:2] != (n_p, f * f * 3):
        raise ValueError(f"MX must have shape ({n_p}, {f * f * 3}, n) for f={f}; got {MX.shape}")
    g, n = 32 // f, MX.shape[2]
    return np.ascontiguousarray(MX.reshape(g, g, f, f, 3, n).transpose(0, 2, 1, 3, 4, 5)
                                ).reshape(32, 32, 3, n)


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