"""Report torch, CUDA, compilers and which detkit kernels loaded.

Usage::

    python tools/collect_env.py

The same as ``detkit env`` (detkit/cli/env.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.env import collect_env, main  # noqa: E402

__all__ = ["collect_env", "main"]

if __name__ == "__main__":
    sys.exit(main())
