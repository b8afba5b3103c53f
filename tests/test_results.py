"""Tests for workbook/results.py: results files that never lose or fake a row (issue 21).

Every file lives in tmp_path (config.FIG_DIR is monkeypatched; recorded files use folder=)."""
import json
import multiprocessing
import os

import pytest

from workbook import config, files, results

DATA = "CIFAR-10 (JPEG q75 copy)"


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def figs(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "FIG_DIR", tmp_path / "figures")
    monkeypatch.delenv("WORKBOOK_FAST", raising=False)
    return tmp_path / "figures"


# ----------------------------------------------------------------- figures/<mode>/*.json
def test_write_and_read_results_per_mode(figs, monkeypatch):
    rows = [{"run": "arch1", "test_acc": 0.5}, {"run": "arch2", "test_acc": 0.56}]
    full = results.write_results("03_architectures", rows)
    assert full == figs / "03_architectures.json"
    assert json.loads(full.read_text()) == {"fast_mode": False, "rows": rows}
    monkeypatch.setenv("WORKBOOK_FAST", "1")
    fast = results.write_results("03_architectures", [{"run": "tiny"}])
    assert fast == figs / "fast-mode" / "03_architectures.json"
    assert results.read_results("03_architectures") == {"tiny": {"run": "tiny"}}
    monkeypatch.setenv("WORKBOOK_FAST", "0")
    assert results.read_results("03_architectures") == {r["run"]: r for r in rows}
    assert results.read_results("nothing_yet") == {}
    assert _listing(figs) == ["03_architectures.json", "fast-mode"]


@pytest.mark.parametrize("content,problem", [
    ('{"fast_mode": false, "rows": [{"run": "a"}', "not valid JSON"),
    ("", "empty"),
    ('{"fast_mode": false}', "rows"),
    ('{"fast_mode": false, "rows": [{"test_acc": 0.5}]}', "'run'"),
    ('[1, 2]', "rows")])
def test_read_results_of_a_damaged_file_names_it(figs, content, problem):
    figs.mkdir()
    (figs / "03_x.json").write_text(content)
    with pytest.raises(ValueError) as exc:
        results.read_results("03_x")
    assert str(figs / "03_x.json") in str(exc.value) and problem in str(exc.value)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", None, 3])
def test_bad_names_are_refused_before_writing(figs, name):
    with pytest.raises(ValueError, match="name"):
        results.write_results(name, [{"run": "a"}])
    assert not figs.exists()


@pytest.mark.parametrize("rows", [{"run": "a"}, [{"run": "a"}, "b"], [{"test_acc": 1}]])
def test_bad_rows_are_refused_before_writing(figs, rows):
    with pytest.raises(ValueError, match="rows"):
        results.write_results("03_x", rows)
    assert not figs.exists()


def test_a_failed_write_keeps_the_old_results_and_leaves_no_temp(figs, monkeypatch):
    path = results.write_results("04_ls", [{"run": "old"}])
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        results.write_results("04_ls", [{"run": "new"}])
    assert path.read_bytes() == before and _listing(figs) == ["04_ls.json"]


# ------------------------------------------------------------ docs/results/<name>.json
def test_load_recorded(tmp_path):
    assert results.load_recorded("recipe", folder=tmp_path) is None
    (tmp_path / "recipe.json").write_text(json.dumps({"data": DATA, "rows": [{"seed": 0}]}))
    rec = results.load_recorded("recipe", folder=tmp_path)
    assert rec == {"data": DATA, "rows": [{"seed": 0}], "path": str(tmp_path / "recipe.json")}
    for bad, problem in (('{"data": "x"}', "rows"), ('{"data": "x", "rows": [1]}', "dict"),
                         ('{"data": "x", "rows": [', "not valid JSON")):
        (tmp_path / "recipe.json").write_text(bad)
        with pytest.raises(ValueError) as exc:
            results.load_recorded("recipe", folder=tmp_path)
        assert str(tmp_path / "recipe.json") in str(exc.value) and problem in str(exc.value)


