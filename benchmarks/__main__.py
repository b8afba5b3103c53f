"""python -m benchmarks: the speed benchmark (see benchmarks/cli.py)."""
import sys

from benchmarks.cli import main

sys.exit(main())
