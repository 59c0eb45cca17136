"""CPU latency of each family in eager PyTorch and in ONNX Runtime, same weights, same photo.

    python tools/benchmark_export.py                          # every family, 2 threads, 15 runs
    python tools/benchmark_export.py --families yolov3_tiny ssdlite --runs 5 --threads 1

For each family the model is exported (:func:`detkit.export`, batch 1, its own input size; the
families whose graph resizes inside, Faster / Mask R-CNN, RetinaNet and FCOS, at the photo's size) and both
sides start from the same photo as a ``[3, H, W]`` float tensor: eager is ``model([image])``, ONNX
Runtime is :class:`~detkit.apis.onnx_backend.ONNXDetector` (the resize in Python, the graph with
normalisation, network, decoding and NMS, the mapping back). Before timing, the detections are
checked equal (labels, scores within 1e-4, boxes within 0.01 px) in the same run; a mismatch stops
the script. Runs are interleaved and the median is reported (robust on a shared machine).

YOLOv3-tiny uses the real COCO weights with OpenCV's demo settings (score > 0.25, one
class-agnostic NMS at 0.45) and is also run through OpenCV's DNN module on the darknet files
(``blobFromImage`` + ``forward`` + the sample's NMSBoxes, :mod:`benchmark_yolo`), checked equal too.
The other families have seeded random weights (their latency does not depend on the values):
YOLOv8n / YOLO11n, Faster / Mask R-CNN R50-FPN, RetinaNet and FCOS R50-FPN (``--min-size`` short
side, 800 by default). Keypoint R-CNN has no ONNX export yet.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tools/benchmark_yolo.py

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from benchmark_yolo import NMS_THRESH, SCORE_THRESH, opencv_detections  # noqa: E402

from detkit.apis.onnx_backend import ONNXDetector  # noqa: E402
from detkit.export import export  # noqa: E402

FAMILIES = ("yolov3_tiny", "yolov3", "ssd300", "ssd512", "ssdlite", "yolov8n", "yolo11n", "faster_rcnn", "mask_rcnn",
            "retinanet", "fcos")
# Families whose graph resizes inside (fixed input size): exported at the photo's size, fed as it is.
RESIZE_INSIDE = {
    "faster_rcnn": ("configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py", "model.roi_heads.score_thresh=0.1"),
    "mask_rcnn": ("configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py", "model.roi_heads.score_thresh=0.1"),
    "retinanet": ("configs/retinanet/retinanet_r50_fpn_1x_coco.py", "model.head.score_thresh=0.3"),
    "fcos": ("configs/fcos/fcos_r50_fpn_1x_coco.py", "model.head.score_thresh=0.3"),
}


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_in")
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def build(family: str, min_size: int = 800) -> torch.nn.Module:
    """The model of a family (YOLOv3-tiny: real COCO weights; the others seeded random; the R-CNN
    style families resize the short side to ``min_size``)."""
    if family in ("yolov8n", "yolo11n"):
        from detkit.models.detectors.yolov8 import YOLOv8, yolov8_parts

        torch.manual_seed(0)
        model = YOLOv8(**yolov8_parts(family[:-1], "n", 80, score_thresh=0.25, multi_label=False))
        return _randomised(model)
    if family in RESIZE_INSIDE:
        from detkit.config import instantiate, load_config

        config_path, threshold = RESIZE_INSIDE[family]
        torch.manual_seed(0)
        overrides = [threshold, f"model.preprocess.min_size={min_size}", f"model.preprocess.max_size={min_size * 5 // 3}"]
        model = instantiate(load_config(REPO / config_path, overrides).model).eval()
        if family in ("retinanet", "fcos"):  # spread head scores (the prior bias makes them all ~0.01)
            with torch.no_grad():
                for module in model.head.modules():
                    if isinstance(module, torch.nn.Conv2d):
                        torch.nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5)
        return model
    if family == "yolov3_tiny":
        from detkit.models.zoo import yolov3_tiny_coco

        return yolov3_tiny_coco(resize_mode="resize", score_thresh=SCORE_THRESH, nms_thresh=NMS_THRESH,
                                class_agnostic_nms=True)
    if family == "yolov3":
        from detkit.models.zoo import build_yolov3

        return _randomised(build_yolov3("darknet53", 80, score_thresh=0.25))
    from configs.common.ssd import SSD512_SCALES_COCO, ssd_vgg16, ssdlite320_mobilenet_v3

    from detkit.config import instantiate

    config = {"ssd300": lambda: ssd_vgg16(80, input_size=300),
              "ssd512": lambda: ssd_vgg16(80, input_size=512, scales=SSD512_SCALES_COCO),
              "ssdlite": lambda: ssdlite320_mobilenet_v3(80)}[family]()
    config.head.score_thresh = 0.3
    return _randomised(instantiate(config))


def same(expected: dict[str, torch.Tensor], labels: np.ndarray, scores: np.ndarray, boxes: np.ndarray) -> bool:
    """Labels equal, scores within 1e-4, boxes within 0.01 px."""
    return (expected["labels"].tolist() == np.asarray(labels).tolist()
            and np.allclose(expected["scores"].numpy(), scores, atol=1e-4, rtol=0)
            and np.allclose(expected["boxes"].numpy().reshape(-1, 4), np.asarray(boxes).reshape(-1, 4), atol=0.01,
                            rtol=0))


def timed(function: Callable[[], object], times: list[float]) -> None:
    start = time.perf_counter()
    function()
    times.append((time.perf_counter() - start) * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--image", type=Path, default=REPO / "detkit" / "model_data" / "samples" / "dog.jpg")
    parser.add_argument("--runs", type=int, default=15, help="interleaved timed runs per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch, ONNX Runtime and OpenCV threads")
    parser.add_argument("--min-size", type=int, default=800, help="short side of the R-CNN style families")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    bgr = cv2.imread(str(args.image))
    if bgr is None:
        raise SystemExit(f"cannot read {args.image}")
    height, width = bgr.shape[:2]
    image = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255
    folder = Path(tempfile.mkdtemp(prefix="detkit-bench-export-"))

    rows = []
    for family in args.families:
        model = build(family, args.min_size)
        export_size = (height, width) if family in RESIZE_INSIDE else None  # the graph resizes the photo itself
        path = export(model, folder / f"{family}.onnx", image_size=export_size)
        detector = ONNXDetector(path, threads=args.threads)

        def eager(model: torch.nn.Module = model) -> dict[str, torch.Tensor]:
            with torch.inference_mode():
                return model([image])[0][0]

        def onnxruntime(detector: ONNXDetector = detector) -> dict[str, torch.Tensor]:
            return detector([image])[0][0]

        runners: dict[str, Callable[[], object]] = {"eager": eager, "onnxruntime": onnxruntime}
        expected, got = eager(), onnxruntime()
        if not same(expected, got["labels"].numpy(), got["scores"].numpy(), got["boxes"].numpy()):
            print(f"{family}: onnxruntime's detections differ from eager's:\n  eager {expected}\n  onnx {got}")
            return 1
        print(f"{family}: {len(expected['labels'])} detections, onnxruntime equal to eager: True")
        if family == "yolov3_tiny":
            from detkit.models.zoo import YOLO_DATA_DIR, yolov3_tiny_coco_weights

            net = cv2.dnn.readNetFromDarknet(str(YOLO_DATA_DIR / "yolov3-tiny.cfg"), str(yolov3_tiny_coco_weights()))
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            names = net.getUnconnectedOutLayersNames()
            size = model.preprocess.input_size

            def opencv() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                net.setInput(cv2.dnn.blobFromImage(bgr, 1 / 255.0, size[::-1], swapRB=True, crop=False))
                return opencv_detections(list(net.forward(names)), width, height)

            if not same(expected, *opencv()):
                print(f"{family}: OpenCV's detections differ from eager's")
                return 1
            print(f"{family}: OpenCV DNN equal to eager: True")
            runners["opencv"] = opencv
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.warmup):
            for run in runners.values():
                run()
        for _ in range(args.runs):
            for name, run in runners.items():
                timed(run, times[name])
        medians = {name: statistics.median(values) for name, values in times.items()}
        rows.append((family, "x".join(map(str, detector.input_size)), medians))

    load = os.getloadavg()
    print(f"\n{args.image.name}, batch 1, {args.threads} threads, median of {args.runs} interleaved runs; torch "
          f"{torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, OpenCV {cv2.__version__}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print("| family | input | eager ms | onnxruntime ms | onnxruntime / eager | OpenCV DNN ms | onnxruntime / OpenCV |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for family, size, medians in rows:
        opencv = medians.get("opencv")
        extra = f"{opencv:.1f} | {medians['onnxruntime'] / opencv:.2f}x" if opencv else "- | -"
        print(f"| {family} | {size} | {medians['eager']:.1f} | {medians['onnxruntime']:.1f} | "
              f"{medians['onnxruntime'] / medians['eager']:.2f}x | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
