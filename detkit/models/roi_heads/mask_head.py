"""Mask R-CNN's mask branch: the FCN head, its loss, and pasting box-relative masks into images.

The head (He et al. 2017, fig. 4 right, as torchvision's ``MaskRCNNHeads`` + ``MaskRCNNPredictor``):
four 3x3 convs with ReLU on the ``14 x 14`` pooled features, a 2x2 stride-2 transposed conv with
ReLU (``28 x 28``), and a 1x1 conv giving one mask logit map per object class. Unlike torchvision
there is no map for the background class: channel ``k`` is detkit's 0-based class ``k``
(torchvision's channel ``k + 1``; the converter drops its unused channel 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.layers import ConvNormAct
from detkit.ops import roi_align


class MaskHead(nn.Module):
    """Convs, upsampling and per-class mask logits.

    Args:
        in_channels: channels of the pooled features (the FPN's, 256).
        num_classes: number of object classes (no background).
        conv_channels: output channels of each 3x3 conv (four 256 in Mask R-CNN).
        dilation: dilation of the 3x3 convs.
        deconv_channels: output channels of the transposed conv.

    Parameter layout: ``convs.<i>.0.*`` (3x3 convs), ``deconv.*``, ``mask_logits.*``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        conv_channels: Sequence[int] = (256, 256, 256, 256),
        dilation: int = 1,
        deconv_channels: int = 256,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MaskHead: num_classes must be >= 1 (object classes), got {num_classes}")
        layers = []
        channels = in_channels
        for out_channels in conv_channels:
            layers.append(ConvNormAct(channels, out_channels, 3, dilation=dilation, norm=None))
            channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(channels, deconv_channels, kernel_size=2, stride=2)
        self.mask_logits = nn.Conv2d(deconv_channels, num_classes, kernel_size=1)
        self.num_classes = num_classes
        # torchvision's initialisation: He normal (fan_out) weights, zero conv biases.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: Tensor) -> Tensor:
        """Mask logits.

        Args:
            features: ``[R, in_channels, S, S]`` pooled RoI features (``S = 14``).

        Returns:
            ``[R, num_classes, 2S, 2S]`` logits of the mask of each class inside each RoI.
        """
        return self.mask_logits(F.relu(self.deconv(self.convs(features))))


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int) -> Tensor:
    """Crop and resize each box's matched gt mask to ``size x size`` (the mask loss targets).

    RoIAlign of the full-image mask (``aligned=False``, adaptive sampling), as torchvision's
    ``project_masks_on_boxes``; values are fractions in [0, 1].

    Args:
        gt_masks: ``[G, H, W]`` {0, 1} masks of one image.
        boxes: ``[P, 4]`` xyxy RoIs in pixels of that image.
        matched_idxs: ``[P]`` int64 index of each RoI's gt mask.
        size: output side ``M``.

    Returns:
        ``[P, M, M]`` targets, dtype of ``boxes``.
    """
    rois = torch.cat([matched_idxs[:, None].to(boxes.dtype), boxes], dim=1)
    return roi_align(gt_masks[:, None].to(boxes.dtype), rois, (size, size), 1.0)[:, 0]


def mask_rcnn_loss(mask_logits: Tensor, labels: Tensor, mask_targets: Tensor) -> Tensor:
    """Binary cross-entropy of the mask of each RoI's own class, averaged over pixels and RoIs.

    Args:
        mask_logits: ``[P, K, M, M]`` logits of the positive RoIs.
        labels: ``[P]`` int64 0-based class of each RoI's gt.
        mask_targets: ``[P, M, M]`` targets in [0, 1].

    Returns:
        A scalar; ``0 * mask_logits.sum()`` (still connected to the graph) when ``P == 0``.
    """
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    selected = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(selected, mask_targets)


