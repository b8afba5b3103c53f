"""Exercise 5.1: ablations on a validation split, the best recipe, and its seeds."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from workbook import config
from workbook.checkpoints import checkpoint_path, save_checkpoint
from workbook.config import is_fast
from workbook.data import load_dataset
from workbook.engine import EngineConfig, as_engine_config, evaluate, init_params, mx_for, train
from workbook.results import load_recorded, record_row, recorded_path, refuse_to_record
from workbook.runs import result_row
from workbook.runtime import blas_threads


def recipe_arch(recipe: dict) -> dict:
    """The architecture part of a recipe/arch dict: {'f', 'nf', 'nh'} (init_params's arguments)."""
    missing = [k for k in ("f", "nf", "nh") if k not in recipe]
    if missing:
        raise ValueError(f"an architecture needs keys f, nf, nh; {missing} missing from {sorted(recipe)}")
    return {k: recipe[k] for k in ("f", "nf", "nh")}


def _val_split(data: dict):
    """(X_val, y_val), or (None, None) when the data has no validation images."""
    Xv = data.get("X_val")
    if Xv is None or Xv.shape[1] == 0:
        return None, None
    return Xv, data["y_val"]


def train_recipe(arch: dict, cfg, data: dict, seed: int = 0, label: str = "recipe",
                 score_test: bool = True, callback=None):
    """Train one model of architecture ``arch`` with ``cfg`` (its seed replaced by ``seed``).

    arch: {'f', 'nf', 'nh'} (ints, or tuples for multi-size filters);  data: load_dataset's dict,
    whose X_train (3072, n) float, y_train (n,) int are trained on, X_val/y_val are the monitored
    ('test_*' curves of the History) and compared split, and X_test/y_test (3072, m)/(m,) are
    scored once at the end when ``score_test`` (with cfg.tta).
    Returns (params, history, row): row = result_row(...) plus val_acc, test_acc (None when not
    scored), seed and eval_split='val'. The history's test_* lists are VALIDATION metrics.
    A run that did not finish (Ctrl-C, row status 'interrupted') is never scored on the test set.
    """
    arch = recipe_arch(arch)
    cfg = dataclasses.replace(as_engine_config(cfg), seed=int(seed)).validate()
    params = init_params(**arch, K=int(data.get("K", 10)), seed=int(seed), dtype=data["X_train"].dtype)
    Xv, yv = _val_split(data)
    params, hist = train(params, data["X_train"], data["y_train"], cfg, Xv, yv,
                         data_name=data.get("name", ""), callback=callback)
    row = result_row(label, params, cfg, hist)
    row["val_acc"] = row.pop("test_acc") if Xv is not None else None
    row.pop("test_loss", None)
    row["test_acc"] = None
    if score_test and hist.complete and data.get("X_test") is not None and data["X_test"].shape[1] > 0:
        t0 = time.perf_counter()
        with blas_threads(cfg.threads or os.cpu_count() or 1):
            te = evaluate(params, mx_for(params, data["X_test"]), np.asarray(data["y_test"]).ravel(),
                          tta=cfg.tta)
        row["test_acc"] = te["acc"]
        row["time_test_s"] = round(time.perf_counter() - t0, 3)
    row.update(seed=int(seed), eval_split="val", dropout=cfg.dropout, flip=cfg.flip,
               translate=cfg.translate, eta_decay=cfg.eta_decay, tta=cfg.tta)
    return params, hist, row


def run_ablation(base_arch: dict, base_cfg, variants: dict, data: dict,
                 seed: int = 0, include_base: bool = True, verbose: bool = True) -> list:
    """One-factor-at-a-time ablation: the base run plus one run per variant, all with ``seed``.

    base_arch: {'f', 'nf', 'nh'};  base_cfg: TrainConfig;  variants: {name: (arch_overrides,
    cfg_overrides)} with dicts that replace keys of base_arch / fields of base_cfg, e.g.
    {'flip': ({}, {'flip': True}), 'multi-size': ({'f': (4, 8), 'nf': (40, 40)}, {})}.
    data: load_dataset's dict (trained on X_train, compared on X_val; the test split is NOT used).
    Returns a list of rows (dicts, see train_recipe) with 'run' = 'base' or the variant name,
    'val_acc', and 'delta_pp' = its val accuracy minus the base's, in percentage points.
    A run that does not finish (Ctrl-C) ends the ablation: the rows so far come back, the
    unfinished one marked by its status, and a line says which runs finished.
    """
    base_cfg = as_engine_config(base_cfg)
    if not isinstance(variants, dict):
        raise ValueError("variants must be a dict {name: (arch_overrides, cfg_overrides)}")
    if _val_split(data)[0] is None:
        raise ValueError("run_ablation compares runs on data['X_val']; load the data with n_val > 0")
    fields = {f.name for f in dataclasses.fields(EngineConfig)}
    runs = [("base", {}, {})] if include_base else []
    for name, spec in variants.items():
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2
                and all(isinstance(s, dict) for s in spec)):
            raise ValueError(f"variant {name!r} must be a pair (arch_overrides: dict, cfg_overrides: dict)")
        a_over, c_over = spec
        bad = set(a_over) - {"f", "nf", "nh"} or set(c_over) - fields
        if bad:
            raise ValueError(f"variant {name!r} overrides unknown keys {sorted(bad)}; architecture keys "
                             f"are f, nf, nh and config keys are TrainConfig fields")
        runs.append((str(name), a_over, c_over))
    rows, base_acc = [], None
    for name, a_over, c_over in runs:
        arch = {**recipe_arch(base_arch), **a_over}
        cfg = dataclasses.replace(base_cfg, **c_over)
        _, hist, row = train_recipe(arch, cfg, data, seed=seed, label=name, score_test=False)
        if name == "base":
            base_acc = row["val_acc"]
        rows.append(row)
        if not hist.complete:
            print(f"{name} did not finish ({hist.status}); the ablation stops here. Finished: "
                  f"{', '.join(r['run'] for r in rows[:-1]) or 'none'}", flush=True)
            break
        if verbose:
            print(f"{name:>24s}: val acc {100 * row['val_acc']:.2f}%  "
                  f"({row['updates']} updates, {row['time_train_s']:.1f} s)")
    for r in rows:
        r["delta_pp"] = None if base_acc is None else round(100 * (r["val_acc"] - base_acc), 2)
    return rows


