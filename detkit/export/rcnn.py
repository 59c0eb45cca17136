"""Faster / Mask R-CNN as one exportable graph: preprocessing, both stages and post-processing.

Files of the two-stage export (this helper's): ``detkit/export/rcnn.py`` (this module: the
graph), tests in ``tests/export/test_rcnn_onnx.py`` and ``tests/export/test_rcnn_torchscript.py``.

:class:`RCNNExport` wraps a :class:`~detkit.models.detectors.FasterRCNN` (``MaskRCNN``, ``KeypointRCNN``)
and computes its eval-mode detections from a ``[B, 3, H, W]`` batch with tensor operations only,
so that ``torch.export`` / ``torch.onnx.export(dynamo=True)`` and ``torch.jit.trace`` capture
everything, NMS and RoIAlign included (``torch.ops.detkit.batched_nms`` and
``torch.ops.detkit.roi_align``, which :mod:`detkit.export.onnx_ops` turns into ONNX
``NonMaxSuppression`` and ``RoiAlign``):

1. normalise, resize (bilinear, to the size :class:`~detkit.models.preprocess.RCNNPreprocess`
   computes for ``H x W``), pad to the size divisibility;
2. backbone, neck, RPN head; anchors of the padded size (a constant of the graph);
3. proposals: per level the ``pre_nms_topk`` best logits, decode, clip, score threshold
   (inclusive) and minimum size, NMS within each (image, level), the ``post_nms_topk`` best of
   each image;
4. RoIAlign of each proposal on its FPN level (the FPN paper's level rule, as
   :class:`~detkit.ops.MultiScaleRoIAlign`): the RoIs of each level are gathered and pooled, a
   subgraph per level; the box head runs on the rows in level order, and its outputs are put
   back in RoI order by one row gather (the masks' and keypoints' pooled maps by the same gather);
5. box head, per-class decoding, clip, softmax, score threshold, minimum size, NMS within each
   (image, class), the ``detections_per_img`` best of each image;
6. Mask R-CNN: RoIAlign 14 x 14 of the detections, mask head, the mask of each detection's class,
   pasted into the input image (:func:`~detkit.models.roi_heads.mask_head.paste_masks_in_image`);
7. Keypoint R-CNN: RoIAlign 14 x 14 of the detections, keypoint head, each box's heat maps
   decoded by :func:`~detkit.export.keypoints.decode_keypoints` (an ONNX ``Loop`` over the
   detections, each box's maps resized bicubically to its own size);
8. boxes (and keypoints) scaled back to the pixels of the input image.

The numbers are the detector's own (same parts, same order of operations); the only difference
is that the batch is one tensor, so every image has the input size ``H x W``.

Dynamic shapes: the batch size is dynamic. The image size is fixed at export: the resize inside
the model turns ``H x W`` into a size whose arithmetic (``min``/``max`` of the sides, floors,
per-level top-k counts, pooler scales) is Python at trace time; export one graph per input size.

Outputs: :mod:`detkit.export.module`'s padded layout, ``K = detections_per_img``: ``boxes
[B, K, 4]`` float32 xyxy pixels of the input image, ``scores [B, K]``, ``labels [B, K]`` int64
0-based (``-1`` on padding rows), ``num_detections [B]`` int64, and for Mask R-CNN ``masks
[B, K, H, W]`` float32 probabilities over the input image (zeros on padding rows), for Keypoint
R-CNN ``keypoints [B, K, N, 3]`` float32 ``(x, y, 1)`` in pixels of the input image and
``keypoint_scores [B, K, N]`` float32 heat-map logits (zeros on padding rows). Image ``b``'s
detections are its first ``num_detections[b]`` rows by decreasing score; zero detections is
``num_detections == 0``.

The input is the image itself (``H x W``, the size the graph is made for): the R-CNN resize is
the model's (an ``F.interpolate`` that ONNX ``Resize`` reproduces to float rounding), so it stays
inside, and boxes and masks come out in the pixels of the input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.export.keypoints import decode_keypoints
from detkit.export.module import OUTPUT_NAMES, ExportModule, register_export_module
from detkit.export.selection import PAD_LABEL
from detkit.models.dense_heads.rpn import MIN_PROPOSAL_SIZE, _flatten_levels
from detkit.models.detectors.two_stage import FasterRCNN
from detkit.models.postprocess import topk_per_level
from detkit.models.preprocess.base import resize_boxes, resize_keypoints
from detkit.models.roi_heads.mask_head import paste_masks_in_image
from detkit.models.roi_heads.roi_heads import MIN_DETECTION_SIZE
from detkit.ops import clip_boxes_to_image, roi_align
from detkit.ops.poolers import MultiScaleRoIAlign, infer_scale, map_levels

__all__ = ["RCNNExport", "rcnn_input_batch", "rcnn_resized_size"]


def rcnn_resized_size(preprocess: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    """The size :class:`~detkit.models.preprocess.RCNNPreprocess` resizes an ``image_size`` image to
    at test time: ``floor(side * scale)``, ``scale = min(min_size / short, max_size / long)`` in
    Python floats (``F.interpolate(scale_factor=..., recompute_scale_factor=True)``'s size)."""
    height, width = image_size
    scale = min(preprocess.min_size[-1] / min(height, width), preprocess.max_size / max(height, width))
    return int(math.floor(float(height) * scale)), int(math.floor(float(width) * scale))


def rcnn_input_batch(
    preprocess: nn.Module, images: Tensor, resized_size: tuple[int, int], padded_size: tuple[int, int]
) -> Tensor:
    """What :class:`~detkit.models.preprocess.RCNNPreprocess` makes of a batch of one size, as graph
    operations: ``images [B, 3, H, W]`` in [0, 1] normalised, resized (bilinear) to ``resized_size``
    and zero-padded at the bottom and right to ``padded_size``: ``[B, 3, *padded_size]``."""
    batch = F.interpolate(preprocess.normalize(images), size=resized_size, mode="bilinear", align_corners=False)
    pad_height, pad_width = padded_size[0] - resized_size[0], padded_size[1] - resized_size[1]
    return F.pad(batch, (0, pad_width, 0, pad_height)) if pad_height or pad_width else batch


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor if divisor > 1 else value


def _bounded(kept: Tensor, boxes: Tensor) -> Tensor:
    """``kept``, telling the tracer that NMS keeps at most as many boxes as it was given (without
    that bound, the sizes derived from a data-dependent count overflow int64 in the export's
    range analysis)."""
    if not torch.jit.is_tracing():  # a trace sees sizes as tensors, and needs no bound
        torch._check(kept.shape[0] <= boxes.shape[0])
    return kept


def _per_image_best(
    order: Tensor, image: Tensor, batch_size: int | torch.SymInt, cap: int
) -> tuple[Tensor, Tensor]:
    """Of the candidates ``order`` (indices, by decreasing score over the whole batch), the ``cap``
    first of each image, grouped by image (increasing) and by decreasing score within it.

    Args:
        order: ``[K]`` int64 indices into ``image``, by decreasing score (NMS's output).
        image: ``[N]`` int64 image of each candidate.
        batch_size: number of images ``B``.
        cap: candidates kept per image.

    Returns:
        ``(indices [K'], rank [K'])`` int64: indices into ``image``, and the place of each among
        its image's (0 for the best).
    """
    count = order.shape[0]
    position = torch.arange(count, device=order.device)
    kept_image = image[order]
    # Unique keys (image, position in the score order): one sort groups by image, keeps the order.
    grouped = torch.argsort(kept_image * (count + 1) + position)
    order, kept_image = order[grouped], kept_image[grouped]
    per_image = (kept_image[:, None] == torch.arange(batch_size, device=order.device)[None, :]).sum(0)
    first = torch.cumsum(per_image, 0) - per_image
    rank = position - first[kept_image]
    best = rank < cap
    return order[best], rank[best]


class RCNNExport(ExportModule):
    """A Faster / Mask / Keypoint R-CNN's eval detections as one traceable graph (see the module docstring).

    Args:
        detector: a :class:`~detkit.models.detectors.FasterRCNN`, ``MaskRCNN`` or ``KeypointRCNN``
            (its parts are shared, not copied; put in eval mode).
        input_size: ``(H, W)`` of the input images the graph is made for; None: the size the
            model resizes to (``min_size`` square, e.g. 800 x 800).

    Call ``module(images) -> (boxes, scores, labels, num_detections[, masks][, keypoints,
    keypoint_scores])`` with ``images
    [B, 3, H, W]`` float RGB in [0, 1].

    Raises:
        ValueError: a non-positive ``input_size``.
    """

    family = "rcnn"
    dynamic_size = False

    def __init__(self, detector: FasterRCNN, input_size: tuple[int, int] | None = None) -> None:
        preprocess = detector.preprocess
        size = tuple(input_size) if input_size is not None else (preprocess.min_size[-1],) * 2
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"detkit.export: R-CNN input_size must be (height, width) > 0, got {input_size!r}")
        super().__init__(detector, size)  # type: ignore[arg-type]
        self.resized_size = rcnn_resized_size(preprocess, self.input_size)
        self.padded_size = tuple(_round_up(side, preprocess.size_divisibility) for side in self.resized_size)
        self.has_mask = bool(getattr(detector.roi_heads, "has_mask", False))
        self.has_keypoint = bool(getattr(detector.roi_heads, "has_keypoint", False))
        self.output_names = (OUTPUT_NAMES + (("masks",) if self.has_mask else ())
                             + (("keypoints", "keypoint_scores") if self.has_keypoint else ()))  # fmt: skip
        # Anchors depend on the padded size only: computed once, a constant of the graph.
        parameter = next(detector.parameters())
        with torch.no_grad():
            probe = parameter.new_zeros((1, 3, *self.input_size))
            maps = self._rpn_maps(self._features(self._batch(probe)))
            anchors = detector.rpn.anchor_generator(probe.new_zeros((1, 3, *self.padded_size)), maps)[0]
            logits = detector.rpn.head(maps)[0]
        self.anchors_per_level = [int(m.shape[1]) * int(m.shape[2]) * int(m.shape[3]) for m in logits]
        self.register_buffer("anchors", anchors.clone(), persistent=False)

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
        entries = {**super().metadata(), "resize_mode": "inside", "has_masks": self.has_mask,
                   "has_keypoints": self.has_keypoint}  # fmt: skip
        if self.has_keypoint:  # what drawing (the skeleton) and flip TTA need, as the eager model's attributes
            for name in ("keypoint_names", "skeleton", "keypoint_flip_pairs"):
                value = getattr(self.detector, name, None)
                entries[name] = None if value is None else [list(v) if isinstance(v, (list, tuple)) else v for v in value]
        return entries

    # ------------------------------------------------------------------ stages

    def _batch(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> the normalised, resized, padded ``[B, 3, H', W']`` batch."""
        return rcnn_input_batch(self.detector.preprocess, images, self.resized_size, self.padded_size)

    def _features(self, batch: Tensor) -> dict[str, Tensor]:
        features = self.detector.backbone(batch)
        return features if self.detector.neck is None else self.detector.neck(features)

    def _rpn_maps(self, features: dict[str, Tensor]) -> list[Tensor]:
        return self.detector.rpn._maps(features)

    def _proposals(self, features: dict[str, Tensor], batch_size: int) -> tuple[Tensor, Tensor]:
        """``(boxes [P, 4], image [P])``: the RPN's test-time proposals of the whole batch."""
        rpn = self.detector.rpn
        level_logits, level_deltas = rpn.head(self._rpn_maps(features))
        logits, deltas = _flatten_levels(level_logits, level_deltas)
        indices, levels = topk_per_level(logits, self.anchors_per_level, rpn.pre_nms_topk_test)
        image = torch.arange(batch_size, device=logits.device)[:, None].expand_as(indices)
        scores = torch.sigmoid(torch.gather(logits, 1, indices)).reshape(-1)
        boxes = rpn.box_coder.decode(
            torch.gather(deltas, 1, indices[..., None].expand(-1, -1, 4)).reshape(-1, 4),
            self.anchors[indices.reshape(-1)],
        )
        boxes = clip_boxes_to_image(boxes, self.resized_size)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        valid = (scores >= rpn.score_thresh) & (widths >= MIN_PROPOSAL_SIZE) & (heights >= MIN_PROPOSAL_SIZE)
        candidates = torch.nonzero(valid)[:, 0]
        boxes, scores = boxes[candidates], scores[candidates]
        image = image.reshape(-1)[candidates]
        groups = image * len(self.anchors_per_level) + levels.reshape(-1)[candidates]
        kept = _bounded(torch.ops.detkit.batched_nms(boxes, scores, groups, float(rpn.nms_thresh), "iou"), boxes)
        kept, _ = _per_image_best(kept, image, batch_size, rpn.post_nms_topk_test)
        return boxes[kept], image[kept]

    def _pool(
        self,
        pooler: MultiScaleRoIAlign,
        features: dict[str, Tensor],
        boxes: Tensor,
        image: Tensor,
        head: nn.Module | None = None,
    ) -> Tensor:
        """:class:`~detkit.ops.MultiScaleRoIAlign` of ``boxes [R, 4]`` (images ``image [R]``) with
        the level of each RoI as a subgraph: ``[R, C, S, S]``; with ``head`` (a per-RoI module,
        as every RoI head in eval mode), ``head`` of it, ``[R, ...]``, applied to the rows in level
        order before they are put back in RoI order (the gather then moves the head's small rows,
        not the pooled maps)."""
        head = head if head is not None else nn.Identity()
        maps = [features[name] for name in pooler.in_levels]
        scales = [infer_scale((int(m.shape[-2]), int(m.shape[-1])), self.resized_size) for m in maps]
        rois = torch.cat([image[:, None].to(boxes.dtype), boxes], dim=1)
        args = (pooler.output_size, pooler.sampling_ratio, pooler.aligned)
        if len(maps) == 1:
            return head(roi_align(maps[0], rois, args[0], scales[0], args[1], args[2]))
        level_min, level_max = int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
        levels = map_levels([boxes], level_min, level_max, pooler.canonical_scale, pooler.canonical_level)
        # Pooled level by level, concatenated, then put back in RoI order by one row gather (the
        # inverse permutation of the levels' members): the same rows as scattering each level into
        # a zero tensor, without ONNX Runtime's ScatterND over [R, C, S, S] and the zeros it starts
        # from (6% of a MobileNetV3-FPN graph's time on one thread, profiled).
        members, pooled = [], []
        for level, (feature, scale) in enumerate(zip(maps, scales)):
            members.append(torch.nonzero(levels == level)[:, 0])
            pooled.append(roi_align(feature, rois[members[-1]], args[0], scale, args[1], args[2]))
        order = torch.cat(members)
        if not torch.jit.is_tracing():  # every RoI is on one level (map_levels clamps): a permutation
            torch._check(order.shape[0] == boxes.shape[0])
        position = torch.arange(order.shape[0], device=order.device)
        inverse = torch.zeros_like(order).index_put((order,), position)  # RoI i is row inverse[i]
        return head(torch.cat(pooled)).index_select(0, inverse)  # ONNX Gather (rows), not GatherND

    def _detections(
        self, features: dict[str, Tensor], proposals: Tensor, image: Tensor, batch_size: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(boxes [D, 4], scores [D], labels [D], image [D], rank [D])`` over the batch, in pixels
        of the resized images (``rank``: the place of each among its image's detections)."""
        heads = self.detector.roi_heads
        class_logits, box_deltas = heads.box_predictor(
            self._pool(heads.box_pooler, features, proposals, image, heads.box_head))
        num_scores = class_logits.shape[-1]
        boxes = heads.box_coder.decode(box_deltas, proposals).reshape(-1, num_scores, 4)
        boxes = clip_boxes_to_image(boxes, self.resized_size)[:, 1:]  # drop the background column
        scores = F.softmax(class_logits, -1)[:, 1:]
        widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        valid = (scores > heads.score_thresh) & (widths >= MIN_DETECTION_SIZE) & (heights >= MIN_DETECTION_SIZE)
        candidates = torch.nonzero(valid)  # RoI-major, as select_detections
        roi, label = candidates[:, 0], candidates[:, 1]
        boxes, scores, image = boxes[roi, label], scores[roi, label], image[roi]
        groups = image * (num_scores - 1) + label
        kept = _bounded(torch.ops.detkit.batched_nms(boxes, scores, groups, float(heads.nms_thresh), "iou"), boxes)
        kept, rank = _per_image_best(kept, image, batch_size, heads.detections_per_img)
        return boxes[kept], scores[kept], label[kept], image[kept], rank

    def _masks(self, features: dict[str, Tensor], boxes: Tensor, labels: Tensor, image: Tensor) -> Tensor:
        """``[K, M, M]`` mask probabilities of each detection's class inside its box."""
        heads = self.detector.roi_heads
        logits = heads.mask_head(self._pool(heads.mask_pooler, features, boxes, image))
        return logits[torch.arange(labels.shape[0], device=labels.device), labels].sigmoid()

    def _keypoints(self, features: dict[str, Tensor], boxes: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(keypoints [D, N, 3], scores [D, N])`` of the detections, in pixels of the input image."""
        heads = self.detector.roi_heads
        maps = heads.keypoint_head(self._pool(heads.keypoint_pooler, features, boxes, image))
        keypoints, scores = decode_keypoints(maps, boxes)
        return resize_keypoints(keypoints, self.resized_size, self.input_size), scores

    # ------------------------------------------------------------------ the graph

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """Detections of a batch (see the module docstring for the outputs).

        Args:
            images: ``[B, 3, H, W]`` float RGB in [0, 1], ``(H, W) == input_size``.
        """
        batch_size = images.shape[0]
        features = self._features(self._batch(images))
        proposals, image = self._proposals(features, batch_size)
        boxes, scores, labels, image, rank = self._detections(features, proposals, image, batch_size)
        cap = self.detector.roi_heads.detections_per_img
        place = (image, rank)
        padded_boxes = boxes.new_zeros((batch_size, cap, 4))
        outputs = [
            padded_boxes.index_put(place, resize_boxes(boxes, self.resized_size, self.input_size)),
            scores.new_zeros((batch_size, cap)).index_put(place, scores),
            labels.new_full((batch_size, cap), PAD_LABEL).index_put(place, labels),
            (image[:, None] == torch.arange(batch_size, device=image.device)[None, :]).sum(0),
        ]
        if self.has_mask:
            masks = self._masks(features, boxes, labels, image)
            pasted = paste_masks_in_image(masks, resize_boxes(boxes, self.resized_size, self.input_size),
                                          self.input_size)  # fmt: skip
            outputs.append(pasted.new_zeros((batch_size, cap, *self.input_size)).index_put(place, pasted))
        if self.has_keypoint:
            keypoints, keypoint_scores = self._keypoints(features, boxes, image)
            shape = (batch_size, cap, *keypoint_scores.shape[1:])
            outputs.append(keypoints.new_zeros((*shape, 3)).index_put(place, keypoints))
            outputs.append(keypoint_scores.new_zeros(shape).index_put(place, keypoint_scores))
        return tuple(outputs)


def _build_rcnn(detector: nn.Module, input_size: tuple[int, int] | None = None) -> ExportModule:
    return RCNNExport(detector, input_size)  # type: ignore[arg-type]


register_export_module(FasterRCNN, _build_rcnn)  # MaskRCNN and KeypointRCNN are FasterRCNNs
