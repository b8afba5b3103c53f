"""Independent checks: the ONE torch twin of the network (conv2d + autograd), finite differences,
the debug file with the course's keys and shapes, and reference transforms in image space.

    TorchTwin(params)             the network in torch with the weights copied in (one or several
                                  filter sizes): forward, loss, cost, every gradient, torch's SGD
    torch_layout(params)          the same weights in torch.nn's layout (Conv2d, Flatten, Linear),
                                  for an idiomatic nn.Sequential (the benchmark's torch loop)
    torch_grads / grad_error_table / numerical_grads    gradient tables (notebook 02, tests)
    make_debug_file / load_debug_file / debug_check_rows  the course's debug_conv_info.npz layout
    conv_agreement / torch_conv2d / mx_to_images / shift_images

torch is optional: this module imports without it; what needs torch raises ImportError saying
how to install it, and ``torch_available()`` tells beforehand. The twin shares no code with
helpers.py or the engine: it starts from the images X (3072, n) in CIFAR-10's order, which are
NCHW once viewed as (n, 3, 32, 32).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import helpers as H
from helpers import check_f
from workbook import config, engine
from workbook.checks import check_X, check_Y
from workbook.files import atomic_write
from workbook.layout import mx_batch_first
from workbook.synthetic import make_synthetic

DEBUG_KEYS = ("X", "Fs", "conv_outputs", "conv_outputs_mat", "conv_flat", "W1", "W2", "b1", "b2",
              "X1", "P", "Y", "grad_Fs_flat", "grad_W1", "grad_W2", "grad_b1", "grad_b2")
INSTALL = "pip install torch==2.13.0 (CPU build), or pip install -e .[oracle]"


def torch_available() -> bool:
    """True when torch can be imported (it is only the independent oracle)."""
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def require_torch(what: str):
    """The torch module, or an ImportError saying that ``what`` needs it and how to install it."""
    try:
        import torch
    except Exception as e:
        raise ImportError(f"{what} needs torch as an independent oracle, and torch is not "
                          f"installed: {INSTALL}") from e
    return torch


def max_rel(a, b, floor: float = 1e-12) -> float:
    """max |a-b| / max(|a|+|b|, floor), elementwise, in float64 (0 for empty arrays)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)))


# =====================================================================================
# the torch twin
# =====================================================================================

