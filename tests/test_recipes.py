"""Tests for workbook.recipes: ablations on a validation split, recipes and seeds, the
one-command reproduction (fast mode, never clobbering a checkpoint or a recorded row, a run
that does not finish never scored/saved/recorded) and its command line."""
import dataclasses
import json

import numpy as np
import pytest

from workbook import config, engine, recipes
from workbook.checkpoints import load_checkpoint
from _common import TINY, ctrl_c_at, tiny_cfg


def test_run_ablation_one_row_per_variant(tiny_data):
    variants = {"flip": ({}, {"flip": True}),
                "wider": ({"nf": 8, "nh": 24}, {}),
                "multi": ({"f": (4, 8), "nf": (4, 4)}, {}),
                "LS": ({}, {"eps": 0.1, "lam": 0.0})}
    rows = recipes.run_ablation(TINY, tiny_cfg(), variants, tiny_data, seed=0, verbose=False)
    assert [r["run"] for r in rows] == ["base", "flip", "wider", "multi", "LS"], \
        f"rows are {[r['run'] for r in rows]}, expected the base then each variant once"
    by = {r["run"]: r for r in rows}
    assert by["base"]["delta_pp"] == 0.0, f"base delta_pp is {by['base']['delta_pp']}, expected 0"
    assert by["flip"]["flip"] is True and by["base"]["flip"] is False, "the flip override was not applied"
    assert (by["wider"]["nf"], by["wider"]["nh"]) == (8, 24), f"wider run has nf/nh {by['wider']['nf']}/{by['wider']['nh']}"
    assert by["multi"]["f"] == [4, 8] and by["multi"]["nf"] == [4, 4], f"multi run has f={by['multi']['f']}"
    assert (by["LS"]["eps"], by["LS"]["lam"]) == (0.1, 0.0), "the LS/lam override was not applied"
    for r in rows:
        assert 0.0 <= r["val_acc"] <= 1.0, f"{r['run']}: val_acc {r['val_acc']} outside [0, 1]"
        assert r["test_acc"] is None, f"{r['run']}: the ablation must not score the test split"
        want = round(100 * (r["val_acc"] - by["base"]["val_acc"]), 2)
        assert r["delta_pp"] == want, f"{r['run']}: delta_pp {r['delta_pp']} != {want}"
        assert r["updates"] == 20, f"{r['run']}: {r['updates']} updates, expected 20"


def test_run_ablation_rejects_bad_input(tiny_data):
    with pytest.raises(ValueError, match="pair"):
        recipes.run_ablation(TINY, tiny_cfg(), {"bad": {"flip": True}}, tiny_data, verbose=False)
    with pytest.raises(ValueError, match="unknown keys"):
        recipes.run_ablation(TINY, tiny_cfg(), {"typo": ({}, {"flipp": True})}, tiny_data, verbose=False)
    no_val = dict(tiny_data, X_val=tiny_data["X_val"][:, :0], y_val=tiny_data["y_val"][:0])
    with pytest.raises(ValueError, match="X_val"):
        recipes.run_ablation(TINY, tiny_cfg(), {}, no_val, verbose=False)


def test_multi_size_training_finite_history(tiny_data):
    arch = dict(f=(4, 8), nf=(4, 6), nh=16)
    cfg = tiny_cfg(n_cycles=2, eval_every=5)
    params, hist, row = recipes.train_recipe(arch, cfg, tiny_data, seed=1)
    assert set(params) == {"Fs_f4", "b0_f4", "Fs_f8", "b0_f8", "W1", "b1", "W2", "b2"}, sorted(params)
    assert params["W1"].shape == (16, 64 * 4 + 16 * 6), f"W1 is {params['W1'].shape}"
    for k in ("train_loss", "train_cost", "test_loss", "train_acc", "test_acc"):
        v = np.asarray(getattr(hist, k))
        assert v.size == len(hist.t) > 2, f"history.{k} has {v.size} entries for {len(hist.t)} evaluations"
        assert np.all(np.isfinite(v)), f"history.{k} is not finite: {v}"
    init = engine.init_params(**arch, seed=1)
    moved = {k: float(np.max(np.abs(params[k] - init[k]))) for k in ("Fs_f4", "Fs_f8", "W1")}
    assert all(v > 0 for v in moved.values()), f"some weights never changed: {moved}"


@pytest.mark.parametrize("opts", [dict(dropout=0.3), dict(flip=True), dict(translate=2),
                                  dict(flip=True, translate=1, dropout=0.5, tta=True)])
