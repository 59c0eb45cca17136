"""Train a detector from a config.

Usage::

    python tools/train.py CONFIG [key.path=value ...] [--resume PATH|auto] [--output-dir DIR]
    torchrun --nproc_per_node 8 tools/train.py CONFIG ...

The same as ``detkit train`` (detkit/cli/train.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.train import main, parse_args  # noqa: E402

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
