"""Export a detector to ONNX (post-processing inside the graph) or TorchScript.

Usage::

    python tools/export.py MODEL [--checkpoint CKPT] --format onnx|torchscript [--dynamic] [--opset N]
        [--image-size H [W]] [--out PATH] [key.path=value ...]

The same as ``detkit export`` (detkit/cli/export.py, which documents it). Runs from a checkout
without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.export import main, parse_args  # noqa: E402

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
