"""Evaluate a trained detector on the test set of its config.

Usage::

    python tools/test.py CONFIG CHECKPOINT [key.path=value ...] [--out DIR] [--device cpu] [--plot]

The same as ``detkit test`` (detkit/cli/test.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.test import main, parse_args  # noqa: E402

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
