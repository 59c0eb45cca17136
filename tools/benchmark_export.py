"""CPU latency of each family in eager PyTorch and in ONNX Runtime, same weights, same photo.

    python tools/benchmark_export.py                          # every family, 2 threads, 15 runs
    python tools/benchmark_export.py --families yolov3_tiny ssdlite --runs 5 --threads 1

For each family the model is exported with :func:`detkit.export` (``dynamic=True``, as
``Predictor(model, backend="onnxruntime")`` does; its own input size; the families whose graph
resizes inside, Faster / Mask / Keypoint R-CNN, RetinaNet and FCOS, at the photo's size, their
short side resized to ``--min-size``; MTCNN: its three
networks) and both sides start from the same photo as a ``[3, H, W]`` float
tensor, each on its default path:

* **eager**: what :class:`~detkit.apis.Predictor` runs, :func:`~detkit.models.fuse.inference_copy`
  of the model (batch norms folded, channels-last weights), called as ``fast([image])``;
* **onnxruntime**: :class:`~detkit.apis.onnx_backend.ONNXDetector` (MTCNN:
  :func:`~detkit.apis.onnx_backend.mtcnn_onnx`) with its default session: the resize in Python,
  the graph with normalisation, network, decoding and NMS, the mapping back.

Before anything is timed, the detections of both sides are checked equal, in the same run, on the
photo and on a blank image of its size, with the export tests' own checks: same labels in the same
order, scores within 1e-4, boxes within 0.01 px (``export_testing.assert_same_detections``); for
the R-CNN style families ``rcnn_export_testing.assert_matching_detections`` (the same tolerances and
masks IoU >= 0.99, Keypoint R-CNN's keypoints within 0.01 px and keypoint scores within 1e-4;
equal scores may come in either order; MobileNetV3-FPN's boxes within 0.02 px, the tolerance of
its export test); MTCNN's landmarks within 0.01 px. A mismatch stops the script.
Runs are interleaved and the median of each side is reported (robust on a shared machine).

Weights: YOLOv3-tiny has the real COCO weights with OpenCV's demo settings (score > 0.25, one
class-agnostic NMS at 0.45) and is also run through OpenCV's DNN module on the darknet files
(``blobFromImage`` + ``forward`` + the sample's NMSBoxes, :mod:`benchmark_yolo`), checked equal
too; MTCNN has facenet-pytorch's weights (on ``ivan.jpg``). The others have the seeded weights of
the export tests (tests/export/export_models.py, rcnn_export_testing.py: distinct, unsaturated
scores, so that the check is meaningful; latency does not depend on the values), each with
detections on the photo, at ``--min-size`` 800 and 320 alike:

* RetinaNet R50-FPN: its norm-free head on random ResNet-50 features scores every anchor 1.0 in
  float32 (no detection survives the blank image's threshold): its class logits and box outputs
  are spread on the photo first (``export_models.spread_outputs``, the idea of
  tools/benchmark_models.py's ``_spread_scores``); FCOS's GroupNorm needs no spreading.
* Mask R-CNN R50-FPN: its RPN and box-head deltas are scaled by 0.25
  (``rcnn_export_testing.DELTA_SCALES``). With random deltas (median |t| 0.44 and 1.2, several
  times a trained model's) boxes of dog.jpg were up to 0.016 px (320) / 0.020 px (800) apart
  between eager and onnxruntime, over the 0.01 px check; eager float32 and onnxruntime are each
  0.012 / 0.014 px from the same model run in float64 in PyTorch: float rounding of the random
  ResNet-50 (~4e-5 of a box) multiplied by the large deltas, not a convention difference. Scaled,
  both stay within 0.0007 px of float64 (800 px); the tolerance is unchanged. (The export tests
  keep the unscaled model: scaled, one mask of a test photo differs in onnxruntime, see
  tests/export/test_rcnn_onnx.py.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tools/benchmark_yolo.py

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "tests" / "export"))
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_config_"))  # ultralytics (YOLOv8 weights)

from benchmark_yolo import NMS_THRESH, SCORE_THRESH, interleaved_times, opencv_detections  # noqa: E402
from export_models import one_stage_fpn_model, ssd_model, yolov3_model, yolov8_model  # noqa: E402
from export_testing import assert_same_detections, blank_image  # noqa: E402
from rcnn_export_testing import DELTA_SCALES  # noqa: E402
from rcnn_export_testing import FAMILIES as RCNN_FAMILIES  # noqa: E402
from rcnn_export_testing import assert_matching_detections  # noqa: E402
from rcnn_export_testing import build_model as rcnn_model  # noqa: E402

from detkit.apis.onnx_backend import ONNXDetector, mtcnn_onnx  # noqa: E402
from detkit.export import export  # noqa: E402
from detkit.models.fuse import inference_copy  # noqa: E402

SAMPLES = REPO / "detkit" / "model_data" / "samples"
FAMILIES = ("yolov3_tiny", "yolov3", "ssd300", "ssd512", "ssdlite", "yolov8n", "yolo11n", "faster_rcnn_r50_fpn",
            "faster_rcnn_mobilenetv3_fpn", "mask_rcnn_r50_fpn", "keypoint_rcnn", "retinanet", "fcos", "mtcnn")
# The families whose graph resizes inside (fixed input size): exported at the photo's size, fed as it is.
RESIZE_INSIDE = {*RCNN_FAMILIES, "keypoint_rcnn", "retinanet", "fcos"}
# RetinaNet / FCOS R50-FPN: config, seed, whether the head's outputs are spread on the photo (photos
# scoring above the blank image's best, distinct scores; see export_models.one_stage_fpn_model)
ONE_STAGE_FPN = {"retinanet": ("configs/retinanet/retinanet_r50_fpn_1x_coco.py", 2, True),
                 "fcos": ("configs/fcos/fcos_r50_fpn_1x_coco.py", 3, False)}


def build(family: str, min_size: int, photo: torch.Tensor) -> torch.nn.Module:
    """The model of ``family`` (see the module docstring) for ``photo`` (``[3, H, W]``), in eval
    mode, not fused."""
    photo_size = (int(photo.shape[1]), int(photo.shape[2]))
    if family == "yolov3_tiny":
        from detkit.models.zoo import yolov3_tiny_coco

        return yolov3_tiny_coco(resize_mode="resize", score_thresh=SCORE_THRESH, nms_thresh=NMS_THRESH,
                                class_agnostic_nms=True)  # fmt: skip
    if family == "yolov3":
        return yolov3_model("darknet53", 20, calibrate_on=photo, input_size=(416, 416), detections_per_img=50)
    if family in ("ssd300", "ssd512", "ssdlite"):
        return ssd_model(family)
    if family in ("yolov8n", "yolo11n"):
        return yolov8_model(family, (640, 640), score_thresh=0.15 if family == "yolo11n" else None)
    if family in RCNN_FAMILIES:
        return rcnn_model(family, min_size, delta_scale=DELTA_SCALES.get(family, 1.0))
    if family == "keypoint_rcnn":
        return rcnn_model("keypoint_rcnn_r50_fpn", min_size)
    if family in ONE_STAGE_FPN:
        config_path, seed, spread = ONE_STAGE_FPN[family]
        overrides = (f"model.preprocess.min_size={min_size}", f"model.preprocess.max_size={min_size * 5 // 3}")
        return one_stage_fpn_model(config_path, seed, photo_size, overrides, spread_on=photo if spread else None)
    from detkit.models.convert.mtcnn_facenet import mtcnn_facenet

    return mtcnn_facenet().eval()


def check_equal(family: str, expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    """The export tests' comparison of ``family`` (see the module docstring); AssertionError if not."""
    if family in RESIZE_INSIDE:
        tolerance = RCNN_FAMILIES[family][3] if family in RCNN_FAMILIES else 0.01
        assert_matching_detections(expected, actual, box_atol=tolerance)
        return
    assert_same_detections([expected], [actual])
    if "landmarks" in expected:
        torch.testing.assert_close(actual["landmarks"], expected["landmarks"], rtol=0, atol=0.01)


