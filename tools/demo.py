"""detkit's main job on its built-in default data: real detection on real photos.

Usage::

    python tools/demo.py [--out runs/demo] [--score-threshold 0.3] [--device cpu]

The same as ``detkit demo`` (detkit/cli/demo.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.demo import main, parse_args  # noqa: E402

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
