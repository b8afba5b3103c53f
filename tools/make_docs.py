"""Copy the README's figures and results from a full-mode run into docs/ (committed).

Run after `make workbook` on real data (`make docs` does both). It refuses fast-mode or synthetic
results, so the README can only show numbers from the data it names.

    docs/*.png              small copies of the chosen figures (at most 900 px wide)
    docs/results/*.json     the notebooks' results rows (figures/03_*.json, 04_*.json)
"""
import json
import shutil
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIGS = ("03_bar_test_acc", "03_longer_curves", "03_eta", "04_ls_loss_curves", "04_ls_reliability",
        "05_ablation", "05_recipe_curves", "05_speed")
RESULTS = ("03_architectures", "04_label_smoothing")


def main() -> int:
    src, docs = ROOT / "figures", ROOT / "docs"
    (docs / "results").mkdir(parents=True, exist_ok=True)
    for name in RESULTS:
        p = src / f"{name}.json"
        d = json.loads(p.read_text())
        labels = {r.get("data", "") for r in d["rows"]}
        if d.get("fast_mode") or any("SYNTHETIC" in lab or "FAST" in lab for lab in labels):
            print(f"{p}: fast-mode or synthetic results; run `make workbook` on real data first")
            return 1
        shutil.copyfile(p, docs / "results" / p.name)
        print("results", docs / "results" / p.name, sorted(labels))
    for name in FIGS:
        p = src / f"{name}.png"
        if not p.is_file():
            print("missing", p)
            continue
        im = Image.open(p).convert("RGB")
        if im.width > 900:
            im = im.resize((900, round(im.height * 900 / im.width)), Image.LANCZOS)
        out = docs / p.name
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        print("figure ", out, f"{out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
