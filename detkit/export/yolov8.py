"""Export wrapper of YOLOv8 / YOLO11: :class:`YOLOv8Export`.

The graph is the detector's own parts on the letterboxed batch: backbone, PAN neck, the head's
branches, the head's DFL decoding (:meth:`~detkit.models.dense_heads.yolov8_head.YOLOv8Head.decode`)
and :func:`~detkit.export.selection.select_batched` with the head's settings, per-class NMS by
ultralytics' coordinate shift (``NMS_CLASS_OFFSET``, as the eager head) so that the IoUs round as
the eager model's.

The letterbox stays outside the graph: it is OpenCV's resize (bit exact, with the area average of
exact halves) and its padding depends on each image's own size. The runtime rebuilds the
detector's :class:`~detkit.models.preprocess.LetterboxPreprocess` from the metadata (its
``input_size`` and ``rect``), so a batch of one shape is letterboxed to the smallest multiple-of-32
rectangle as ultralytics' predictor does, and maps the boxes back (``scale_boxes``). Any input
size of multiples of 32 is valid (the anchor points follow the feature maps' shapes): height and
width are dynamic, and so is the batch.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from detkit.export.module import ExportModule, register_export_module
from detkit.export.onnx_ops import UnsupportedExportError
from detkit.export.selection import select_batched
from detkit.models.dense_heads.yolov8_head import NMS_CLASS_OFFSET
from detkit.models.detectors.yolov8 import YOLOv8

__all__ = ["YOLOv8Export"]


class YOLOv8Export(ExportModule):
    """YOLOv8 / YOLO11 for export: normalise (when the model does), backbone, neck, head, decode, select.

    Args:
        detector: a :class:`~detkit.models.detectors.yolov8.YOLOv8`.
        input_size: ``(H, W)`` of the example input (multiples of 32); None: the model's.

    Raises:
        ValueError: sides that are not multiples of 32; Soft-NMS (no ONNX form).
    """

    family = "yolov8"
    dynamic_size = True
    size_multiple = 32

    def __init__(self, detector: YOLOv8, input_size: tuple[int, int] | None = None) -> None:
        size = tuple(input_size or detector.preprocess.input_size)
        if len(size) != 2 or any(s <= 0 or s % self.size_multiple for s in size):
            raise ValueError(f"detkit.export: YOLOv8 input sides must be positive multiples of 32, got {size}")
        if detector.head.nms_method != "hard":
            raise UnsupportedExportError(
                f"detkit.export: YOLOv8 with nms_method={detector.head.nms_method!r} has no ONNX form; use 'hard'"
            )
        super().__init__(detector, size)  # type: ignore[arg-type]

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``images [B, 3, H, W]`` float RGB [0, 1] letterboxed, H and W multiples of 32 -> the padded
        detections (see :mod:`detkit.export.module`), boxes in pixels of ``images``."""
        model = self.detector
        preprocess, head = model.preprocess, model.head
        batch = preprocess.normalize(images) if preprocess.normalizes else images
        boxes, scores = head.decode(head(model.neck(model.backbone(batch))))
        return select_batched(
            boxes, scores, score_thresh=head.score_thresh, nms_thresh=head.nms_thresh,
            detections_per_img=head.detections_per_img, multi_label=head.multi_label,
            pre_nms_topk=head.pre_nms_topk, topk_per="image", class_agnostic_nms=bool(head.class_agnostic_nms),
            nms_class_offset=NMS_CLASS_OFFSET,
        )  # fmt: skip

    def preprocess_spec(self) -> dict[str, Any]:
        preprocess = self.detector.preprocess
        return {
            "target": f"{type(preprocess).__module__}:{type(preprocess).__qualname__}",
            "kwargs": {"input_size": list(self.input_size), "rect": bool(preprocess.rect),
                       "stride": int(preprocess.stride), "scaleup": bool(preprocess.scaleup)},
        }  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "resize_mode": "letterbox"}


def _build_yolov8(detector: nn.Module, input_size: tuple[int, int] | None = None) -> ExportModule:
    return YOLOv8Export(detector, input_size)  # type: ignore[arg-type]


register_export_module(YOLOv8, _build_yolov8)
