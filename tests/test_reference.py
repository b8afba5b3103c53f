"""Tests for workbook/reference.py: the chapters' verdicts (ex3/4/5_checks), data_kind, the
markdown table, seed summaries, ablation deltas and the speed rows read from a benchmark JSON."""
import json

import pytest

from workbook import reference as R


def _acc(**kw):
    base = {"arch1": 0.52, "arch2": 0.58, "arch3": 0.62, "arch4": 0.595, "arch2 long": 0.60,
            "arch3 long": 0.645, "arch2 nf=40 long": 0.63}
    base.update(kw)
    return base


def test_reference_numbers_are_the_assignment_s():
    assert R.REFERENCE["arch2 (assignment)"] == 0.5761
    assert R.REFERENCE["teacher's best, Exercise 5 (assignment)"] == 0.6726
    assert set(R.REFERENCE["student"]) >= {"arch1", "arch2", "arch3", "arch4"}


def test_ex3_checks_use_the_assignment_on_cifar_and_chance_on_synthetic():
    ok = {c["check"]: c["ok"] for c in R.ex3_checks(_acc(), "cifar10")}
    assert all(ok.values()) and len(ok) == 4, ok
    bad = {c["check"]: c["ok"] for c in R.ex3_checks(_acc(arch2=0.55), "cifar10")}
    assert bad["arch2 within 2 points of the assignment's 57.61%"] is False
    low = R.ex3_checks(_acc(arch3=0.59, **{"arch2 long": 0.59, "arch3 long": 0.599,
                                           "arch2 nf=40 long": 0.5}), "cifar10")
    assert [c["ok"] for c in low][1:] == [False, True, False], low
    syn = R.ex3_checks(_acc(arch4=0.2), "synthetic")
    assert [c["ok"] for c in syn] == [True, False, True], syn
    assert [c["check"] for c in syn] == [c["check"] for c in R.ex3_checks(_acc(), "synthetic")]


def test_ex4_checks():
    def summ(acc_a, acc_b, rise_a, rise_b, tl_a=0.5, tl_b=0.7):
        return {"labels": ("no LS", "LS"),
                "no LS": {"test_acc": acc_a, "rise": rise_a, "train_loss": tl_a},
                "LS": {"test_acc": acc_b, "rise": rise_b, "train_loss": tl_b}}
    assert [c["ok"] for c in R.ex4_checks(summ(0.66, 0.657, 0.3, 0.05), "cifar10")] == [True] * 4
    assert [c["ok"] for c in R.ex4_checks(summ(0.62, 0.61, 0.005, 0.02), "cifar10")] == [False] * 4
    assert [c["ok"] for c in R.ex4_checks(summ(0.35, 0.31, 0, 0, 0.6, 0.5), "synthetic")] == [True, False]


def test_ex5_checks():
    recipe = [{"seed": s, "test_acc": a, "time_train_s": t} for s, a, t in ((0, 0.70, 500), (1, 0.69, 950))]
    assert [c["ok"] for c in R.ex5_checks([], recipe, recorded=True)] == [True, False, False]
    fast = [dict(r, test_acc=0.735, time_train_s=800) for r in recipe]
    assert [c["ok"] for c in R.ex5_checks([], fast, recorded=True)] == [True, True, True]
    ok = [c["ok"] for c in R.ex5_checks([], recipe[:1] + [dict(recipe[1], test_acc=0.6)], recorded=True)]
    assert ok[0] is False, "mean 65% is below the teacher's 67.26%"
    assert [c["ok"] for c in R.ex5_checks([], [], recorded=True)] == [False, False, False]
    abl = [{"run": r, "seed": s, "val_acc": 0.2} for r in ("base", "flip") for s in (0, 1)]
    assert [c["ok"] for c in R.ex5_checks(abl, [], recorded=False)] == [True, True]
    assert [c["ok"] for c in R.ex5_checks(abl[:3], [], recorded=False)] == [False, True]
    abl[0]["val_acc"] = 0.12
    assert [c["ok"] for c in R.ex5_checks(abl, [], recorded=False)] == [True, False]


def test_print_checks(capsys):
    checks = [{"check": "a", "ok": True, "value": "1%"}, {"check": "b", "ok": False, "value": "2%"}]
    assert R.print_checks(checks) is False
    assert capsys.readouterr().out == "a: True\nb: False\n"
    assert R.print_checks(checks[:1], values=True) is True
    assert "(1%)" in capsys.readouterr().out


