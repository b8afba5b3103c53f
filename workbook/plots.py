"""Figures: every plot is shown inline and saved as figures/<name>.png; titles carry the data label."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from helpers import History, TrainConfig, to_images
from workbook.checks import _check_X, _check_f
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
    X = _check_X(X)
    _check_f(f)
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
    if name:
        save_fig(fig, name)
    return fig


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
    if name:
        save_fig(fig, name)
    return fig


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
    if name:
        save_fig(fig, name)
    return fig


def plot_grad_errors(tables: dict, title: str = "gradient check", name: str | None = None,
                     data: str = ""):
    """Grouped bars of max relative error per parameter, log scale.

    tables: {label: rows from grad_error_table}. Saves figures/<name>.png when given.
    """
    groups = {lab: {r["param"]: r["max_rel"] for r in rows} for lab, rows in tables.items()}
    return grouped_bars(groups, "max relative error", title, name=name, log=True, data=data)


def plot_ls_losses(runs: dict, title: str = "hard-label cross-entropy", name: str | None = None,
                   data: str = ""):
    """One panel per run (e.g. {"no LS": hist_a, "LS eps=0.1": hist_b}), side by side with a
    shared y axis: train loss (solid) and test loss (dashed) against the HARD labels, with the
    test loss's minimum marked. Saves figures/<name>.png when ``name`` is given."""
    if not runs:
        raise ValueError("runs must map at least one label to a History")
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.8 * len(runs), 3.6), sharey=True,
                             squeeze=False)
    for ax, (label, h) in zip(axes[0], runs.items()):
        ax.plot(h.t, h.train_loss, "-", color="tab:blue", label="train")
        if h.test_loss:
            ax.plot(h.t, h.test_loss, "--", color="tab:orange", label="test")
            i = int(np.argmin(h.test_loss))
            ax.plot(h.t[i], h.test_loss[i], "o", color="tab:orange", ms=5, label="test minimum")
        ax.set_title(label)
        ax.set_xlabel("update step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (hard labels)")
    axes[0][0].legend(fontsize=8)
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
    if name:
        save_fig(fig, name)
    return fig


def plot_ablation(rows: list, name: str | None = None, data: str = ""):
    """Bar chart of the ablation's validation accuracy (%) per run, with the base as a line."""
    labels = [r["run"] for r in rows]
    vals = [100 * r["val_acc"] for r in rows]
    fig = bar_chart(labels, vals, "validation accuracy (%)", "ablation (one factor at a time)",
                    fmt="{:.1f}", data=data or (rows[0].get("data", "") if rows else ""))
    ax = fig.axes[0]
    base = [100 * r["val_acc"] for r in rows if r["run"] == "base"]
    if base:
        ax.axhline(base[0], color="k", ls="--", lw=1, label="base")
        ax.legend(fontsize=8)
    lo = min(vals)
    ax.set_ylim(max(0.0, lo - 5), max(vals) + 3)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


def plot_speed_ratio(rows: list, name: str | None = None, title: str = ""):
    """Speed-up of NumPy over torch per (f, nf): torch seconds / numpy seconds against nf, one
    line per filter size f (> 1 means our NumPy code is faster). rows: dicts with keys f, nf,
    numpy_s, torch_s (rows without a torch time are skipped)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    fs = sorted({r["f"] for r in rows if r.get("torch_s")})
    for f in fs:
        rs = sorted((r for r in rows if r["f"] == f and r.get("torch_s")), key=lambda r: r["nf"])
        ax.plot([r["nf"] for r in rs], [r["torch_s"] / r["numpy_s"] for r in rs], "o-", label=f"f={f}")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xscale("log", base=2)
    nfs = sorted({r["nf"] for r in rows if r.get("torch_s")})
    if nfs:
        ax.set_xticks(nfs, [str(v) for v in nfs])
        ax.minorticks_off()
    ax.set_xlabel("number of filters nf")
    ax.set_ylabel("torch time / numpy time")
    ax.set_title(title or "training speed: > 1 means NumPy is faster")
    ax.grid(alpha=0.3)
    if fs:
        ax.legend(fontsize=8)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


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
    if name:
        save_fig(fig, name)
    return fig


def data_label(name: str = "") -> str:
    """A title suffix that never lets synthetic or fast-mode numbers pass as CIFAR-10."""
    tag = name or ""
    if is_fast() and "FAST" not in tag.upper():
        tag = (tag + " [FAST MODE]").strip()
    return tag


def plot_history(runs, metrics=("loss", "cost", "acc"), title: str = "", name: str | None = None,
                 data: str = ""):
    """Training curves, train (solid) vs test (dashed), one panel per metric.

    runs: a History or a dict {label: History}. metrics from loss, loss_ls, cost, acc.
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
                ax.plot(h.t, getattr(h, "test_" + m), "--", color=c, label=lab + "test")
        ax.set_xlabel("update step")
        ax.set_ylabel({"acc": "accuracy", "loss_ls": "loss (smoothed targets)"}.get(m, m))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _finish_fig(fig, title, data or next(iter(runs.values())).data, name)


def plot_eta(cfg: TrainConfig, name: str | None = None):
    """The learning-rate schedule of ``cfg`` against the update step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(cfg.etas())
    ax.set_xlabel("update step")
    ax.set_ylabel("eta")
    ax.set_title(f"cyclic learning rate ({'doubling' if cfg.increasing else 'fixed'} cycles, "
                 f"step {cfg.step}, {cfg.n_cycles} cycles)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if name:
        save_fig(fig, name)
    return fig


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
    if name:
        save_fig(fig, name)
    return fig
