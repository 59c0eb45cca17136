"""Matching tracks to detections: pairwise IoU of boxes and a thresholded linear assignment.

The assignment is scipy's ``linear_sum_assignment`` (the Hungarian algorithm's modern form, exact
for rectangular matrices), imported when first needed so that ``import detkit`` does not need scipy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou_numpy", "linear_assignment"]


def box_iou_numpy(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes in continuous pixels (area ``(x2 - x1) * (y2 - y1)``, no +1).

    Args:
        boxes1: ``[N, 4]``.
        boxes2: ``[M, 4]``.

    Returns:
        ``[N, M]`` float64 IoU in [0, 1] (0 where a union is empty).
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = np.clip(boxes1[:, 2] - boxes1[:, 0], 0, None) * np.clip(boxes1[:, 3] - boxes1[:, 1], 0, None)
    area2 = np.clip(boxes2[:, 2] - boxes2[:, 0], 0, None) * np.clip(boxes2[:, 3] - boxes2[:, 1], 0, None)
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = area1[:, None] + area2[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _linear_sum_assignment():
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as error:  # a requirement, but say what to do if it is missing
        raise ImportError("detkit.apis.tracking needs scipy for the linear assignment: "
                          "pip install scipy") from error
    return linear_sum_assignment


def linear_assignment(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of least total cost, where leaving a row or a column unpaired costs ``max_cost / 2``.

    So a pair is made only when it costs less than leaving both unpaired (``cost < max_cost``),
    and one good pair beats two poor ones: the extended-matrix form of the assignment that
    ByteTrack solves with ``lap.lapjv(cost, extend_cost=True, cost_limit=max_cost)``.

    Args:
        cost: ``[N, M]`` cost of pairing row ``i`` with column ``j`` (``inf``: never).
        max_cost: Pairs costing this or more are never made.

    Returns:
        ``(matches [K, 2] int64 (row, column), unmatched rows [N - K], unmatched columns [M - K])``,
        rows of ``matches`` in increasing row order.
    """
    cost = np.asarray(cost, dtype=np.float64)
    rows, columns = cost.shape
    if rows == 0 or columns == 0:
        return np.zeros((0, 2), np.int64), np.arange(rows), np.arange(columns)
    allowed = np.isfinite(cost) & (cost < max_cost)
    never = 2.0 * max_cost + 1.0  # dearer than leaving both unpaired: never chosen
    # [[cost, row unpaired], [column unpaired, 0]]: each row and column is either paired or
    # paired with its own "unpaired" slot at max_cost / 2
    extended = np.full((rows + columns, rows + columns), never)
    extended[:rows, :columns] = np.where(allowed, cost, never)
    extended[np.arange(rows), columns + np.arange(rows)] = max_cost / 2
    extended[rows + np.arange(columns), np.arange(columns)] = max_cost / 2
    extended[rows:, columns:] = 0.0
    matched_rows, matched_columns = _linear_sum_assignment()(extended)
    pair = (matched_rows < rows) & (matched_columns < columns)
    pair[pair] &= allowed[matched_rows[pair], matched_columns[pair]]
    matches = np.stack([matched_rows[pair], matched_columns[pair]], axis=1).astype(np.int64)
    unmatched_rows = np.setdiff1d(np.arange(rows), matches[:, 0])
    unmatched_columns = np.setdiff1d(np.arange(columns), matches[:, 1])
    return matches, unmatched_rows, unmatched_columns
