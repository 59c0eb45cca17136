"""Merging the detections of overlapping tiles into one image's detections.

The second half of sliced inference (:mod:`detkit.apis.slicing` cuts the image and runs the
detector): each tile's detections are shifted from tile to image pixels, put together, and the
duplicates that tile overlaps (and the full-image pass) produce are resolved by one of two rules,
always within one class:

* ``"nms"``: class-wise non-maximum suppression (:func:`detkit.ops.batched_nms`): a detection
  whose overlap with a higher-scored kept one of its class is above ``match_thresh`` is dropped.
* ``"merge"``: greedy non-maximum *merging*, as SAHI's ``GREEDYNMM`` does it. Detections are
  taken by decreasing score; one not yet taken is kept, and every lower-scored detection of its
  class not yet taken whose overlap *with that kept detection as the model gave it* is above
  ``match_thresh`` is merged into it: the kept box becomes the union (the smallest box holding
  all of them), its score stays the kept one's (the group's highest), masks are combined by
  pixel-wise maximum (their union at 0.5), keypoints and other per-detection values stay the
  kept one's. So the kept detections are exactly those NMS keeps; merging only grows their boxes,
  which brings back whole an object that a tile border cut (each tile saw part of it).

The overlap is ``"ios"`` (intersection over the smaller box's area, SAHI's default for slicing: a
box cut by a tile border lies inside the whole box, IoS 1, while its IoU can be small) or
``"iou"``. Both compare strictly: ``overlap > match_thresh``, as :func:`detkit.ops.nms` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from detkit.ops import batched_nms

__all__ = ["MATCH_METRICS", "MERGE_METHODS", "box_overlap", "merge_boxes", "merge_tile_predictions",
           "shift_points"]

MERGE_METHODS = ("nms", "merge")
MATCH_METRICS = ("iou", "ios")
# keys holding points [N, K, >=2] (x, y first) in image pixels, shifted with the boxes
POINT_KEYS = ("keypoints", "landmarks")
# box pairs compared at once when merged detections are assigned to kept ones
_PAIRS_PER_CHUNK = 1 << 22

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in image pixels (ints)


def box_overlap(boxes1: Tensor, boxes2: Tensor, metric: str = "iou") -> Tensor:
    """Pairwise overlap of two sets of xyxy boxes.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.
        metric: ``"iou"`` (intersection over union) or ``"ios"`` (intersection over the smaller
            box's area; 0 where that area is 0).

    Returns:
        ``[N, M]`` overlaps in [0, 1].
    """
    if metric not in MATCH_METRICS:
        raise ValueError(f"match_metric must be one of {list(MATCH_METRICS)}, got {metric!r}")
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    if metric == "iou":
        denominator = area1[:, None] + area2[None, :] - inter
    else:
        denominator = torch.min(area1[:, None], area2[None, :])
    return torch.where(denominator > 0, inter / denominator.clamp(min=torch.finfo(inter.dtype).tiny),
                       torch.zeros_like(inter))


def merge_boxes(boxes: Tensor, scores: Tensor, labels: Tensor, method: str = "nms",
                match_metric: str = "ios", match_thresh: float = 0.5
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Resolve duplicate detections within each class (the rules in the module docstring).

    Args:
        boxes: ``[N, 4]`` xyxy boxes in image pixels, float.
        scores: ``[N]`` scores.
        labels: ``[N]`` int64 class labels; detections of different labels never interact.
        method: ``"nms"`` or ``"merge"``.
        match_metric: ``"ios"`` or ``"iou"``.
        match_thresh: detections overlapping a kept one by more than this are dropped (nms) or
            merged into it (merge); in [0, 1].

    Returns:
        ``(keep [K] int64, group [N] int64, merged_boxes [K, 4])``: the kept detections' indices
        by decreasing score; for each input detection the position in ``keep`` of the kept
        detection it belongs to (itself for a kept one, the one it was merged into, or -1 for a
        detection dropped by nms); the kept boxes, grown to their groups' union with ``"merge"``.
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"slice_merge must be one of {list(MERGE_METHODS)}, got {method!r}")
    if match_metric not in MATCH_METRICS:
        raise ValueError(f"match_metric must be one of {list(MATCH_METRICS)}, got {match_metric!r}")
    if not 0.0 <= float(match_thresh) <= 1.0:
        raise ValueError(f"match_thresh must be in [0, 1], got {match_thresh!r}")
    labels = labels.to(torch.int64)
    keep = batched_nms(boxes, scores.to(boxes.dtype), labels, float(match_thresh),
                       overlap="min" if match_metric == "ios" else "iou")
    group = torch.full((boxes.shape[0],), -1, dtype=torch.int64, device=boxes.device)
    group[keep] = torch.arange(len(keep), device=boxes.device)
    merged = boxes[keep].clone()
    if method == "nms" or len(keep) == len(boxes):
        return keep, group, merged
    # Each dropped detection joins the first kept one (by decreasing score) of its class that it
    # overlaps by more than the threshold: the one that suppressed it in the NMS above, which is
    # what greedy merging picks (a detection taken by a kept one is not compared again).
    dropped = torch.nonzero(group < 0).flatten()
    kept_boxes, kept_labels = boxes[keep], labels[keep]
    rows = max(1, _PAIRS_PER_CHUNK // max(len(keep), 1))
    for start in range(0, len(dropped), rows):
        chunk = dropped[start:start + rows]
        match = box_overlap(boxes[chunk], kept_boxes, match_metric) > match_thresh
        match &= labels[chunk, None] == kept_labels[None, :]
        found = match.any(dim=1)  # all, but for float rounding at the threshold (then dropped)
        group[chunk[found]] = match[found].to(torch.uint8).argmax(dim=1)  # the first match
    members = torch.nonzero(group >= 0).flatten()
    for column, reduce in ((0, "amin"), (1, "amin"), (2, "amax"), (3, "amax")):
        merged[:, column].scatter_reduce_(0, group[members], boxes[members, column], reduce=reduce)
    return keep, group, merged


def shift_points(points: Tensor, dx: float, dy: float) -> Tensor:
    """Points ``[N, K, C]`` (x, y first; a visibility or score after, untouched) or flat pairs
    ``[N, 2K]`` moved by ``(dx, dy)`` pixels."""
    shifted = points.clone()
    if shifted.dim() == 2:  # flat x0, y0, x1, y1, ...
        shifted[:, 0::2] += dx
        shifted[:, 1::2] += dy
    else:
        shifted[..., 0] += dx
        shifted[..., 1] += dy
    return shifted


def _tile_masks(prediction: Mapping[str, Tensor], window: Window, count: int) -> Tensor | None:
    """A tile's ``masks`` as ``[N, h, w]`` of the tile's size, or None when it has none."""
    masks = prediction.get("masks")
    if masks is None:
        return None
    masks = torch.as_tensor(masks)
    x1, y1, x2, y2 = window
    if masks.shape[0] != count or tuple(masks.shape[-2:]) != (y2 - y1, x2 - x1):
        raise ValueError(f"the detector returned masks of shape {list(masks.shape)} for a tile of "
                         f"{y2 - y1}x{x2 - x1} pixels with {count} detections; masks must be "
                         "[N, H, W] of the image given")
    return masks.reshape(count, y2 - y1, x2 - x1)


def merge_tile_predictions(predictions: Sequence[Mapping[str, Tensor]], windows: Sequence[Window],
                           image_size: tuple[int, int], *, method: str = "nms",
                           match_metric: str = "ios", match_thresh: float = 0.5,
                           score_thresh: float | None = None,
                           detections_per_img: int | None = None) -> dict[str, Tensor]:
    """One image's detections from those of its tiles (each in its tile's pixels).

    Args:
        predictions: per tile, a detector's prediction dict: ``boxes [N, 4]``, ``scores [N]``,
            ``labels [N]``, optional ``masks [N, h, w]`` (or ``[N, 1, h, w]``) of the tile's
            size, ``keypoints [N, K, 3]`` / ``landmarks [N, K, 2]`` (x, y in tile pixels), and
            any other ``[N, ...]`` tensor (carried along unchanged).
        windows: per tile, its ``(x1, y1, x2, y2)`` in image pixels (the full image is
            ``(0, 0, W, H)``).
        image_size: ``(H, W)`` of the image.
        method, match_metric, match_thresh: the merge rule (:func:`merge_boxes`).
        score_thresh: drop detections scoring below this before merging (so that they neither
            suppress nor grow others); None keeps all.
        detections_per_img: keep at most this many, highest scores first (before masks are
            pasted, which costs ``K x H x W`` values); None keeps all.

    Returns:
        The image's prediction dict, sorted by decreasing score: ``boxes`` (clipped to the
        image), ``scores``, ``labels``, ``masks [K, H, W]`` pasted into the image (zero outside
        the tiles that saw the object), point keys shifted to image pixels, other keys carried.

    Raises:
        ValueError: a non-finite score or box, a tile's masks not of its size, keys present in some tiles' detections and
            not in others', or bad merge settings.
    """
    if len(predictions) != len(windows):
        raise ValueError(f"{len(predictions)} tile predictions for {len(windows)} windows")
    height, width = image_size
    parts: list[dict[str, Tensor]] = []
    tile_of: list[Tensor] = []
    masks: list[Tensor | None] = []
    keys: set[str] | None = None
    for index, (prediction, window) in enumerate(zip(predictions, windows)):
        boxes = torch.as_tensor(prediction["boxes"]).reshape(-1, 4)
        count = boxes.shape[0]
        scores = torch.as_tensor(prediction["scores"]).reshape(count)
        if not (bool(torch.isfinite(boxes).all()) and bool(torch.isfinite(scores).all())):
            raise ValueError(f"the detector returned a non-finite score or box on tile {index} at "
                             f"{window} (a numerical fault of the model or its weights)")
        chosen = torch.arange(count, device=boxes.device)
        if score_thresh is not None:
            chosen = torch.nonzero(scores >= score_thresh).flatten()
        extras = {key: torch.as_tensor(value) for key, value in prediction.items()
                  if key not in ("boxes", "scores", "labels", "masks")
                  and isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == count}
        if count and keys is None:
            keys = set(extras) | ({"masks"} if "masks" in prediction else set())
        elif count and keys != set(extras) | ({"masks"} if "masks" in prediction else set()):
            raise ValueError(f"tile {index} at {window} has detection keys "
                             f"{sorted(set(extras) | ({'masks'} if 'masks' in prediction else set()))}, "
                             f"another tile {sorted(keys or ())}: every tile must give the same")
        dx, dy = float(window[0]), float(window[1])
        part = {"boxes": boxes[chosen] + boxes.new_tensor([dx, dy, dx, dy]),
                "scores": scores[chosen],
                "labels": torch.as_tensor(prediction["labels"]).reshape(count)[chosen].to(torch.int64)}
        for key, value in extras.items():
            value = value[chosen.to(value.device)]
            part[key] = shift_points(value, dx, dy) if key in POINT_KEYS else value
        tile_masks = _tile_masks(prediction, window, count)
        masks.append(tile_masks[chosen.to(tile_masks.device)] if tile_masks is not None else None)
        parts.append(part)
        tile_of.append(torch.full((len(chosen),), index, dtype=torch.int64))
    non_empty = [part for part in parts if len(part["boxes"])] or parts[:1]
    merged: dict[str, Tensor] = {key: torch.cat([part[key] for part in non_empty])
                                 for key in non_empty[0] if all(key in part for part in non_empty)}
    tiles = torch.cat(tile_of) if tile_of else torch.empty(0, dtype=torch.int64)
    local = torch.cat([torch.arange(len(part["boxes"])) for part in parts]) if parts else tiles

    keep, group, boxes = merge_boxes(merged["boxes"], merged["scores"], merged["labels"], method,
                                     match_metric, match_thresh)
    if detections_per_img is not None:
        keep = keep[:detections_per_img]
        boxes = boxes[:detections_per_img]
        group = torch.where(group < len(keep), group, torch.full_like(group, -1))
    out = {key: value[keep] for key, value in merged.items()}
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    out["boxes"] = boxes
    if any(tile_masks is not None for tile_masks in masks):
        out["masks"] = _paste_masks(masks, windows, tiles, local, group, len(keep), image_size)
    return out


def _paste_masks(masks: Sequence[Tensor | None], windows: Sequence[Window], tiles: Tensor,
                 local: Tensor, group: Tensor, count: int, image_size: tuple[int, int]) -> Tensor:
    """``[count, H, W]``: each kept detection's mask and those merged into it, pasted into the
    image at their tiles' windows, combined by pixel-wise maximum."""
    sample = next(m for m in masks if m is not None)
    pasted = torch.zeros((count, *image_size), dtype=sample.dtype, device=sample.device)
    group = group.cpu()
    for index in torch.nonzero(group >= 0).flatten().tolist():
        tile, row, target = int(tiles[index]), int(local[index]), int(group[index])
        x1, y1, x2, y2 = windows[tile]
        pasted[target, y1:y2, x1:x2] = torch.maximum(
            pasted[target, y1:y2, x1:x2], masks[tile][row].to(pasted.device, pasted.dtype))
    return pasted
