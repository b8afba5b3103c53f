"""Tests for workbook.plots: figures are drawn, titled with their data label and saved."""
import numpy as np
import pytest
import helpers as H
from workbook import config, plots





def test_plots_save_pngs(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "FIG_DIR", tmp_path)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3072, 3))
    plots.plot_patch_grid(X, np.array([0, 1, 2]), [str(i) for i in range(10)], f=8, n_show=3,
                      data_name="SYNTHETIC", name="grid")
    plots.plot_filters(rng.standard_normal((4, 4, 3, 5)), name="filters")
    plots.grouped_bars({"a": {"x": 1.0, "y": 2.0}, "b": {"x": 3.0}}, "v", "t", name="bars")
    for n in ("grid", "filters", "bars"):
        assert (config.fig_dir() / f"{n}.png").stat().st_size > 1000, f"{n}.png was not written"
    import matplotlib.pyplot as plt
    plt.close("all")


def test_plot_speed_shows_ms_and_the_ratio(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "FIG_DIR", tmp_path)
    rows = [{"label": "arch2", "numpy_ms": 1.0, "torch_ms": 2.5},
            {"label": "arch5", "numpy_ms": 4.0, "torch_ms": 5.0}]
    fig = plots.plot_speed(rows, name="speed")
    ax1, ax2 = fig.axes
    heights = [b.get_height() for b in ax1.patches]
    assert np.allclose(sorted(heights), [1.0, 2.5, 4.0, 5.0]), heights
    assert np.allclose([b.get_height() for b in ax2.patches], [2.5, 1.25])
    assert (config.fig_dir() / "speed.png").is_file()
    with pytest.raises(ValueError, match="no speed rows"):
        plots.plot_speed([])


def test_plot_ablation_means_seed_ranges_and_zero_axis():
    rows = [{"run": "recipe", "group": "base", "seed": 0, "val_acc": 0.70},
            {"run": "recipe", "group": "base", "seed": 1, "val_acc": 0.72},
            {"run": "- flip", "group": "remove", "seed": 0, "val_acc": 0.66},
            {"run": "- flip", "group": "remove", "seed": 1, "val_acc": 0.68},
            {"run": "wider", "group": "width", "seed": 0, "val_acc": 0.73}]
    fig = plots.plot_ablation(rows, data="CIFAR-10")
    ax = fig.axes[0]
    heights = [b.get_height() for b in ax.patches]
    assert np.allclose(heights, [71.0, 67.0, 73.0]), f"bar heights {heights}"
    assert ax.get_ylim()[0] == 0, "the y axis must start at 0"
    err = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None]
    assert err, "no error bars"
    assert "CIFAR-10" in fig._suptitle.get_text()


def test_plot_schedules_and_accuracy_bars():
    cfgs = {"fixed": H.TrainConfig(step=10), "doubling": H.TrainConfig(step=10, increasing=True)}
    fig = plots.plot_schedules(cfgs)
    lines = fig.axes[0].get_lines()
    assert [len(ln.get_ydata()) for ln in lines] == [60, 140], "one line per schedule, all updates"
    fig = plots.plot_accuracy_bars(["arch1", "arch2"], [0.5, 0.6],
                                   refs={"assignment": {"arch2": 0.5761},
                                         "student": {"arch1": 0.5183, "arch2": 0.5856}})
    ax = fig.axes[0]
    assert np.allclose([b.get_height() for b in ax.patches], [50.0, 60.0])
    marks = {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines()}
    assert np.allclose(marks["assignment"], [57.61]) and np.allclose(marks["student"], [51.83, 58.56])
    assert ax.get_ylim()[0] == 0


def test_plot_ls_losses_overlays_test_losses_on_one_axis():
    h = {k: H.History(t=[0, 10, 20], train_loss=[2.3, 1.0, 0.5], test_loss=[2.3, 1.2, v], data="x")
         for k, v in (("no LS", 1.5), ("LS", 1.1))}
    fig = plots.plot_ls_losses(h, test_label="validation")
    zoom = fig.axes[1]
    labels = [ln.get_label() for ln in zoom.get_lines()]
    assert labels == ["no LS validation", "no LS minimum", "LS validation", "LS minimum"], labels
    lo, hi = zoom.get_ylim()
    assert 1.0 < lo < 1.1 and 1.5 < hi < 1.6, "the zoomed axis must leave out the initial loss"
    assert any("validation" in ln.get_label() for ln in fig.axes[0].get_lines())
