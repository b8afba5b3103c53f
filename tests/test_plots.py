"""Tests for workbook.plots: figures are drawn, titled with their data label and saved."""
import numpy as np
import pytest
import helpers as H
from workbook import config, data, plots, synthetic


@pytest.fixture(scope="module")
def tiny_data():
    """load_dataset-like dict: 300 train, 100 val, 100 test synthetic images, normalised."""
    X, y = synthetic.make_synthetic(400, seed=3)
    Xt, yt = synthetic.make_synthetic(100, seed=3, stream=1)
    Xtr, Xva, Xte, _, _ = data.normalise(X[:, :300], X[:, 300:], Xt)
    return {"X_train": Xtr, "y_train": y[:300], "X_val": Xva, "y_val": y[300:],
            "X_test": Xte, "y_test": yt, "name": "tiny synthetic (test)"}


def tiny_cfg(**kw):
    base = dict(n_cycles=1, step=10, eta_min=1e-4, eta_max=0.05, batch_size=50, lam=0.001,
                eval_train_n=100, progress=False)
    base.update(kw)
    return H.TrainConfig(**base)


TINY = dict(f=4, nf=4, nh=16)


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


def test_plot_speed_ratio_is_torch_over_numpy():
    rows = [{"f": 4, "nf": 10, "numpy_s": 0.02, "torch_s": 0.05},
            {"f": 4, "nf": 40, "numpy_s": 0.04, "torch_s": 0.04},
            {"f": 8, "nf": 10, "numpy_s": 0.01, "torch_s": 0.03},
            {"f": 8, "nf": 40, "numpy_s": 0.01, "torch_s": None}]
    fig = plots.plot_speed_ratio(rows)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("f=")}
    assert np.allclose(lines["f=4"].get_ydata(), [2.5, 1.0]), lines["f=4"].get_ydata()
    assert np.allclose(lines["f=8"].get_ydata(), [3.0]), "rows without a torch time must be skipped"
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_plot_ablation_bars_are_val_acc():
    rows = [{"run": "base", "val_acc": 0.5, "data": "x"}, {"run": "flip", "val_acc": 0.55, "data": "x"}]
    fig = plots.plot_ablation(rows)
    heights = [b.get_height() for b in fig.axes[0].patches]
    assert np.allclose(heights, [50.0, 55.0]), f"bar heights {heights}"
    import matplotlib.pyplot as plt
    plt.close(fig)