def ablation_setup(fast: bool | None = None):
    """The notebook's ablation: (base_arch, base_cfg, variants) for run_ablation.

    Full mode: f=4, nf=40, nh=300 (Exercise 4's architecture 5), 2 fixed cycles of step 800,
    lam=0.003, no label smoothing. Fast mode (``fast`` defaults to is_fast()): a tiny network and
    for_mode's shrunken schedule, so all runs take seconds (their numbers mean nothing).
    Variants change one factor each: flip, translate 2 px, dropout 0.3, 2x wider, filters of
    sizes (4, 8), label smoothing 0.1 with lam 0.001, eta_max decay 0.5, flip TTA.
    """
    fast = is_fast() if fast is None else fast
    arch = dict(f=4, nf=8, nh=32) if fast else dict(f=4, nf=40, nh=300)
    cfg = EngineConfig(n_cycles=2, step=800, lam=0.003, eps=0.0, eval_every=800, eval_train_n=2000)
    if fast:
        cfg = dataclasses.replace(cfg, step=20, eval_every=None, eval_train_n=500, progress=False)
    nf, nh = arch["nf"], arch["nh"]
    variants = {
        "flip": ({}, {"flip": True}),
        "translate 2px": ({}, {"translate": 2}),
        "dropout 0.3": ({}, {"dropout": 0.3}),
        "wider 2x": ({"nf": 2 * nf, "nh": 2 * nh}, {}),
        "multi-size f=(4,8)": ({"f": (4, 8), "nf": (nf, nf)}, {}),
        "LS 0.1 + lam 0.001": ({}, {"eps": 0.1, "lam": 0.001}),
        "eta decay 0.5": ({}, {"eta_decay": 0.5}),
        "TTA flip": ({}, {"tta": True}),
    }
    return arch, cfg, variants


