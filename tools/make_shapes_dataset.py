"""Write detkit's synthetic shapes dataset (COCO json + VOC xml + PNG images) to a folder.

Example::

    python tools/make_shapes_dataset.py data/shapes --num-train 200 --num-val 50 --seed 0 --image-size 256

``--large`` writes the large-image variant for sliced inference (tools/benchmark_slicing.py):
2048x2048 images, each with 40 to 60 small shapes of 8 to 32 pixels (circumradius 5 to 16 px;
shapes with fewer than 20 visible pixels dropped), 0 train + 12 val images unless the counts are
given::

    python tools/make_shapes_dataset.py --large --out runs/data/shapes_large
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.data.shapes import SHAPE_CLASSES, generate_shapes_dataset  # noqa: E402

# The large-image variant (--large): settings given explicitly on the command line win.
LARGE = {"image_size": [2048], "num_train": 0, "num_val": 12, "max_objects": 60, "min_objects": 40,
         "radius_px": [5.0, 16.0], "min_visible_area": 20}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", help="output folder (created)")
    parser.add_argument("--out", dest="out_option", type=Path, default=None, help="output folder (as OUT_DIR)")
    parser.add_argument("--large", action="store_true",
                        help="the large-image variant: 2048x2048, 40-60 shapes of 8-32 px, 12 val images")
    parser.add_argument("--num-train", type=int, default=None, help="default 200 (--large: 0)")
    parser.add_argument("--num-val", type=int, default=None, help="default 50 (--large: 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-size", type=int, nargs="+", default=None, metavar="PX",
        help="one size (square) or HEIGHT WIDTH; default 256 (--large: 2048)"
    )
    parser.add_argument("--max-objects", type=int, default=None, help="default 6 (--large: 60)")
    parser.add_argument("--min-objects", type=int, default=None, help="default 1 (--large: 40)")
    parser.add_argument("--radius-px", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="shape circumradius range in pixels (default: 0.06-0.25 of the shorter "
                        "side; --large: 5 16)")
    parser.add_argument("--min-visible-area", type=int, default=None, help="default 40 (--large: 20)")
    parser.add_argument("--classes", nargs="+", default=list(SHAPE_CLASSES), choices=SHAPE_CLASSES)
    args = parser.parse_args(argv)
    if (args.out_dir is None) == (args.out_option is None):
        parser.error("give the output folder once: OUT_DIR or --out DIR")
    out_dir = args.out_dir if args.out_dir is not None else args.out_option
    defaults = LARGE if args.large else {"image_size": [256], "num_train": 200, "num_val": 50, "max_objects": 6,
                                         "min_objects": 1, "radius_px": None, "min_visible_area": 40}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if len(args.image_size) not in (1, 2):
        parser.error("--image-size takes one value or two (HEIGHT WIDTH)")
    if not 1 <= args.min_objects <= args.max_objects:
        parser.error(f"--min-objects must be in [1, --max-objects = {args.max_objects}], got {args.min_objects}")
    size = (args.image_size[0], args.image_size[-1])
    extra = {}
    if args.radius_px is not None:
        low, high = args.radius_px
        if not 0 < low <= high:
            parser.error(f"--radius-px needs 0 < MIN <= MAX, got {low:g} {high:g}")
        extra["size_range"] = (low / min(size), high / min(size))  # a fraction of the shorter side
    start = time.perf_counter()
    paths = generate_shapes_dataset(
        out_dir,
        args.num_train,
        args.num_val,
        size,
        args.seed,
        max_objects=args.max_objects,
        min_objects=args.min_objects,
        min_visible_area=args.min_visible_area,
        class_names=args.classes,
        **extra,
    )
    print(
        f"wrote {args.num_train} train + {args.num_val} val images of {size[0]}x{size[1]} to {paths.root} "
        f"in {time.perf_counter() - start:.1f} s\n"
        f"  COCO: {paths.coco_json('train')}, {paths.coco_json('val')} (images in {paths.image_dir})\n"
        f"  VOC:  {paths.root} (ImageSets/Main/train.txt, val.txt; image_suffix='.png')"
    )


if __name__ == "__main__":
    main()
