"""Write detkit's synthetic shapes dataset (COCO json + VOC xml + PNG images) to a folder.

Example::

    python tools/make_shapes_dataset.py data/shapes --num-train 200 --num-val 50 --seed 0 --image-size 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from detkit.data.shapes import SHAPE_CLASSES, generate_shapes_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="output folder (created)")
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-val", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-size", type=int, nargs="+", default=[256], metavar="PX", help="one size (square) or HEIGHT WIDTH"
    )
    parser.add_argument("--max-objects", type=int, default=6)
    parser.add_argument("--classes", nargs="+", default=list(SHAPE_CLASSES), choices=SHAPE_CLASSES)
    args = parser.parse_args(argv)
    if len(args.image_size) not in (1, 2):
        parser.error("--image-size takes one value or two (HEIGHT WIDTH)")
    size = (args.image_size[0], args.image_size[-1])
    start = time.perf_counter()
    paths = generate_shapes_dataset(
        args.out_dir,
        args.num_train,
        args.num_val,
        size,
        args.seed,
        max_objects=args.max_objects,
        class_names=args.classes,
    )
    print(
        f"wrote {args.num_train} train + {args.num_val} val images of {size[0]}x{size[1]} to {paths.root} "
        f"in {time.perf_counter() - start:.1f} s\n"
        f"  COCO: {paths.coco_json('train')}, {paths.coco_json('val')} (images in {paths.image_dir})\n"
        f"  VOC:  {paths.root} (ImageSets/Main/train.txt, val.txt; image_suffix='.png')"
    )


if __name__ == "__main__":
    main()
