"""The R-CNN box parametrisation: boxes as centre offsets and log size ratios relative to anchors.

For a box ``g`` and an anchor (reference box) ``a``, both xyxy in pixels, with widths
``w = x2 - x1`` (no +1: continuous coordinates) and centres ``cx = x1 + 0.5 * w``::

    dx = wx * (g_cx - a_cx) / a_w        dw = ww * log(g_w / a_w)
    dy = wy * (g_cy - a_cy) / a_h        dh = wh * log(g_h / a_h)

(Girshick et al., R-CNN appendix C). The weights ``(wx, wy, ww, wh)`` scale the deltas to about unit
variance: ``(1, 1, 1, 1)`` for the RPN, ``(10, 10, 5, 5)`` for Fast R-CNN box heads and SSD.
The arithmetic follows torchvision's ``det_utils.BoxCoder`` operation by operation so that the
results agree to the last bit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Largest log size ratio decode lets through, so exp() cannot overflow: a box may grow at most
# 1000/16 = 62.5 times its anchor (the value from Detectron, kept by torchvision and detectron2).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes as deltas relative to anchors, and decode deltas back to boxes.

    Args:
        weights: ``(wx, wy, ww, wh)`` multipliers of the deltas (see the module docstring).
        bbox_xform_clip: upper bound applied to decoded ``dw`` and ``dh`` (after dividing by the
            weights) before ``exp``.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        bbox_xform_clip: float = DEFAULT_SCALE_CLAMP,
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"weights must be (wx, wy, ww, wh), got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip})"

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """Deltas that turn each anchor into its box.

        Args:
            boxes: ``[N, 4]`` xyxy target boxes in pixels (e.g. the gt matched to each anchor).
            anchors: ``[N, 4]`` xyxy reference boxes in pixels, with positive width and height.

        Returns:
            ``[N, 4]`` deltas ``(dx, dy, dw, dh)``, dtype of ``boxes``.
        """
        if boxes.shape[-1] != 4 or anchors.shape[-1] != 4:
            raise ValueError(f"boxes and anchors must be [N, 4], got {list(boxes.shape)} and {list(anchors.shape)}")
        anchors = anchors.to(boxes.dtype)
        wx, wy, ww, wh = self.weights

        anchor_widths = anchors[:, 2] - anchors[:, 0]
        anchor_heights = anchors[:, 3] - anchors[:, 1]
        anchor_ctr_x = anchors[:, 0] + 0.5 * anchor_widths
        anchor_ctr_y = anchors[:, 1] + 0.5 * anchor_heights

        box_widths = boxes[:, 2] - boxes[:, 0]
        box_heights = boxes[:, 3] - boxes[:, 1]
        box_ctr_x = boxes[:, 0] + 0.5 * box_widths
        box_ctr_y = boxes[:, 1] + 0.5 * box_heights

        dx = wx * (box_ctr_x - anchor_ctr_x) / anchor_widths
        dy = wy * (box_ctr_y - anchor_ctr_y) / anchor_heights
        dw = ww * torch.log(box_widths / anchor_widths)
        dh = wh * torch.log(box_heights / anchor_heights)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes obtained by applying deltas to anchors.

        Args:
            deltas: ``[N, 4 * K]`` deltas ``(dx, dy, dw, dh)`` per anchor, ``K`` >= 1 sets of them
                (e.g. one per class in a Fast R-CNN box head).
            anchors: ``[N, 4]`` xyxy reference boxes in pixels.

        Returns:
            ``[N, 4 * K]`` xyxy boxes in pixels, dtype of ``deltas``; columns ``4k:4k+4`` decode
            ``deltas[:, 4k:4k+4]``.
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0 or anchors.shape != (deltas.shape[0], 4):
            raise ValueError(
                f"deltas must be [N, 4*K] and anchors [N, 4], got {list(deltas.shape)} and {list(anchors.shape)}"
            )
        anchors = anchors.to(deltas.dtype)
        wx, wy, ww, wh = self.weights

        # [N, 1] so that they broadcast over the K sets of deltas.
        widths = (anchors[:, 2] - anchors[:, 0])[:, None]
        heights = (anchors[:, 3] - anchors[:, 1])[:, None]
        ctr_x = anchors[:, 0, None] + 0.5 * widths
        ctr_y = anchors[:, 1, None] + 0.5 * heights

        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        pred = torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2
        )
        return pred.flatten(1)


class LinearBoxCoder:
    """FCOS's box parametrisation: distances from a point to the four sides of its box.

    For an anchor (reference box) ``a`` with centre ``(cx, cy)`` and size ``(w, h)`` and a box ``g``,
    both xyxy pixels: ``(l, t, r, b) = (cx - g_x1, cy - g_y1, g_x2 - cx, g_y2 - cy)``, divided by
    ``(w, h, w, h)`` with ``normalize_by_size`` (FCOS's anchors are squares of the level's stride,
    so the distances come in strides). Same arithmetic as torchvision's ``BoxLinearCoder``.

    Args:
        normalize_by_size: divide the distances by the anchor's width and height.
    """

    def __init__(self, normalize_by_size: bool = True) -> None:
        self.normalize_by_size = normalize_by_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalize_by_size={self.normalize_by_size})"

    def _sizes(self, anchors: Tensor) -> Tensor:
        widths = anchors[..., 2] - anchors[..., 0]
        heights = anchors[..., 3] - anchors[..., 1]
        return torch.stack((widths, heights, widths, heights), dim=-1)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """Distances ``[..., 4]`` ``(l, t, r, b)`` from each anchor's centre to its box's sides.

        Args:
            boxes: ``[..., 4]`` xyxy boxes in pixels.
            anchors: ``[..., 4]`` xyxy anchors, same shape.
        """
        center_x = 0.5 * (anchors[..., 0] + anchors[..., 2])
        center_y = 0.5 * (anchors[..., 1] + anchors[..., 3])
        distances = torch.stack(
            (center_x - boxes[..., 0], center_y - boxes[..., 1], boxes[..., 2] - center_x, boxes[..., 3] - center_y),
            dim=-1,
        )
        return distances / self._sizes(anchors) if self.normalize_by_size else distances

    def decode(self, distances: Tensor, anchors: Tensor) -> Tensor:
        """Boxes ``[..., 4]`` xyxy from ``(l, t, r, b)`` distances ``[..., 4]`` and anchors ``[..., 4]``."""
        anchors = anchors.to(distances.dtype)
        center_x = 0.5 * (anchors[..., 0] + anchors[..., 2])
        center_y = 0.5 * (anchors[..., 1] + anchors[..., 3])
        if self.normalize_by_size:
            distances = distances * self._sizes(anchors)
        return torch.stack(
            (center_x - distances[..., 0], center_y - distances[..., 1],
             center_x + distances[..., 2], center_y + distances[..., 3]),
            dim=-1,
        )  # fmt: skip