class TorchTwin:
    """The network written in torch, its weights copied from ``params`` (helpers' spec layout:
    'Fs' (f, f, 3, nf), 'b0' (nf, 1), or one 'Fs_f{f}', 'b0_f{f}' pair per filter size; W1
    (nh, width), b1 (nh, 1), W2 (K, nh), b2 (K, 1)), in ``dtype`` (float64 for checks).

    Each branch is conv2d with stride f and bias b0 on NCHW images; its output (n, nf, g, g) is
    permuted to conv_outputs (g, g, nf, n) and flattened row-major to (n_p*nf, n), the spec's
    order='C'; branches are stacked in increasing f. Then ReLU, W1, b1, ReLU, W2, b2, softmax.
    loss = mean cross-entropy against targets with 1-eps on the true class and eps/(K-1) off it;
    cost = loss + lam * (sum of squares of every Fs and W). The copies are the twin's own: the
    numpy params are never changed.
    """

    def __init__(self, params: dict, dtype=np.float64):
        torch = require_torch("TorchTwin")
        self.torch, self.dtype = torch, np.dtype(dtype)
        self.branches = engine.branches(params)
        for k in ("W1", "b1", "W2", "b2"):
            if k not in params:
                raise ValueError(f"params is missing {k!r}")
        self.t = {k: torch.tensor(np.array(v, dtype=self.dtype), requires_grad=True)
                  for k, v in params.items()}

    def images(self, X) -> "torch.Tensor":
        """X (3072, n), CIFAR-10's order (R, G, B planes, row-major) -> (n, 3, 32, 32) NCHW."""
        X = check_X(X)
        x = np.ascontiguousarray(X.T, dtype=self.dtype)
        return self.torch.from_numpy(x).view(X.shape[1], 3, 32, 32)

    def forward(self, X, drop_mask=None) -> dict:
        """Tensors of the forward pass for X (3072, n): conv_pre (one (n_p*nf, n) per branch,
        before ReLU, gradients retained), conv_flat (width, n), X1 (nh, n), S, P (K, n); with one
        filter size also conv_outputs (g, g, nf, n) and conv_outputs_mat (n_p, nf, n).
        drop_mask: (n, nh) batch-first, as the engine takes it (dropout: X1 * drop_mask.T)."""
        torch, t = self.torch, self.t
        x = self.images(X)
        n = x.shape[0]
        o, pre = {}, []
        for f, kF, kb in self.branches:
            nf, g = t[kF].shape[3], 32 // f
            conv = torch.nn.functional.conv2d(x, t[kF].permute(3, 2, 0, 1), bias=t[kb].reshape(nf),
                                              stride=f)                  # (n, nf, g, g)
            co = conv.permute(2, 3, 1, 0)                                  # (g, g, nf, n)
            z = co.reshape(g * g * nf, n)                                  # row-major == order='C'
            z.retain_grad()
            pre.append(z)
            if len(self.branches) == 1:
                o["conv_outputs"], o["conv_outputs_mat"] = co, co.reshape(g * g, nf, n)
        o["conv_pre"] = pre
        o["conv_flat"] = torch.cat([torch.relu(z) for z in pre], dim=0)
        o["X1"] = torch.relu(t["W1"] @ o["conv_flat"] + t["b1"])
        if drop_mask is not None:
            o["X1"] = o["X1"] * torch.as_tensor(np.asarray(drop_mask, self.dtype).T)
        o["S"] = t["W2"] @ o["X1"] + t["b2"]
        o["P"] = torch.softmax(o["S"], dim=0)
        return o

    def loss(self, S, Y, eps: float = 0.0):
        """Mean cross-entropy of scores S (K, n) against the eps-smoothed one-hot Y (K, n)."""
        torch = self.torch
        Yt = torch.as_tensor(np.asarray(Y, self.dtype))
        Ys = Yt * (1 - eps) + (1 - Yt) * (eps / (Yt.shape[0] - 1))
        return -(Ys * torch.log_softmax(S, dim=0)).sum() / S.shape[1]

    def penalty(self):
        """|Fs|^2 + |W1|^2 + |W2|^2 (every filter bank and weight, never a bias), a tensor."""
        return sum((v ** 2).sum() for k, v in self.t.items() if k.startswith(("Fs", "W")))

    def gradients(self, X, Y, lam: float = 0.0, eps: float = 0.0, loss_fn=None,
                  drop_mask=None) -> dict:
        """Autograd of the cost for images X (3072, n) and one-hot Y (K, n). loss_fn(S) replaces
        the smoothed cross-entropy (e.g. torch's own cross_entropy). Returns numpy arrays:
        grads {key: array of params[key].shape}, loss, cost (floats), the forward's conv_flat,
        X1, S, P (and conv_outputs, conv_outputs_mat for one filter size), and G_pre (one
        (n_p*nf, n) gradient at each branch's pre-ReLU output)."""
        for v in self.t.values():
            v.grad = None
        o = self.forward(X, drop_mask)
        Y = check_Y(Y, o["S"].shape[1], o["S"].shape[0])
        loss = self.loss(o["S"], Y, eps) if loss_fn is None else loss_fn(o["S"])
        cost = loss + lam * self.penalty()
        cost.backward()
        out = {k: v.detach().numpy().copy() for k, v in o.items() if k != "conv_pre"}
        out["G_pre"] = [z.grad.numpy().copy() for z in o["conv_pre"]]
        out["grads"] = {k: v.grad.numpy().copy() for k, v in self.t.items()}
        out["loss"], out["cost"] = float(loss.detach()), float(cost.detach())
        return out

    def sgd_step(self, X, y, eta: float, lam: float = 0.0, eps: float = 0.0,
                 drop_mask=None) -> float:
        """One update with torch.optim.SGD (lr eta; weight_decay 2 lam on the filters and weights,
        none on the biases: the gradient of lam |W|^2) on images X (3072, b), labels y (b,).
        drop_mask as in forward. Returns the batch loss before the update."""
        torch = self.torch
        groups = [{"params": [v for k, v in self.t.items() if not k.startswith("b")],
                   "weight_decay": 2.0 * lam},
                  {"params": [v for k, v in self.t.items() if k.startswith("b")], "weight_decay": 0.0}]
        opt = torch.optim.SGD(groups, lr=eta)
        opt.zero_grad(set_to_none=True)
        S = self.forward(X, drop_mask)["S"]
        Y = torch.nn.functional.one_hot(torch.as_tensor(np.asarray(y, np.int64)), S.shape[0]).T
        loss = self.loss(S, Y.numpy(), eps)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def params_numpy(self) -> dict:
        """The twin's current weights, keyed and shaped like the params it was built from."""
        return {k: v.detach().numpy().copy() for k, v in self.t.items()}


