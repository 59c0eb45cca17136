"""COCO AP of a detector on large images with and without sliced inference.

The detector (a checkpoint detkit wrote, e.g. the YOLOv3-tiny shapes detector trained on the
256x256 shapes data) runs on the large-image shapes data (2048x2048 images with 40-60 shapes of
8-32 px, ``tools/make_shapes_dataset.py --large``; written into ``--data`` when that folder holds
no dataset yet) in several ways: whole images, then sliced (tiles of ``--slice`` px overlapping
by ``--overlap``, with and without the full image, merged by NMS, and by NMS and by greedy
merging of the detections scoring 0.3 or more: merging every low-scored box around an object
would grow its union box). pycocotools (through
:class:`detkit.evaluation.CocoEvaluator`) scores each; the table gives AP, AP50, AP-small (every
object of this data is small, area < 32^2) and the seconds per image::

    python tools/benchmark_slicing.py runs/yolov3_tiny_shapes_ft300.pth --data runs/data/shapes_large

Unless a variant says otherwise, every detection the model gives counts (its own evaluation threshold).
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

import detkit  # noqa: E402
from detkit.apis import Predictor  # noqa: E402
from detkit.apis.slicing import SliceSettings, slice_windows, tile_predictions  # noqa: E402
from detkit.apis.slicing_merge import merge_tile_predictions  # noqa: E402
from detkit.data import CocoDetection  # noqa: E402
from detkit.evaluation import CocoEvaluator  # noqa: E402

COLUMNS = ("AP", "AP50", "APs")


def large_shapes(data: Path, num_images: int, make_shapes: Callable[[list[str]], None]) -> CocoDetection:
    """The val split of the large shapes data in ``data`` (written first when absent)."""
    annotations = data / "annotations" / "instances_val.json"
    if not annotations.is_file():
        make_shapes(["--large", "--out", str(data), "--num-val", str(num_images)])
    return CocoDetection(data / "JPEGImages", annotations)


# (name, merge, score_thresh before the merge, with the full image); None: the whole image alone
VARIANTS = (
    ("whole image", None, None, True),
    ("sliced, nms", "nms", None, True),
    ("sliced, nms, no full image", "nms", None, False),
    ("sliced, nms, score >= 0.3", "nms", 0.3, True),
    ("sliced, merge, score >= 0.3", "merge", 0.3, True),
)


def run_variants(model: torch.nn.Module, dataset: CocoDetection, count: int, settings: SliceSettings,
                 batch_size: int, device: str) -> dict[str, tuple[dict[str, float], float]]:
    """Per variant, (bbox metrics, seconds per image).

    The model runs once per image on the tiles and the whole image (:func:`tile_predictions`);
    each variant merges those predictions its way (:func:`merge_tile_predictions`, what
    :func:`detkit.apis.slicing.sliced_predict` does), so the variants see the same detections.
    The seconds are the model's on what a variant uses, plus its merge.
    """
    predictor = Predictor(model, device=device)
    evaluators = {name: CocoEvaluator.from_dataset(dataset, per_class=False) for name, *_ in VARIANTS}
    seconds = dict.fromkeys(evaluators, 0.0)
    for index in range(count):
        image, target = dataset[index]
        size = (int(image.shape[-2]), int(image.shape[-1]))
        start = time.perf_counter()
        windows, predictions = tile_predictions(predictor.run_model, image.to(predictor.device), settings,
                                                batch_size=batch_size)
        tiles_time = time.perf_counter() - start
        start = time.perf_counter()
        whole = predictor.run_model([image])[0]
        whole_time = time.perf_counter() - start
        for name, merge, score_thresh, full_image in VARIANTS:
            if merge is None:
                evaluators[name].process([target], [whole])
                seconds[name] += whole_time
                continue
            used = len(windows) if full_image else len(windows) - 1  # the full image is last
            start = time.perf_counter()
            merged = merge_tile_predictions(predictions[:used], windows[:used], size, method=merge,
                                            match_metric=settings.match_metric,
                                            match_thresh=settings.match_thresh, score_thresh=score_thresh)
            seconds[name] += (time.perf_counter() - start
                              + tiles_time * (used / len(windows)))
            evaluators[name].process([target], [merged])
    return {name: (evaluators[name].evaluate(), seconds[name] / count) for name in evaluators}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a detkit checkpoint (detkit.load)")
    parser.add_argument("--data", type=Path, default=Path("runs/data/shapes_large"),
                        help="large shapes data folder (written there when absent)")
    parser.add_argument("--num-images", type=int, default=12, help="images written when --data is empty")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--slice", dest="slice_size", type=int, default=256, metavar="SIZE")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per model call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"checkpoint: no such file {args.checkpoint}")
    torch.set_num_threads(args.threads)
    make_shapes = runpy.run_path(str(Path(__file__).with_name("make_shapes_dataset.py")))["main"]
    dataset = large_shapes(args.data, args.num_images, make_shapes)
    model = detkit.load(str(args.checkpoint))
    settings = SliceSettings(args.slice_size, args.overlap, full_image=True)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    height, width = dataset[0][0].shape[-2:]
    print(f"{type(model).__name__} {args.checkpoint} on {count} images of {args.data} ({width}x{height}), "
          f"{args.device}, {args.threads} threads; tiles of {args.slice_size} px, overlap {args.overlap:g}, "
          f"{len(slice_windows((height, width), args.slice_size, args.overlap))} tiles an image; "
          f"merge match: {settings.match_metric} > {settings.match_thresh:g}")
    header = f"{'run':<30}" + "".join(f"{name:>8}" for name in COLUMNS) + f"{'s/img':>8}"
    print(header)
    print("-" * len(header))
    for name, (metrics, seconds) in run_variants(model, dataset, count, settings, args.batch_size,
                                                 args.device).items():
        print(f"{name:<30}" + "".join(f"{metrics[f'bbox/{key}']:>8.3f}" for key in COLUMNS)
              + f"{seconds:>8.2f}")


if __name__ == "__main__":
    main()
