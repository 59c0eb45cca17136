"""Write the synthetic tracking video: shapes on known paths, with ground-truth ids and boxes.

Usage::

    python tools/make_shapes_video.py OUT_DIR [--frames 200] [--size 256] [--fps 25] [--seed 0]

Writes ``OUT_DIR/shapes_tracks.avi`` and ``OUT_DIR/shapes_tracks.json`` (the scene and the json
layout: :mod:`detkit.data.shapes_video`); ``tools/benchmark_tracking.py`` reads them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--frames", type=int, default=200, help="frames (default 200)")
    parser.add_argument("--size", type=int, default=256, help="width and height in pixels (default 256)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the background")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.size < 16:
        parser.error("--frames must be >= 1 and --size >= 16")
    from detkit.data.shapes_video import write_shapes_video

    video, truth = write_shapes_video(args.out_dir, num_frames=args.frames,
                                      image_size=(args.size, args.size), fps=args.fps, seed=args.seed)
    print(f"wrote {video} and {truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
