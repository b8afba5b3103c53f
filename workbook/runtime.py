"""How train() uses the machine, kept out of the reader's way: BLAS threads, a prefetching batch
gatherer on the spare core, and the progress bar. None of it changes a number."""
from __future__ import annotations

import os

from workbook.checks import _check_f


def prefetch_batches(draw, fetch, T: int):
    """Yield (idx, mask, batch) for updates 0..T-1. While update t computes, a helper thread
    gathers batch t+1 (numpy releases the GIL while copying); saves ~15% on small nets."""
    if (os.cpu_count() or 1) < 2:
        for t in range(T):
            idx, choice, mask = draw(t)
            yield idx, mask, fetch(idx, choice)
        return
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(1, thread_name_prefix="batch-prefetch")
    try:
        idx, choice, mask = draw(0)
        fut = pool.submit(fetch, idx, choice)
        for t in range(T):
            cur = (idx, mask, fut.result())
            if t + 1 < T:
                idx, choice, mask = draw(t + 1)
                fut = pool.submit(fetch, idx, choice)
            yield cur
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def auto_threads(params: dict, batch_size: int = 100) -> int:
    """BLAS threads for ``train`` when cfg.threads is None: all cores only when an update is
    over ~150 MFLOP (e.g. arch5); else 1, since thread hand-offs cost more than such small
    GEMMs save, and 1 thread is robust on a busy machine."""
    nh, width = params["W1"].shape
    conv = sum(_check_f(v.shape[0]) * v.shape[0] ** 2 * 3 * v.shape[3]
               for k, v in params.items() if k.startswith("Fs"))
    flops = 6 * batch_size * (width * nh + conv)
    return (os.cpu_count() or 1) if flops > 150e6 else 1


def blas_threads(threads):
    """A context manager limiting BLAS to ``threads`` threads (None: leave the default)."""
    if threads is None:
        from contextlib import nullcontext
        return nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=int(threads), user_api="blas")


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar for train(), or None when ``enabled`` is false or WORKBOOK_PROGRESS=0 (set by
    ``make workbook``: an executed notebook would keep a widget bar frozen at its first frame)."""
    if not enabled or os.environ.get("WORKBOOK_PROGRESS", "").strip().lower() in {"0", "false", "no", "off"}:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)
