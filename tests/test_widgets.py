"""Tests for workbook.widgets: the panels and the plain functions their buttons call."""
import numpy as np
import pytest
import helpers as H
from workbook import experiments, plots, widgets
from _common import FakeOutput, TINY_ARCHS


TINY_CFG = H.TrainConfig(n_cycles=1, step=10, batch_size=50, eval_train_n=100, progress=False)


@pytest.fixture(scope="module")
def tiny_runs(tiny):
    return experiments.run_architectures(TINY_ARCHS, TINY_CFG, tiny, seed=3, verbose=False)


@pytest.mark.parametrize("f, nf, n", [(2, 3, 1), (4, 10, 100), (8, 40, 7), (16, 160, 2)])
def test_conv_shapes_match_spec(f, nf, n):
    s = widgets.conv_shapes(f, nf, n)
    g, n_p, d = 32 // f, (32 // f) ** 2, f * f * 3
    expected = {"X": (3072, n), "X_ims": (32, 32, 3, n), "Fs": (f, f, 3, nf), "Fs_flat": (d, nf),
                "MX": (n_p, d, n), "conv_outputs": (g, g, nf, n), "conv_outputs_mat": (n_p, nf, n),
                "conv_flat": (n_p * nf, n)}
    assert s == expected, f"conv_shapes({f}, {nf}, {n}) = {s}, expected {expected}"


def test_conv_shapes_are_the_real_shapes():
    f, nf, n = 8, 5, 3
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3072, n))
    Fs = rng.standard_normal((f, f, 3, nf))
    X_ims = H.to_images(X)
    MX = H.build_mx(X_ims, f)
    real = {"X": X.shape, "X_ims": X_ims.shape, "Fs": Fs.shape,
            "Fs_flat": H.flatten_filters(Fs).shape, "MX": MX.shape,
            "conv_outputs": H.conv_loops(X_ims, Fs).shape,
            "conv_outputs_mat": H.conv_matmul(MX, H.flatten_filters(Fs)).shape}
    s = widgets.conv_shapes(f, nf, n)
    for k, v in real.items():
        assert s[k] == v, f"conv_shapes says {k} is {s[k]}, the array is {v}"


def test_conv_shapes_rejects_bad_f():
    with pytest.raises(ValueError, match="divides 32"):
        widgets.conv_shapes(5, 3, 2)
    with pytest.raises(ValueError, match="positive"):
        widgets.conv_shapes(4, 0, 2)


def test_conv_widget_report_mentions_shapes_and_methods():
    text = widgets.conv_widget_report(f=16, nf=3, n=2, repeats=1)
    for needle in ("(4, 768, 2)", "(768, 3)", "(2, 2, 3, 2)", "loops", "matmul", "einsum",
                   "conv_fast"):
        assert needle in text, f"{needle!r} missing from the widget report:\n{text}"


def test_live_plot_redraws_into_the_output_and_closes_figures(tiny, capsys):
    plt = plots._plt()
    before = set(plt.get_fignums())
    out = FakeOutput()
    _, h = experiments.train_preview(tiny, f=4, nf=2, nh=5, step=10, n_train=100, n_test=20,
                           batch_size=25, callback=widgets.live_plot(out, "test"))
    assert out.entered == len(h.t) == 5, f"plot area entered {out.entered} times for {len(h.t)} evals"
    left = set(plt.get_fignums()) - before
    assert not left, f"live_plot left {len(left)} figures open"


def test_live_plot_puts_one_png_into_an_ipywidgets_output(tiny):
    W = pytest.importorskip("ipywidgets")
    out = W.Output()
    _, h = experiments.train_preview(tiny, f=4, nf=2, nh=5, step=10, n_train=100, n_test=20,
                                     batch_size=25, callback=widgets.live_plot(out, "test"))
    assert len(out.outputs) == 1, f"{len(out.outputs)} outputs: each redraw must replace the last"
    png = out.outputs[0]["data"]["image/png"]
    import base64
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert f"update {h.t[-1]}" in out.outputs[0]["data"]["text/plain"]


def test_training_panel_button_trains_and_reports(tiny, monkeypatch):
    pytest.importorskip("ipywidgets")
    redraws = []
    monkeypatch.setattr(widgets, "live_plot", lambda output, title: lambda h: redraws.append(list(h.t)))
    panel = widgets.training_panel(tiny, n_test=20, nf=2, nh=5, step=10, batch_size=25, n_train=100)
    c = panel.controls
    assert set(c) == set(experiments.PREVIEW_OPTIONS) - {"n_test", "seed"}, f"panel controls {sorted(c)}"
    c["eps"].value, c["flip"].value, c["translate"].value, c["dropout"].value = 0.1, True, 1, 0.2
    c["increasing"].value, c["n_cycles"].value, c["eta_decay"].value = True, 2, 0.8
    panel.button.click()
    assert "final test acc" in panel.status.value, f"status after Train: {panel.status.value!r}"
    assert "60 updates" in panel.status.value, f"status after Train: {panel.status.value!r}"
    assert not panel.button.disabled, "the Train button stayed disabled"
    _, h = panel.result
    for k, want in (("eps", 0.1), ("flip", True), ("translate", 1), ("dropout", 0.2),
                    ("increasing", True), ("eta_decay", 0.8), ("step", 10), ("batch_size", 25)):
        assert h.config[k] == pytest.approx(want), f"panel {k}: the run used {h.config[k]!r}, set {want!r}"
    assert len(redraws) == len(h.t) and redraws[-1] == h.t, "the curves were not redrawn live"


def test_training_panel_draws_the_curves(tiny):
    pytest.importorskip("ipywidgets")
    panel = widgets.training_panel(tiny, n_test=20, nf=2, nh=5, step=10, batch_size=25, n_train=100)
    panel.button.click()
    assert len(panel.output.outputs) == 1 and "image/png" in panel.output.outputs[0]["data"]


def test_training_panel_shows_a_bad_setting(tiny):
    pytest.importorskip("ipywidgets")
    panel = widgets.training_panel(tiny, n_test=20, nf=2, nh=5, step=10, n_train=100)
    panel.controls["batch_size"].value = 500
    panel.button.click()
    assert "not trained" in panel.status.value and "batch_size" in panel.status.value, \
        f"a bad setting gave status {panel.status.value!r}"
    assert panel.result is None and not panel.button.disabled
    panel.controls["batch_size"].value = 25
    panel.controls["eta_min"].value, panel.controls["eta_max"].value = 0.01, 0.001
    panel.button.click()
    assert "not trained" in panel.status.value and "eta_min" in panel.status.value, panel.status.value
    with pytest.raises(ValueError, match="unknown panel settings"):
        widgets.training_panel(tiny, width=3)


def test_progress_bar_is_off_in_executed_notebooks(monkeypatch):
    """make workbook sets WORKBOOK_PROGRESS=0: no tqdm bar (it would stay frozen at 0% in the
    executed copy); without it, a bar when asked for."""
    from workbook import runtime
    monkeypatch.setenv("WORKBOOK_PROGRESS", "0")
    assert runtime.progress_bar(100, True, "x") is None
    monkeypatch.delenv("WORKBOOK_PROGRESS")
    assert runtime.progress_bar(100, False, "x") is None
    bar = runtime.progress_bar(100, True, "x")
    assert bar is not None
    bar.close()
