"""The issue's targets (printed pass / MISS, never asserted) and the human-readable tables of a
results dict."""
from __future__ import annotations

from benchmarks.measurements import ARCHS, BONUS, DATA_NOTE

TARGETS = {
    "ratio_all": 1.0,        # fastest torch / numpy train() per update: no net slower than torch
    "ratio_arch2": 1.5,      # the same, arch2
    "arch2_protocol_s": 6.0,
    "arch5_protocol_s": 180.0,
    "arch5_rss_mb": 2048.0,  # 2 GB (MB = 2**20 bytes, as ru_maxrss/1024)
    "arch2_vs_bound": 3.0,   # update time / (FLOPs / measured sgemm rate)
    "wide_vs_bound": 1.5,    # the same for arch5 and the bonus nets (issue 23: the wide net and the recipe)
}


def target(name: str, goal: str, value, ok) -> dict:
    return {"name": name, "target": goal, "value": value, "pass": ok}


def evaluate_targets(res: dict) -> list:
    """The targets as rows {'name', 'target', 'value', 'pass'} (pass None = not measured)."""
    rows = []
    ratios = {r["arch"]: r["ratio_torch_over_numpy"] for r in res["per_update"]}
    have = [v for v in ratios.values() if v is not None]
    complete = (set(ARCHS) | set(BONUS)) <= set(ratios) and len(have) == len(ratios)
    mn = min(have) if have else None
    rows.append(target("numpy train() vs the fastest idiomatic torch, arch1-5 + bonus nets (min ratio)",
                       f">= {TARGETS['ratio_all']}x", mn,
                       (mn >= TARGETS["ratio_all"]) if (mn is not None and complete) else None))
    r2 = ratios.get("arch2")
    rows.append(target("numpy train() vs the fastest torch on arch2 (torch/numpy)",
                       f">= {TARGETS['ratio_arch2']}x", r2, None if r2 is None else r2 >= TARGETS["ratio_arch2"]))
    p2 = (res["protocol"].get("arch2") or {}).get("total")
    rows.append(target("arch2 protocol wall time (s)", f"<= {TARGETS['arch2_protocol_s']:g}", p2,
                       None if p2 is None else p2 <= TARGETS["arch2_protocol_s"]))
    a5 = res["protocol"].get("arch5") or {}
    p5, rss = a5.get("total"), a5.get("peak_rss_mb")
    rows.append(target("arch5 protocol wall time (s)", f"<= {TARGETS['arch5_protocol_s']:g}", p5,
                       None if p5 is None else p5 <= TARGETS["arch5_protocol_s"]))
    rows.append(target("arch5 protocol peak RSS (MB)", f"<= {TARGETS['arch5_rss_mb']:g}", rss,
                       None if rss is None else rss <= TARGETS["arch5_rss_mb"]))
    b2 = next((r["x_sgemm_bound"] for r in res["per_update"] if r["arch"] == "arch2"), None)
    rows.append(target("arch2 update time / (FLOPs / sgemm rate)", f"<= {TARGETS['arch2_vs_bound']:g}",
                       b2, None if b2 is None else b2 <= TARGETS["arch2_vs_bound"]))
    wide = [r["x_sgemm_bound"] for r in res["per_update"] if r["arch"] == "arch5" or r["arch"] in BONUS]
    mw = max(wide) if wide else None
    rows.append(target("arch5 + bonus update time / (FLOPs / sgemm rate) (max)",
                       f"<= {TARGETS['wide_vs_bound']:g}", mw,
                       None if mw is None else mw <= TARGETS["wide_vs_bound"]))
    return rows


def fmt(v, spec="{:.3g}") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "pass" if v else "MISS"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 else spec.format(v)
    return str(v)


def table(headers, rows) -> str:
    cells = [[fmt(c) for c in r] for r in rows]
    w = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
         for i, h in enumerate(headers)]
    line = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(headers), line(["-" * x for x in w])] + [line(r) for r in cells])


def ms(v):
    return None if v is None else v * 1e3


