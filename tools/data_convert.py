"""Convert a detection dataset between COCO json, VOC xml and YOLO txt.

Usage::

    python tools/data_convert.py --from coco|voc|yolo --to coco|voc|yolo SRC DST [--split train]
        [--names classes.txt] [--image-dir DIR] [--copy-images|--link-images] [--overwrite]

The same as ``detkit data convert`` (detkit/cli/data_convert.py, which documents it). Runs from a
checkout without installing detkit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.cli.data_convert import main, parse_args  # noqa: E402

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