def torch_layout(params: dict) -> dict:
    """The weights in torch.nn's layout, for Conv2d(3, nf, f, stride=f) per branch, Flatten,
    Linear(width, nh), ReLU, Linear(nh, K): {'convs': [(weight (nf, 3, f, f), bias (nf,)), ...]
    in increasing f, 'W1' (nh, width) with its columns reordered to Flatten's (nf, g, g) order,
    'b1' (nh,), 'W2' (K, nh), 'b2' (K,)}: C-contiguous copies, in the params' dtype.
    Why the reorder: the spec flattens conv_outputs patch-major (p*nf + k), Flatten on NCHW
    filter-major (k*n_p + p)."""
    convs, cols, off = [], [], 0
    W1 = np.asarray(params["W1"])
    for f, kF, kb in engine.branches(params):
        Fs, n_p = np.asarray(params[kF]), check_f(f)
        nf = Fs.shape[3]
        convs.append((np.array(Fs.transpose(3, 2, 0, 1), order="C"),
                      np.array(np.asarray(params[kb]).reshape(nf), order="C")))
        block = W1[:, off:off + n_p * nf].reshape(W1.shape[0], n_p, nf)
        cols.append(block.transpose(0, 2, 1).reshape(W1.shape[0], nf * n_p))
        off += n_p * nf
    if off != W1.shape[1]:
        raise ValueError(f"W1 has {W1.shape[1]} columns; the filters give {off}")
    flat = lambda k: np.array(np.asarray(params[k]).reshape(-1), order="C")  # noqa: E731
    return {"convs": convs, "W1": np.ascontiguousarray(np.concatenate(cols, axis=1)),
            "b1": flat("b1"), "W2": np.array(params["W2"], order="C"), "b2": flat("b2")}


def torch_grads(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
                return_cost: bool = False):
    """TorchTwin's gradients (float64) for a spec-layout MX (n_p, f*f*3, n), or {f: MX_f} for
    several filter sizes (the images are rebuilt from one of them with mx_to_images).
    Returns {key: array of params[key].shape}, and the cost too if ``return_cost``."""
    mxs = MX if isinstance(MX, dict) else {engine.branches(params)[0][0]: MX}
    f, m = next(iter(mxs.items()))
    X = H.to_columns(mx_to_images(np.asarray(m, np.float64), f))
    r = TorchTwin(params).gradients(X, Y, lam, eps)
    return (r["grads"], r["cost"]) if return_cost else r["grads"]


def torch_conv2d(X_ims: np.ndarray, Fs: np.ndarray) -> np.ndarray:
    """torch's conv2d with stride f (float64), the independent patchify convolution:
    X_ims (32, 32, 3, n), Fs (f, f, 3, nf) -> conv_outputs (32/f, 32/f, nf, n)."""
    torch = require_torch("torch_conv2d")
    X_ims = H.check_shape(X_ims, (32, 32, 3, None), "X_ims")
    Fs = H.check_shape(Fs, (None, None, 3, None), "Fs")
    check_f(Fs.shape[0])
    x = torch.tensor(np.ascontiguousarray(X_ims.transpose(3, 2, 0, 1)), dtype=torch.float64)
    w = torch.tensor(np.ascontiguousarray(Fs.transpose(3, 2, 0, 1)), dtype=torch.float64)
    return torch.nn.functional.conv2d(x, w, stride=Fs.shape[0]).permute(2, 3, 1, 0).numpy().copy()


# =====================================================================================
# the debug file
# =====================================================================================

