"""Tracking accuracy and cost: a shapes detector + ByteTrack on a video of shapes on known paths.

Usage::

    python tools/benchmark_tracking.py CHECKPOINT VIDEO_DIR [--device cpu] [--batch-size 8]
        [--track-buffer 30] [--high-thresh 0.5] [--low-thresh 0.1] [--new-thresh 0.6]

* ``CHECKPOINT``: a self-contained shapes detector checkpoint (``detkit.load``), e.g. YOLOv3-tiny
  trained on the default shapes data.
* ``VIDEO_DIR``: holds ``shapes_tracks.avi`` + ``shapes_tracks.json`` from
  ``tools/make_shapes_video.py``; written there first (the default scene) when missing.

Prints MOTA, IDF1, MOTP, identity switches (all, and on the paths that never overlap another),
false positives / negatives, against the ground-truth visits (``track_id``: an object that leaves
the frame and comes back is a new visit, see :mod:`detkit.data.shapes_video`), and the cost per
frame of the detector (model call on batches of ``--batch-size``) and of the tracker
(``ByteTracker.update``). The target: MOTA >= 0.9 and no identity switch on the paths that do
not occlude others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="self-contained shapes detector checkpoint (.pth)")
    parser.add_argument("video_dir", help="folder of shapes_tracks.avi / .json (written when missing)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--track-buffer", type=int, default=30)
    parser.add_argument("--high-thresh", type=float, default=0.5)
    parser.add_argument("--low-thresh", type=float, default=0.1)
    parser.add_argument("--new-thresh", type=float, default=0.6)
    parser.add_argument("--iou-thresh", type=float, default=0.5, help="IoU of a ground-truth pair")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    import detkit
    from detkit.apis import Predictor
    from detkit.apis.tracking import ByteTracker
    from detkit.apis.video import VideoReader
    from detkit.data.shapes_video import write_shapes_video
    from detkit.evaluation import MOTAccumulator

    video_dir = Path(args.video_dir)
    video, truth_file = video_dir / "shapes_tracks.avi", video_dir / "shapes_tracks.json"
    if not truth_file.is_file() or not video.is_file():
        print(f"writing the shapes video into {video_dir}/", file=sys.stderr)
        video, truth_file = write_shapes_video(video_dir)
    truth = json.loads(truth_file.read_text())
    tracker = ByteTracker(args.high_thresh, args.low_thresh, args.new_thresh,
                          track_buffer=args.track_buffer)
    predictor = Predictor(detkit.load(args.checkpoint, device=args.device), device=args.device,
                          score_thresh=tracker.detector_score_thresh)
    torch.set_grad_enabled(False)

    with VideoReader(video) as reader:
        frames = list(reader)
    predictor(frames[:1])  # warm-up
    detector_seconds, results = 0.0, []
    for start in range(0, len(frames), args.batch_size):
        began = time.perf_counter()
        results += predictor(frames[start:start + args.batch_size], batch_size=args.batch_size)
        detector_seconds += time.perf_counter() - began
    tracked, tracker_seconds = [], 0.0
    for result in results:
        began = time.perf_counter()
        tracked.append(tracker.update(result))
        tracker_seconds += time.perf_counter() - began

    by_visit, by_object = MOTAccumulator(args.iou_thresh), MOTAccumulator(args.iou_thresh)
    for objects, result in zip(truth["frames"], tracked):
        gt_boxes = np.array([o["box"] for o in objects], np.float64).reshape(-1, 4)
        by_visit.update([o["track_id"] for o in objects], gt_boxes, result.track_ids.tolist(), result.boxes)
        by_object.update([o["object_id"] for o in objects], gt_boxes, result.track_ids.tolist(), result.boxes)
    metrics, physical = by_visit.result(), by_object.result()
    apart = {p["object_id"] for p in truth["paths"] if not p["occludes"]}
    visit_object = {o["track_id"]: o["object_id"] for objects in truth["frames"] for o in objects}
    switches_apart = sum(n for visit, n in metrics.switches_by_object.items() if visit_object[visit] in apart)
    count = len(frames)
    print(f"video {video} ({count} frames, {truth['width']}x{truth['height']}), "
          f"{len(truth['paths'])} paths, {len(set(visit_object))} ground-truth visits; "
          f"checkpoint {args.checkpoint}; device {args.device}")
    print(f"tracking (ground truth = visits): {metrics.summary()}")
    print(f"  identity switches on the paths that never overlap another ({sorted(apart)}): "
          f"{switches_apart}; predicted identities: {metrics.num_predicted_ids}")
    print(f"  per object (a re-entry under a new id counts as a switch): IDSW {physical.id_switches}, "
          f"MOTA {physical.mota:.3f}, IDF1 {physical.idf1:.3f}")
    print(f"cost per frame: detector {1000 * detector_seconds / count:.2f} ms "
          f"(batches of {args.batch_size}), tracker {1000 * tracker_seconds / count:.3f} ms "
          f"(ratio {tracker_seconds / max(detector_seconds, 1e-12):.4f})")
    passed = metrics.mota >= 0.9 and switches_apart == 0
    print(f"target MOTA >= 0.9 and no switch on the paths apart: {'met' if passed else 'NOT met'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
