"""ONNX translations of detkit's ops, for ``torch.onnx.export(..., dynamo=True)``.

NOTE for the R-CNN export (partner): :func:`roi_align_onnx` is the translation of
``torch.ops.detkit.roi_align`` (ONNX ``RoiAlign``, ``coordinate_transformation_mode="half_pixel"``
for ``aligned=True``, ``"output_half_pixel"`` for ``aligned=False``). Every translation is in
:data:`TRANSLATION_TABLE`; pass it (or :func:`translation_table`) as ``custom_translation_table``.

The compiled ops (``torch.ops.detkit.*``, schemas in csrc/detkit.cpp) are what an exported
program holds; here each becomes standard ONNX so that a graph never holds a ``detkit::`` node:

* ``nms`` -> ``NonMaxSuppression`` on one batch and one class; its output (kept boxes by
  decreasing score, ties in input order) is re-sorted the way detkit's kernel orders it.
* ``batched_nms`` -> ``NonMaxSuppression`` with one NMS *class* per category: the scores become
  ``[1, G, N]`` (a box's score in its own category's row, ``-inf`` elsewhere, below the
  ``score_threshold`` of float32's lowest value, so it is no candidate there). Unlike the
  coordinate-offset trick this leaves every IoU as detkit's kernel computes it (no shifted
  coordinates, no changed rounding). Categories must be ``>= 0`` (detkit's are: classes, or
  ``image * num_classes + class``); the kept indices are ordered by decreasing score, ties by
  index, as the kernel returns them.
* ``roi_align`` -> ``RoiAlign`` (opset 16+): ``rois [K, 5]`` split into the batch indices and the
  boxes; ``sampling_ratio <= 0`` (adaptive) is ONNX's 0.
* ``detkit_export::heatmaps_to_keypoints`` (Keypoint R-CNN's decoding, :mod:`detkit.export.keypoints`)
  -> a ``Loop`` over the detections.
* ``soft_nms`` has no ONNX operator; its sequential decay has no fixed-size subgraph either, so an
  export that meets it stops with :class:`UnsupportedExportError` (one line: use hard NMS).
* ``overlap="min"`` (MTCNN's last NMS) has no ONNX form (``NonMaxSuppression`` is IoU only): the
  same error.

IoUs: ONNX Runtime's ``NonMaxSuppression`` computes ``inter / (area_a + area_b - inter)`` in
float32 and suppresses at ``iou > iou_threshold`` (the threshold as float32), as detkit's kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "FLOAT32_LOWEST",
    "UnsupportedExportError",
    "batched_nms_onnx",
    "nms_onnx",
    "roi_align_onnx",
    "soft_nms_onnx",
    "translation_table",
]

FLOAT32_LOWEST = -3.4028234663852886e38  # numpy.finfo(float32).min: every finite score is above it


class UnsupportedExportError(ValueError):
    """An op or setting that has no ONNX form (its message is one line)."""


def _op() -> Any:
    from onnxscript import opset18

    return opset18


def _check_overlap(overlap: str, name: str) -> None:
    if overlap != "iou":
        raise UnsupportedExportError(
            f"detkit.export: {name}(overlap={overlap!r}) has no ONNX form (NonMaxSuppression is IoU only); "
            "export a model whose NMS uses overlap='iou'"
        )


def _sort_kept(op: Any, kept: Any, scores: Any) -> Any:
    """``kept [M]`` box indices re-ordered by decreasing ``scores[kept]``, ties by lower index.

    ONNX ``TopK`` breaks ties by position, so the indices are put in increasing order first.
    """
    count = op.Shape(kept)
    ascending = op.TopK(kept, count, axis=0, largest=0, sorted=1)[0]
    kept_scores = op.Gather(scores, ascending, axis=0)
    order = op.TopK(kept_scores, count, axis=0, largest=1, sorted=1)[1]
    return op.Gather(ascending, order, axis=0)


def _nonmax(op: Any, boxes: Any, class_scores: Any, iou_threshold: float, score_threshold: float | None) -> Any:
    """``NonMaxSuppression`` on ``boxes [N, 4]`` and ``class_scores [G, N]``: kept box indices ``[M]``."""
    num_boxes = op.Shape(boxes, start=0, end=1)
    inputs = [
        op.Unsqueeze(boxes, op.Constant(value_ints=[0])),
        op.Unsqueeze(class_scores, op.Constant(value_ints=[0])),
        num_boxes,
        op.Constant(value_floats=[float(iou_threshold)]),
    ]
    if score_threshold is not None:
        inputs.append(op.Constant(value_floats=[float(score_threshold)]))
    selected = op.NonMaxSuppression(*inputs, center_point_box=0)
    return op.Squeeze(op.Gather(selected, op.Constant(value_ints=[2]), axis=1), op.Constant(value_ints=[1]))


def nms_onnx(boxes: Any, scores: Any, iou_threshold: float, overlap: str = "iou") -> Any:
    """``detkit::nms`` as ONNX: ``boxes [N, 4]``, ``scores [N]`` -> kept indices ``[K]`` int64."""
    _check_overlap(overlap, "nms")
    op = _op()
    boxes32, scores32 = op.Cast(boxes, to=1), op.Cast(scores, to=1)
    kept = _nonmax(op, boxes32, op.Unsqueeze(scores32, op.Constant(value_ints=[0])), iou_threshold, None)
    return _sort_kept(op, kept, scores32)


def batched_nms_onnx(boxes: Any, scores: Any, idxs: Any, iou_threshold: float, overlap: str = "iou") -> Any:
    """``detkit::batched_nms`` as ONNX: NMS within each category ``idxs [N]`` (>= 0), see the module
    docstring; returns kept indices ``[K]`` int64 by decreasing score."""
    _check_overlap(overlap, "batched_nms")
    op = _op()
    boxes32, scores32 = op.Cast(boxes, to=1), op.Cast(scores, to=1)
    idxs = op.Cast(idxs, to=7)
    zero = op.Constant(value_ints=[0])
    groups = op.Add(op.ReduceMax(op.Concat(idxs, zero, axis=0), keepdims=1), op.Constant(value_ints=[1]))
    categories = op.Range(op.Constant(value_int=0), op.Squeeze(groups, zero), op.Constant(value_int=1))
    member = op.Equal(op.Unsqueeze(categories, op.Constant(value_ints=[1])), op.Unsqueeze(idxs, zero))  # [G, N]
    minus_inf = op.Constant(value_float=float("-inf"))
    class_scores = op.Where(member, op.Unsqueeze(scores32, zero), minus_inf)
    kept = _nonmax(op, boxes32, class_scores, iou_threshold, FLOAT32_LOWEST)
    return _sort_kept(op, kept, scores32)


def soft_nms_onnx(*args: Any, **kwargs: Any) -> Any:
    """``detkit::soft_nms`` has no ONNX form: always raises :class:`UnsupportedExportError`."""
    raise UnsupportedExportError(
        "detkit.export: soft_nms has no ONNX operator (its sequential score decay has no fixed subgraph); "
        "export with the head's nms_method='hard'"
    )


def roi_align_onnx(
    input: Any,
    rois: Any,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> Any:
    """``detkit::roi_align`` as ONNX ``RoiAlign``: ``input [N, C, H, W]``, ``rois [K, 5]`` (batch
    index, x1, y1, x2, y2) -> ``[K, C, pooled_height, pooled_width]``.

    ``aligned=True`` is ``coordinate_transformation_mode="half_pixel"`` (the half-pixel offset),
    ``aligned=False`` ``"output_half_pixel"`` (the legacy mode, RoIs at least 1x1).
    """
    op = _op()
    batch_indices = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=7)
    boxes = op.Slice(rois, [1], [5], [1])
    return op.RoiAlign(
        input,
        boxes,
        batch_indices,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg",
        output_height=int(pooled_height),
        output_width=int(pooled_width),
        sampling_ratio=max(0, int(sampling_ratio)),
        spatial_scale=float(spatial_scale),
    )


def translation_table() -> dict[Callable, Callable]:
    """``{torch.ops.detkit.<op>.default: translation}`` (and the keypoint decoding's) for ``custom_translation_table``.

    Loads the compiled ops first (``detkit.ops`` imports ``detkit._C``). Without the extension
    the ops are not registered and the table is empty: the model then runs detkit's fallbacks,
    which are plain ATen code.
    """
    import detkit.ops  # noqa: F401  (registers torch.ops.detkit.* when detkit._C is built)

    table: dict[Callable, Callable] = {}
    for name, translation in (
        ("nms", nms_onnx),
        ("batched_nms", batched_nms_onnx),
        ("soft_nms", soft_nms_onnx),
        ("roi_align", roi_align_onnx),
    ):
        packet = getattr(torch.ops.detkit, name, None) if hasattr(torch.ops, "detkit") else None
        if packet is not None:
            table[packet.default] = translation
    # Keypoint R-CNN's decoding (importing the module registers torch.ops.detkit_export.*).
    from detkit.export.keypoints import heatmaps_to_keypoints_onnx

    table[torch.ops.detkit_export.heatmaps_to_keypoints.default] = heatmaps_to_keypoints_onnx
    return table
