"""Tests for workbook.widgets: the panels and the plain functions their buttons call."""
import re
import time

import numpy as np
import pytest
import helpers as H
from workbook import panel, widgets


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
                   "GEMM"):
        assert needle in text, f"{needle!r} missing from the widget report:\n{text}"


def test_explorer_says_when_it_clamps_or_refuses_nf(monkeypatch):
    monkeypatch.setattr(widgets, "conv_widget_report", lambda f, nf, n, repeats: f"report nf={nf}")
    text = widgets.explorer_report(4, 500)
    assert "clamped" in text and "nf=500" in text and text.endswith("report nf=160"), text
    assert widgets.explorer_report(4, 10) == "report nf=10"
    assert widgets.explorer_report(4, " 40") == "report nf=40"
    for bad in (0, -3, 4.5, "4.5", "x", "0"):
        text = widgets.explorer_report(4, bad)
        assert "refused" in text and "report" not in text, text


def _panel(tiny, **kw):
    pytest.importorskip("ipywidgets")
    base = dict(nf=2, nh=5, step=10, batch_size=25, n_train=100)
    base.update(kw)
    return widgets.training_panel(tiny, n_test=20, **base)


def test_training_panel_keeps_the_chapters_values_exactly(tiny):
    p = _panel(tiny, lam=0.0025, eta_decay=0.8, eps=0.1, flip=True, translate=2, dropout=0.3,
               increasing=True, n_cycles=2)
    assert p.controls["lam"].value == "0.0025" and p.controls["eta_min"].value == "1e-05"
    p.train()
    assert p.wait(60), "the run did not end"
    h = p.result.history
    for k, want in (("lam", 0.0025), ("eta_decay", 0.8), ("eps", 0.1), ("flip", True),
                    ("translate", 2), ("dropout", 0.3), ("increasing", True), ("step", 10),
                    ("batch_size", 25), ("eta_min", 1e-5)):
        assert h.config[k] == want, f"panel {k}: the run used {h.config[k]!r}, set {want!r}"
    assert "done: complete: 60 updates" in p.status.value, p.status.value
    assert "lam=0.0025" in p.settings_table.value, p.settings_table.value
    assert p.curves.value[:8] == b"\x89PNG\r\n\x1a\n" and p.curves.layout.display != "none"
    assert not p.button.disabled and p.stop_button.disabled


@pytest.mark.parametrize("bad", [dict(f=4.5), dict(step=19.9), dict(flip="False"),
                                 dict(increasing="no"), dict(lam="0.003"), dict(width=3)])
def test_training_panel_refuses_bad_chapter_values(tiny, bad):
    (name, value), = bad.items()
    with pytest.raises(ValueError) as e:
        _panel(tiny, **bad)
    assert name in str(e.value), str(e.value)


def test_stop_ends_the_run_and_keeps_it_on_every_run(tiny):
    p = _panel(tiny, step=5000, n_cycles=3)
    assert "30,000 updates" in p.estimate_line.value, p.estimate_line.value
    for attempt in range(2):
        p.train()
        assert p.button.disabled and not p.stop_button.disabled
        deadline = time.monotonic() + 30
        while p.run.k < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        p.stop()
        assert p.wait(5), f"run {attempt + 1}: Stop did not end the run"
        assert time.monotonic() - t0 < 2.0
        assert re.search(r"stopped at update [\d,]+ of 30,000", p.status.value), p.status.value
        assert "not final" in p.status.value and "done" not in p.status.value, p.status.value
        assert p.result.history.status == "stopped" and not p.result.final
        assert not p.button.disabled and p.stop_button.disabled


def test_a_refused_field_clears_the_old_curves(tiny):
    p = _panel(tiny)
    p.train()
    assert p.wait(60) and p.curves.layout.display != "none"
    old = p.result
    p.controls["step"].value = "19.9"
    assert "refused" in p.estimate_line.value and "step" in p.estimate_line.value
    p.train()
    assert "not trained" in p.status.value and "19.9" in p.status.value, p.status.value
    assert p.curves.layout.display == "none" and "refused" in p.curves_note.value
    assert p.result is old and not p.button.disabled
    p.controls["step"].value = 19.9                 # a number set from Python: shown, refused
    assert p.controls["step"].value == "19.9"
    p.train()
    assert "not trained" in p.status.value and "19.9" in p.status.value, p.status.value
    p.controls["step"].value = 10
    p.controls["batch_size"].value = "500"
    p.train()
    assert "not trained" in p.status.value and "batch_size" in p.status.value, p.status.value


def test_a_long_run_needs_a_second_click(tiny, monkeypatch):
    p = _panel(tiny, step=5000, n_cycles=3)
    real = panel.estimate
    monkeypatch.setattr(panel, "estimate", lambda *a: dict(real(*a), seconds=900.0, long=True))
    p.train()
    assert p.run is None and "not started" in p.status.value and "15:00" in p.status.value
    assert not p.button.disabled
    p.train()
    assert p.run is not None and p.run.running or p.run.done.is_set()
    p.stop()
    assert p.wait(5)
    p.allow_long.value = True
    p.train()
    assert p.run.running or p.run.done.is_set()
    p.stop()
    assert p.wait(5)


def test_an_exception_before_the_run_reenables_the_panel(tiny, monkeypatch):
    p = _panel(tiny)

    def broken(*a, **k):
        raise RuntimeError("no threads left")
    monkeypatch.setattr(panel, "TrainingRun", broken)
    p.train()
    assert "failed" in p.status.value and "no threads left" in p.status.value
    assert not p.button.disabled and p.stop_button.disabled


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
