"""Offline evaluation of saved detections: COCO results json, or VOC-style text files.

Usage::

    python tools/eval_results.py --coco ANNOTATIONS.json RESULTS.json [--iou-type bbox|segm]
    python tools/eval_results.py --voc GT_DIR DET_DIR --iou 0.3 [--metric voc07|voc12|both]

The same as ``detkit eval`` (detkit/cli/eval.py, which documents it); kept so that existing
command lines keep working. Runs from a checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.eval import main, parse_args, run_coco, run_voc  # noqa: E402

__all__ = ["main", "parse_args", "run_coco", "run_voc"]

if __name__ == "__main__":
    sys.exit(main())
