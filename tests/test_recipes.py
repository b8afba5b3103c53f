"""Tests for workbook.recipes: ablations on a validation split, recipes and seeds."""
import numpy as np
import pytest
import helpers as H
from workbook import recipes
from _common import TINY, tiny_cfg




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
    init = H.init_params(**arch, seed=1)
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
    P = H.predict(params, tiny_data["X_test"], tta=True)
    acc = float(np.mean(P.argmax(axis=0) == tiny_data["y_test"]))
    assert row["test_acc"] == pytest.approx(acc, abs=1e-12), f"test_acc {row['test_acc']} != predict's {acc}"
    assert row["seed"] == 0 and row["eval_split"] == "val"


def test_best_recipe_is_valid():
    r = recipes.BEST_RECIPE
    arch = recipes.recipe_arch(r)
    p = H.check_params(H.init_params(**arch))
    fs = arch["f"] if isinstance(arch["f"], tuple) else (arch["f"],)
    nfs = arch["nf"] if isinstance(arch["nf"], tuple) else (arch["nf"],)
    width = sum((32 // f) ** 2 * nf for f, nf in zip(fs, nfs))
    assert p["W1"].shape == (arch["nh"], width), f"W1 is {p['W1'].shape}, expected {(arch['nh'], width)}"
    cfg = r["cfg"].validate()
    assert cfg.flip and cfg.translate > 0 and 0 < cfg.dropout < 1 and cfg.tta and cfg.eta_decay < 1, \
        f"the recipe should use the bonus tools: {cfg}"
    assert cfg.eval_train_n <= 5000, "evaluation on a huge train chunk would eat the time budget"
    assert recipes.recipe_for_mode(r, fast=False) == r, "full mode must run the recipe unchanged"
    small = recipes.recipe_for_mode(r, fast=True)
    H.check_params(H.init_params(**recipes.recipe_arch(small)))
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


def test_record_row_replaces_by_seed_and_refuses_other_data(tmp_path, monkeypatch):
    import json
    from workbook import config
    monkeypatch.setattr(config, "DOCS_DIR", tmp_path)
    p = recipes.record_row("recipe", {"seed": 1, "test_acc": 0.70}, "CIFAR-10 (JPEG q75 copy)")
    recipes.record_row("recipe", {"seed": 0, "test_acc": 0.71}, "CIFAR-10 (JPEG q75 copy)")
    recipes.record_row("recipe", {"seed": 1, "test_acc": 0.72}, "CIFAR-10 (JPEG q75 copy)")
    d = json.loads(p.read_text())
    assert [(r["seed"], r["test_acc"]) for r in d["rows"]] == [(0, 0.71), (1, 0.72)], d["rows"]
    assert list(tmp_path.glob("results/*.tmp")) == [], "a temporary file was left behind"
    with pytest.raises(ValueError, match="not 'SYNTHETIC"):
        recipes.record_row("recipe", {"seed": 2, "test_acc": 0.9}, "SYNTHETIC (not CIFAR-10)")
    assert len(json.loads(p.read_text())["rows"]) == 2, "rows of another data set were mixed in"