def test_options_are_deterministic_for_a_seed(tiny_data, opts):
    cfg = tiny_cfg(**opts)
    p1, h1, _ = recipes.train_recipe(TINY, cfg, tiny_data, seed=5, score_test=False)
    p2, h2, _ = recipes.train_recipe(TINY, cfg, tiny_data, seed=5, score_test=False)
    p3, _, _ = recipes.train_recipe(TINY, cfg, tiny_data, seed=6, score_test=False)
    for k in p1:
        assert np.array_equal(p1[k], p2[k]), \
            f"{opts}: {k} differs between two runs with seed 5 by {np.max(np.abs(p1[k] - p2[k]))}"
    assert h1.train_loss == h2.train_loss, f"{opts}: histories differ for the same seed"
    assert not np.array_equal(p1["W1"], p3["W1"]), f"{opts}: seeds 5 and 6 gave the same W1"


def test_options_change_training(tiny_data):
    """Each option must actually act: same seed, option on vs off gives other weights."""
    p0, _, _ = recipes.train_recipe(TINY, tiny_cfg(), tiny_data, seed=2, score_test=False)
    for opts in (dict(dropout=0.3), dict(flip=True), dict(translate=2)):
        p1, _, _ = recipes.train_recipe(TINY, tiny_cfg(**opts), tiny_data, seed=2, score_test=False)
        assert not np.array_equal(p0["W1"], p1["W1"]), f"{opts} did not change training"


def test_train_recipe_scores_test_once_with_tta(tiny_data):
    cfg = tiny_cfg(flip=True, tta=True)
    params, hist, row = recipes.train_recipe(TINY, cfg, tiny_data, seed=0)
    assert row["val_acc"] == hist.test_acc[-1], "val_acc must be the last monitored (validation) accuracy"
    P = engine.predict(params, tiny_data["X_test"], tta=True)
    acc = float(np.mean(P.argmax(axis=0) == tiny_data["y_test"]))
    assert row["test_acc"] == pytest.approx(acc, abs=1e-12), f"test_acc {row['test_acc']} != predict's {acc}"
    assert row["seed"] == 0 and row["eval_split"] == "val"


