"""Reference numbers and verdicts: the assignment's and one student's results, the checks each
chapter prints (ex3_checks, ex4_checks, ex5_checks), and summaries of recorded rows (seeds,
ablation deltas, the speed benchmark's rows, markdown tables). Pure functions of numbers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


# Test accuracies (fractions) on CIFAR-10 that the chapters print beside ours. "assignment": the
# assignment text (arch2 with 3 cycles of step 800: 57.61%; longer training: "> 60% for at least
# one"; the teacher's best bonus result 67.26%). "student": one student's report (archs 1-4 with
# the short protocol; arch5 with 4 doubling cycles, without / with label smoothing).
REFERENCE = {
    "arch2 (assignment)": 0.5761,
    "longer training, at least one run above (assignment)": 0.60,
    "teacher's best, Exercise 5 (assignment)": 0.6726,
    "student": {"arch1": 0.5183, "arch2": 0.5856, "arch3": 0.6195, "arch4": 0.5954,
                "arch5 no LS": 0.6585, "arch5 LS": 0.6627},
    "student val": {"arch5 no LS": 0.6610, "arch5 LS": 0.6780},
}
# Training times (s) of the same runs in the student's report (their machine), for scale only.
REFERENCE_TIME_S = {"student": {"arch1": 80.84, "arch2": 76.52, "arch3": 73.29, "arch4": 92.21,
                                "arch5 no LS": 352.54, "arch5 LS": 331.28},
                    "assignment": {"arch2": 50.0, "arch5": 600.0}}
CHANCE = 0.10


def data_kind(data) -> str:
    """'cifar10' for real CIFAR-10 (official batches or an image-folder copy), else 'synthetic'.
    data: a load_dataset() dict or its name."""
    name = data if isinstance(data, str) else data.get("name", "")
    synthetic = False if isinstance(data, str) else bool(data.get("synthetic", False))
    return "cifar10" if name.startswith("CIFAR-10") and not synthetic else "synthetic"


def _check(name: str, ok, value: str) -> dict:
    return {"check": name, "ok": bool(ok), "value": value}


def _pct(x) -> str:
    return f"{100 * x:.2f}%"


def ex3_checks(acc: dict, kind: str) -> list:
    """Exercise 3 verdicts from final test accuracies ``acc`` (fractions) with keys arch1..arch4,
    'arch2 long', 'arch3 long', 'arch2 nf=40 long'. kind: data_kind(data). On CIFAR-10 they
    compare with the assignment; on the synthetic stand-in they ask for learning well above
    chance. Returns [{check, ok, value}]: the check names (with thresholds) depend only on kind."""
    long = ("arch2 long", "arch3 long", "arch2 nf=40 long")
    if kind == "cifar10":
        return [
            _check("arch2 within 2 points of the assignment's 57.61%",
                   abs(acc["arch2"] - REFERENCE["arch2 (assignment)"]) <= 0.02, _pct(acc["arch2"])),
            _check("a doubling-cycle run above 60% (assignment)", max(acc[k] for k in long) > 0.60,
                   _pct(max(acc[k] for k in long))),
            _check("longer training beats the short protocol for arch2 and arch3",
                   acc["arch2 long"] > acc["arch2"] and acc["arch3 long"] > acc["arch3"],
                   f"{_pct(acc['arch2'])} -> {_pct(acc['arch2 long'])}, "
                   f"{_pct(acc['arch3'])} -> {_pct(acc['arch3 long'])}"),
            _check("width helps: arch2 with nf=40 beats arch2 (doubling cycles)",
                   acc["arch2 nf=40 long"] > acc["arch2 long"],
                   f"{_pct(acc['arch2 nf=40 long'])} vs {_pct(acc['arch2 long'])}"),
        ]
    return [
        _check("arch2 beats chance (10%) by more than 15 points", acc["arch2"] > CHANCE + 0.15,
               _pct(acc["arch2"])),
        _check("every architecture 1-4 beats chance by more than 15 points",
               all(acc[f"arch{i}"] > CHANCE + 0.15 for i in range(1, 5)),
               ", ".join(_pct(acc[f"arch{i}"]) for i in range(1, 5))),
        _check("every doubling-cycle run beats chance by more than 20 points",
               all(acc[k] > CHANCE + 0.20 for k in long), ", ".join(_pct(acc[k]) for k in long)),
    ]


def ex4_checks(summary: dict, kind: str) -> list:
    """Exercise 4 verdicts from ls_summary(no LS, LS) (labels in that order). On CIFAR-10: LS not
    worse than no LS by more than 0.5 points, the no-LS test loss overfits (ends > 0.01 above
    its minimum) and rises more than with LS, arch5 without LS within 3 points of the student's
    65.85% or above. On the synthetic set: both runs beat chance by 20 points and LS ends with
    the higher hard-label training loss (its targets are 1 - eps, not 1)."""
    la, lb = summary["labels"]
    a, b = summary[la], summary[lb]
    if kind == "cifar10":
        return [
            _check("label smoothing not worse than without by more than 0.5 points",
                   b["test_acc"] >= a["test_acc"] - 0.005, f"{_pct(b['test_acc'])} vs {_pct(a['test_acc'])}"),
            _check("without LS the test loss overfits (ends > 0.01 above its minimum)", a["rise"] > 0.01,
                   f"rise {a['rise']:.3f}"),
            _check("with LS the test loss rises less than without", b["rise"] < a["rise"],
                   f"{b['rise']:.3f} vs {a['rise']:.3f}"),
            _check("arch5 without LS within 3 points of the student's 65.85% or above",
                   a["test_acc"] >= REFERENCE["student"]["arch5 no LS"] - 0.03, _pct(a["test_acc"])),
        ]
    return [
        _check("both arch5 runs beat chance (10%) by more than 20 points",
               min(a["test_acc"], b["test_acc"]) > CHANCE + 0.20,
               f"{_pct(a['test_acc'])}, {_pct(b['test_acc'])}"),
        _check("LS ends with the higher hard-label training loss",
               b["train_loss"] > a["train_loss"], f"{b['train_loss']:.3f} vs {a['train_loss']:.3f}"),
    ]


def ex5_checks(ablation_rows: list, recipe_rows: list, recorded: bool, seeds=(0, 1)) -> list:
    """Exercise 5 verdicts. ``recorded`` (the full runs of docs/results on CIFAR-10): the recipe's
    mean test accuracy is above the teacher's best 67.26% and every seed trained within 15
    minutes. Otherwise (the live mini-ablation): every run ran for every seed in ``seeds`` and
    beat chance by more than 3 points."""
    if recorded:
        test = [r["test_acc"] for r in recipe_rows if isinstance(r.get("test_acc"), (int, float))]
        times = [r.get("time_train_s") for r in recipe_rows]
        mean = float(np.mean(test)) if test else float("nan")
        return [
            _check("recipe: mean test accuracy above the teacher's best 67.26%",
                   bool(test) and mean > REFERENCE["teacher's best, Exercise 5 (assignment)"],
                   _pct(mean) + f" over {len(test)} seeds"),
            _check("recipe: mean test accuracy at least 73% (the workbook's target)",
                   bool(test) and mean >= 0.73, _pct(mean)),
            _check("recipe: every seed trained within 15 minutes",
                   bool(times) and all(isinstance(t, (int, float)) and t <= 900 for t in times),
                   ", ".join(f"{t:.0f} s" if isinstance(t, (int, float)) else "?" for t in times)),
        ]
    runs = {}
    for r in ablation_rows:
        runs.setdefault(r["run"], set()).add(r.get("seed"))
    accs = [r["val_acc"] for r in ablation_rows]
    return [
        _check("mini-ablation: every run trained for every seed",
               bool(runs) and all(v == set(seeds) for v in runs.values()), f"{len(runs)} runs"),
        _check("mini-ablation: every run beats chance (10%) by more than 3 points",
               bool(accs) and min(accs) > CHANCE + 0.03, f"lowest {_pct(min(accs))}" if accs else "none"),
    ]


def print_checks(checks: list, values: bool = False) -> bool:
    """Print one line per check, ``name: True/False`` (with the measured value when ``values``);
    return whether all passed."""
    for c in checks:
        print(f"{c['check']}: {c['ok']}" + (f"   ({c['value']})" if values else ""))
    return all(c["ok"] for c in checks)


def results_markdown(rows: list, cols=("run", "f", "nf", "nh", "updates", "lam", "eps",
                                       "test_acc", "time_train_s", "data")) -> str:
    """A markdown table of result rows (accuracies shown in %)."""
    def fmt(k, v):
        if k.endswith("acc") and isinstance(v, float):
            return f"{100 * v:.2f}%"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(k, r.get(k, "")) for k in cols) + " |" for r in rows]
    return "\n".join(lines)


def summarise_seeds(rows: list, key: str = "val_acc", by: str = "run") -> list:
    """Group rows by ``by`` (first-seen order) -> [{run, group, n, mean, std, min, max}] of
    ``key`` (std: sample std, 0 for one row). Rows without a number for ``key`` are skipped."""
    groups = {}
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and np.isfinite(v):
            groups.setdefault(r.get(by), []).append((float(v), r.get("group", "")))
    out = []
    for run, vals in groups.items():
        v = np.array([x for x, _ in vals])
        out.append({by: run, "group": vals[0][1], "n": int(v.size), "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                    "min": float(v.min()), "max": float(v.max())})
    return out


def ablation_deltas(rows: list, key: str = "val_acc") -> list:
    """summarise_seeds(rows, key) with, for every run, 'ref' (the run it is compared with) and
    'delta_pp' (mean minus the reference's mean, in percentage points) and 'minutes' (mean
    time_train_s / 60). Group 'add' is compared with the run 'base'; 'remove', 'width' and
    'length' with the run 'recipe'; whichever of the two exists stands in for a missing one."""
    stats = summarise_seeds(rows, key)
    by_run = {s["run"]: s for s in stats}
    t = {}
    for r in rows:
        if isinstance(r.get("time_train_s"), (int, float)):
            t.setdefault(r.get("run"), []).append(r["time_train_s"])
    for s in stats:
        want = ("base", "recipe") if s["group"] == "add" else ("recipe", "base")
        ref = next((w for w in want if w in by_run), None)
        s["ref"] = ref
        s["delta_pp"] = 100 * (s["mean"] - by_run[ref]["mean"]) if ref else float("nan")
        s["minutes"] = float(np.mean(t[s["run"]])) / 60 if s["run"] in t else float("nan")
    return stats


def speed_rows(path=None) -> list:
    """Per-architecture timings of the speed benchmark's JSON (default benchmarks/results.json),
    read tolerantly: every dict in any list of the file that has a NumPy and a torch time per
    update (seconds: numpy_s / torch_s; or ms: numpy_ms / torch_ms) becomes
    {label, numpy_ms, torch_ms, ratio (torch / numpy)}; label is its 'arch' (or f/nf/nh).
    Returns [] when the file is missing or has no such rows."""
    path = Path(path or (Path(__file__).resolve().parent.parent / "benchmarks" / "results.json"))
    if not path.is_file():
        return []
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []

    def ms(r, side):
        for k, scale in ((f"{side}_ms", 1.0), (f"{side}_ms_per_update", 1.0), (f"{side}_s", 1e3)):
            v = r.get(k)
            if isinstance(v, (int, float)) and v > 0:
                return float(v) * scale
        return None

    lists = [v for v in (d.values() if isinstance(d, dict) else [d]) if isinstance(v, list)]
    out = []
    for lst in lists:
        rows = [r for r in lst if isinstance(r, dict) and ms(r, "numpy") and ms(r, "torch")]
        if not rows or not any("arch" in r for r in rows):
            continue
        for r in rows:
            label = r.get("arch") or f"f={r.get('f')}, nf={r.get('nf')}, nh={r.get('nh')}"
            a, b = ms(r, "numpy"), ms(r, "torch")
            out.append({"label": str(label), "f": r.get("f"), "nf": r.get("nf"), "nh": r.get("nh"),
                        "numpy_ms": a, "torch_ms": b, "ratio": b / a})
        break
    return out
