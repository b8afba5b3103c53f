"""Figures: every plot is shown inline and saved as figures/<name>.png; titles carry the data label."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from helpers import History, check_f, to_images
from workbook.checks import check_X
from workbook.reference import summarise_seeds
from workbook.calibration import (ece, reliability)
from workbook.config import fig_dir, is_fast


def _show_image(x: np.ndarray) -> np.ndarray:
    """(3072,) normalised column -> (32, 32, 3) in [0, 1] for display (min-max per image)."""
    im = to_images(np.asarray(x, np.float64).reshape(3072, 1))[..., 0]
    lo, hi = im.min(), im.max()
    return (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)


def plot_patch_grid(X: np.ndarray, y: np.ndarray, label_names, f: int = 4, n_show: int = 4,
                    data_name: str = "", name: str | None = None):
    """The first ``n_show`` images of X with the f x f patch grid (stride f) drawn on top.

    X: (3072, n) normalised (each image is min-max scaled for display);  y: (n,) int labels.
    Saves figures/<name>.png when ``name`` is given. Returns the figure.
    """
    plt = _plt()
    X = check_X(X)
    check_f(f)
    n_show = min(int(n_show), X.shape[1])
    fig, axes = plt.subplots(1, n_show, figsize=(2.6 * n_show, 2.9), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.imshow(_show_image(X[:, j]), interpolation="nearest", extent=(0, 32, 32, 0))
        for t in range(0, 33, f):
            ax.axhline(t, color="w", lw=0.6, alpha=0.8)
            ax.axvline(t, color="w", lw=0.6, alpha=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{label_names[int(y[j])]}", fontsize=9)
    tag = data_label(data_name)
    fig.suptitle(f"{(32 // f) ** 2} patches of {f}x{f}x3 per image (stride {f})"
                 + (f" - {tag}" if tag else ""), fontsize=10)
    fig.tight_layout()
    return _done(fig, name)


def plot_filters(Fs: np.ndarray, title: str = "filters", name: str | None = None):
    """Each filter Fs[:, :, :, k] as a small RGB image (one common min-max scale).

    Fs: (f, f, 3, nf). Saves figures/<name>.png when ``name`` is given. Returns the figure.
    """
    plt = _plt()
    Fs = np.asarray(Fs, np.float64)
    if Fs.ndim != 4 or Fs.shape[2] != 3:
        raise ValueError(f"Fs must have shape (f, f, 3, nf); got {Fs.shape}")
    nf = Fs.shape[3]
    cols = min(nf, 10)
    rows = -(-nf // cols)
    lo, hi = Fs.min(), Fs.max()
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 0.4, 1.2 * rows + 0.6), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < nf:
            ax.imshow((Fs[:, :, :, k] - lo) / (hi - lo if hi > lo else 1.0), interpolation="nearest")
            ax.set_title(str(k), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _done(fig, name)


def grouped_bars(groups: dict, ylabel: str, title: str, name: str | None = None, log: bool = True,
                 data: str = ""):
    """Grouped bar chart: groups = {series label: {bar label: value}} (bars in first-seen order).

    Log y-axis by default. The title gets data_label(data). Saves figures/<name>.png when given.
    Returns the figure.
    """
    plt = _plt()
    labels = list(groups)
    if not labels:
        raise ValueError("groups is empty: pass {series label: {bar label: value}}")
    xs = []
    for lab in labels:
        xs += [x for x in groups[lab] if x not in xs]
    fig, ax = plt.subplots(figsize=(1.3 * len(xs) + 3, 3.8))
    w = 0.8 / len(labels)
    for j, lab in enumerate(labels):
        vals = [groups[lab].get(x, np.nan) for x in xs]
        if log:
            vals = [max(v, 1e-18) if np.isfinite(v) else np.nan for v in vals]
        ax.bar(np.arange(len(xs)) + (j - (len(labels) - 1) / 2) * w, vals, width=w, label=str(lab))
    ax.set_xticks(np.arange(len(xs)), [str(x) for x in xs], fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    tag = data_label(data)
    ax.set_title(f"{title} - {tag}" if tag else title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if len(labels) > 1:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncol=min(3, len(labels)), frameon=False)
    fig.tight_layout()
    return _done(fig, name)


def plot_grad_errors(tables: dict, title: str = "gradient check", name: str | None = None,
                     data: str = ""):
    """Grouped bars of max relative error per parameter, log scale.

    tables: {label: rows from grad_error_table}. Saves figures/<name>.png when given.
    """
    groups = {lab: {r["param"]: r["max_rel"] for r in rows} for lab, rows in tables.items()}
    return grouped_bars(groups, "max relative error", title, name=name, log=True, data=data)


def plot_ls_losses(runs: dict, title: str = "arch5: cross-entropy against the hard labels",
                   name: str | None = None, data: str = "", test_label: str = "test"):
    """Loss curves of runs compared on the HARD labels (e.g. {"no LS": h0, "LS eps=0.1": h1}).

    Left: train (solid) and test (dashed) loss of every run, one colour per run. Right: the test
    losses alone on one axis, zoomed to their range after the first 10% of the updates, each
    run's minimum marked. ``test_label`` names the dashed curves ("validation" when they are). Saves
    figures/<name>.png when ``name`` is given. Returns the figure."""
    if not runs:
        raise ValueError("runs must map at least one label to a History")
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lo, hi = np.inf, -np.inf
    for j, (label, h) in enumerate(runs.items()):
        c = colors[j % len(colors)]
        ax1.plot(h.t, h.train_loss, "-", color=c, label=f"{label} train")
        if not h.test_loss:
            continue
        ax1.plot(h.t, h.test_loss, "--", color=c, label=f"{label} {test_label}")
        t, te = np.asarray(h.t), np.asarray(h.test_loss)
        ax2.plot(t, te, "-", color=c, label=f"{label} {test_label}")
        k = int(np.argmin(te))
        ax2.plot(t[k], te[k], "o", color=c, ms=5, label=f"{label} minimum")
        rest = te[t >= 0.1 * t[-1]] if t[-1] > 0 else te     # leave out the first 10%: the zoom
        lo, hi = min(lo, rest.min()), max(hi, rest.max())
    ax1.set_title(f"train and {test_label} loss")
    ax2.set_title(f"{test_label} loss only (y zoomed to the last 90% of updates)")
    if np.isfinite(lo) and hi > lo:
        pad = 0.08 * (hi - lo)
        ax2.set_ylim(lo - pad, hi + pad)
    for ax in (ax1, ax2):
        ax.set_xlabel("update step")
        ax.set_ylabel("loss (hard labels)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _finish_fig(fig, title, data or next(iter(runs.values())).data, name)


def plot_reliability(runs: dict, n_bins: int = 15, name: str | None = None, data: str = ""):
    """Reliability diagram (accuracy vs mean confidence per bin, with the diagonal of perfect
    calibration) and the confidence histogram (fraction of test images per bin), one colour
    per run. runs: {label: (P (K, n) float probabilities, y (n,) int labels)}. The legend shows
    each run's ECE. Saves figures/<name>.png when ``name`` is given. Returns the figure."""
    if not runs:
        raise ValueError("runs must map at least one label to a (P, y) pair")
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    width = 1.0 / n_bins / (len(runs) + 0.5)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (label, (P, y)) in enumerate(runs.items()):
        r = reliability(P, y, n_bins)
        c = colors[j % len(colors)]
        used = r["count"] > 0
        e = ece(P, y, n_bins)
        ax1.plot(r["conf"][used], r["acc"][used], "o-", color=c, ms=4,
                 label=f"{label} (ECE {e:.3f})")
        ax2.bar(r["edges"][:-1] + (j + 0.25) * width, r["frac"], width=width, align="edge",
                color=c, alpha=0.8, label=f"{label} (mean conf {r['confidence'].mean():.2f})")
    ax1.set_xlabel("confidence (max p)")
    ax1.set_ylabel("accuracy")
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1)
    ax1.set_title("reliability diagram")
    ax2.set_xlabel("confidence (max p)")
    ax2.set_ylabel("fraction of images")
    ax2.set_xlim(0, 1)
    ax2.set_title("confidence histogram")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    tag = data_label(data)
    fig.suptitle(f"calibration on the test set - {tag}" if tag else "calibration on the test set")
    fig.tight_layout()
    return _done(fig, name)


