"""python benchmarks/speed.py: the same as ``python -m benchmarks`` (see benchmarks/cli.py),
runnable as a script from anywhere."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))        # the benchmarks package, helpers and workbook

from benchmarks.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
