"""Small shared test utilities (imported by the test modules; not a test file)."""
import numpy as np


def rel_err(a, b):
    """max |a - b| / max(max |a|, max |b|), in float64: one number per array pair."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))
