"""Non-maximum suppression: ``nms``, class-aware ``batched_nms`` and ``soft_nms``.

Each runs the compiled kernel of ``detkit._C`` for the tensors' device when there is one (see
``detkit.ops.has_ext``), else a pure-PyTorch fallback that gives the same result. Semantics are
torchvision's: boxes are xyxy, IoU uses continuous coordinates (no +1), a kept box suppresses later
boxes whose IoU with it is strictly greater than ``iou_threshold``, and equal scores keep input order.

The shortcut for zero boxes is ``guard_or_false``: under ``torch.export`` a data-dependent count
(boxes after a threshold) skips it and the kernel, which takes zero boxes, is called.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from torch.fx.experimental.symbolic_shapes import guard_or_false

from detkit.ops._ext import use_ext
from detkit.ops.boxes import check_boxes

# Most and fewest boxes per tile in the fallback's pairwise IoU (fewer when there are many categories,
# so that tiles do not straddle categories), and box pairs evaluated per chunk of tiles.
_TILE = 128
_MIN_TILE = 32
_PAIRS_PER_CHUNK = 1 << 22

_SOFT_NMS_METHODS = {"linear": 0, "gaussian": 1}
_OVERLAPS = ("iou", "min")


def _check_overlap(overlap: str, op: str) -> None:
    if overlap not in _OVERLAPS:
        raise ValueError(f"{op}: overlap must be one of {list(_OVERLAPS)}, got {overlap!r}")


def _check_nms_inputs(boxes: Tensor, scores: Tensor, iou_threshold: float, op: str) -> None:
    check_boxes(boxes, "boxes")
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        shape = list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"{op}: scores must have shape [N] = [{boxes.shape[0]}] to match boxes, got {shape}")
    if scores.dtype != boxes.dtype:
        raise ValueError(f"{op}: scores ({scores.dtype}) and boxes ({boxes.dtype}) must have the same dtype")
    if scores.device != boxes.device:
        raise ValueError(f"{op}: scores ({scores.device}) and boxes ({boxes.device}) must be on the same device")
    if not isinstance(iou_threshold, (int, float)) or math.isnan(iou_threshold) or iou_threshold < 0:
        raise ValueError(f"{op}: iou_threshold must be a number >= 0, got {iou_threshold!r}")


def _kernel_precision(boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """bfloat16 / float16 boxes and scores as float32, exactly (every half value is a float32 one):
    the kernels and the fallback run in float32 or float64, and IoUs of half-precision boxes are
    then computed in float32 (as an AMP run needs: autocast hands the RPN and heads bf16 / fp16)."""
    if boxes.dtype in (torch.float16, torch.bfloat16):
        return boxes.float(), scores.float()
    return boxes, scores


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, overlap: str = "iou") -> Tensor:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``[N, 4]`` xyxy boxes, float32 or float64 (bfloat16 / float16: compared in float32,
            the exact upcast).
        scores: ``[N]`` scores, same dtype and device as ``boxes``.
        iou_threshold: a box is dropped when its overlap with a kept, higher-scored box is
            strictly greater than this (>= 0).
        overlap: ``"iou"`` (intersection over union) or ``"min"`` (intersection over the smaller
            box's area, the "Min" NMS of MTCNN's last stage).

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score.
    """
    _check_nms_inputs(boxes, scores, iou_threshold, "nms")
    _check_overlap(overlap, "nms")
    if guard_or_false(boxes.shape[0] == 0):
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes, scores = _kernel_precision(boxes, scores)
    if use_ext("nms", boxes.device):
        return torch.ops.detkit.nms(boxes, scores, float(iou_threshold), overlap)
    return _nms_fallback(boxes, scores, float(iou_threshold), overlap=overlap)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, overlap: str = "iou") -> Tensor:
    """Non-maximum suppression within each category (boxes of different ``idxs`` never suppress each other).

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` scores.
        idxs: ``[N]`` int64 category (or image) index of each box.
        iou_threshold: IoU threshold (>= 0), as in :func:`nms`.
        overlap: ``"iou"`` or ``"min"``, as in :func:`nms`.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score.
    """
    _check_nms_inputs(boxes, scores, iou_threshold, "batched_nms")
    _check_overlap(overlap, "batched_nms")
    if not isinstance(idxs, Tensor) or idxs.shape != scores.shape or idxs.is_floating_point():
        shape = list(idxs.shape) if isinstance(idxs, Tensor) else type(idxs).__name__
        raise ValueError(f"batched_nms: idxs must be an integer tensor of shape [N] = [{boxes.shape[0]}], got {shape}")
    if idxs.device != boxes.device:
        raise ValueError(f"batched_nms: idxs ({idxs.device}) and boxes ({boxes.device}) must be on the same device")
    if guard_or_false(boxes.shape[0] == 0):
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    # Exact per-category NMS, without torchvision's trick of shifting each category's coordinates
    # apart (which changes the IoU's float rounding): the kernels never compare boxes of different
    # categories, so the result is what NMS run separately on each category gives.
    idxs = idxs.to(torch.int64)
    boxes, scores = _kernel_precision(boxes, scores)
    if use_ext("batched_nms", boxes.device):
        return torch.ops.detkit.batched_nms(boxes, scores, idxs, float(iou_threshold), overlap)
    return _nms_fallback(boxes, scores, float(iou_threshold), idxs, overlap)


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "linear",
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al. 2017): decay the scores of overlapping boxes instead of dropping them.

    Repeatedly takes the remaining box with the highest current score (ties: lower index) and decays
    every other remaining box by its IoU with it: ``"linear"``, ``s *= 1 - IoU`` when IoU exceeds
    ``iou_threshold``; ``"gaussian"``, ``s *= exp(-IoU**2 / sigma)``. Boxes whose score falls below
    ``score_threshold`` are dropped.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` scores, same dtype as ``boxes``.
        iou_threshold: overlap above which the linear method decays (unused by gaussian).
        sigma: width of the gaussian penalty (> 0; unused by linear).
        score_threshold: boxes scoring below this after decay are discarded.
        method: ``"linear"`` or ``"gaussian"``.

    Returns:
        ``(keep [K] int64, kept_scores [K])``: indices in selection order and their decayed scores.
    """
    _check_nms_inputs(boxes, scores, iou_threshold, "soft_nms")
    if method not in _SOFT_NMS_METHODS:
        raise ValueError(f"soft_nms: method must be one of {sorted(_SOFT_NMS_METHODS)}, got {method!r}")
    if method == "gaussian" and not sigma > 0:
        raise ValueError(f"soft_nms: sigma must be > 0 for the gaussian method, got {sigma!r}")
    if guard_or_false(boxes.shape[0] == 0):
        return torch.empty((0,), dtype=torch.int64, device=boxes.device), scores.new_empty((0,))
    dtype = scores.dtype
    boxes, scores = _kernel_precision(boxes, scores)
    if use_ext("soft_nms", boxes.device):
        keep, kept = torch.ops.detkit.soft_nms(
            boxes, scores, float(iou_threshold), float(sigma), float(score_threshold), _SOFT_NMS_METHODS[method]
        )
    else:
        keep, kept = _soft_nms_fallback(boxes, scores, float(iou_threshold), float(sigma), float(score_threshold),
                                        method)
    return keep, kept.to(dtype)  # the decayed scores in the caller's dtype


# --------------------------------------------------------------------------------------------------
# Pure-PyTorch fallbacks
# --------------------------------------------------------------------------------------------------


def _largest_value_not_above(threshold: float, dtype: torch.dtype) -> Tensor:
    """The largest ``dtype`` value <= ``threshold``, so that ``iou > it`` in ``dtype`` equals
    torchvision's ``iou > threshold`` evaluated in double precision."""
    value = torch.tensor(threshold, dtype=dtype)
    if value.item() > threshold:
        value = torch.nextafter(value, torch.tensor(-math.inf, dtype=dtype))
    return value


def _pairwise_iou(a: Tensor, b: Tensor, area_a: Tensor, area_b: Tensor, overlap: str = "iou") -> Tensor:
    """Overlap of boxes ``a [..., P, 4]`` against ``b [..., Q, 4]`` -> ``[..., P, Q]``, with the arithmetic
    order of the compiled kernels (max/min, clamp, product, ``inter / (area_a + area_b - inter)``, or
    ``inter / min(area_a, area_b)`` for ``overlap="min"``)."""
    width = (torch.min(a[..., :, None, 2], b[..., None, :, 2]) - torch.max(a[..., :, None, 0], b[..., None, :, 0]))
    height = (torch.min(a[..., :, None, 3], b[..., None, :, 3]) - torch.max(a[..., :, None, 1], b[..., None, :, 1]))
    inter = width.clamp_(min=0).mul_(height.clamp_(min=0))
    if overlap == "min":
        return inter.div_(torch.min(area_a[..., :, None], area_b[..., None, :]))
    union = (area_a[..., :, None] + area_b[..., None, :]).sub_(inter)
    return inter.div_(union)


def _suppression_edges(
    boxes: Tensor, categories: Tensor, threshold: Tensor, overlap: str = "iou"
) -> tuple[Tensor, Tensor]:
    """All pairs ``(i, j)``, ``i < j``, of boxes (indexed in score order) of the same category whose
    IoU exceeds the threshold.

    Boxes are tiled in order of (category, x1); tile pairs whose x-extents or category ranges do not
    overlap contain no such pair and are skipped, and boxes of zero or negative width or height (which
    intersect nothing) are left out. Both are exact for finite coordinates; with non-finite ones
    every pair is evaluated so that NaN/inf behave exactly as in the compiled kernel.
    """
    finite = bool(torch.isfinite(boxes).all())
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if finite:
        by_x1 = torch.argsort(boxes[:, 0], stable=True)
        intersecting = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        by_x1 = by_x1[intersecting[by_x1]]
    else:
        by_x1 = torch.arange(boxes.shape[0], device=boxes.device)
    by_x1 = by_x1[torch.argsort(categories[by_x1], stable=True)]
    n = by_x1.shape[0]
    if n == 0:
        empty = torch.empty((0,), dtype=torch.int64, device=boxes.device)
        return empty, empty
    sorted_categories = categories[by_x1]
    num_categories = int((sorted_categories[1:] != sorted_categories[:-1]).sum()) + 1
    tile = _TILE
    while tile > _MIN_TILE and tile > n / num_categories:
        tile //= 2
    num_tiles = (n + tile - 1) // tile
    padded = num_tiles * tile
    # Pad with copies of an index and mask them out; tiles are [T, TILE] rank indices.
    tile_ranks = torch.cat([by_x1, by_x1.new_full((padded - n,), -1)]).view(num_tiles, tile)
    valid = tile_ranks >= 0
    safe_ranks = tile_ranks.clamp(min=0)
    tile_boxes = boxes[safe_ranks]
    tile_categories = categories[safe_ranks]
    # Category range of each tile (padding repeats a real member, so min/max are unaffected).
    category_low, category_high = tile_categories.amin(1), tile_categories.amax(1)
    overlapping = (category_low[:, None] <= category_high[None, :]) & (category_low[None, :] <= category_high[:, None])
    if finite:
        x1_low = torch.where(valid, tile_boxes[..., 0], torch.full_like(tile_boxes[..., 0], math.inf)).amin(1)
        x2_high = torch.where(valid, tile_boxes[..., 2], torch.full_like(tile_boxes[..., 2], -math.inf)).amax(1)
        overlapping &= (x2_high[:, None] > x1_low[None, :]) & (x2_high[None, :] > x1_low[:, None])
    overlapping = torch.triu(overlapping)
    tile_a, tile_b = torch.nonzero(overlapping, as_tuple=True)

    # On a diagonal tile pair (a tile with itself) only positions row < col count, so that every
    # pair of boxes is evaluated once.
    upper = torch.ones(tile, tile, dtype=torch.bool, device=boxes.device).triu(1)
    sources, targets = [], []
    chunk = max(1, _PAIRS_PER_CHUNK // (tile * tile))
    for start in range(0, tile_a.shape[0], chunk):
        a, b = tile_a[start : start + chunk], tile_b[start : start + chunk]
        ranks_a, ranks_b = safe_ranks[a], safe_ranks[b]
        iou = _pairwise_iou(tile_boxes[a], tile_boxes[b], area[ranks_a], area[ranks_b], overlap)
        hit = (iou > threshold) & valid[a][:, :, None] & valid[b][:, None, :]
        hit &= (a != b)[:, None, None] | upper
        hit &= tile_categories[a][:, :, None] == tile_categories[b][:, None, :]
        pair, row, col = torch.nonzero(hit, as_tuple=True)
        first, second = ranks_a[pair, row], ranks_b[pair, col]
        sources.append(torch.minimum(first, second))
        targets.append(torch.maximum(first, second))
    return torch.cat(sources), torch.cat(targets)


def _resolve_greedy(num_boxes: int, sources: Tensor, targets: Tensor) -> Tensor:
    """Which boxes greedy NMS keeps, given the suppression edges ``sources[e] -> targets[e]``
    (``sources < targets``, indices in score order).

    Greedy NMS keeps box j iff no kept box i < j has an edge to j. That rule has a unique solution on
    this DAG, and iterating ``keep[j] = not any(keep[i] for edges i -> j)`` from all-kept reaches it:
    after t rounds every box whose longest chain of predecessors is shorter than t is final. The loop
    runs over rounds (a handful for real detections), not over boxes.
    """
    keep = torch.ones(num_boxes, dtype=torch.bool, device=sources.device)
    while True:
        suppressed = torch.zeros_like(keep)
        suppressed[targets[keep[sources]]] = True
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def _nms_fallback(
    boxes: Tensor, scores: Tensor, iou_threshold: float, categories: Tensor | None = None, overlap: str = "iou"
) -> Tensor:
    order = torch.argsort(scores, descending=True, stable=True)
    threshold = _largest_value_not_above(iou_threshold, boxes.dtype).to(boxes.device)
    if categories is None:
        categories = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    sources, targets = _suppression_edges(boxes[order], categories[order], threshold, overlap)
    keep = _resolve_greedy(boxes.shape[0], sources, targets)
    return order[keep]


def _soft_nms_fallback(
    boxes: Tensor, scores: Tensor, iou_threshold: float, sigma: float, score_threshold: float, method: str
) -> tuple[Tensor, Tensor]:
    # Soft-NMS is sequential by nature: each selection depends on the scores decayed by the previous
    # one. Each step is vectorised over all boxes; the loop runs once per selected box.
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    current = scores.clone()
    alive = current >= score_threshold
    kept, kept_scores = [], []
    for _ in range(boxes.shape[0]):
        if not bool(alive.any()):
            break
        masked = torch.where(alive, current, torch.full_like(current, -math.inf))
        best = int(torch.argmax(masked))  # first maximum: lowest index among ties
        kept.append(best)
        kept_scores.append(current[best].clone())
        alive[best] = False
        iou = _pairwise_iou(boxes[best : best + 1], boxes, area[best : best + 1], area)[0]
        if method == "linear":
            decay = torch.where(iou > iou_threshold, 1 - iou, torch.ones_like(iou))
        else:
            decay = torch.exp(-(iou * iou) / sigma)
        current = torch.where(alive, current * decay, current)
        alive &= current >= score_threshold
    keep = torch.tensor(kept, dtype=torch.int64, device=boxes.device)
    values = torch.stack(kept_scores) if kept_scores else scores.new_empty((0,))
    return keep, values
