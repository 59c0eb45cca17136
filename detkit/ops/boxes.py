"""Box arithmetic. Boxes are ``[N, 4]`` xyxy in absolute pixels (detkit's convention, see design.md);
converters to and from COCO ``xywh`` and centre ``cxcywh`` live here and nowhere else."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``boxes`` is a floating ``[N, 4]`` tensor."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, 4], got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {list(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {boxes.dtype}")


def box_area(boxes: Tensor) -> Tensor:
    """Areas of xyxy boxes.

    Args:
        boxes: ``[N, 4]`` xyxy.

    Returns:
        ``[N]`` areas ``(x2 - x1) * (y2 - y1)`` (no +1: continuous pixel coordinates).
    """
    check_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _intersection_and_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter, union


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``[N, M]`` IoU values in [0, 1].
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    inter, union = _intersection_and_union(boxes1, boxes2)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019).

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``[N, M]`` GIoU values in [-1, 1].
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    inter, union = _intersection_and_union(boxes1, boxes2)
    iou = inter / union
    enclosing_top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    enclosing_bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    enclosing_wh = (enclosing_bottom_right - enclosing_top_left).clamp(min=0)
    enclosing_area = enclosing_wh[..., 0] * enclosing_wh[..., 1]
    return iou - (enclosing_area - union) / enclosing_area


def _complete_iou(boxes1: Tensor, boxes2: Tensor, eps: float, size_eps: float) -> Tensor:
    """CIoU of broadcast pairs ``[..., 4]`` xyxy; ``size_eps`` is added to heights and the union."""
    b1_x1, b1_y1, b1_x2, b1_y2 = boxes1.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = boxes2.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + size_eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + size_eps
    inter = (torch.minimum(b1_x2, b2_x2) - torch.maximum(b1_x1, b2_x1)).clamp(min=0) * (
        torch.minimum(b1_y2, b2_y2) - torch.maximum(b1_y1, b2_y1)
    ).clamp(min=0)
    iou = inter / (w1 * h1 + w2 * h2 - inter + size_eps)
    enclosing_w = torch.maximum(b1_x2, b2_x2) - torch.minimum(b1_x1, b2_x1)
    enclosing_h = torch.maximum(b1_y2, b2_y2) - torch.minimum(b1_y1, b2_y1)
    diagonal_squared = enclosing_w.pow(2) + enclosing_h.pow(2) + eps
    # Squared distance of the centres: ((x1 + x2) / 2 - (x1' + x2') / 2) ** 2, summed over x and y.
    centre_squared = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    # Aspect-ratio consistency v and its trade-off weight alpha (Zheng et al. 2020); alpha is a
    # constant for the gradient, as in the paper's reference code, torchvision and ultralytics.
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return iou - (centre_squared / diagonal_squared + v * alpha)


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise complete IoU (CIoU, Zheng et al. 2020), torchvision's ``complete_box_iou``.

    ``CIoU = IoU - d^2 / c^2 - alpha * v``: ``d`` the distance of the centres, ``c`` the diagonal
    of the enclosing box, ``v = 4 / pi^2 (atan(w2 / h2) - atan(w1 / h1))^2`` and
    ``alpha = v / (1 - IoU + v)`` (no gradient through ``alpha``).

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.
        eps: Added to the squared diagonal and to ``alpha``'s denominator.

    Returns:
        ``[N, M]`` CIoU values in [-1.5, 1] (``-inf``/NaN-free for boxes of positive height).
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    return _complete_iou(boxes1[:, None, :], boxes2[None, :, :], eps, 0.0)


def paired_complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU of matching pairs ``boxes1[i]``, ``boxes2[i]``, in the form YOLO losses use.

    The same CIoU as :func:`complete_box_iou`, elementwise, with ``eps`` also added to each
    height and to the union (ultralytics' ``bbox_iou(..., xywh=False, CIoU=True)``), which keeps
    degenerate (zero-height) boxes finite.

    Args:
        boxes1: ``[..., 4]`` xyxy.
        boxes2: ``[..., 4]`` xyxy, the same shape (or broadcastable).
        eps: Added to heights, the union, the squared diagonal and ``alpha``'s denominator.

    Returns:
        ``[...]`` CIoU values.
    """
    if boxes1.shape[-1] != 4 or boxes2.shape[-1] != 4:
        raise ValueError(
            f"boxes1 and boxes2 must end in 4 (x1, y1, x2, y2), got {list(boxes1.shape)} and {list(boxes2.shape)}"
        )
    return _complete_iou(boxes1, boxes2, eps, eps)


def box_xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO ``[x, y, w, h]`` (top-left corner and size) to ``[x1, y1, x2, y2]``; shapes ``[..., 4]``."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[x1, y1, x2, y2]`` to COCO ``[x, y, w, h]``; shapes ``[..., 4]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Centre ``[cx, cy, w, h]`` to ``[x1, y1, x2, y2]``; shapes ``[..., 4]``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[x1, y1, x2, y2]`` to centre ``[cx, cy, w, h]``; shapes ``[..., 4]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip xyxy boxes to an image.

    Args:
        boxes: ``[..., 4]`` xyxy.
        size: ``(height, width)`` of the image in pixels.

    Returns:
        Boxes of the same shape with x in ``[0, width]`` and y in ``[0, height]``.
    """
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both at least ``min_size``.

    Args:
        boxes: ``[N, 4]`` xyxy.
        min_size: minimum side in pixels.

    Returns:
        ``[K]`` int64 indices into ``boxes``.
    """
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]
