"""Export wrapper of RetinaNet and FCOS: :class:`OneStageFPNExport`.

The graph computes :meth:`~detkit.models.dense_heads.fpn_dense_head.FPNDenseHead.predict` for a
whole batch (torchvision's ``postprocess_detections``):

1. the R-CNN preprocessing inside, as :mod:`detkit.export.rcnn` does it
   (:func:`~detkit.export.rcnn.rcnn_input_batch`: normalise, bilinear resize to the size
   :class:`~detkit.models.preprocess.RCNNPreprocess` computes, pad to the size divisibility), so
   that boxes come out in pixels of the input image and the graph's input is the image itself;
2. backbone, FPN, the head's subnets; the anchors (points) of the padded size, a constant;
3. per image and level the ``pre_nms_topk`` best (anchor, class) scores
   (:func:`~detkit.models.postprocess.topk_per_level`, the head's own), decoded by the head,
   clipped to the resized image;
4. the score threshold (``score > score_thresh``), NMS within each (image, class) over the levels,
   the ``detections_per_img`` best of each image, padded (:mod:`detkit.export.module`'s layout);
5. boxes scaled back to the input image.

Dynamic shapes: the batch. The image size is fixed at export (the resize's arithmetic and the
per-level top-k counts are Python at trace time), as for Faster R-CNN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from detkit.export.module import ExportModule, register_export_module
from detkit.export.onnx_ops import UnsupportedExportError
from detkit.export.rcnn import (
    _bounded,
    _per_image_best,
    _round_up,
    rcnn_input_batch,
    rcnn_resized_size,
)
from detkit.export.selection import PAD_LABEL
from detkit.models.detectors.one_stage_fpn import OneStageFPNDetector
from detkit.models.postprocess import topk_per_level
from detkit.models.preprocess.base import resize_boxes
from detkit.ops import clip_boxes_to_image

__all__ = ["OneStageFPNExport"]


class OneStageFPNExport(ExportModule):
    """RetinaNet / FCOS eval detections as one graph (see the module docstring).

    Args:
        detector: a :class:`~detkit.models.detectors.one_stage_fpn.OneStageFPNDetector`.
        input_size: ``(H, W)`` of the images the graph is made for; None: ``min_size`` square.

    Raises:
        ValueError: a non-positive ``input_size``; Soft-NMS or class-agnostic NMS settings are
            exported as they are (Soft-NMS has no ONNX form: refused).
    """

    family = "one_stage_fpn"
    dynamic_size = False

    def __init__(self, detector: OneStageFPNDetector, input_size: tuple[int, int] | None = None) -> None:
        preprocess = detector.preprocess
        size = tuple(input_size) if input_size is not None else (preprocess.min_size[-1],) * 2
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"detkit.export: {type(detector).__name__} input_size must be (height, width) > 0, "
                             f"got {input_size!r}")  # fmt: skip
        if detector.head.nms_method != "hard":
            raise UnsupportedExportError(f"detkit.export: nms_method={detector.head.nms_method!r} has no ONNX form; "
                                         "use 'hard'")  # fmt: skip
        super().__init__(detector, size)  # type: ignore[arg-type]
        self.resized_size = rcnn_resized_size(preprocess, self.input_size)
        self.padded_size = tuple(_round_up(side, preprocess.size_divisibility) for side in self.resized_size)
        with torch.no_grad():
            probe = next(detector.parameters()).new_zeros((1, 3, *self.input_size))
            maps = self._maps(probe)
            priors = detector.anchor_generator(probe.new_zeros((1, 3, *self.padded_size)), maps)[0]
            self.num_per_level = tuple(detector.head(maps).num_per_level)
        self.register_buffer("priors", priors.clone(), persistent=False)

    def _maps(self, images: Tensor) -> list[Tensor]:
        model = self.detector
        batch = rcnn_input_batch(model.preprocess, images, self.resized_size, self.padded_size)
        return list(model.neck(model.backbone(batch)).values())

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``images [B, 3, H, W]`` float RGB in [0, 1], ``(H, W) == input_size`` -> the padded
        detections (see :mod:`detkit.export.module`), boxes in pixels of ``images``."""
        head = self.detector.head
        batch_size = images.shape[0]
        raw = head(self._maps(images))
        scores = head.class_scores(raw)
        num_classes = scores.shape[-1]
        flat_scores = scores.flatten(1)
        indices, _ = topk_per_level(flat_scores, [n * num_classes for n in self.num_per_level], head.pre_nms_topk)
        batch_index = torch.arange(batch_size, device=images.device)[:, None]
        top_scores = torch.gather(flat_scores, 1, indices)
        anchor_index, labels = indices // num_classes, indices % num_classes
        boxes = clip_boxes_to_image(head.decode(raw, self.priors, batch_index, anchor_index), self.resized_size)

        image = batch_index.expand_as(indices).reshape(-1)
        top_scores, labels, boxes = top_scores.reshape(-1), labels.reshape(-1), boxes.reshape(-1, 4)
        candidates = torch.nonzero(top_scores > head.score_thresh)[:, 0]
        boxes, scores_kept, labels, image = boxes[candidates], top_scores[candidates], labels[candidates], image[candidates]
        groups = image if head.class_agnostic_nms else image * num_classes + labels
        kept = _bounded(torch.ops.detkit.batched_nms(boxes, scores_kept, groups, float(head.nms_thresh), "iou"), boxes)
        kept, rank = _per_image_best(kept, image, batch_size, head.detections_per_img)
        boxes, scores_kept, labels, image = boxes[kept], scores_kept[kept], labels[kept], image[kept]

        cap = head.detections_per_img
        place = (image, rank)
        return (
            boxes.new_zeros((batch_size, cap, 4)).index_put(place, resize_boxes(boxes, self.resized_size, self.input_size)),
            scores_kept.new_zeros((batch_size, cap)).index_put(place, scores_kept),
            labels.new_full((batch_size, cap), PAD_LABEL).index_put(place, labels),
            (image[:, None] == torch.arange(batch_size, device=image.device)[None, :]).sum(0),
        )

    def preprocess_spec(self) -> dict[str, Any]:
        """The runtime hands the graph images of ``input_size`` (the model's resize is inside)."""
        preprocess = self.detector.preprocess
        return {
            "target": f"{type(preprocess).__module__}:{type(preprocess).__qualname__}",
            "kwargs": {"min_size": list(preprocess.min_size), "max_size": preprocess.max_size,
                       "size_divisibility": preprocess.size_divisibility},
            "resize_inside": True,
        }  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "family": type(self.detector).__name__.lower(), "resize_mode": "inside"}


def _build_one_stage_fpn(detector: nn.Module, input_size: tuple[int, int] | None = None) -> ExportModule:
    return OneStageFPNExport(detector, input_size)  # type: ignore[arg-type]


register_export_module(OneStageFPNDetector, _build_one_stage_fpn)