def make_debug_file(path, seed: int = 0, f: int = 4, nf: int = 2, nh: int = 50, n: int = 5) -> Path:
    """Write a debug npz with the course file's keys and shapes, every number from TorchTwin.

    Keys (shapes): X (3072, n), Fs (f, f, 3, nf), conv_outputs (32/f, 32/f, nf, n),
    conv_outputs_mat (n_p, nf, n), conv_flat (n_p*nf, n), W1 (nh, n_p*nf), W2 (10, nh),
    b1 (nh, 1), b2 (10, 1), X1 (nh, n), P (10, n), Y (10, n), grad_Fs_flat (f*f*3, nf),
    grad_W1, grad_W2, grad_b1, grad_b2 (their parameters' shapes). All float64. As in the
    course file: no conv bias, no regularisation, the mean cross-entropy. X holds synthetic
    images, normalised. Written atomically (workbook.files.atomic_write).
    """
    require_torch("make_debug_file")
    n_p, K = check_f(f), 10
    rng = np.random.default_rng(seed)
    Xraw, y = make_synthetic(n, seed=seed)
    X = Xraw.astype(np.float64) / 255.0
    X = (X - X.mean()) / X.std()
    p = {"Fs": rng.standard_normal((f, f, 3, nf)) * np.sqrt(2.0 / (f * f * 3)),
         "b0": np.zeros((nf, 1)),
         "W1": rng.standard_normal((nh, n_p * nf)) * np.sqrt(2.0 / (n_p * nf)),
         "b1": rng.standard_normal((nh, 1)) * 0.01,
         "W2": rng.standard_normal((K, nh)) * np.sqrt(2.0 / nh),
         "b2": rng.standard_normal((K, 1)) * 0.01}
    Y = H.one_hot(y, K, np.float64)
    r = TorchTwin(p).gradients(X, Y)
    g = r["grads"]
    out = dict(X=X, Fs=p["Fs"], conv_outputs=r["conv_outputs"], conv_outputs_mat=r["conv_outputs_mat"],
               conv_flat=r["conv_flat"], W1=p["W1"], W2=p["W2"], b1=p["b1"], b2=p["b2"],
               X1=r["X1"], P=r["P"], Y=Y, grad_Fs_flat=g["Fs"].reshape(f * f * 3, nf),
               grad_W1=g["W1"], grad_W2=g["W2"], grad_b1=g["b1"], grad_b2=g["b2"])
    arrays = {k: np.ascontiguousarray(v) for k, v in out.items()}
    return atomic_write(Path(path), lambda fh: np.savez(fh, **arrays))


def load_debug_file(path=None, seed: int = 0):
    """The course's ``data/debug_conv_info.npz`` if present, else a generated one (made once,
    needs torch). Returns ``(dict of arrays, description)`` saying which file it is."""
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


def debug_params(d: dict) -> dict:
    """The debug file's network as a float64 params dict (no conv bias there: b0 = zeros)."""
    missing = [k for k in ("Fs", "W1", "b1", "W2", "b2") if k not in d]
    if missing:
        raise ValueError(f"not a debug dict (from load_debug_file): {missing} missing")
    p = {k: np.asarray(d[k], np.float64) for k in ("Fs", "W1", "b1", "W2", "b2")}
    p["b0"] = np.zeros((p["Fs"].shape[3], 1))
    return engine.check_params(p)