def _expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Grow boxes about their centres by ``scale`` (torchvision's ``expand_boxes`` arithmetic)."""
    half_widths = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_heights = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centres_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centres_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack(
        (centres_x - half_widths, centres_y - half_heights, centres_x + half_widths, centres_y + half_heights), dim=1
    )


def _interpolation_matrix(starts: Tensor, lengths: Tensor, source_size: int, image_size: int) -> Tensor:
    """Per box, the matrix that resizes a mask along one axis and places it in the image.

    Row ``p`` holds the bilinear weights of image pixel ``p``, which is pixel ``p - start`` of the
    box's mask resized to ``length`` pixels as by ``F.interpolate(mode="bilinear",
    align_corners=False, size=length)``: PyTorch's ``area_pixel_compute_source_index`` in float32,
    source position ``(i + 0.5) * source_size / length - 0.5`` clamped at 0, two neighbours.
    Rows of pixels outside the box are zero.

    Args:
        starts: ``[N]`` int64 first pixel of each box along the axis.
        lengths: ``[N]`` int64 box lengths in pixels (>= 1).
        source_size: length of the (padded) masks along the axis.
        image_size: image length along the axis.

    Returns:
        ``[N, image_size, source_size]`` float32 weights.
    """
    pixels = torch.arange(image_size, device=starts.device)
    local = pixels[None, :] - starts[:, None]  # [N, image_size]
    inside = (local >= 0) & (local < lengths[:, None])
    scale = torch.tensor(float(source_size), dtype=torch.float32, device=starts.device) / lengths.to(torch.float32)
    source = (scale[:, None] * (local.to(torch.float32) + 0.5) - 0.5).clamp(min=0)
    index0 = source.to(torch.int64).clamp(max=source_size - 1)
    weight1 = (source - index0.to(torch.float32)).clamp(0, 1)
    index1 = (index0 + 1).clamp(max=source_size - 1)
    weight1 = torch.where(inside, weight1, torch.zeros_like(weight1))
    weight0 = torch.where(inside, 1 - weight1, torch.zeros_like(weight1))
    matrix = torch.zeros((*local.shape, source_size), dtype=torch.float32, device=starts.device)
    matrix.scatter_add_(2, index0[..., None], weight0[..., None])
    matrix.scatter_add_(2, index1[..., None], weight1[..., None])
    return matrix


def paste_masks_in_image(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1) -> Tensor:
    """Paste box-relative masks into full-image masks, vectorised over boxes.

    Same geometry as torchvision's ``paste_masks_in_image``: each ``M x M`` mask is padded by
    ``padding`` zeros on every side and its box grown by ``(M + 2 * padding) / M`` to match; the
    grown box is truncated to integer pixels ``(x1, y1, x2, y2)`` and the padded mask is resized
    bilinearly to ``(y2 - y1 + 1) x (x2 - x1 + 1)`` pixels (the "+1" is the inclusive-pixel
    convention of Detectron's paste), then written at ``(x1, y1)``, cut at the image borders.

    The resize-and-place is one product per mask, ``Wy @ mask @ Wx^T``, with the sparse bilinear
    weight matrices of :func:`_interpolation_matrix` (zero rows outside the box). Values agree with
    torchvision's per-mask ``F.interpolate`` loop to float32 rounding (about 1e-6: the kernels sum
    the same two products per axis in another order), so masks thresholded at 0.5 agree except for
    values within that rounding of 0.5.

    Args:
        masks: ``[N, M, M]`` mask probabilities inside each box.
        boxes: ``[N, 4]`` xyxy boxes in pixels of the target image.
        image_size: ``(height, width)`` of the target image.
        padding: zeros added around each mask before resizing.

    Returns:
        ``[N, height, width]`` masks, zero outside the boxes, dtype of ``masks``.
    """
    height, width = image_size
    # No branch on the number of masks (export-clean): with none, every product is [0, ...].
    source_size = masks.shape[-1] + 2 * padding
    padded = F.pad(masks, (padding,) * 4)
    grown = _expand_boxes(boxes, float(source_size) / masks.shape[-1]).to(torch.int64)
    box_widths = (grown[:, 2] - grown[:, 0] + 1).clamp(min=1)
    box_heights = (grown[:, 3] - grown[:, 1] + 1).clamp(min=1)
    along_x = _interpolation_matrix(grown[:, 0], box_widths, source_size, width).to(masks.dtype)
    along_y = _interpolation_matrix(grown[:, 1], box_heights, source_size, height).to(masks.dtype)
    # Width first, then height, as PyTorch's bilinear kernel nests its axes.
    return torch.bmm(along_y, torch.bmm(padded, along_x.transpose(1, 2)))
