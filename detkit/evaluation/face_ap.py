"""Face detection AP at IoU 0.5, with WIDER-FACE-style subsets, on top of the VOC routine.

Matching and AP are :func:`detkit.evaluation.voc_eval.match_detections` and
``average_precision`` (greedy matching by decreasing score; all-point ``"voc12"`` or 11-point
``"voc07"`` AP). A subset is a set of ground-truth faces that count: the faces outside it, and the
faces flagged ``ignore`` (WIDER's "invalid"), are treated like VOC's "difficult" objects, so a
detection on them is neither a true nor a false positive (as WIDER's own evaluation ignores faces
outside its easy / medium / hard lists).

Subsets:

* ``"all"``: every face that is not ignored.
* Per-face flags: a target holding a bool ``[N]`` field named like the subset (e.g. ``easy``,
  ``medium``, ``hard`` built from WIDER's ``wider_*_val.mat`` files, which detkit does not read)
  uses it.
* Otherwise the size groups of the WIDER FACE paper, by box height in pixels: ``"small"``
  10-50, ``"medium"`` 50-300, ``"large"`` above 300 (:data:`SIZE_SUBSETS`). These are NOT the
  official easy / medium / hard subsets (those come from EdgeBox detection rates), only their
  usual proxy; report them under their own names.

This is VOC's AP, not WIDER's MATLAB tool (which samples the PR curve at 1000 score thresholds);
the two agree to about a point on the same detections. ``plus_one`` (default False: detkit's
continuous boxes) switches to the +1 pixel widths of WIDER's and VOC's MATLAB overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detkit.evaluation.voc_eval import match_detections

__all__ = ["SIZE_SUBSETS", "face_ap", "face_subset_mask"]

SIZE_SUBSETS = {"small": (10.0, 50.0), "medium": (50.0, 300.0), "large": (300.0, math.inf)}
"""WIDER FACE paper's scale groups: box height in pixels, ``[low, high)``."""


def _array(value: Any, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    if value is None:
        return np.zeros(shape, dtype=dtype)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype).reshape((-1,) + shape[1:])


def face_subset_mask(target: Mapping[str, Any], subset: str) -> np.ndarray:
    """Which ground-truth faces of one image count in ``subset`` (ignored faces never do).

    Args:
        target: ``boxes [N, 4]`` xyxy, optionally ``ignore [N]`` bool and per-subset bool fields.
        subset: ``"all"``, a bool field of the target, or a key of :data:`SIZE_SUBSETS`.

    Returns:
        ``[N]`` bool.

    Raises:
        KeyError: the subset is neither a field of the target nor a size group.
    """
    boxes = _array(target.get("boxes"), np.float64, (0, 4))
    ignore = _array(target.get("ignore"), bool, (len(boxes),)) if target.get("ignore") is not None \
        else np.zeros(len(boxes), dtype=bool)
    if subset == "all":
        member = np.ones(len(boxes), dtype=bool)
    elif target.get(subset) is not None:
        member = _array(target[subset], bool, (len(boxes),))
    elif subset in SIZE_SUBSETS:
        low, high = SIZE_SUBSETS[subset]
        height = boxes[:, 3] - boxes[:, 1]
        member = (height >= low) & (height < high)
    else:
        raise KeyError(f"unknown face subset {subset!r}: not a target field and not one of "
                       f"{['all', *SIZE_SUBSETS]}")
    return member & ~ignore


def face_ap(
    targets: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    subsets: Sequence[str] = ("all",),
    iou_threshold: float = 0.5,
    metric: str = "voc12",
    plus_one: bool = False,
) -> dict[str, float]:
    """Face AP of per-image predictions, for each subset.

    Args:
        targets: per image ``boxes [G, 4]`` xyxy pixels, optionally ``ignore [G]`` and subset fields.
        predictions: per image ``boxes [D, 4]`` and ``scores [D]`` (all faces; labels ignored).
        subsets: which subsets to evaluate (see the module docstring).
        iou_threshold: IoU a match needs (``>=``).
        metric: ``"voc12"`` (all-point) or ``"voc07"`` (11-point).
        plus_one: +1 pixel widths in the IoU.

    Returns:
        ``{"face_AP@0.5-<subset>": AP}``; NaN for a subset with no face.
    """
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    gt_boxes = [_array(t.get("boxes"), np.float64, (0, 4)) for t in targets]
    det_boxes = [_array(p.get("boxes"), np.float64, (0, 4)) for p in predictions]
    det_scores = [_array(p.get("scores"), np.float64, (0,)) for p in predictions]
    for i, (boxes, scores) in enumerate(zip(det_boxes, det_scores)):
        if len(boxes) != len(scores):
            raise ValueError(f"image {i}: {len(boxes)} predicted boxes but {len(scores)} scores")
    results = {}
    for subset in subsets:
        counted = [face_subset_mask(t, subset) for t in targets]
        curve = match_detections(gt_boxes, [~c for c in counted], det_boxes, det_scores, iou_threshold, plus_one)
        results[f"face_AP@{iou_threshold:g}-{subset}"] = curve.ap(metric)
    return results