def debug_check_rows(d: dict) -> list:
    """Compare the lesson's forward pass and gradients (and the engine's gradients) with a debug
    file's arrays, float64. d: from load_debug_file. Rows {array, source, shape, max_abs,
    max_rel}; source: 'forward' (helpers.forward: conv_flat, X1, P), 'compute_grads'
    (helpers.compute_grads; grad_Fs_flat = flatten_filters(grads['Fs'])), 'engine'
    (workbook.engine.compute_grads, the batch-first path)."""
    p = debug_params(d)
    MX = H.build_mx(H.to_images(np.asarray(d["X"], np.float64)), p["Fs"].shape[0])
    Y = np.asarray(d["Y"], np.float64)
    fw = H.forward(p, MX)
    ours = [(k, "forward", fw[k]) for k in ("conv_flat", "X1", "P")]
    for src, g in (("compute_grads", H.compute_grads(p, MX, Y)),
                   ("engine", engine.compute_grads(p, MX, Y))):
        ours.append(("grad_Fs_flat", src, H.flatten_filters(g["Fs"])))
        ours += [(f"grad_{k}", src, g[k]) for k in ("W1", "b1", "W2", "b2")]
    rows = []
    for key, src, a in ours:
        b = np.asarray(d[key], np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{key}: ours has shape {a.shape}, the debug file {b.shape}")
        rows.append({"array": key, "source": src, "shape": a.shape,
                     "max_abs": float(np.max(np.abs(a - b))), "max_rel": max_rel(a, b)})
    return rows


def conv_agreement(X_ims: np.ndarray, Fs: np.ndarray, reference: np.ndarray | None = None) -> dict:
    """Max abs differences between the convolution methods (and an optional reference).

    X_ims (32, 32, 3, n), Fs (f, f, 3, nf); reference: conv_outputs (32/f, 32/f, nf, n) or None.
    Every method is compared with conv_loops in the (n_p, nf, n) layout; the MX constructions
    with the spec's loop construction (build_mx_naive). Returns {description: float}.
    """
    X_ims = H.check_shape(X_ims, (32, 32, 3, None), "X_ims")
    Fs = H.check_shape(Fs, (None, None, 3, None), "Fs")
    f, nf, n = Fs.shape[0], Fs.shape[3], X_ims.shape[3]
    n_p = check_f(f)
    loops = H.conv_loops(X_ims, Fs)
    flat = loops.reshape((n_p, nf, n), order="C")
    MX_naive, MX = H.build_mx_naive(X_ims, f), H.build_mx(X_ims, f)
    MXb = mx_batch_first(H.to_columns(X_ims), f, dtype=X_ims.dtype)
    Fs_flat = H.flatten_filters(Fs)
    gemm = engine.conv_gemm(MXb, Fs_flat)
    mad = lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))  # noqa: E731
    out = {"build_mx vs build_mx_naive": mad(MX, MX_naive),
           "mx_batch_first vs build_mx_naive": mad(MXb.transpose(1, 2, 0), MX_naive),
           "matmul vs loops": mad(H.conv_matmul(MX_naive, Fs_flat), flat),
           "einsum vs loops": mad(H.conv_einsum(MX_naive, Fs_flat), flat),
           "engine GEMM (batch-first) vs loops": mad(gemm.transpose(1, 2, 0), flat)}
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape != loops.shape:
            raise ValueError(f"reference must be conv_outputs with shape {loops.shape}; "
                             f"got {reference.shape}")
        out["loops vs reference"] = mad(loops, reference)
    return out


# =====================================================================================
# gradient tables: a small net, finite differences, the comparison
# =====================================================================================

def tiny_net(f=8, nf=2, nh: int = 6, n: int = 5, X: np.ndarray | None = None,
             y: np.ndarray | None = None, seed: int = 0):
    """A small float64 network and batch for gradient checks -> (params, MX, Y).

    params: He-initialised (engine.init_params: f, nf may be tuples for several filter sizes)
    with small random non-zero biases; MX (n_p, f*f*3, n) from X[:, :n] (3072, >= n) or random
    images, or {f: MX_f} for several sizes; Y (10, n) one-hot from y[:n] or random labels.
    """
    rng = np.random.default_rng(seed)
    p = engine.init_params(f, nf, nh, seed=seed, dtype=np.float64)
    for k in p:
        if k.startswith("b"):
            p[k] = rng.standard_normal(p[k].shape) * 0.1
    X = rng.standard_normal((3072, n)) if X is None else check_X(X)
    if X.shape[1] < n:
        raise ValueError(f"X has {X.shape[1]} images; need n={n}")
    ims = H.to_images(np.asarray(X[:, :n], np.float64))
    y = rng.integers(0, 10, n) if y is None else np.asarray(y)[:n]
    MX = ({fi: H.build_mx(ims, fi) for fi in f} if isinstance(f, (tuple, list))
          else H.build_mx(ims, f))
    return p, MX, H.one_hot(y, 10, np.float64)


def cost_of(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0) -> float:
    """The cost: helpers.compute_loss for one filter size and a spec MX; for several ({f: MX_f})
    the engine's forward pass (batch-first) with the same loss and L2 term."""
    if not isinstance(MX, dict):
        return H.compute_loss(params, MX, Y, lam, eps)[1]
    mxs = engine.spec_mx_list(params, MX)
    logP = engine.forward_batch(params, mxs)["logP"]
    T = H.smooth_targets(np.asarray(Y, logP.dtype), eps).T
    return float(-np.sum(T * logP) / T.shape[0]) + lam * H.l2_penalty(params)


