"""Export wrappers of the one-stage families: YOLOv3 (and -tiny), SSD (and SSDLite).

Each reuses the detector's own parts (backbone, neck, head convolutions, the head's decoding, the
box coder, the default boxes) and ends in :func:`~detkit.export.selection.select_batched` with the
head's detection settings, so the graph computes what ``detector(images)`` does up to the final
mapping to the caller's image (a resize that stays outside the graph, see
:mod:`detkit.export.module`).

* **YOLOv3**: any input size that is a multiple of 32 (the grids and the decoding follow the input
  tensor's shape), so the exported graph can have dynamic height and width.
* **SSD / SSDLite**: the default boxes are made for one input size (``image_size``), so the graph
  is fixed in height and width (its batch may be dynamic); they are a constant of the graph. SSD
  normalises before it resizes (torchvision's order), so its graph takes the normalised batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.export.module import ExportModule, register_export_module
from detkit.export.selection import select_batched
from detkit.models.detectors.ssd import SSD
from detkit.models.detectors.yolo import YOLOv3
from detkit.ops import clip_boxes_to_image

__all__ = ["SSDExport", "YOLOv3Export"]


def _qualname(obj: type) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


class YOLOv3Export(ExportModule):
    """YOLOv3 for export: normalise (when the model does), backbone, neck, head, decode, select.

    Args:
        detector: a :class:`~detkit.models.detectors.yolo.YOLOv3`.
        input_size: ``(H, W)`` of the example input (multiples of 32); None: the model's.
    """

    family = "yolo"
    dynamic_size = True
    size_multiple = 32

    def __init__(self, detector: YOLOv3, input_size: tuple[int, int] | None = None) -> None:
        size = tuple(input_size or detector.preprocess.input_size)
        if any(s <= 0 or s % 32 for s in size):
            raise ValueError(f"detkit.export: YOLOv3 input sides must be positive multiples of 32, got {size}")
        super().__init__(detector, size)  # type: ignore[arg-type]

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``images [B, 3, H, W]`` float RGB [0, 1], H and W multiples of 32 -> the padded detections
        (see :mod:`detkit.export.module`), boxes in pixels of ``images``."""
        model = self.detector
        preprocess, head = model.preprocess, model.head
        batch = preprocess.normalize(images) if preprocess.normalizes else images
        raw = head(model.neck(model.backbone(batch)))
        boxes, objectness, class_probs = head.decode(raw, (images.shape[2], images.shape[3]))
        scores = objectness[..., None] * class_probs  # as YOLOv3Head.select
        return select_batched(
            boxes, scores, score_thresh=head.score_thresh, nms_thresh=head.nms_thresh,
            detections_per_img=head.detections_per_img, multi_label=head.multi_label,
            pre_nms_topk=head.pre_nms_topk, topk_per="image", class_agnostic_nms=head.class_agnostic_nms,
        )  # fmt: skip

    def preprocess_spec(self) -> dict[str, Any]:
        preprocess = self.detector.preprocess
        return {
            "target": _qualname(type(preprocess)),
            "kwargs": {"input_size": list(self.input_size), "resize_mode": preprocess.resize_mode},
        }

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "resize_mode": self.detector.preprocess.resize_mode}


class SSDExport(ExportModule):
    """SSD / SSDLite for export: backbone, head, softmax, decode, clip, select (the input is
    normalised and resized by the runtime, in the eager order).

    Args:
        detector: an :class:`~detkit.models.detectors.ssd.SSD`.
        input_size: must be None or the model's ``image_size`` (the default boxes are fixed).
    """

    family = "ssd"
    input_normalized = True  # normalised before the resize (torchvision's order), by the runtime
    dynamic_size = False

    def __init__(self, detector: SSD, input_size: tuple[int, int] | None = None) -> None:
        size = tuple(detector.preprocess.image_size)
        if input_size is not None and tuple(input_size) != size:
            raise ValueError(
                f"detkit.export: SSD's default boxes are made for its image_size {size}; it exports at that "
                f"fixed size, not {tuple(input_size)}"
            )
        super().__init__(detector, size)  # type: ignore[arg-type]
        with torch.no_grad():
            probe = next(detector.parameters()).new_zeros((1, 3, *size))
            grid_sizes = [tuple(f.shape[-2:]) for f in detector.backbone(probe).values()]
        priors = detector.default_boxes(size, grid_sizes, dtype=torch.float32, device=probe.device)
        self.register_buffer("priors", priors.clone(), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``images [B, 3, H, W]`` at the model's ``image_size``, normalised then resized (as
        ``SSDPreprocess`` does) -> the padded detections (see :mod:`detkit.export.module`), boxes
        in pixels of ``images``."""
        model = self.detector
        head = model.head
        cls_logits, deltas = head(list(model.backbone(images).values()))
        num_images, num_anchors = cls_logits.shape[:2]
        scores = F.softmax(cls_logits, dim=-1)[..., 1:]  # as SSDHead.predict: background dropped
        priors = self.priors.expand(num_images, -1, -1).reshape(-1, 4)
        boxes = head.box_coder.decode(deltas.reshape(-1, 4), priors)
        boxes = clip_boxes_to_image(boxes, self.input_size).reshape(num_images, num_anchors, 4)
        return select_batched(
            boxes, scores, score_thresh=head.score_thresh, nms_thresh=head.nms_thresh,
            detections_per_img=head.detections_per_img, multi_label=True, pre_nms_topk=head.pre_nms_topk,
            topk_per="class",
        )  # fmt: skip

    def preprocess_spec(self) -> dict[str, Any]:
        preprocess = self.detector.preprocess
        return {
            "target": _qualname(type(preprocess)),
            "kwargs": {"image_size": list(self.input_size), "channels_last": "off",
                       "pixel_mean": [float(v) for v in preprocess.pixel_mean.tolist()],
                       "pixel_std": [float(v) for v in preprocess.pixel_std.tolist()]},
        }

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "resize_mode": "bilinear"}


def _build_yolo(detector: nn.Module, input_size: tuple[int, int] | None = None) -> ExportModule:
    return YOLOv3Export(detector, input_size)  # type: ignore[arg-type]


def _build_ssd(detector: nn.Module, input_size: tuple[int, int] | None = None) -> ExportModule:
    return SSDExport(detector, input_size)  # type: ignore[arg-type]


register_export_module(YOLOv3, _build_yolo)
register_export_module(SSD, _build_ssd)
