"""COCO evaluation at scale: 5,000 synthetic images with 100 detections each.

    python tools/benchmark_coco_eval.py                    # bbox and segm, 5000 images x 100 detections
    python tools/benchmark_coco_eval.py --images 500 --iou-types bbox   # a quick check

The ground truth is tools/benchmark_data.py's synthetic COCO json (7.48 polygon annotations per image
on average, 1% crowd RLE), generated once into ``--cache`` (default ``~/.cache/detkit/benchmark_data``).
The detections: 3 jittered copies of every ground-truth box (one with the wrong category), the rest
random boxes, 100 per image, scores uniform; segm results are the boxes' masks as compressed RLE.
Each backend of :func:`detkit.evaluation.coco_eval.evaluate_coco` is timed (results loading by
pycocotools included, as in training's evaluation), and their 12 numbers are compared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmark_data import generate_coco_json

from detkit.evaluation.coco_eval import (
    COCO_BACKENDS,
    COCO_STAT_NAMES,
    evaluate_coco,
    load_coco,
)


def synthetic_detections(coco_gt, per_image: int, seed: int = 0, with_masks: bool = False) -> list[dict]:
    """``per_image`` detections per image: jittered ground truths, then random boxes."""
    import pycocotools.mask as mask_util

    rng = np.random.default_rng(seed)
    category_ids = sorted(coco_gt.getCatIds())
    results = []
    for image_id in sorted(coco_gt.getImgIds()):
        info = coco_gt.imgs[image_id]
        height, width = info["height"], info["width"]
        gts = coco_gt.imgToAnns.get(image_id, [])
        boxes, cats = [], []
        for gt in gts:
            x, y, w, h = gt["bbox"]
            for copy in range(3):
                jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
                boxes.append([x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0)])
                cats.append(gt["category_id"] if copy < 2 else category_ids[int(rng.integers(len(category_ids)))])
        boxes, cats = boxes[:per_image], cats[:per_image]
        extra = per_image - len(boxes)
        w = rng.uniform(4, width / 2, extra)
        h = rng.uniform(4, height / 2, extra)
        random_boxes = np.stack([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h], axis=1)
        boxes = np.concatenate([np.asarray(boxes, dtype=np.float64).reshape(-1, 4), random_boxes])
        boxes[:, 0] = np.clip(boxes[:, 0], 0, width - 1)
        boxes[:, 1] = np.clip(boxes[:, 1], 0, height - 1)
        boxes[:, 2] = np.minimum(boxes[:, 2], width - boxes[:, 0])
        boxes[:, 3] = np.minimum(boxes[:, 3], height - boxes[:, 1])
        cats = cats + [category_ids[int(i)] for i in rng.integers(len(category_ids), size=extra)]
        scores = rng.uniform(0.05, 1.0, per_image)
        rles = mask_util.frPyObjects(np.ascontiguousarray(boxes), height, width) if with_masks else [None] * per_image
        for box, category, score, rle in zip(boxes.round(2).tolist(), cats, scores.round(4).tolist(), rles):
            result = {"image_id": image_id, "category_id": int(category), "bbox": box, "score": score}
            if rle is not None:
                result["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image (default 100)")
    parser.add_argument("--iou-types", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    parser.add_argument("--backends", nargs="+", default=list(COCO_BACKENDS), choices=COCO_BACKENDS)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "detkit" / "benchmark_data")
    args = parser.parse_args(argv)

    json_path = args.cache / f"coco_synthetic_{args.images}.json"
    if not json_path.is_file():
        generate_coco_json(json_path, args.images)
    coco_gt = load_coco(json_path)
    start = time.perf_counter()
    results = synthetic_detections(coco_gt, args.detections, with_masks="segm" in args.iou_types)
    print(f"{len(coco_gt.imgs)} images, {len(coco_gt.anns)} ground truths, {len(results)} detections "
          f"(made in {time.perf_counter() - start:.0f} s)")
    for iou_type in args.iou_types:
        stats = {}
        for backend in args.backends:
            start = time.perf_counter()
            result = evaluate_coco(coco_gt, results, iou_type, backend=backend)
            seconds = time.perf_counter() - start
            stats[backend] = np.array(list(result.stats.values()))
            print(f"{iou_type} {backend:17s} {seconds:7.1f} s  AP {result.stats['AP']:.4f}")
        if len(stats) == 2:
            a, b = stats.values()
            worst = int(np.argmax(np.abs(a - b)))
            print(f"{iou_type} largest difference between the backends: {abs(a[worst] - b[worst]):.1e} "
                  f"({COCO_STAT_NAMES[worst]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