def test_best_recipe_is_valid():
    r = recipes.BEST_RECIPE
    arch = recipes.recipe_arch(r)
    p = engine.check_params(engine.init_params(**arch))
    fs = arch["f"] if isinstance(arch["f"], tuple) else (arch["f"],)
    nfs = arch["nf"] if isinstance(arch["nf"], tuple) else (arch["nf"],)
    width = sum((32 // f) ** 2 * nf for f, nf in zip(fs, nfs))
    assert p["W1"].shape == (arch["nh"], width), f"W1 is {p['W1'].shape}, expected {(arch['nh'], width)}"
    cfg = r["cfg"].validate()
    assert cfg.flip and cfg.translate > 0 and 0 <= cfg.dropout < 1 and cfg.tta and cfg.eta_decay < 1, \
        f"the recipe should use the bonus tools: {cfg}"
    assert cfg.eval_train_n <= 5000, "evaluation on a huge train chunk would eat the time budget"
    assert recipes.recipe_for_mode(r, fast=False) == r, "full mode must run the recipe unchanged"
    small = recipes.recipe_for_mode(r, fast=True)
    engine.check_params(engine.init_params(**recipes.recipe_arch(small)))
    sc = small["cfg"].validate()
    for k in ("flip", "translate", "dropout", "tta", "eta_decay", "eps", "lam", "increasing"):
        assert getattr(sc, k) == getattr(cfg, k), f"fast mode changed the recipe's {k}"
    assert sc.n_updates < cfg.n_updates / 10, f"fast mode runs {sc.n_updates} updates"


def test_recipe_arch_rejects_missing_keys():
    with pytest.raises(ValueError, match="nh"):
        recipes.recipe_arch({"f": 4, "nf": 10})


def test_run_seeds_mean_std_and_reuse(tiny_data):
    cfg = tiny_cfg()
    _, _, row0 = recipes.train_recipe(TINY, cfg, tiny_data, seed=0, label="r seed 0")
    out = recipes.run_seeds(TINY, cfg, tiny_data, seeds=(0, 1, 2), label="r", reuse={0: row0})
    assert out["rows"][0] is row0, "seed 0 should be reused, not retrained"
    assert [r["seed"] for r in out["rows"]] == [0, 1, 2]
    t = np.array([r["test_acc"] for r in out["rows"]])
    assert out["test_mean"] == pytest.approx(t.mean()) and out["test_std"] == pytest.approx(t.std(ddof=1)), \
        f"test mean/std {out['test_mean']}/{out['test_std']} vs {t.mean()}/{t.std(ddof=1)}"
    _, _, row1 = recipes.train_recipe(TINY, cfg, tiny_data, seed=1)
    assert out["rows"][1]["test_acc"] == row1["test_acc"], "run_seeds' seed-1 run differs from train_recipe's"
    with pytest.raises(ValueError):
        recipes.run_seeds(TINY, cfg, tiny_data, seeds=())


# ============================================================ issue 21: nothing unfinished is kept as finished

SMALL_RECIPE = dict(f=4, nf=4, nh=16, cfg=tiny_cfg(flip=True, tta=True))


@pytest.fixture
def recipe_env(isolated_data, tmp_path, monkeypatch, tiny_data):
    """Full mode, DATA_DIR and DOCS_DIR in tmp_path, load_dataset -> the tiny data (its calls
    recorded); a finished checkpoint and a recorded seed-0 row already there."""
    monkeypatch.setenv("WORKBOOK_FAST", "0")
    docs = tmp_path / "docs"
    monkeypatch.setattr(config, "DOCS_DIR", docs)
    loads = []
    monkeypatch.setattr(recipes, "load_dataset", lambda **kw: loads.append(kw) or tiny_data)
    isolated_data.mkdir(parents=True)
    params, hist, _ = recipes.train_recipe(TINY, tiny_cfg(), tiny_data, seed=0)
    ck = recipes.save_checkpoint(isolated_data / "best_recipe_seed0.npz", params, tiny_cfg(), hist)
    (docs / "results").mkdir(parents=True)
    rec = docs / "results" / "recipe.json"
    rec.write_text(json.dumps({"data": tiny_data["name"], "rows": [{"seed": 0, "test_acc": 0.5}]}))
    return {"ck": ck, "ck_bytes": ck.read_bytes(), "rec": rec, "rec_bytes": rec.read_bytes(),
            "data_dir": isolated_data, "loads": loads}


def test_an_interrupted_recipe_run_is_not_scored_saved_or_recorded(recipe_env, monkeypatch, capsys):
    calls = ctrl_c_at(9, monkeypatch)
    row = recipes.train_best_recipe(seed=0, recipe=SMALL_RECIPE, checkpoint=True, record=True,
                                    overwrite=True)
    assert len(calls) == 9
    assert row["status"] == "interrupted" and row["updates"] == 8
    assert row["test_acc"] is None, "an interrupted run was scored on the test set"
    assert recipe_env["ck"].read_bytes() == recipe_env["ck_bytes"], "the checkpoint was replaced"
    assert sorted(p.name for p in recipe_env["data_dir"].iterdir()) == ["best_recipe_seed0.npz"]
    assert recipe_env["rec"].read_bytes() == recipe_env["rec_bytes"], "the recorded row was replaced"
    assert "not scored, saved or recorded" in capsys.readouterr().out


def test_a_finished_recipe_run_keeps_the_old_checkpoint_and_refuses_a_recorded_seed(
        recipe_env, monkeypatch):
    row = recipes.train_best_recipe(seed=0, recipe=SMALL_RECIPE, checkpoint=True, record=False)
    assert row["status"] == "complete" and 0 <= row["test_acc"] <= 1
    assert recipe_env["ck"].read_bytes() == recipe_env["ck_bytes"]
    new = recipe_env["data_dir"] / "best_recipe_seed0.2.npz"
    assert new.is_file(), "the new checkpoint did not get the next free name"
    _, cfg, hist = load_checkpoint(new)
    assert hist.complete and cfg.flip and cfg.seed == 0
    # a recorded seed 0 without overwrite: refused before any training
    monkeypatch.setattr(recipes, "train_recipe", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="already has a row for seed 0"):
        recipes.train_best_recipe(seed=0, recipe=SMALL_RECIPE, checkpoint=False, record=True)
    assert recipe_env["rec"].read_bytes() == recipe_env["rec_bytes"]


def test_fast_mode_trains_the_tiny_stand_in_and_saves_nothing(isolated_data, tmp_path, monkeypatch,
                                                             tiny_data, capsys):
    monkeypatch.setenv("WORKBOOK_FAST", "1")
    monkeypatch.setattr(config, "DOCS_DIR", tmp_path / "docs")
    loads, trained = [], []
    monkeypatch.setattr(recipes, "load_dataset", lambda **kw: loads.append(kw) or tiny_data)
    real = recipes.train_recipe
    monkeypatch.setattr(recipes, "train_recipe",
                        lambda arch, cfg, *a, **k: trained.append((arch, cfg)) or real(arch, cfg, *a, **k))
    monkeypatch.setattr(recipes, "record_row", lambda *a, **k: pytest.fail("fast mode recorded a row"))
    monkeypatch.setattr(recipes, "save_checkpoint", lambda *a, **k: pytest.fail("fast mode saved"))
    row = recipes.train_best_recipe(seed=0, checkpoint=True, record=True, overwrite=True)
    assert "FAST MODE" in capsys.readouterr().out
    assert loads and loads[0]["n_train"] <= 2000, f"fast mode loaded {loads}"
    (arch, cfg), = trained
    full = recipes.BEST_RECIPE
    assert arch["nf"] < full["nf"] and arch["nh"] < full["nh"]
    assert cfg.n_updates < full["cfg"].n_updates / 10
    assert row["status"] == "complete" and row["updates"] == cfg.n_updates
    assert not isolated_data.exists() or not any(isolated_data.iterdir())
    assert not (tmp_path / "docs").exists()


def test_bad_fast_mode_values_are_refused(monkeypatch):
    monkeypatch.setattr(recipes, "load_dataset", lambda **kw: pytest.fail("data loaded"))
    for v in ("2", "yes"):
        monkeypatch.setenv("WORKBOOK_FAST", v)
        with pytest.raises(ValueError, match="WORKBOOK_FAST"):
            recipes.train_best_recipe(seed=0)


def test_duplicate_or_bad_seeds_are_refused_before_training(monkeypatch, capsys):
    for bad in ([0, 0], [1, 2, 1], [-1], [1.5], [True], []):
        with pytest.raises(ValueError, match="seed"):
            recipes.check_seeds(bad)
    assert recipes.check_seeds((2, 0)) == [2, 0] and recipes.check_seeds(3) == [3]
    monkeypatch.setattr(recipes, "train_best_recipe", lambda **k: pytest.fail("trained"))
    with pytest.raises(SystemExit):
        recipes.main(["--seeds", "0", "0"])
    assert "more than once" in capsys.readouterr().err


def test_the_cli_stops_at_an_unfinished_seed(monkeypatch, capsys):
    seen = []

    def fake(seed, **k):
        seen.append(seed)
        return {"seed": seed, "status": "interrupted" if seed == 1 else "complete"}

    monkeypatch.setattr(recipes, "train_best_recipe", fake)
    assert recipes.main(["--seeds", "0", "1", "2"]) == 130
    assert seen == [0, 1], "the CLI trained the next seed after a Ctrl-C"
    assert "finished seeds [0], not run: [2]" in capsys.readouterr().out
    seen.clear()
    assert recipes.main(["--seeds", "0", "2"]) == 0 and seen == [0, 2]


def test_run_seeds_stops_at_an_unfinished_run(tiny_data, monkeypatch, capsys):
    cfg = tiny_cfg()
    ctrl_c_at(25, monkeypatch)               # update 5 of the second seed
    out = recipes.run_seeds(TINY, cfg, tiny_data, seeds=(0, 1, 2))
    assert [r["seed"] for r in out["rows"]] == [0, 1]
    assert [r["status"] for r in out["rows"]] == ["complete", "interrupted"]
    assert out["rows"][1]["test_acc"] is None
    assert out["test_mean"] == out["rows"][0]["test_acc"], "an unscored run entered the mean"
    assert "seed 1 did not finish" in capsys.readouterr().out
    with pytest.raises(ValueError, match="more than once"):
        recipes.run_seeds(TINY, cfg, tiny_data, seeds=(0, 0))


def test_run_ablation_stops_at_an_unfinished_run(tiny_data, monkeypatch, capsys):
    ctrl_c_at(25, monkeypatch)               # in the second run (each has 20 updates)
    variants = {"flip": ({}, {"flip": True}), "wider": ({"nf": 8}, {})}
    rows = recipes.run_ablation(TINY, tiny_cfg(), variants, tiny_data, verbose=False)
    assert [r["run"] for r in rows] == ["base", "flip"]
    assert [r["status"] for r in rows] == ["complete", "interrupted"]
    assert "flip did not finish" in capsys.readouterr().out


def test_an_interrupted_train_recipe_is_never_scored(tiny_data, monkeypatch):
    ctrl_c_at(3, monkeypatch)
    params, hist, row = recipes.train_recipe(TINY, tiny_cfg(), tiny_data, seed=0)
    assert hist.status == "interrupted" and row["status"] == "interrupted"
    assert row["test_acc"] is None and "time_test_s" not in row


def test_free_checkpoint_path(tmp_path):
    p = tmp_path / "best.npz"
    assert recipes.free_checkpoint_path(p) == p
    p.write_bytes(b"x")
    assert recipes.free_checkpoint_path(p).name == "best.2.npz"
    (tmp_path / "best.2.npz").write_bytes(b"x")
    assert recipes.free_checkpoint_path(tmp_path / "best").name == "best.3.npz"


def test_ablation_setup_is_valid_in_both_modes():
    for fast in (False, True):
        arch, cfg, variants = recipes.ablation_setup(fast=fast)
        cfg.validate()
        fields = {f.name for f in dataclasses.fields(engine.EngineConfig)}
        for name, (a, c) in variants.items():
            assert set(a) <= {"f", "nf", "nh"} and set(c) <= fields, name
            dataclasses.replace(cfg, **c).validate()
            engine.check_params(engine.init_params(**{**arch, **a}))
    assert recipes.ablation_setup(fast=True)[1].n_updates < recipes.ablation_setup(fast=False)[1].n_updates
