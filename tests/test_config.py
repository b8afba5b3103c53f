"""Tests for workbook/config.py: WORKBOOK_FAST means exactly unset/0/1 (issue 21)."""
import pytest

from workbook import config, data, synthetic


@pytest.mark.parametrize("value,fast", [(None, False), ("", False), ("0", False), ("1", True),
                                        (" 1 ", True), (" 0", False)])
def test_allowed_values(monkeypatch, value, fast):
    if value is None:
        monkeypatch.delenv("WORKBOOK_FAST", raising=False)
    else:
        monkeypatch.setenv("WORKBOOK_FAST", value)
    assert config.is_fast() is fast
    assert config.fig_dir() == (config.FIG_DIR / "fast-mode" if fast else config.FIG_DIR)


@pytest.mark.parametrize("value", ["2", "yes", "true", "True", "on", "no", "false", "fast", "01"])
def test_any_other_value_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("WORKBOOK_FAST", value)
    for call in (config.is_fast, config.fig_dir):
        with pytest.raises(ValueError) as exc:
            call()
        msg = str(exc.value)
        assert f"WORKBOOK_FAST={value!r}" in msg and "=1" in msg and "0" in msg and "unset" in msg


def test_a_bad_value_stops_load_dataset_before_any_data(monkeypatch):
    monkeypatch.setenv("WORKBOOK_FAST", "yes")

    def no_data(*a, **k):
        raise AssertionError("data was generated")
    monkeypatch.setattr(data, "_synthetic_part", no_data, raising=False)   # (before #21)
    monkeypatch.setattr(synthetic, "synthetic_part", no_data, raising=False)
    monkeypatch.setattr(synthetic, "make_synthetic", no_data)
    with pytest.raises(ValueError, match="WORKBOOK_FAST"):
        data.load_dataset(source="synthetic", n_train=10, n_val=5, n_test=5, verbose=False)