def per_update_table(res: dict) -> str:
    return table(["arch", "f", "nf", "nh", "thr", "train() ms", "step ms", "torch ms", "torch variant",
                  "torch/numpy", "MFLOP", "sgemm GFLOP/s", "bound ms", "x bound", "step x bound"],
                 [[r["arch"], r["f"], r["nf"], r["nh"], r.get("numpy_threads"), ms(r["numpy_s"]),
                   ms(r.get("numpy_step_s")), ms(r["torch_s"]), r.get("torch_variant"),
                   r["ratio_torch_over_numpy"], r["mflop"], r.get("sgemm_gflops"), ms(r.get("bound_s")),
                   r["x_sgemm_bound"], r.get("x_sgemm_bound_step")] for r in res["per_update"]])


def report(res: dict) -> str:
    """The tables for a results dict (see benchmarks/cli.py)."""
    env, s = res["environment"], res["settings"]
    out = [f"Speed benchmark ({res['mode']} mode) -- {DATA_NOTE}",
           f"{env['cpu_model']}, {env['cpu_count']} cores, threads={s['threads']}, "
           f"numpy {env['numpy']}, torch {env['torch'] or 'not installed'}, "
           f"load average at start {env['load_average']}", "",
           f"Per update (batch {s['batch']}, best of {s['repeats']} interleaved repeats of up to "
           f"{s['n_updates']} updates (fewer on big nets), data {s['n_data']} images):",
           per_update_table(res),
           "(train() ms: workbook.engine.train's hist.time_train / updates, its own thread policy "
           "under the cap 'thr'; step ms: engine.train_step on prefetched batches; torch: the "
           "fastest idiomatic variant below, from the same weights; torch/numpy > 1: NumPy faster; "
           "bound: GEMM FLOPs (runtime.update_flops) / the big sgemm's rate measured in this run "
           "at 'thr' threads; x bound: train() time / bound, step x bound: train_step's)"]
    tv = [r for r in res["per_update"] if r.get("torch_variants")]
    if tv:
        names = list(tv[0]["torch_variants"])
        out += ["", "Idiomatic torch variants tried (ms per update, best of the repeats; * = the "
                "reference, the fastest; tN = N threads, cl = channels_last, nomkldnn = "
                "torch.backends.mkldnn off, foreach = foreach SGD, fused = fused SGD):",
                table(["arch"] + names,
                      [[r["arch"]] + [f"{r['torch_variants'][v] * 1e3:.3g}" + ("*" if v == r["torch_variant"] else "")
                                      if r["torch_variants"].get(v) is not None else "-" for v in names]
                       for r in tv])]
    if res.get("torch_note"):
        out.append(f"note: {res['torch_note']}")
    out += [f"WARNING: {w}" for w in res.get("warnings", [])]
    out += ["", "float32 GEMM rates:",
            table(["m", "k", "n", "threads", "GFLOP/s"],
                  [[g["m"], g["k"], g["n"], g.get("threads"), g["gflops"]] for g in res["sgemm"]])]
    prot = [v for v in res["protocol"].values() if v]
    if prot:
        out += ["", "Whole protocols (workbook.engine.train, 49k/10k random images; seconds; "
                "threads: --threads if given, else the engine's own policy):",
                table(["arch", "threads", "updates", "evals", "train", "eval", "other", "total",
                       "peak RSS MB"],
                      [[p["arch"], p.get("threads"), p["updates"], p["n_evals"], p["time_train"],
                        p["time_eval"], p["time_other"], p["total"], p.get("peak_rss_mb")] for p in prot])]
    if res.get("grid"):
        out += ["", "Grid (torch/numpy):",
                table(["f", "nf", "numpy ms", "torch ms", "ratio"],
                      [[g["f"], g["nf"], ms(g["numpy_s"]), ms(g["torch_s"]), g["ratio"]] for g in res["grid"]])]
    out += ["", "Targets (from the issues; printed, never asserted):",
            table(["target", "goal", "value", "result"],
                  [[t["name"], t["target"], t["value"], t["pass"]] for t in res["targets"]])]
    return "\n".join(out)
