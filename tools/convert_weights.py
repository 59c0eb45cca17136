"""Convert another library's checkpoint into a detkit checkpoint.

Usage::

    python tools/convert_weights.py --from torchvision --arch fasterrcnn_resnet50_fpn IN.pth OUT.pth

The same as ``detkit convert`` (detkit/cli/convert.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.convert import main, parse_args  # noqa: E402

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