def test_data_kind():
    assert R.data_kind({"name": "CIFAR-10", "synthetic": False}) == "cifar10"
    assert R.data_kind("CIFAR-10 (JPEG q75 copy)") == "cifar10"
    assert R.data_kind({"name": "SYNTHETIC (not CIFAR-10) [FAST MODE]", "synthetic": True}) == "synthetic"
    assert R.data_kind({"name": "CIFAR-10", "synthetic": True}) == "synthetic"


def test_results_markdown():
    rows = [{"run": "a", "f": 4, "test_acc": 0.5761, "lam": 0.003, "data": "CIFAR-10"},
            {"run": "b", "f": 8, "test_acc": 0.6, "data": "SYNTHETIC"}]
    lines = R.results_markdown(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | f | nf |")
    assert lines[2].startswith("| a | 4 |") and "57.61%" in lines[2] and "CIFAR-10" in lines[2]
    assert "0.003" in lines[2] and "60.00%" in lines[3]


def test_summarise_seeds():
    rows = [{"run": "recipe", "group": "base", "seed": 0, "val_acc": 0.70},
            {"run": "recipe", "group": "base", "seed": 1, "val_acc": 0.72},
            {"run": "- flip", "group": "remove", "seed": 0, "val_acc": 0.66},
            {"run": "- flip", "group": "remove", "seed": 1, "val_acc": None}]
    st = R.summarise_seeds(rows)
    assert [s["run"] for s in st] == ["recipe", "- flip"] and [s["n"] for s in st] == [2, 1]
    assert st[0]["mean"] == pytest.approx(0.71) and st[0]["std"] == pytest.approx(0.01 * 2 ** 0.5)
    assert st[0]["min"] == 0.70 and st[0]["max"] == 0.72 and st[1]["std"] == 0.0
    assert st[0]["group"] == "base"


def test_ablation_deltas_compare_each_group_with_its_reference():
    rows = [{"run": "recipe", "group": "recipe", "seed": 0, "val_acc": 0.70, "time_train_s": 600},
            {"run": "base", "group": "base", "seed": 0, "val_acc": 0.60, "time_train_s": 120},
            {"run": "- flip", "group": "remove", "seed": 0, "val_acc": 0.66, "time_train_s": 600},
            {"run": "+ flip", "group": "add", "seed": 0, "val_acc": 0.63, "time_train_s": 120},
            {"run": "+ flip", "group": "add", "seed": 1, "val_acc": 0.65, "time_train_s": 180}]
    d = {s["run"]: s for s in R.ablation_deltas(rows)}
    assert d["- flip"]["ref"] == "recipe" and d["- flip"]["delta_pp"] == pytest.approx(-4.0)
    assert d["+ flip"]["ref"] == "base" and d["+ flip"]["delta_pp"] == pytest.approx(4.0)
    assert d["+ flip"]["minutes"] == pytest.approx(2.5)
    only_base = R.ablation_deltas(rows[1:2] + rows[2:3])
    assert only_base[1]["ref"] == "base", "without a recipe run the base stands in"


def test_speed_rows_read_what_the_file_has(tmp_path):
    assert R.speed_rows(tmp_path / "missing.json") == []
    d = {"sgemm": [{"m": 1, "seconds": 1.0}],
         "per_update": [{"arch": "arch2", "f": 4, "nf": 10, "nh": 50, "numpy_s": 0.001, "torch_s": 0.003},
                        {"arch": "arch5", "numpy_ms": 4.0, "torch_ms": 5.0},
                        {"arch": "arch9", "numpy_s": 0.001}],
         "grid": [{"f": 2, "nf": 5, "numpy_s": 0.1, "torch_s": 0.2}]}
    (tmp_path / "r.json").write_text(json.dumps(d))
    rows = R.speed_rows(tmp_path / "r.json")
    assert [r["label"] for r in rows] == ["arch2", "arch5"], rows
    assert rows[0]["numpy_ms"] == pytest.approx(1.0) and rows[0]["ratio"] == pytest.approx(3.0)
    assert rows[1]["ratio"] == pytest.approx(1.25)
    (tmp_path / "bad.json").write_text("{not json")
    assert R.speed_rows(tmp_path / "bad.json") == []
