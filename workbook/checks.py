"""Input checks at the engine's boundary: each raises a ValueError that says what is wrong and
what to do, before any work is done or memory is taken. (The lesson, helpers.py, keeps only
short shape checks; the engine and the data layer check everything here.)"""
from __future__ import annotations

import numpy as np

import helpers as H
from helpers import check_f, check_shape


def check_X(X, name: str = "X") -> np.ndarray:
    """X as a (3072, n) array of real numbers (one flattened 32x32x3 image per column)."""
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != 3072:
        raise ValueError(f"{name} must have shape (3072, n), one flattened 32x32x3 image per "
                         f"column; got {X.shape}. If your images are rows (n, 3072), pass {name}.T "
                         "(a square (3072, 3072) array cannot be told apart: check its layout)")
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


NORMALISE_ADVICE = ("normalise the images first, with the training set's per-pixel mean and "
                    "std: workbook.data.normalise(X_train, X_test) (load_dataset does it)")


def check_normalised(X, name: str = "X") -> np.ndarray:
    """X (3072, n) of floats, finite, and on the scale of normalised data (pixel values around
    0 with spread around 1), else a ValueError with the normalisation advice. Raw pixels
    (0..255, integers or floats) train silently at chance: they are refused here."""
    X = check_X(X, name)
    if not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"{name} holds {X.dtype} values (raw pixels?); {NORMALISE_ADVICE}")
    cols = nonfinite_columns(X)
    if cols.size:
        raise ValueError(f"{name} has NaN or inf values in {cols.size} image(s) (first: column "
                         f"{cols[0]}); remove or repair those images before training")
    return H.check_normalised(X, name)        # the scale test, one implementation


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


def check_Y(Y, n: int, K: int) -> np.ndarray:
    """One-hot (or smoothed) targets of shape (K, n)."""
    Y = np.asarray(Y)
    if Y.shape != (K, n):
        raise ValueError(f"Y must be one-hot with shape (K, n) = ({K}, {n}); got {Y.shape}. "
                         "Use helpers.one_hot(y) for int labels")
    return Y


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


def check_mx(MX, f: int, dtype) -> np.ndarray:
    """A spec-layout MX (n_p, f*f*3, n) for filter width f, of the parameters' dtype."""
    MX = check_shape(MX, (check_f(f), f * f * 3, None), f"MX for f={f}")
    if MX.dtype != dtype:
        raise ValueError(f"MX is {MX.dtype} but the parameters are {dtype}; convert one of them "
                         f"(e.g. MX.astype(np.{dtype}))")
    return MX
