"""Print the notebooks' results (figures/*.json, written by workbook.results.write_results) as markdown
tables, for pasting into the README. Every row keeps its data label (CIFAR-10 / SYNTHETIC /
FAST MODE).

Usage: python tools/results_table.py [figures/03_architectures.json ...]
"""
import json
import sys
from pathlib import Path

from workbook import config, reference

COLS = ("run", "f", "nf", "nh", "updates", "lam", "eps", "test_acc", "time_train_s", "data")


def main(paths) -> None:
    paths = paths or sorted(str(p) for p in config.FIG_DIR.glob("0*.json"))
    for p in paths:
        d = json.loads(Path(p).read_text())
        rows = d["rows"]
        cols = [c for c in COLS if any(c in r for r in rows)]
        print(f"### {Path(p).stem}{' (FAST MODE: not results)' if d.get('fast_mode') else ''}\n")
        print(reference.results_markdown(rows, cols=cols))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
