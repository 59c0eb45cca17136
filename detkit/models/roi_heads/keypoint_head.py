"""Keypoint R-CNN's keypoint branch: the conv head, heat-map targets, the loss and the decoding.

The head (He et al. 2017, sec. 5; torchvision's ``KeypointRCNNHeads`` + ``KeypointRCNNPredictor``):
eight 3x3 convs with ReLU (512 channels) on the ``14 x 14`` pooled features, a 4x4 stride-2
transposed conv (padding 1) giving one logit map per keypoint at ``28 x 28``, and a bilinear x2
upsampling to ``56 x 56``. The keypoint maps are class-agnostic: every detected object gets all
``K`` keypoints (a dataset with several keypoint classes gives each its own keypoint indices and
leaves the others unlabelled, see :mod:`detkit.data.shapes`).

Targets and loss (torchvision's ``keypoints_to_heatmap`` / ``keypointrcnn_loss``): each labelled
keypoint (visibility > 0) of a foreground RoI's gt becomes the index ``y * M + x`` of the heat-map
cell it falls in (``x = floor((px - x1) * M / w)``; a point on the RoI's right or bottom edge goes
to the last cell); points outside the RoI are not trained. The loss is the cross-entropy over the
``M * M`` cells of each trained (RoI, keypoint) map, averaged over them.

Decoding (torchvision's ``heatmaps_to_keypoints``): each RoI's maps are resized bicubically to
``ceil(h) x ceil(w)`` (box sides clamped at 1 px), the arg-max cell ``(i, j)`` gives the point
``x1 + (j + 0.5) * w / ceil(w)`` (likewise y), and the map's value there is the keypoint's score.
The resize size depends on each box, so decoding loops over the detections on the host, as
torchvision does; under ``torch.export`` (a data-dependent number of detections) over a fixed
number of slots, ``max_rois``, so the family stays export-clean with torchvision's exact results.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import is_concrete_int

from detkit.models.layers import ConvNormAct

__all__ = ["KeypointHead", "heatmaps_to_keypoints", "keypoint_rcnn_loss", "keypoints_to_heatmap"]


class KeypointHead(nn.Module):
    """Convs, transposed-conv upsampling and bilinear x2: one heat-map logit map per keypoint.

    Args:
        in_channels: channels of the pooled features (the FPN's, 256).
        num_keypoints: ``K``, keypoints per object (17 for COCO persons).
        conv_channels: output channels of each 3x3 conv (eight 512 in Keypoint R-CNN).

    Parameter layout: ``convs.<i>.0.*`` (3x3 convs), ``keypoint_logits.*`` (the transposed conv).
    """

    def __init__(self, in_channels: int, num_keypoints: int, conv_channels: Sequence[int] = (512,) * 8) -> None:
        super().__init__()
        if num_keypoints < 1:
            raise ValueError(f"KeypointHead: num_keypoints must be >= 1, got {num_keypoints}")
        layers = []
        channels = in_channels
        for out_channels in conv_channels:
            layers.append(ConvNormAct(channels, out_channels, 3, norm=None))
            channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.keypoint_logits = nn.ConvTranspose2d(channels, num_keypoints, kernel_size=4, stride=2, padding=1)
        self.num_keypoints = num_keypoints
        # torchvision's initialisation: He normal (fan_out) weights, zero biases.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, features: Tensor) -> Tensor:
        """Heat-map logits.

        Args:
            features: ``[R, in_channels, S, S]`` pooled RoI features (``S = 14``).

        Returns:
            ``[R, K, 4S, 4S]`` logits (``56 x 56``) of each keypoint's position inside each RoI.
        """
        logits = self.keypoint_logits(self.convs(features))
        return F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False,
                             recompute_scale_factor=False)


def keypoints_to_heatmap(keypoints: Tensor, rois: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The heat-map cell of each keypoint of each RoI's gt (the keypoint loss targets).

    Args:
        keypoints: ``[P, K, 3]`` gt keypoints ``(x, y, visibility)`` of each RoI's matched object,
            in pixels of the image.
        rois: ``[P, 4]`` xyxy RoIs in the same pixels.
        size: heat-map side ``M``.

    Returns:
        ``(cells [P, K] int64, trained [P, K] bool)``: the flat cell index ``y * M + x`` (0 where
        not trained) and whether the point is labelled (visibility > 0) and inside the RoI.
    """
    x1, y1, x2, y2 = (rois[:, i : i + 1] for i in range(4))
    xs, ys = keypoints[..., 0], keypoints[..., 1]
    cells_x = ((xs - x1) * (size / (x2 - x1))).floor().long()
    cells_y = ((ys - y1) * (size / (y2 - y1))).floor().long()
    # A point exactly on the right / bottom edge belongs to the last cell.
    cells_x = torch.where(xs == x2, torch.full_like(cells_x, size - 1), cells_x)
    cells_y = torch.where(ys == y2, torch.full_like(cells_y, size - 1), cells_y)
    inside = (cells_x >= 0) & (cells_y >= 0) & (cells_x < size) & (cells_y < size)
    trained = inside & (keypoints[..., 2] > 0)
    cells = torch.where(trained, cells_y * size + cells_x, torch.zeros_like(cells_x))
    return cells, trained


def keypoint_rcnn_loss(keypoint_logits: Tensor, cells: Tensor, trained: Tensor) -> Tensor:
    """Cross-entropy over the heat-map cells of each trained (RoI, keypoint), averaged over them.

    Args:
        keypoint_logits: ``[P, K, M, M]`` logits of the foreground RoIs.
        cells: ``[P, K]`` target cell indices (:func:`keypoints_to_heatmap`).
        trained: ``[P, K]`` bool, the (RoI, keypoint) pairs that have a target.

    Returns:
        A scalar; ``0 * keypoint_logits.sum()`` (still connected to the graph) when nothing is
        trained (no foreground RoI, or no labelled keypoint inside one).
    """
    flat_logits = keypoint_logits.flatten(2).flatten(0, 1)  # [P * K, M * M]
    index = torch.where(trained.flatten())[0]
    if index.numel() == 0:
        return keypoint_logits.sum() * 0
    return F.cross_entropy(flat_logits[index], cells.flatten()[index])


def heatmaps_to_keypoints(maps: Tensor, rois: Tensor, max_rois: int | None = None) -> tuple[Tensor, Tensor]:
    """Keypoints from heat maps: bicubic resize to each box's size, arg-max, cell centre.

    The detections are decoded one by one (each has its own resize size, as in torchvision). When
    their number is data-dependent (under ``torch.export``: the detections left after NMS), the
    loop runs over ``max_rois`` slots, the missing ones 1-pixel boxes of zero maps, and their
    results are dropped: the same decoding of every real detection, with no branch on the count.

    Args:
        maps: ``[R, K, M, M]`` heat-map logits of the detections.
        rois: ``[R, 4]`` xyxy boxes of the detections, in pixels of the image.
        max_rois: the most detections ``R`` can be (e.g. ``detections_per_img`` times the
            images); needed only when ``R`` is not a known number.

    Returns:
        ``(keypoints [R, K, 3], scores [R, K])`` float32: ``(x, y, 1)`` in pixels of the image
        (the third column is torchvision's constant visibility 1), and the resized map's value at
        the arg-max (a logit, not a probability).

    Raises:
        ValueError: ``R`` is data-dependent and ``max_rois`` is not given.
    """
    num_rois, num_keypoints = maps.shape[:2]
    slots = num_rois
    if not is_concrete_int(num_rois):
        if max_rois is None:
            raise ValueError("heatmaps_to_keypoints: a data-dependent number of RoIs needs max_rois (its bound)")
        torch._check(num_rois <= max_rois)
        slots = max_rois
        maps = torch.cat([maps, maps.new_zeros((max_rois, *maps.shape[1:]))])[:max_rois]
        rois = torch.cat([rois, rois.new_zeros((max_rois, 4))])[:max_rois]
    keypoints = torch.zeros((slots, num_keypoints, 3), dtype=torch.float32, device=maps.device)
    scores = torch.zeros((slots, num_keypoints), dtype=torch.float32, device=maps.device)
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    map_sizes = torch.stack([heights.ceil(), widths.ceil()], dim=1).to(torch.int64).tolist()  # one host read
    rows = torch.arange(num_keypoints, device=maps.device)
    for i, (map_height, map_width) in enumerate(map_sizes):
        torch._check(map_height >= 1)
        torch._check(map_width >= 1)
        resized = F.interpolate(maps[i][:, None], size=(map_height, map_width), mode="bicubic",
                                align_corners=False)[:, 0]
        best = resized.reshape(num_keypoints, -1).argmax(dim=1)
        cell_x = best % map_width
        cell_y = torch.div(best - cell_x, map_width, rounding_mode="floor")
        keypoints[i, :, 0] = (cell_x.float() + 0.5) * (widths[i] / map_width) + rois[i, 0]
        keypoints[i, :, 1] = (cell_y.float() + 0.5) * (heights[i] / map_height) + rois[i, 1]
        scores[i] = resized[rows, cell_y, cell_x]
    keypoints[..., 2] = 1
    return keypoints[:num_rois], scores[:num_rois]
