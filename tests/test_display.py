"""Tests for workbook.display: the source a chapter shows is the function's real source."""
import inspect

import pytest
import helpers as H
from workbook import display


def test_source_of_is_the_function():
    src = display.source_of(H.conv_loops)
    assert src.startswith("def conv_loops(") and "np.multiply" in src
    assert src == inspect.getsource(H.conv_loops).rstrip("\n") + "\n"


def test_source_of_a_method_is_dedented():
    src = display.source_of(H.TrainConfig.etas)
    assert src.startswith("def etas(self)"), src[:40]


def test_source_of_only_the_lines_asked_for():
    src = display.source_of(H.smooth_targets, contains="eps")
    lines = src.splitlines()
    assert all("eps" in ln or ln == "    ..." for ln in lines), src
    assert any("(1 - eps)" in ln for ln in lines), src
    assert not any("K = Y.shape[0]" in ln for ln in lines), "a line without the text was kept"
    with pytest.raises(ValueError, match="no line"):
        display.source_of(H.smooth_targets, contains="no such text")


def test_show_source_displays_highlighted_code(monkeypatch):
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    assert display.show_source(H.conv_matmul, H.conv_einsum) is None
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Code)
    assert "def conv_matmul(" in shown[0].data and "def conv_einsum(" in shown[0].data