def test_record_row_adds_sorted_rows_and_never_replaces_without_overwrite(tmp_path):
    p = results.record_row("recipe", {"seed": 1, "test_acc": 0.70}, DATA, folder=tmp_path)
    results.record_row("recipe", {"seed": 0, "test_acc": 0.71, "status": "complete"}, DATA,
                       folder=tmp_path)
    assert [r["seed"] for r in json.loads(p.read_text())["rows"]] == [0, 1]
    before = p.read_bytes()
    with pytest.raises(ValueError, match=r"already holds a row with seed=1.*overwrite=True"):
        results.record_row("recipe", {"seed": 1, "test_acc": 0.10}, DATA, folder=tmp_path)
    assert p.read_bytes() == before                          # the good row is kept
    results.record_row("recipe", {"seed": 1, "test_acc": 0.72}, DATA, folder=tmp_path,
                       overwrite=True)
    rows = json.loads(p.read_text())["rows"]
    assert [(r["seed"], r["test_acc"]) for r in rows] == [(0, 0.71), (1, 0.72)]
    with pytest.raises(ValueError, match="holds results on"):
        results.record_row("recipe", {"seed": 2}, "SYNTHETIC (not CIFAR-10)", folder=tmp_path)
    with pytest.raises(ValueError, match="'seed'"):
        results.record_row("recipe", {"test_acc": 0.7}, DATA, folder=tmp_path)
    assert json.loads(p.read_text())["rows"] == rows
    assert _listing(tmp_path) == ["recipe.json"]             # no temp or lock file


@pytest.mark.parametrize("row", [{"seed": 0, "status": "interrupted", "updates": 9},
                                 {"seed": 0, "status": "failed"},
                                 {"seed": 0, "status": "stopped"},
                                 {"seed": 0, "interrupted": True, "updates": 9},
                                 {"seed": 0, "status": "complete", "interrupted": True}])
def test_a_run_that_did_not_finish_is_never_recorded(tmp_path, row):
    good = results.record_row("recipe", {"seed": 0, "test_acc": 0.73, "updates": 30000}, DATA,
                              folder=tmp_path)
    before = good.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="did not finish") as exc:
            results.record_row("recipe", row, DATA, folder=tmp_path, overwrite=overwrite)
        if "updates" in row:
            assert "update 9" in str(exc.value)
    assert good.read_bytes() == before
    with pytest.raises(ValueError, match="did not finish"):      # nor into a new file
        results.record_row("other", row, DATA, folder=tmp_path)
    assert _listing(tmp_path) == ["recipe.json"]


def test_record_row_into_a_damaged_file_names_it_and_keeps_it(tmp_path):
    p = tmp_path / "recipe.json"
    p.write_text('{"data": "CIFAR-10 (JPEG q75 copy)", "rows": [{"seed": 0}')   # half-written
    with pytest.raises(ValueError) as exc:
        results.record_row("recipe", {"seed": 1}, DATA, folder=tmp_path)
    assert str(p) in str(exc.value) and "not valid JSON" in str(exc.value)
    assert p.read_text().endswith('[{"seed": 0}') and _listing(tmp_path) == ["recipe.json"]


def _record_many(folder, first, n):
    """In a child process: record n rows with seeds first..first+n-1, one call each."""
    for s in range(first, first + n):
        results.record_row("recipe", {"seed": s, "test_acc": s / 100}, DATA, folder=folder)


def test_two_processes_recording_at_once_keep_every_row(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), k * 40, 40))
             for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    rec = results.load_recorded("recipe", folder=tmp_path)
    assert sorted(r["seed"] for r in rec["rows"]) == list(range(80))       # all 80 kept
    assert _listing(tmp_path) == ["recipe.json"]                            # no temp files
    assert os.path.getsize(tmp_path / "recipe.json") > 0
