"""Input checks for the assignment's code: each raises a ValueError that says what is wrong and
what to do, before any work is done. Kept out of helpers.py so the math reads top to bottom."""
from __future__ import annotations

import numpy as np


def _check_f(f: int) -> int:
    """Return n_p = (32/f)**2, or raise if f does not tile a 32x32 image."""
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1 or 32 % f != 0:
        raise ValueError(f"filter width f={f!r} must be a positive integer that divides 32 (the "
                         "patchify convolution uses stride f, non-overlapping): 1, 2, 4, 8, 16 or 32")
    return (32 // int(f)) ** 2


def _check_X(X: np.ndarray, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != 3072:
        raise ValueError(f"{name} must have shape (3072, n), one flattened 32x32x3 image per "
                         f"column; got {X.shape}. If your images are (n, 3072), pass X.T")
    if not (np.issubdtype(X.dtype, np.number) and not np.issubdtype(X.dtype, np.complexfloating)):
        raise ValueError(f"{name} must hold real numbers; got dtype {X.dtype}")
    return X


def nonfinite_columns(X: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Indices of the columns (images) of a 2-D X that hold NaN or inf; scanned in chunks of
    images so no full-size boolean temporary is made. Integer arrays have none."""
    if not np.issubdtype(X.dtype, np.floating):
        return np.zeros(0, np.int64)
    R = X.T
    bad = [j + np.flatnonzero(~np.isfinite(R[j:j + chunk]).all(axis=1)) for j in range(0, R.shape[0], chunk)]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


def _check_finite(X: np.ndarray, name: str) -> np.ndarray:
    """Raise before any work when X holds NaN or inf (it would silently poison the run)."""
    cols = nonfinite_columns(X)
    if cols.size:
        raise ValueError(f"{name} has NaN or inf values in {cols.size} image(s) (first: column "
                         f"{cols[0]}); remove or repair those images before training")
    return X


def _check_ims(X_ims: np.ndarray) -> np.ndarray:
    X_ims = np.asarray(X_ims)
    if X_ims.ndim == 3:
        X_ims = X_ims[..., None]
    if X_ims.ndim != 4 or X_ims.shape[:3] != (32, 32, 3):
        raise ValueError(f"X_ims must have shape (32, 32, 3, n); got {X_ims.shape}. "
                         "Build it from X (3072, n) with to_images(X)")
    return X_ims


def _check_Fs(Fs: np.ndarray) -> np.ndarray:
    Fs = np.asarray(Fs)
    if Fs.ndim != 4 or Fs.shape[0] != Fs.shape[1] or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    _check_f(Fs.shape[0])
    return Fs


def _check_mx_filters(MX, Fs_flat) -> tuple:
    MX, Fs_flat = np.asarray(MX), np.asarray(Fs_flat)
    if MX.ndim != 3:
        raise ValueError(f"MX must have shape (n_p, f*f*3, n); got {MX.shape}")
    if Fs_flat.ndim != 2 or Fs_flat.shape[0] != MX.shape[1]:
        raise ValueError(f"Fs_flat must have shape (f*f*3, nf) = ({MX.shape[1]}, nf) to match MX "
                         f"{MX.shape}; got {Fs_flat.shape}. Flatten filters with flatten_filters(Fs)")
    return MX, Fs_flat


def check_labels(y, K: int = 10, n: int | None = None, name: str = "y") -> np.ndarray:
    """y as a 1-D int64 array of labels in 0..K-1 (and n of them), or a ValueError saying what
    is wrong. Floats are accepted only when every value is a whole number (1.0, never 1.7)."""
    try:
        a = np.asarray(y)
    except Exception as e:
        raise ValueError(f"{name} must be an array of int labels; {e}") from e
    if a.ndim == 2 and 1 in a.shape:
        a = a.ravel()
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of int labels; got shape {a.shape} "
                         "(for one-hot Y (K, n) use Y.argmax(axis=0))")
    if a.size and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must hold int labels 0..{K - 1}; got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and a.size and (
            not np.isfinite(a).all() or np.any(a != np.round(a))):
        raise ValueError(f"{name} holds non-integer labels (e.g. {a[a != np.round(a)][:1]}); "
                         "labels must be whole numbers 0..K-1, not probabilities or scores")
    if a.size and (a.min() < 0 or a.max() >= K):
        raise ValueError(f"{name} must hold labels in 0..{K - 1}; got range [{a.min():g}, {a.max():g}]")
    if n is not None and a.size != n:
        raise ValueError(f"{name} has {a.size} labels for {n} images")
    return a.astype(np.int64)


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer; got {v!r}")
    return int(v)


def _check_eps(eps: float) -> float:
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label smoothing eps must be in [0, 1); got {eps}")
    return float(eps)


def _check_Y(Y: np.ndarray, n: int, K: int) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.shape != (K, n):
        raise ValueError(f"Y must be one-hot with shape (K, n) = ({K}, {n}); got {Y.shape}. "
                         "Use one_hot(y) for int labels")
    return Y


def check_config(cfg, n_updates, max_updates: int) -> None:
    """TrainConfig's validation: types first (20.0 is not a batch size), then ranges."""
    for k in ("n_cycles", "step", "batch_size", "eval_train_n", "seed", "translate"):
        v = getattr(cfg, k)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"TrainConfig.{k} must be an integer; got {v!r}")
    if cfg.seed < 0:
        raise ValueError(f"TrainConfig.seed must be >= 0; got {cfg.seed}")
    for k in ("increasing", "flip", "tta", "progress"):
        if not isinstance(getattr(cfg, k), (bool, np.bool_)):
            raise ValueError(f"TrainConfig.{k} must be True or False; got {getattr(cfg, k)!r}")
    for k in ("eval_every", "threads"):
        v = getattr(cfg, k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"TrainConfig.{k} must be None or a positive integer; got {v!r}")
    for k in ("eta_min", "eta_max", "lam", "eps", "eta_decay", "dropout", "whiten"):
        v = getattr(cfg, k)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v):
            raise ValueError(f"TrainConfig.{k} must be a finite number; got {v!r}")
    if cfg.step < 1 or cfg.n_cycles < 1 or cfg.batch_size < 1 or cfg.eval_train_n < 1:
        raise ValueError("step, n_cycles, batch_size and eval_train_n must be >= 1")
    if not 0 < cfg.eta_min <= cfg.eta_max:
        raise ValueError(f"need 0 < eta_min <= eta_max; got {cfg.eta_min}, {cfg.eta_max}")
    if not 0 <= cfg.eps < 1 or not 0 <= cfg.dropout < 1 or cfg.lam < 0 or cfg.eta_decay <= 0:
        raise ValueError("need 0 <= eps < 1, 0 <= dropout < 1, lam >= 0 and eta_decay > 0")
    if cfg.whiten < 0:
        raise ValueError(f"TrainConfig.whiten is a regulariser >= 0 (0 = off, 0.01 typical); got {cfg.whiten}")
    if cfg.translate < 0 or cfg.translate > 16:
        raise ValueError(f"translate is a maximum shift in pixels, 0..16; got {cfg.translate}")
    total = n_updates(cfg.n_cycles, cfg.step, cfg.increasing) if cfg.n_cycles <= 60 else None
    if total is None or total > max_updates:
        raise ValueError(f"this schedule has {total or 'over 2**60'} updates (more than "
                         f"{max_updates:.0e}); lower n_cycles or step")


def check_like(path, params: dict, like: dict) -> None:
    """A loaded checkpoint's arrays against ``like`` (the architecture and dtype expected)."""
    if set(like) != set(params):
        raise ValueError(f"checkpoint {path} has keys {sorted(params)}, expected {sorted(like)}")
    for k in like:
        if params[k].shape != like[k].shape:
            raise ValueError(f"checkpoint {path}: {k} has shape {params[k].shape}, expected "
                             f"{like[k].shape}; it was saved for another architecture")
        if params[k].dtype != like[k].dtype:
            raise ValueError(f"checkpoint {path}: {k} is {params[k].dtype}, expected {like[k].dtype}; "
                             f"same architecture, other precision: pass like= in {params[k].dtype} "
                             "or convert with .astype")
