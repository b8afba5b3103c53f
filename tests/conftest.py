"""Shared pytest set-up: the repository root is importable (``import helpers``) even without
``pip install -e .``, and every test module runs with one BLAS thread."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny matrices: one BLAS thread is much faster than many on a busy shared machine
    (multi-threaded OpenBLAS was 15-27x slower on these shapes under load)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield
