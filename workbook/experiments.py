"""Experiments of Exercises 3 and 4: architectures, previews, label smoothing comparisons, results files."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from helpers import History, TrainConfig, _branches, init_params, train
from workbook.config import fig_dir, is_fast
from workbook.plots import (data_label)


def for_mode(cfg: TrainConfig, shrink: int = 20) -> TrainConfig:
    """The config to run now: unchanged normally; in fast mode (WORKBOOK_FAST=1) the step is
    divided by ``shrink`` (at least 10 updates), evaluation uses at most 1000 training images and
    BLAS one thread (tiny matrices on a shared machine), so a notebook cell finishes in seconds.
    Fast-mode results are not real results."""
    if not is_fast():
        return cfg
    return dataclasses.replace(cfg, step=max(10, cfg.step // shrink),
                               eval_every=None, eval_train_n=min(cfg.eval_train_n, 1000),
                               progress=False, threads=1)


def result_row(label: str, params: dict, cfg: TrainConfig, hist: History) -> dict:
    """One results-table row: architecture, settings, final metrics, times, and the data."""
    br = _branches(params)
    return {"run": label, "f": [f for f, _, _ in br] if len(br) > 1 else br[0][0],
            "nf": [params[k].shape[3] for _, k, _ in br] if len(br) > 1 else params[br[0][1]].shape[3],
            "nh": params["W1"].shape[0], "updates": hist.updates_done,
            "n_cycles": cfg.n_cycles, "step": cfg.step, "increasing": cfg.increasing,
            "lam": cfg.lam, "eps": cfg.eps,
            "train_acc": hist.train_acc[-1] if hist.train_acc else None,
            "test_acc": hist.test_acc[-1] if hist.test_acc else None,
            "test_loss": hist.test_loss[-1] if hist.test_loss else None,
            "time_train_s": round(hist.time_train, 3), "time_eval_s": round(hist.time_eval, 3),
            "data": data_label(hist.data), "fast_mode": is_fast()}


def write_json(path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temp file beside it, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)
    return path


def write_results(name: str, rows: list) -> Path:
    """Write rows (dicts, e.g. from result_row) to <fig_dir()>/<name>.json (atomically); return
    the path. The README's results tables are made from these files."""
    return write_json(fig_dir() / f"{name}.json", {"fast_mode": is_fast(), "rows": rows})


def read_results(name: str) -> dict:
    """The rows that write_results(name, ...) wrote in this mode, as {run: row}; {} if none."""
    path = fig_dir() / f"{name}.json"
    return {r["run"]: r for r in json.loads(path.read_text())["rows"]} if path.is_file() else {}


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


# Exercise 3's four architectures: n_p * nf is (about) the same for each, so the conv layer's
# output width stays near 640-768 while f grows.
EX3_ARCHS = {
    "arch1": {"f": 2, "nf": 3, "nh": 50},
    "arch2": {"f": 4, "nf": 10, "nh": 50},
    "arch3": {"f": 8, "nf": 40, "nh": 50},
    "arch4": {"f": 16, "nf": 160, "nh": 50},
}


_DATA_KEYS = ("X_train", "y_train", "X_test", "y_test")


def _check_data(data) -> None:
    if not isinstance(data, dict) or any(k not in data for k in _DATA_KEYS):
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"data must be a dict with keys {list(_DATA_KEYS)} (and 'name'), as "
                         f"returned by load_dataset(); got {have}")


def _arch_args(label: str, spec) -> tuple:
    if not isinstance(spec, dict) or any(k not in spec for k in ("f", "nf", "nh")):
        raise ValueError(f"architecture {label!r} must be a dict with keys 'f', 'nf' and 'nh', "
                         f"e.g. {{'f': 4, 'nf': 10, 'nh': 50}}; got {spec!r}")
    return spec["f"], spec["nf"], spec["nh"]


def _same_protocol(hist: History, cfg: TrainConfig) -> bool:
    a, b = dict(hist.config), cfg.to_dict()
    a.pop("progress", None)
    b.pop("progress", None)
    return a == b


def run_architectures(archs: dict, cfg: TrainConfig, data: dict, seed: int = 0,
                      reuse: dict | None = None, verbose: bool = True,
                      params_out: dict | None = None):
    """Train every architecture in ``archs`` with the same config on the same data.

    archs: {label: {"f": int, "nf": int, "nh": int}} in the order wanted (e.g. EX3_ARCHS);
        f and nf may be equal-length tuples (multi-size filters, see init_params).
    cfg: the TrainConfig for every run, used as given (wrap it in for_mode yourself).
    data: dict from load_dataset(): X_train (3072, n) float32 normalised, y_train (n,) int64,
        X_test (3072, m) float32, y_test (m,) int64, name str (the data label on every row).
    seed: the He-initialisation seed of every network (cfg.seed drives the batch order).
    reuse: {label: (row, History)} of runs already trained with this same cfg (e.g. arch2 from
        an earlier cell); they are taken as they are instead of being retrained.
    params_out: a dict that receives {label: trained params} of the runs trained here.
    Returns (rows, histories): rows a list of result_row dicts in the order of ``archs``
    (JSON-ready), histories {label: History}. With ``verbose`` one line per run is printed.
    """
    _check_data(data)
    if not archs:
        raise ValueError("archs is empty: pass {label: {'f': .., 'nf': .., 'nh': ..}, ...}")
    reuse = dict(reuse or {})
    unknown = set(reuse) - set(archs)
    if unknown:
        raise ValueError(f"reuse has runs {sorted(unknown)} that are not in archs {list(archs)}")
    cfg = cfg.validate()
    rows, hists = [], {}
    for label, spec in archs.items():
        f, nf, nh = _arch_args(label, spec)
        if label in reuse:
            row, hist = reuse[label]
            if not _same_protocol(hist, cfg):
                raise ValueError(f"reuse[{label!r}] was trained with another config; retrain it "
                                 "or pass the config it was trained with")
            how = "reused"
        else:
            params = init_params(f, nf, nh, seed=seed)
            params, hist = train(params, data["X_train"], data["y_train"], cfg,
                                 data["X_test"], data["y_test"], data_name=data.get("name", ""))
            row = result_row(label, params, cfg, hist)
            how = "trained"
            if params_out is not None:
                params_out[label] = params
        rows.append(row)
        hists[label] = hist
        if verbose:
            print(f"{label} (f={f}, nf={nf}, nh={nh}) {how}: {hist.updates_done} updates, "
                  f"final test acc {100 * hist.final_test_acc:.2f}%, train {hist.time_train:.1f} s, "
                  f"eval {hist.time_eval:.1f} s - {data_label(hist.data)}", flush=True)
    return rows, hists


PREVIEW_OPTIONS = ("f", "nf", "nh", "n_cycles", "step", "increasing", "eta_min", "eta_max",
                   "eta_decay", "lam", "eps", "flip", "translate", "dropout", "batch_size",
                   "n_train", "n_test", "seed")


def train_preview(data: dict, f: int = 4, nf: int = 10, nh: int = 50, n_cycles: int = 1,
                  step: int = 100, increasing: bool = False, eta_min: float = 1e-5,
                  eta_max: float = 1e-1, eta_decay: float = 1.0, lam: float = 0.003,
                  eps: float = 0.0, flip: bool = False, translate: int = 0,
                  dropout: float = 0.0, batch_size: int = 100, n_train: int = 2000,
                  n_test: int = 1000, seed: int = 0, callback=None):
    """A short training run on a subset of ``data``: what the training panel's Train button runs.

    data: dict from load_dataset() (X_train (3072, n) float32, y_train (n,) int64, X_test
    (3072, m) float32, y_test (m,) int64, name str). The first ``n_train`` training and first
    ``n_test`` test images are used.
    Architecture f, nf, nh; schedule n_cycles, step (step_1 with ``increasing`` = doubling
    cycles), eta_min, eta_max, eta_decay (peak factor per cycle); lam (L2), eps (label
    smoothing), flip, translate (max shift in px), dropout (hidden layer), batch_size, seed:
    each goes to the TrainConfig (or init_params) of the run unchanged.
    Metrics every step//2 updates on min(n_train, 1000) training images and on the test images;
    ``callback(history)`` runs after each evaluation (e.g. to redraw a plot).
    Returns (params, history) as train() does; history.data names the data and the subset.
    Bad settings (e.g. batch_size > n_train, eta_min > eta_max, f not dividing 32) raise
    ValueError; a diverging run raises TrainingDiverged.
    """
    _check_data(data)
    n_all, m_all = data["X_train"].shape[1], data["X_test"].shape[1]
    if not 1 <= n_train or not 0 <= n_test:
        raise ValueError(f"n_train must be >= 1 and n_test >= 0; got {n_train}, {n_test}")
    n_train, n_test = min(int(n_train), n_all), min(int(n_test), m_all)
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} is larger than the {n_train} training images "
                         "of the preview; lower batch_size or raise n_train")
    cfg = TrainConfig(n_cycles=int(n_cycles), step=int(step), increasing=bool(increasing),
                      eta_min=float(eta_min), eta_max=float(eta_max), eta_decay=float(eta_decay),
                      lam=float(lam), eps=float(eps), flip=bool(flip), translate=int(translate),
                      dropout=float(dropout), batch_size=int(batch_size), seed=int(seed),
                      eval_train_n=min(n_train, 1000), progress=False,
                      threads=1 if is_fast() else None).validate()
    params = init_params(int(f), int(nf), int(nh), seed=int(seed))
    name = f"{data.get('name', '')} - subset {n_train} train / {n_test} test".strip(" -")
    X_te = data["X_test"][:, :n_test] if n_test else None
    y_te = data["y_test"][:n_test] if n_test else None
    return train(params, data["X_train"][:, :n_train], data["y_train"][:n_train], cfg,
                 X_te, y_te, data_name=name, callback=callback)


def ls_summary(hist_a: History, hist_b: History, labels=("no LS", "LS")) -> dict:
    """Numbers that compare two runs (e.g. without and with label smoothing) on the HARD loss.

    For each run (a dict under its label): final train_loss, test_loss and their gap
    (test - train), the minimum test loss and the update t where it occurred, the rise of the
    test loss from that minimum to the end (loss overfitting), and final train/test accuracy.
    Differences, second run minus first: d_gap, d_rise, d_test_loss, d_test_acc.
    All values are Python floats/ints; 'labels' holds the two labels.
    """
    out = {"labels": tuple(labels)}
    if len(labels) != 2:
        raise ValueError("labels must be two names, one per history")
    for lab, h in zip(labels, (hist_a, hist_b)):
        if not isinstance(h, History):
            raise ValueError(f"{lab!r}: expected a History (the second value returned by train)")
        if not h.train_loss or not h.test_loss:
            raise ValueError(f"{lab!r}: the History has no train/test losses; train with "
                             "X_test and y_test so the test curves are recorded")
        te = np.asarray(h.test_loss, dtype=np.float64)
        i = int(np.argmin(te))
        out[lab] = {"train_loss": float(h.train_loss[-1]), "test_loss": float(te[-1]),
                    "gap": float(te[-1] - h.train_loss[-1]),
                    "test_loss_min": float(te[i]), "t_min": int(h.t[i]),
                    "rise": float(te[-1] - te[i]),
                    "train_acc": float(h.train_acc[-1]), "test_acc": float(h.test_acc[-1]),
                    "eps": float(h.config.get("eps", float("nan"))) if h.config else float("nan")}
    a, b = out[labels[0]], out[labels[1]]
    out["d_gap"] = b["gap"] - a["gap"]
    out["d_rise"] = b["rise"] - a["rise"]
    out["d_test_loss"] = b["test_loss"] - a["test_loss"]
    out["d_test_acc"] = b["test_acc"] - a["test_acc"]
    return out


# ---- reference numbers and the checks of the chapters ----

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


# ---- recorded results (docs/results/*.json) and the speed benchmark's file ----

def load_recorded(name: str, folder=None):
    """Read docs/results/<name>.json ({"data": label, "rows": [...]}) -> that dict, or None when
    the file does not exist. A file that exists but lacks "rows" raises ValueError."""
    from workbook import config
    path = Path(folder or (config.DOCS_DIR / "results")) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(d, dict) or not isinstance(d.get("rows"), list):
        raise ValueError(f"{path} must hold {{'data': label, 'rows': [...]}}")
    d.setdefault("data", "")
    d["path"] = str(path)
    return d


def history_from_dict(d: dict) -> History:
    """A History from a recorded dict that may hold only some of its fields (t, train_acc,
    test_acc, train_loss, test_loss, ...); unknown keys are ignored."""
    names = {f.name for f in dataclasses.fields(History)}
    return History(**{k: v for k, v in d.items() if k in names})


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
    from workbook import config
    path = Path(path or (config.ROOT / "benchmarks" / "results.json"))
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
