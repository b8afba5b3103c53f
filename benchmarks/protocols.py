"""Whole training protocols timed end to end with ``workbook.engine.train`` (random data, 49k
train / 10k test): arch2 with the assignment's settings (4,800 updates) and arch5 with 4
doubling cycles (24,000 updates). arch5 runs in a fresh Python so that its peak RSS is its own:

    python -m benchmarks.protocols --json-out PATH [--threads N] [--shrink S]
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.measurements import arch, make_data, net_params, peak_rss_mb, thread_limit
from helpers import TrainingDiverged
from workbook import engine
from workbook.files import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]


def protocol_config(name: str) -> engine.EngineConfig:
    """'arch2': the assignment's TrainConfig defaults (3 cycles, step 800: 4,800 updates);
    'arch5': 4 doubling cycles from step 800, lam 0.0025 (24,000 updates). Progress bar off."""
    if name == "arch2":
        return engine.EngineConfig(progress=False)
    if name == "arch5":
        return engine.EngineConfig(n_cycles=4, step=800, increasing=True, lam=0.0025, progress=False)
    raise ValueError(f"protocols exist for 'arch2' and 'arch5', not {name!r}")


def protocol_time(a: str = "arch2", cfg=None, n_train: int = 49000, n_test: int = 10000,
                  threads: int | None = None, seed: int = 0) -> dict:
    """Wall time of one whole engine.train run on random data (speed only): MX construction
    for train and test, all updates, all evaluations; data generation is outside.

    cfg: an EngineConfig (default protocol_config(a)). threads: BLAS threads for the run (sets
    cfg.threads); None keeps cfg.threads, i.e. the engine's own policy as a user gets it.
    Returns arch, f, nf, nh, n_train, n_test, threads, updates, n_evals, time_train, time_eval,
    time_other (MX construction etc.), total (seconds), config, error (None, or the message if
    training diverged).
    """
    name, f, nf, nh = arch(a)
    cfg = engine.as_engine_config(protocol_config(name) if cfg is None else cfg)
    if threads is not None:
        cfg = dataclasses.replace(cfg, threads=int(threads))
    tr, te = make_data(n_train, seed), make_data(n_test, seed + 1)
    params = net_params(a, seed)
    err = None
    with thread_limit(cfg.threads):
        t0 = time.perf_counter()
        try:
            _, hist = engine.train(params, tr["X"], tr["y"], cfg, te["X"], te["y"], data_name=tr["name"])
        except TrainingDiverged as e:
            hist, err = e.history, str(e)
        total = time.perf_counter() - t0
    return {"arch": name, "f": f, "nf": nf, "nh": nh, "n_train": n_train, "n_test": n_test,
            "threads": cfg.threads, "updates": hist.updates_done, "n_evals": len(hist.t),
            "time_train": hist.time_train, "time_eval": hist.time_eval,
            "time_other": total - hist.time_train - hist.time_eval, "total": total,
            "config": cfg.to_dict(), "error": err}


def arch5_protocol_subprocess(threads: int | None = None, shrink: int = 1,
                              n_train: int = 49000, n_test: int = 10000) -> dict:
    """The arch5 protocol in a fresh Python (its peak RSS its own): protocol_time's dict plus
    'peak_rss_mb'. shrink > 1 divides the step (for tests)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "arch5.json"
        cmd = [sys.executable, "-m", "benchmarks.protocols", "--json-out", str(out),
               "--shrink", str(shrink), "--n-train", str(n_train), "--n-test", str(n_test)]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            raise RuntimeError(f"the arch5 protocol subprocess failed ({p.returncode}):\n{p.stderr[-3000:]}")
        return read_json(out)


def main(argv=None) -> int:
    """The arch5 protocol in this process, its result written to --json-out."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.protocols", description=__doc__)
    p.add_argument("--json-out", required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--shrink", type=int, default=1)
    p.add_argument("--n-train", type=int, default=49000)
    p.add_argument("--n-test", type=int, default=10000)
    args = p.parse_args(argv)
    cfg = protocol_config("arch5")
    if args.shrink > 1:
        cfg = dataclasses.replace(cfg, step=max(1, cfg.step // args.shrink), eval_every=None)
    r = protocol_time("arch5", cfg, n_train=args.n_train, n_test=args.n_test, threads=args.threads)
    r["peak_rss_mb"] = peak_rss_mb()
    write_json(args.json_out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