# The bonus recipe (Exercise 5.1), chosen on a 5,000-image validation split of the real images
# (CIFAR-10 JPEG q75 copy; see docs/results/ablation.json and notebook 05). What made the
# difference there: filters learned on ZCA-whitened patches (whiten) with a much higher peak
# learning rate (eta_max 0.8), and 30,000 updates (4 doubling cycles from step 1,000). Dropout
# was dropped after the full-length ablation (docs/results/ablation_full_length.json: +1.29
# points of validation accuracy without it, 2 seeds; the previous recipe with dropout 0.3 is
# docs/results/recipe_dropout03.json).
BEST_RECIPE = dict(
    f=4, nf=100, nh=800,
    cfg=EngineConfig(n_cycles=4, step=1000, increasing=True, eta_min=1e-5, eta_max=0.8,
                    eta_decay=0.8, batch_size=100, lam=0.0015, eps=0.1, flip=True, translate=2,
                    dropout=0.0, tta=True, whiten=0.01, eval_every=2000, eval_train_n=2000),
)


def recipe_for_mode(recipe: dict | None = None, fast: bool | None = None) -> dict:
    """The recipe to run now: unchanged normally; in fast mode (``fast`` defaults to is_fast())
    a tiny stand-in with the same options (nf/8, nh/16, 2 cycles, for_mode's short steps)."""
    recipe = BEST_RECIPE if recipe is None else recipe
    cfg = recipe["cfg"]
    fast = is_fast() if fast is None else fast
    if not fast:
        return dict(recipe)
    nf = recipe["nf"]
    nf = tuple(max(4, n // 8) for n in nf) if isinstance(nf, (tuple, list)) else max(4, nf // 8)
    cfg = dataclasses.replace(cfg, n_cycles=min(cfg.n_cycles, 2), step=max(10, cfg.step // 40),
                              eval_every=None, eval_train_n=min(cfg.eval_train_n, 500),
                              progress=False)
    return dict(f=recipe["f"], nf=nf, nh=max(16, recipe["nh"] // 16), cfg=cfg)


def run_seeds(arch: dict, cfg, data: dict, seeds=(0, 1, 2), label: str = "recipe",
              reuse: dict | None = None) -> dict:
    """Train the same recipe once per seed (init + data order + augmentation + dropout).

    reuse: {seed: row} of runs already done with exactly this arch/cfg/data (e.g. train_recipe's
    row for seed 0), which are not retrained.
    Returns {'rows': [row per seed] (see train_recipe), 'val_mean', 'val_std', 'test_mean',
    'test_std'} with accuracies in [0, 1] and std the sample std (ddof=1; 0 for one seed)."""
    seeds = check_seeds(seeds)
    reuse, rows = reuse or {}, []
    for s in seeds:
        rows.append(reuse[s] if s in reuse else
                    train_recipe(arch, cfg, data, seed=s, label=f"{label} seed {s}")[2])
        if rows[-1].get("status", "complete") != "complete":
            print(f"seed {s} did not finish ({rows[-1]['status']}): stopping. Finished seeds: "
                  f"{[r['seed'] for r in rows[:-1]]}", flush=True)
            break
    out = {"rows": rows}
    for k in ("val", "test"):
        v = np.array([r[k + "_acc"] for r in rows if r.get(k + "_acc") is not None], float)
        out[k + "_mean"] = float(v.mean()) if v.size else None
        out[k + "_std"] = float(v.std(ddof=1)) if v.size > 1 else (0.0 if v.size else None)
    return out


def check_seeds(seeds) -> list:
    """Seeds as a list of distinct integers >= 0, or a ValueError saying which one is wrong."""
    seeds = list(seeds) if isinstance(seeds, (list, tuple, range)) else [seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"a seed must be an integer >= 0; got {s!r}")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ValueError(f"seed(s) {dup} given more than once: each seed is one run")
    return [int(s) for s in seeds]


def free_checkpoint_path(path) -> Path:
    """``path`` if no file is there, else the first free 'name.2.npz', 'name.3.npz', ..."""
    path, k = checkpoint_path(path), 2
    stem = path.name[:-4]
    while path.exists():
        path, k = path.with_name(f"{stem}.{k}.npz"), k + 1
    return path


def train_best_recipe(seed: int = 0, source="auto", recipe: dict | None = None,
                      checkpoint: bool = True, record: bool = False,
                      overwrite: bool = False) -> dict:
    """The one-command reproduction of the bonus recipe (Exercise 5.1) on the FULL data:
    49,000 training / 1,000 validation / 10,000 test images of ``source`` (see load_dataset:
    "auto" = $WORKBOOK_DATA, else $CIFAR10_DIR / data/cifar-10-batches-py; "cifar10" downloads
    if needed; or a path to an image folder). Prints the measured training time (evaluation
    counted separately), validation and test accuracy; returns the result row.

    checkpoint: save data/best_recipe_seed{seed}.npz (an existing file is kept: the new one
    gets the next free name, unless ``overwrite``). record: add the row (with its curves) to
    docs/results/recipe.json (a recorded row of this seed is replaced only with ``overwrite``;
    refused before any training when it would be, or when the file holds other data).
    In fast mode (WORKBOOK_FAST=1) a tiny stand-in trains on the synthetic data and nothing is
    saved or recorded. A run that does not finish (Ctrl-C) is never scored, saved or recorded.

        python -m workbook.recipes --seeds 0 1 2 --record
    """
    check_seeds([seed])
    fast = is_fast()
    recipe = recipe_for_mode(recipe, fast=fast)
    arch, cfg = recipe_arch(recipe), as_engine_config(recipe["cfg"])
    if fast and (record or checkpoint):
        print("FAST MODE: a tiny stand-in of the recipe on synthetic data; nothing is saved or "
              "recorded", flush=True)
        record = checkpoint = False
    sizes = dict(n_train=2000, n_val=500, n_test=1000) if fast else dict(n_train=49000, n_val=1000, n_test=10000)
    data = load_dataset(source=source, **sizes)
    if record:                                    # refuse now, not after the training
        refuse_to_record(load_recorded("recipe"), recorded_path("recipe"), seed, data["name"],
                         "seed", overwrite)
    print(f"{data['name']}: {arch}, {cfg.n_updates} updates, seed {seed}", flush=True)
    params, hist, row = train_recipe(arch, cfg, data, seed=seed, label=f"best recipe seed {seed}")
    if not hist.complete:
        print(f"seed {seed}: the run did not finish ({hist.status} at update {hist.updates_done} "
              f"of {cfg.n_updates}); it is not scored, saved or recorded", flush=True)
        return row
    print(f"{data['name']}: val acc {100 * row['val_acc']:.2f}%, TEST acc {100 * row['test_acc']:.2f}% "
          f"(training {row['time_train_s'] / 60:.2f} min; evaluation: {row['time_eval_s']:.0f} s during "
          f"training, {row.get('time_test_s', 0):.0f} s for the test set)", flush=True)
    if checkpoint:
        path = config.DATA_DIR / f"best_recipe_seed{seed}.npz"
        if not overwrite:
            path = free_checkpoint_path(path)
        path = save_checkpoint(path, params, dataclasses.replace(cfg, seed=seed), hist,
                               overwrite=overwrite)
        print("checkpoint:", path, flush=True)
    curves = {k: v for k, v in hist.to_dict().items() if k != "eta"}     # (eta: 30k numbers)
    row.update(history=curves, recipe={**arch, "cfg": cfg.to_dict()}, load=os.getloadavg()[0])
    if record:
        record_row("recipe", row, data["name"], key="seed", overwrite=overwrite)
    return row


def main(argv=None) -> int:
    """The command line: python -m workbook.recipes --seeds 0 1 2 [--record] [--overwrite]."""
    import argparse
    ap = argparse.ArgumentParser(description="Train the bonus recipe (Exercise 5.1) per seed.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--source", default="auto")
    ap.add_argument("--record", action="store_true", help="add the rows to docs/results/recipe.json")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace an existing checkpoint / recorded row of the same seed")
    a = ap.parse_args(argv)
    try:
        seeds = check_seeds(a.seeds)
    except ValueError as e:
        ap.error(str(e))
    done = []
    for s in seeds:
        row = train_best_recipe(seed=s, source=a.source, record=a.record, overwrite=a.overwrite)
        if row.get("status", "complete") != "complete":
            print(f"stopped: finished seeds {done}, not run: {seeds[len(done) + 1:]}")
            return 130
        done.append(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