def numerical_grads(params: dict, MX, Y: np.ndarray, lam: float = 0.0, eps: float = 0.0,
                    h: float = 1e-5, max_entries: int | None = 20, seed: int = 0) -> dict:
    """Centred finite differences of the cost (cost_of), float64, on a subset of entries.

    For each array, ``max_entries`` entries chosen at random (all when None or larger) get
    (cost(w + h) - cost(w - h)) / (2h). Returns {key: float64 array of params[key].shape} with
    NaN at the entries not evaluated. params is not changed (the work is on copies).
    """
    if h <= 0:
        raise ValueError(f"step h must be positive; got {h}")
    p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    MX = ({k: np.asarray(v, np.float64) for k, v in MX.items()} if isinstance(MX, dict)
          else np.asarray(MX, np.float64))
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
            cp = cost_of(p, MX, Y, lam, eps)
            w[i] = old - h
            cm = cost_of(p, MX, Y, lam, eps)
            w[i] = old
            g[i] = (cp - cm) / (2 * h)
        out[k] = g.reshape(p[k].shape)
    return out


def grad_error_table(params: dict, MX, Y: np.ndarray, lam: float, eps: float,
                     reference: dict, floor: float = 1e-8, impl: str | None = None) -> list:
    """Compare gradients with reference ones, one row per parameter array.

    impl: 'plain' (helpers.compute_grads, one filter size) or 'engine' (engine.compute_grads);
    None: plain for one filter size, engine for several. reference: {key: array of
    params[key].shape}, e.g. from torch_grads or numerical_grads (NaN entries are skipped).
    Rows: param, impl, shape, checked (entries compared), max_abs, max_rel (max_rel's floor).
    """
    impl = impl or ("engine" if isinstance(MX, dict) else "plain")
    if impl not in ("plain", "engine"):
        raise ValueError(f"impl must be 'plain' or 'engine'; got {impl!r}")
    if impl == "plain" and isinstance(MX, dict):
        raise ValueError("helpers.compute_grads has one filter size: use impl='engine'")
    g = (H.compute_grads if impl == "plain" else engine.compute_grads)(params, MX, Y, lam, eps)
    rows = []
    for k in params:
        if k not in reference:
            raise ValueError(f"reference has no gradient for {k!r}")
        a, b = np.asarray(g[k], np.float64), np.asarray(reference[k], np.float64)
        if a.shape != b.shape:
            raise ValueError(f"reference[{k!r}] has shape {b.shape}; expected {a.shape}")
        m = np.isfinite(b)
        rows.append({"param": k, "impl": impl, "shape": a.shape, "checked": int(m.sum()),
                     "max_abs": float(np.max(np.abs(a[m] - b[m]))) if m.any() else 0.0,
                     "max_rel": max_rel(a[m], b[m], floor)})
    return rows


# =====================================================================================
# image-space references
# =====================================================================================

def mx_to_images(MX: np.ndarray, f: int) -> np.ndarray:
    """Inverse of build_mx: MX (n_p, f*f*3, n) -> X_ims (32, 32, 3, n) (same dtype)."""
    n_p = check_f(f)
    MX = np.asarray(MX)
    if MX.ndim != 3 or MX.shape[:2] != (n_p, f * f * 3):
        raise ValueError(f"MX must have shape ({n_p}, {f * f * 3}, n) for f={f}; got {MX.shape}")
    g, n = 32 // f, MX.shape[2]
    return np.ascontiguousarray(MX.reshape(g, g, f, f, 3, n).transpose(0, 2, 1, 3, 4, 5)
                                ).reshape(32, 32, 3, n)


def shift_images(X: np.ndarray, dy: int, dx: int, flip: bool = False) -> np.ndarray:
    """Reference transform in image space: X (3072, n) -> (3072, n), optionally mirrored
    left-right, then shifted down by dy and right by dx pixels with zero fill."""
    ims = H.to_images(check_X(X))
    if flip:
        ims = ims[:, ::-1]
    out = np.zeros_like(ims)
    ys, yd = (slice(0, 32 - dy), slice(dy, 32)) if dy >= 0 else (slice(-dy, 32), slice(0, 32 + dy))
    xs, xd = (slice(0, 32 - dx), slice(dx, 32)) if dx >= 0 else (slice(-dx, 32), slice(0, 32 + dx))
    out[yd, xd] = ims[ys, xs]
    return H.to_columns(out)