GROUP_COLORS = {"base": "0.35", "remove": "tab:red", "add": "tab:blue", "width": "tab:green",
                "length": "tab:purple", "": "tab:blue"}


def plot_ablation(rows: list, name: str | None = None, data: str = "", key: str = "val_acc",
                  title: str = "ablation, validation accuracy"):
    """Bars of ``key`` (accuracy in [0, 1], shown in %) per run: the mean over seeds, with an error
    bar from the smallest to the largest seed and the seed count under the label.

    rows: dicts with 'run', key, optionally 'seed' and 'group' ('remove', 'add', 'width',
    'length'; the colour). The y axis starts at 0. Horizontal lines mark the runs called
    'recipe' (dashed) and 'base' (dotted), when present. Saves figures/<name>.png when ``name`` is given. Returns the figure."""
    stats = summarise_seeds(rows, key)
    if not stats:
        raise ValueError(f"no row has a number for {key!r}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.75 * len(stats) + 2), 4.0))
    x = np.arange(len(stats))
    means = np.array([100 * s["mean"] for s in stats])
    err = np.array([[100 * (s["mean"] - s["min"]) for s in stats],
                    [100 * (s["max"] - s["mean"]) for s in stats]])
    colors = [GROUP_COLORS.get("base" if s["run"] in ("base", "recipe") else s["group"], "tab:blue")
              for s in stats]
    ax.bar(x, means, color=colors, yerr=err, capsize=3, ecolor="k")
    for xi, m, up in zip(x, means, err[1]):
        ax.annotate(f"{m:.1f}", (xi, m + up), xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(x, [f"{s['run']}\n(n={s['n']})" for s in stats], rotation=35, ha="right",
                  fontsize=7)
    from matplotlib.patches import Patch
    handles, names = [], []
    for ref, ls in (("recipe", "--"), ("base", ":")):
        m = [m for s, m in zip(stats, means) if s["run"] == ref]
        if m:
            handles.append(ax.axhline(m[0], color="k", ls=ls, lw=1))
            names.append(ref)
    ax.set_ylim(0, min(100.0, max(means + err[1]) * 1.12))
    ax.set_ylabel({"val_acc": "validation", "test_acc": "test"}.get(key, key)
                  + " accuracy (%): mean, seed range")
    for g in GROUP_COLORS:
        if g and g != "base" and any(s["group"] == g for s in stats):
            handles.append(Patch(color=GROUP_COLORS[g]))
            names.append(g)
    if handles:
        ax.legend(handles, names, fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _finish_fig(fig, title, data or (rows[0].get("data", "") if rows else ""), name)


def plot_speed(rows: list, name: str | None = None, title: str = "time per training update"):
    """Speed of NumPy against torch per architecture: left, milliseconds per update (batch 100)
    of both side by side; right, the ratio torch / NumPy (> 1: NumPy is faster).
    rows: dicts with label, numpy_ms, torch_ms (e.g. reference.speed_rows()). Saves
    figures/<name>.png when ``name`` is given. Returns the figure."""
    if not rows:
        raise ValueError("no speed rows: pass dicts with label, numpy_ms and torch_ms")
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(rows))
    labels = [str(r["label"]) for r in rows]
    a = [r["numpy_ms"] for r in rows]
    b = [r["torch_ms"] for r in rows]
    ax1.bar(x - 0.2, a, width=0.4, label="NumPy (ours)", color="tab:blue")
    ax1.bar(x + 0.2, b, width=0.4, label="torch (fastest idiomatic loop)", color="tab:orange")
    ax1.set_xticks(x, labels, fontsize=8, rotation=30, ha="right")
    ax1.set_ylabel("ms per update")
    ax1.set_title("absolute time")
    ax1.legend(fontsize=8)
    ratio = [tb / ta for ta, tb in zip(a, b)]
    bars = ax2.bar(x, ratio, color=["tab:green" if v >= 1 else "tab:red" for v in ratio])
    for bar, v in zip(bars, ratio):
        ax2.annotate(f"{v:.2f}x", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                     va="bottom", fontsize=8)
    ax2.axhline(1.0, color="k", ls="--", lw=1)
    ax2.set_xticks(x, labels, fontsize=8, rotation=30, ha="right")
    ax2.set_ylabel("torch time / NumPy time")
    ax2.set_ylim(0, max(ratio) * 1.18)
    ax2.set_title("ratio (> 1: NumPy faster)")
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _done(fig, name)


def _plt():
    import matplotlib
    if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower() \
            and "ipykernel" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def save_fig(fig, name: str) -> Path:
    """Save ``fig`` as <fig_dir()>/<name>.png (folder created) and return the path."""
    d = fig_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / (name if name.endswith(".png") else name + ".png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _finish_fig(fig, title: str, data: str, name: str | None):
    """Title the figure with its data label (SYNTHETIC / FAST MODE), lay it out, save it."""
    tag = data_label(data)
    fig.suptitle(f"{title} - {tag}" if tag else title)
    fig.tight_layout()
    return _done(fig, name)


def _done(fig, name: str | None):
    """Save the figure (when ``name``) and return it. In a notebook the inline backend shows it
    at the end of the cell; with a non-interactive backend (Agg: tests, scripts) it is closed
    here, so figures do not pile up in memory."""
    if name:
        save_fig(fig, name)
    import matplotlib
    backend = matplotlib.get_backend().lower()
    if backend == "agg":
        _plt().close(fig)
    return fig


def data_label(name: str = "") -> str:
    """A title suffix that never lets synthetic or fast-mode numbers pass as CIFAR-10."""
    tag = name or ""
    if is_fast() and "FAST" not in tag.upper():
        tag = (tag + " [FAST MODE]").strip()
    return tag


def plot_history(runs, metrics=("loss", "cost", "acc"), title: str = "", name: str | None = None,
                 data: str = "", test_label: str = "test"):
    """Training curves, train (solid) vs test (dashed), one panel per metric.

    runs: a History or a dict {label: History}. metrics from loss, loss_ls, cost, acc.
    test_label: the legend's name for the dashed curves ("validation" when they are).
    Saves figures/<name>.png when ``name`` is given. Returns the figure.
    """
    plt = _plt()
    if isinstance(runs, History):
        runs = {"": runs}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes[0], metrics):
        for j, (label, h) in enumerate(runs.items()):
            c = colors[j % len(colors)]
            lab = f"{label} " if label else ""
            ax.plot(h.t, getattr(h, "train_" + m), "-", color=c, label=lab + "train")
            if getattr(h, "test_" + m):
                ax.plot(h.t, getattr(h, "test_" + m), "--", color=c, label=lab + test_label)
        ax.set_xlabel("update step")
        ax.set_ylabel({"acc": "accuracy", "loss_ls": "loss (smoothed targets)"}.get(m, m))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _finish_fig(fig, title, data or next(iter(runs.values())).data, name)


def plot_schedules(cfgs: dict, name: str | None = None, title: str = "cyclic learning rates"):
    """The learning rate of every update for each config, on one axis.
    cfgs: {label: TrainConfig}. Saves figures/<name>.png when ``name`` is given."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for label, cfg in cfgs.items():
        ax.plot(cfg.etas(), label=f"{label} ({cfg.n_updates} updates)")
    ax.set_xlabel("update step")
    ax.set_ylabel("eta")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _done(fig, name)


def plot_accuracy_bars(labels, values, refs: dict | None = None, name: str | None = None,
                       title: str = "final test accuracy", data: str = ""):
    """Bars of our final test accuracies (fractions, shown in %) with reference markers.

    labels: bar labels; values: our accuracies; refs: {marker label: {bar label: accuracy}} of
    published numbers (e.g. the assignment's and a student's), drawn as markers on the bars they
    name. y from 0. Saves figures/<name>.png when ``name`` is given. Returns the figure."""
    plt = _plt()
    labels = [str(x) for x in labels]
    fig, ax = plt.subplots(figsize=(1.5 * len(labels) + 3, 3.8))
    x = np.arange(len(labels))
    vals = [100 * v for v in values]
    bars = ax.bar(x, vals, color="tab:blue", label="ours")
    for b, v in zip(bars, vals):
        ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), xytext=(0, -4),
                    textcoords="offset points", ha="center", va="top", fontsize=9, color="white")
    markers = iter(("D", "*", "s", "^"))
    top = max(vals)
    for ref_label, ref in (refs or {}).items():
        pts = [(i, 100 * ref[lab]) for i, lab in enumerate(labels) if lab in ref]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], next(markers, "o"), ms=8,
                    color="k" if ref_label.startswith("assign") else "tab:red", ls="none",
                    label=ref_label)
            top = max(top, max(p[1] for p in pts))
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, min(100, top * 1.18))
    ax.set_ylabel("test accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _finish_fig(fig, title, data, name)


def bar_chart(labels, values, ylabel: str, title: str, name: str | None = None,
              fmt: str = "{:.3g}", data: str = ""):
    """A labelled bar chart (e.g. final test accuracy or training time per architecture)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 2, 3.6))
    bars = ax.bar([str(x) for x in labels], values, color="tab:blue")
    for b, v in zip(bars, values):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    tag = data_label(data)
    ax.set_title(f"{title} - {tag}" if tag else title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _done(fig, name)
