"""The command line: measure, print the tables, write the JSON (atomically).

    python -m benchmarks [--quick] [--threads N] [--out PATH]      (or python benchmarks/speed.py)

A full run writes benchmarks/results.json; a --quick run writes benchmarks/results_quick.json
and may never write results.json (its numbers are too short to stand for the project).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks import measurements as M
from benchmarks.protocols import arch5_protocol_subprocess, protocol_time
from benchmarks.report import evaluate_targets, report
from benchmarks.runners import TrainRunner, speed_grid, torch_variants, update_times
from workbook.files import write_json

HERE = Path(__file__).resolve().parent
RESULTS, QUICK_RESULTS = HERE / "results.json", HERE / "results_quick.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Speed benchmark: workbook.engine against the fastest idiomatic torch CPU loop. "
                    + M.DATA_NOTE)
    p.add_argument("--quick", action="store_true",
                   help="20 updates x 3 repeats, 10k images, no protocols (unless asked); "
                        "writes benchmarks/results_quick.json")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for NumPy's BLAS and torch in the per-update comparison (default: "
                        "os.cpu_count()); for the protocols, BLAS threads for train (default: "
                        "the engine's own policy)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results[_quick].json)")
    p.add_argument("--protocol", action=argparse.BooleanOptionalAction, default=None,
                   help="run the arch2 protocol (default: on, off with --quick)")
    p.add_argument("--arch5", action=argparse.BooleanOptionalAction, default=None,
                   help="run the arch5 protocol (~2 min) in a subprocess (default: on, off with --quick)")
    p.add_argument("--archs", default=",".join(M.ALL_ARCHS),
                   help=f"comma-separated architectures (default: all, {', '.join(M.ALL_ARCHS)})")
    p.add_argument("--n-updates", type=int, default=None, help="updates per repeat (200; quick 20)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (5; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up updates (20; quick 5)")
    p.add_argument("--n-data", type=int, default=None, help="images to draw batches from (49000; quick 10000)")
    p.add_argument("--no-torch", action="store_true", help="skip torch (as if it were not installed)")
    p.add_argument("--grid", action="store_true", help="also time speed_grid() (slow)")
    p.add_argument("--sgemm-min-time", type=float, default=None, help="seconds per GEMM repeat (0.3; quick 0.1)")
    p.add_argument("--sgemm-max", type=int, default=2048, help="side of the square GEMM (2048)")
    p.add_argument("--n-train", type=int, default=49000, help=argparse.SUPPRESS)
    p.add_argument("--n-test", type=int, default=10000, help=argparse.SUPPRESS)
    p.add_argument("--protocol-shrink", type=int, default=1, help=argparse.SUPPRESS)
    return p


def settings(args) -> dict:
    q = args.quick
    return {"threads": args.threads or M.default_threads(), "batch": M.BATCH, "lam": M.LAM,
            "eta": M.ETA, "n_updates": args.n_updates or (20 if q else 200),
            "repeats": args.repeats or (3 if q else 5),
            "warmup": args.warmup if args.warmup is not None else (5 if q else 20),
            "n_data": args.n_data or (10000 if q else 49000)}


def measure_sgemm(threads: int, min_time: float, side: int) -> tuple:
    """(rows, {threads: GFLOP/s of the big square}) at 1 thread and at ``threads``."""
    rows = M.sgemm_rates(tuple(sh for sh in M.SGEMM_SHAPES if sh[0] != 2048), threads=threads,
                         min_time=min_time)
    rate = {}
    for t in sorted({1, threads}):
        row = M.sgemm_rates(((side,) * 3,), threads=t, min_time=min_time)[0]
        rows.append(row)
        rate[t] = row["gflops"]
    return rows, rate


def per_update_row(a, r: dict, variants: list, threads: int, gflops: float) -> dict:
    """One net's row: the programs' times (update_times' dict r), the ratio, the bound."""
    name, f, nf, nh = M.arch(a)
    ns, nstep = r["numpy"]["min_s"], r["numpy_step"]["min_s"]
    tv = {v: (r["torch:" + v] or {}).get("min_s") for v in variants}
    ts, tvar = min((t, v) for v, t in tv.items() if t is not None) if any(tv.values()) else (None, None)
    fl = M.net_flops(a)
    b = M.bound(fl, gflops, ns)
    return {"arch": name, "f": f, "nf": nf, "nh": nh, "numpy_threads": threads,
            "numpy_s": ns, "numpy_median_s": r["numpy"]["median_s"],
            "numpy_repeats_s": r["numpy"]["repeats_s"], "numpy_step_s": nstep,
            "torch_s": ts, "torch_variant": tvar, "torch_variants": tv if variants else None,
            "torch_repeats_s": r["torch:" + tvar]["repeats_s"] if tvar else None,
            "ratio_torch_over_numpy": ts / ns if ts else None,
            "ratio_torch_over_numpy_step": ts / nstep if ts else None,
            "flops": fl, "mflop": fl / 1e6, "numpy_gflops": fl / ns / 1e9, "sgemm_gflops": gflops,
            "bound_s": b["bound_s"], "x_sgemm_bound": b["x_bound"],
            "x_sgemm_bound_step": M.bound(fl, gflops, nstep)["x_bound"]}


def run_benchmark(args) -> dict:
    """Everything ``main`` measures, as the results dict."""
    s = settings(args)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in archs:
        M.arch(a)
    torch = None if args.no_torch else M.torch_module()
    note = None if torch is not None else (
        "torch was skipped (--no-torch)" if args.no_torch else
        "torch is not installed, so the torch columns are null; pip install -e .[oracle] to compare")
    variants = torch_variants(s["threads"]) if torch is not None else []
    impls = ("numpy", "numpy_step") + tuple("torch:" + v for v in variants)
    env = M.environment()
    res = {"schema": M.SCHEMA, "note": M.DATA_NOTE, "mode": "quick" if args.quick else "full",
           "settings": s, "environment": env, "torch_note": note, "warnings": []}
    load, ncpu = (env["load_average"] or [0.0])[0], env["cpus_usable"] or env["cpu_count"] or 1
    if load > 0.5 * ncpu:
        res["warnings"].append(
            f"the machine was busy (1-minute load average {load:.1f} on {ncpu} CPUs): timings are "
            "noisy, and multi-threaded BLAS/torch suffer most; rerun on an idle machine")
    sg, rate = measure_sgemm(s["threads"], args.sgemm_min_time or (0.1 if args.quick else 0.3),
                             args.sgemm_max)
    res["sgemm"], res["sgemm_peak_gflops"], res["sgemm_rate_by_threads"] = sg, max(rate.values()), rate
    print("  sgemm " + ", ".join(f"{t} thread(s) {g:.0f} GFLOP/s" for t, g in rate.items()), flush=True)

    data = M.make_data(s["n_data"])
    TrainRunner.min_updates = 24 if args.quick else 60
    per = []
    for a in archs:
        # about the same seconds per timed run on every net: fewer updates on big ones
        k = max(4, min(s["n_updates"], int(s["n_updates"] * 600e6 / M.net_flops(a))))
        r = update_times(a, impls=impls, n_updates=k, repeats=s["repeats"],
                         warmup=min(s["warmup"], k), threads=s["threads"], data=data, screen=1.5)
        row = per_update_row(a, r, variants, s["threads"], rate[s["threads"]])
        row["n_updates"] = k
        per.append(row)
        print(f"  timed {row['arch']}: numpy train() {row['numpy_s'] * 1e3:.3f} ms "
              f"({row['x_sgemm_bound']:.2f}x bound), train_step {row['numpy_step_s'] * 1e3:.3f} ms"
              + (f", torch {row['torch_s'] * 1e3:.3f} ms ({row['torch_variant']}), ratio "
                 f"{row['ratio_torch_over_numpy']:.2f}" if row["torch_s"] else ""), flush=True)
    res["per_update"] = per
    del data

    res["protocol"] = {"arch2": None, "arch5": None}
    if (not args.quick) if args.protocol is None else args.protocol:
        print("  arch2 protocol ...", flush=True)
        res["protocol"]["arch2"] = protocol_time("arch2", n_train=args.n_train, n_test=args.n_test,
                                                 threads=args.threads)
    if (not args.quick) if args.arch5 is None else args.arch5:
        print("  arch5 protocol in a subprocess (about 2 minutes) ...", flush=True)
        res["protocol"]["arch5"] = arch5_protocol_subprocess(args.threads, args.protocol_shrink,
                                                             args.n_train, args.n_test)
    if args.grid:
        res["grid"] = speed_grid(threads=s["threads"], n_updates=max(5, s["n_updates"] // 4),
                                 repeats=s["repeats"])
    res["main_peak_rss_mb"] = M.peak_rss_mb()
    res["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    res["targets"] = evaluate_targets(res)
    return res


def output_path(args) -> Path:
    """Where the JSON goes: --out, else results.json (full) or results_quick.json (quick). A
    quick run may not write results.json."""
    out = Path(args.out) if args.out else (QUICK_RESULTS if args.quick else RESULTS)
    if args.quick and out.resolve() == RESULTS.resolve():
        raise SystemExit(f"a --quick run may not write {RESULTS} (it holds a full run's numbers); "
                         "choose another --out")
    return out


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (0)."""
    args = parser().parse_args(argv)
    out = output_path(args)
    res = run_benchmark(args)
    write_json(out, res)
    print(report(res))
    print(f"\nwrote {out}")
    return 0
