"""Strip a training checkpoint to the model weights (what ``detkit.load`` needs).

Usage::

    python tools/strip_checkpoint.py CHECKPOINT OUT [--raw] [--half]

The same as ``detkit strip`` (detkit/cli/strip.py, which documents it). Runs from a checkout
without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.strip import main, parse_args  # noqa: E402

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