def _rgb(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255


def opencv_runner(model: torch.nn.Module, bgr: np.ndarray) -> Callable[[], dict[str, torch.Tensor]]:
    """YOLOv3-tiny in OpenCV's DNN module on the darknet files (:mod:`benchmark_yolo`'s recipe)."""
    from detkit.models.zoo import YOLO_DATA_DIR, yolov3_tiny_coco_weights

    net = cv2.dnn.readNetFromDarknet(str(YOLO_DATA_DIR / "yolov3-tiny.cfg"), str(yolov3_tiny_coco_weights()))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    names = net.getUnconnectedOutLayersNames()
    size, (height, width) = model.preprocess.input_size, bgr.shape[:2]

    def opencv() -> dict[str, torch.Tensor]:
        net.setInput(cv2.dnn.blobFromImage(bgr, 1 / 255.0, size[::-1], swapRB=True, crop=False))
        labels, scores, boxes = opencv_detections(list(net.forward(names)), width, height)
        return {"labels": torch.from_numpy(labels), "scores": torch.from_numpy(scores), "boxes": torch.from_numpy(boxes)}

    return opencv


def measure(family: str, args: argparse.Namespace, folder: Path) -> tuple[str, int, dict[str, float]]:
    """Export, check, time one family: ``(input size, detections on the photo, median ms per side)``."""
    photo = args.image if family != "mtcnn" else SAMPLES / "ivan.jpg"
    bgr = cv2.imread(str(photo))
    if bgr is None:
        raise SystemExit(f"cannot read {photo}")
    height, width = bgr.shape[:2]
    image = _rgb(bgr)
    model = build(family, args.min_size, image)
    export_size = (height, width) if family in RESIZE_INSIDE else None  # the graph resizes the photo itself
    # dynamic, as Predictor(model, backend="onnxruntime") exports (YOLOv8: ultralytics' rect letterbox per image)
    path = export(model, folder / f"{family}.onnx", image_size=export_size, dynamic=True)
    if family == "mtcnn":
        onnx_model: torch.nn.Module = mtcnn_onnx(path, threads=args.threads)
        size = f"{height}x{width}"
    else:
        onnx_model = ONNXDetector(path, threads=args.threads)
        size = "x".join(map(str, onnx_model.input_size))
    fast = inference_copy(model)  # the Predictor's default eager path

    def eager(images: list[torch.Tensor] = [image]) -> dict[str, torch.Tensor]:  # noqa: B006
        with torch.inference_mode():
            return fast(images)[0][0]

    def onnxruntime(images: list[torch.Tensor] = [image]) -> dict[str, torch.Tensor]:  # noqa: B006
        return onnx_model(images)[0][0]

    runners: dict[str, Callable[[], dict[str, torch.Tensor]]] = {"eager": eager, "onnxruntime": onnxruntime}
    expected = eager()
    if len(expected["labels"]) == 0:
        raise SystemExit(f"{family}: no detection on {photo.name}: the comparison would be empty")
    blank = [blank_image(height, width)]
    try:
        check_equal(family, expected, onnxruntime())
        check_equal(family, eager(blank), onnxruntime(blank))
        if family == "yolov3_tiny":
            runners["opencv"] = opencv_runner(model, bgr)
            check_equal(family, expected, runners["opencv"]())
    except AssertionError as error:
        raise SystemExit(f"{family}: the detections differ ({error})") from None
    print(f"{family}: {len(expected['labels'])} detections on {photo.name}, none or the same on a blank image; "
          f"{' and '.join(name for name in runners if name != 'eager')} equal to eager", flush=True)
    times = interleaved_times(runners, args.warmup, args.runs)
    return size, len(expected["labels"]), {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--image", type=Path, default=SAMPLES / "dog.jpg", help="the photo (MTCNN: ivan.jpg)")
    parser.add_argument("--runs", type=int, default=15, help="interleaved timed runs per side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch, ONNX Runtime and OpenCV threads")
    parser.add_argument("--min-size", type=int, default=800, help="short side of the R-CNN style families")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="detkit-bench-export-"))
    rows = [(family, *measure(family, args, folder)) for family in args.families]

    load = os.getloadavg()
    print(f"\n{args.image.name} (MTCNN: ivan.jpg), batch 1, {args.threads} threads, median of {args.runs} interleaved "
          f"runs; torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, OpenCV "
          f"{cv2.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print("| family | input | detections | eager ms | onnxruntime ms | onnxruntime / eager | OpenCV DNN ms "
          "| onnxruntime / OpenCV |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for family, size, count, medians in rows:
        opencv = medians.get("opencv")
        extra = f"{opencv:.1f} | {medians['onnxruntime'] / opencv:.2f}x" if opencv else "- | -"
        print(f"| {family} | {size} | {count} | {medians['eager']:.1f} | {medians['onnxruntime']:.1f} | "
              f"{medians['onnxruntime'] / medians['eager']:.2f}x | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
