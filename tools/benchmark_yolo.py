"""YOLOv3-tiny CPU inference at 416: detkit against OpenCV's DNN module on the same weights and image.

    python tools/benchmark_yolo.py                       # dog.jpg, 2 threads, 15 interleaved runs
    python tools/benchmark_yolo.py --image tests/fixtures/images/person.jpg --runs 30 --threads 1

Both start from the photo: OpenCV's time is ``blobFromImage`` (its 8-bit resize to 416x416, RGB,
/255) + ``setInput + forward`` of its darknet network (convolutions and the region decoding);
detkit's is the whole ``detector([image])`` call on the photo as a float RGB tensor (its default
``resize_mode="resize"``, which reproduces blobFromImage, then the network, decoding, threshold 0.25 and
NMS), so detkit does a little more. Runs are interleaved (OpenCV, then each detkit variant, and
again) and the median of each is reported, which is robust to a machine shared with other jobs.
Before timing, the detections of each detkit variant are checked equal to OpenCV's (labels, scores
within 1e-4, boxes within 0.01 px) in the same run. Variants: ``eval`` (as built), ``fused``
(batch norms folded into the convs, ``YOLOv3.fuse()``), ``fused+channels_last``, and ``predictor``:
the path a user runs by default, ``Predictor(model)(bgr_array)`` on the decoded photo (its
conversion to a tensor (the uint8 photo handed to the model as it is), the fast path of
detkit.models.fuse (folded, channels-last, and the convolutions packed for oneDNN with the
LeakyReLU as their post-op: detkit.models.packed_conv), the cv2 resize, the results).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# torch's OpenMP workers spin while they wait (OMP_WAIT_POLICY=ACTIVE behaviour); on a machine
# shared with other jobs a descheduled spinner stalls every parallel region and the 2-thread times
# blow up 5-8x. PASSIVE lets them sleep. Must be set before torch loads; run with
# OMP_WAIT_POLICY=ACTIVE to see the difference. (OpenCV's own thread pool is not OpenMP.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detkit.apis import Predictor  # noqa: E402
from detkit.models.zoo import YOLO_DATA_DIR, yolov3_tiny_coco, yolov3_tiny_coco_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCORE_THRESH, NMS_THRESH, SIZE = 0.25, 0.45, 416


def opencv_detections(outputs: list[np.ndarray], width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's sample recipe: best class, score > 0.25, one class-agnostic NMSBoxes at 0.45.

    Returns:
        ``labels [K]``, ``scores [K]``, ``boxes [K, 4]`` xyxy in image pixels.
    """
    rows = np.concatenate(outputs)
    labels, scores = rows[:, 5:].argmax(1), rows[:, 5:].max(1)
    keep = scores > SCORE_THRESH
    cxcywh = rows[keep, :4] * np.array([width, height, width, height], dtype=np.float32)
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    xywh = np.concatenate([xyxy[:, :2], cxcywh[:, 2:]], 1)
    order = cv2.dnn.NMSBoxes(xywh.tolist(), scores[keep].tolist(), SCORE_THRESH, NMS_THRESH)
    order = np.asarray(order, np.int64).reshape(-1)
    return labels[keep][order], scores[keep][order], xyxy[order]


def timed(function: Callable[[], object], times: list[float]) -> None:
    start = time.perf_counter()
    function()
    times.append((time.perf_counter() - start) * 1000)


def interleaved_times(runners: dict[str, Callable[[], object]], warmup: int, runs: int) -> dict[str, list[float]]:
    """Milliseconds of each runner over ``runs`` rounds, the runners taking turns in every round
    (so a change in the machine's load falls on all of them), after ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(warmup):
        for run in runners.values():
            run()
    for _ in range(runs):
        for name, run in runners.items():
            timed(run, times[name])
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=REPO / "tests" / "fixtures" / "images" / "dog.jpg")
    parser.add_argument("--runs", type=int, default=15, help="interleaved timed runs per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and cv2.setNumThreads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    weights = yolov3_tiny_coco_weights()
    bgr = cv2.imread(str(args.image))
    if bgr is None:
        raise SystemExit(f"cannot read {args.image}")
    height, width = bgr.shape[:2]
    image = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255

    net = cv2.dnn.readNetFromDarknet(str(YOLO_DATA_DIR / "yolov3-tiny.cfg"), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    out_names = net.getUnconnectedOutLayersNames()

    def run_opencv() -> list[np.ndarray]:
        net.setInput(cv2.dnn.blobFromImage(bgr, 1 / 255.0, (SIZE, SIZE), swapRB=True, crop=False))
        return list(net.forward(out_names))

    settings = dict(resize_mode="resize", score_thresh=SCORE_THRESH, nms_thresh=NMS_THRESH, class_agnostic_nms=True)
    models = {"eval": yolov3_tiny_coco(weights=weights, **settings)}
    models["fused"] = yolov3_tiny_coco(weights=weights, **settings).fuse()
    channels_last = yolov3_tiny_coco(weights=weights, **settings).fuse()
    models["fused+channels_last"] = channels_last.to(memory_format=torch.channels_last)

    def runner(model: torch.nn.Module) -> Callable[[], dict[str, torch.Tensor]]:
        def run() -> dict[str, torch.Tensor]:
            with torch.inference_mode():
                return model([image])[0][0]

        return run

    runners = {"opencv": run_opencv, **{name: runner(model) for name, model in models.items()}}
    predictor = Predictor(yolov3_tiny_coco(weights=weights, **settings), device="cpu")

    def run_predictor() -> dict[str, torch.Tensor]:
        (result,) = predictor(bgr)
        return {"labels": torch.as_tensor(result.labels), "scores": torch.as_tensor(result.scores),
                "boxes": torch.as_tensor(result.boxes)}

    runners["predictor"] = run_predictor

    # Same detections, checked in this run.
    labels, scores, boxes = opencv_detections(run_opencv(), width, height)
    for name, run in runners.items():
        if name == "opencv":
            continue
        prediction = run()
        same = (
            prediction["labels"].tolist() == labels.tolist()
            and np.allclose(prediction["scores"].numpy(), scores, atol=1e-4, rtol=0)
            and np.allclose(prediction["boxes"].numpy(), boxes, atol=0.01, rtol=0)
        )
        print(f"{name}: {len(labels)} detections, equal to OpenCV's: {same}")
        if not same:
            print(f"  detkit: {prediction}\n  opencv: {labels} {scores} {boxes}")
            return 1

    times = interleaved_times(runners, args.warmup, args.runs)

    load = os.getloadavg()
    print(f"\nYOLOv3-tiny, {args.image.name} at {SIZE}x{SIZE}, {args.threads} threads, median of {args.runs} "
          f"interleaved runs; torch {torch.__version__}, OpenCV {cv2.__version__}; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    reference = statistics.median(times["opencv"])
    print(f"| {'variant':<22} | {'median ms':>9} | {'min ms':>7} | {'vs OpenCV':>9} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 9}|{'-' * 11}|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name:<22} | {median:9.1f} | {min(values):7.1f} | {median / reference:8.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
