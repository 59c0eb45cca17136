"""Region Proposal Network (Ren et al. 2015) with torchvision's proposal and loss semantics.

Head: a shared 3x3 conv with ReLU on every level, then 1x1 convs giving one objectness logit and
four box deltas per anchor. Parameter names follow torchvision's ``RPNHead``
(``conv.0.0``, ``cls_logits``, ``bbox_pred``).

Proposals, per image (torchvision's ``RegionProposalNetwork.filter_proposals``):

1. on each level separately, keep the ``pre_nms_top_n`` anchors with the highest objectness
   logits (``_get_top_n_idx``: per level, so small levels are not crowded out);
2. decode their deltas (weights ``(1, 1, 1, 1)``), clip to the image, drop boxes narrower or
   lower than ``1e-3`` px, take ``sigmoid`` of the logits as scores and keep scores
   ``>= score_thresh``;
3. NMS at ``nms_thresh``, separately per level (levels never suppress each other);
4. keep the ``post_nms_top_n`` best, by decreasing score, over all levels.

``pre_nms_top_n`` and ``post_nms_top_n`` have separate training and test values.

Loss: anchors are matched to gt boxes by IoU (``>= 0.7`` positive, ``< 0.3`` negative, each gt's
best anchors positive too), 256 anchors per image are sampled at most half positive (global RNG,
as torchvision), objectness is binary cross-entropy averaged over the sampled anchors, and box
regression is smooth L1 with ``beta = 1/9`` on the positives, summed and divided by the number of
sampled anchors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.anchors import AnchorGenerator
from detkit.models.box_coder import BoxCoder
from detkit.models.layers import ConvNormAct
from detkit.models.losses import smooth_l1_loss
from detkit.models.matcher import Matcher
from detkit.models.sampler import BalancedPositiveNegativeSampler
from detkit.ops import batched_nms, box_iou, clip_boxes_to_image
from detkit.structures import ImageList

# Proposals narrower or lower than this (pixels) are dropped (torchvision's constant).
MIN_PROPOSAL_SIZE = 1e-3


class RPNHead(nn.Module):
    """Shared conv(s), objectness logits and box deltas, applied to every level.

    Args:
        in_channels: channels of every input level.
        num_anchors: anchors per feature-map cell.
        conv_depth: number of 3x3 conv + ReLU layers before the predictions.
    """

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            *[ConvNormAct(in_channels, in_channels, 3, norm=None) for _ in range(conv_depth)]
        )
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        self.num_anchors = num_anchors
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level, ``[B, A, H, W]`` logits and ``[B, 4A, H, W]`` deltas (anchor-major: ``4a:4a+4``)."""
        logits, deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            logits.append(self.cls_logits(hidden))
            deltas.append(self.bbox_pred(hidden))
        return logits, deltas


def _flatten_levels(logits: list[Tensor], deltas: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[B, A, H, W]`` / ``[B, 4A, H, W]`` per level -> ``[B, sum HWA]`` and ``[B, sum HWA, 4]``,
    ordered level, then cell (row-major), then anchor: the order of :class:`AnchorGenerator`."""
    flat_logits, flat_deltas = [], []
    for level_logits, level_deltas in zip(logits, deltas):
        batch, anchors, height, width = level_logits.shape
        flat_logits.append(level_logits.permute(0, 2, 3, 1).reshape(batch, -1))
        flat_deltas.append(
            level_deltas.view(batch, anchors, 4, height, width).permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
        )
    return torch.cat(flat_logits, dim=1), torch.cat(flat_deltas, dim=1)


class RPN(nn.Module):
    """Region proposal network: head, anchors, proposal selection and losses.

    Args:
        head: the convolutional head (e.g. :class:`RPNHead`).
        anchor_generator: anchors of each level, in the head's order.
        in_levels: feature levels to use, in the anchor generator's order; None uses every level
            of the features given to :meth:`forward`, in their order.
        fg_iou_thresh: IoU at or above which an anchor is positive.
        bg_iou_thresh: IoU below which an anchor is negative.
        batch_size_per_image: anchors sampled per image for the loss.
        positive_fraction: largest positive fraction of the sample.
        pre_nms_top_n_train: per level, candidates kept before NMS in training.
        pre_nms_top_n_test: same at test time.
        post_nms_top_n_train: proposals kept per image after NMS in training.
        post_nms_top_n_test: same at test time.
        nms_thresh: NMS IoU threshold.
        score_thresh: proposals need ``sigmoid(logit) >= score_thresh``.
    """

    def __init__(
        self,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        *,
        in_levels: Sequence[str] | None = None,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n_train: int = 2000,
        pre_nms_top_n_test: int = 1000,
        post_nms_top_n_train: int = 2000,
        post_nms_top_n_test: int = 1000,
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
    ) -> None:
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.in_levels = None if in_levels is None else tuple(in_levels)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.anchor_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n_train = pre_nms_top_n_train
        self.pre_nms_top_n_test = pre_nms_top_n_test
        self.post_nms_top_n_train = post_nms_top_n_train
        self.post_nms_top_n_test = post_nms_top_n_test
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh

    def extra_repr(self) -> str:
        return (
            f"in_levels={self.in_levels}, pre_nms_top_n=(train {self.pre_nms_top_n_train}, "
            f"test {self.pre_nms_top_n_test}), post_nms_top_n=(train {self.post_nms_top_n_train}, "
            f"test {self.post_nms_top_n_test}), nms_thresh={self.nms_thresh}, score_thresh={self.score_thresh}, "
            f"matcher={self.anchor_matcher}, sampler={self.sampler}"
        )

    def _select_proposals(
        self,
        anchors: Tensor,
        logits: Tensor,
        deltas: Tensor,
        image_sizes: list[tuple[int, int]],
        anchors_per_level: list[int],
    ) -> list[Tensor]:
        """Steps 1-4 of the module docstring. ``anchors [N, 4]``, ``logits [B, N]``, ``deltas [B, N, 4]``.

        Only the pre-NMS candidates are decoded (decoding is per anchor, so the boxes are those
        torchvision gets by decoding every anchor first).
        """
        pre_nms_top_n = self.pre_nms_top_n_train if self.training else self.pre_nms_top_n_test
        post_nms_top_n = self.post_nms_top_n_train if self.training else self.post_nms_top_n_test
        logits, deltas = logits.detach(), deltas.detach()
        top_indices, top_levels = [], []
        offset = 0
        for level, level_logits in enumerate(logits.split(anchors_per_level, dim=1)):
            count = min(pre_nms_top_n, level_logits.shape[1])
            indices = level_logits.topk(count, dim=1).indices
            top_indices.append(indices + offset)
            top_levels.append(torch.full_like(indices, level))
            offset += level_logits.shape[1]
        indices, levels = torch.cat(top_indices, dim=1), torch.cat(top_levels, dim=1)
        batch_index = torch.arange(logits.shape[0], device=logits.device)[:, None]
        scores = torch.sigmoid(logits[batch_index, indices])
        proposals = self.box_coder.decode(deltas[batch_index, indices].reshape(-1, 4), anchors[indices].reshape(-1, 4))
        proposals = proposals.view(*indices.shape, 4)

        selected = []
        for boxes, image_scores, image_levels, image_size in zip(proposals, scores, levels, image_sizes):
            boxes = clip_boxes_to_image(boxes, image_size)
            widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            keep = torch.where(
                (widths >= MIN_PROPOSAL_SIZE) & (heights >= MIN_PROPOSAL_SIZE) & (image_scores >= self.score_thresh)
            )[0]
            boxes, image_scores, image_levels = boxes[keep], image_scores[keep], image_levels[keep]
            keep = batched_nms(boxes, image_scores, image_levels, self.nms_thresh)[:post_nms_top_n]
            selected.append(boxes[keep])
        return selected

    def _losses(
        self, anchors: Tensor, logits: Tensor, deltas: Tensor, targets: Sequence[Mapping[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Objectness and box losses. ``anchors [N, 4]`` (same for every image), ``logits [B, N]``,
        ``deltas [B, N, 4]``."""
        labels, matched_boxes = [], []
        for target in targets:
            gt_boxes = target["boxes"].to(anchors.dtype)
            if gt_boxes.shape[0] == 0:  # no objects: every anchor is negative
                matches = torch.full((anchors.shape[0],), Matcher.BELOW_LOW_THRESHOLD, device=anchors.device)
                gt_boxes = anchors.new_zeros((1, 4))
            else:
                matches = self.anchor_matcher(box_iou(gt_boxes, anchors))
            image_labels = (matches >= 0).to(anchors.dtype)  # 1 positive, 0 negative
            image_labels[matches == Matcher.BETWEEN_THRESHOLDS] = -1.0  # ignored
            labels.append(image_labels)
            matched_boxes.append(gt_boxes[matches.clamp(min=0)])

        positives, negatives = self.sampler(labels)
        positive = torch.where(torch.cat(positives))[0]
        sampled = torch.cat([positive, torch.where(torch.cat(negatives))[0]])
        all_anchors = anchors.repeat(len(targets), 1)
        regression_targets = self.box_coder.encode(torch.cat(matched_boxes)[positive], all_anchors[positive])
        box_loss = smooth_l1_loss(deltas.reshape(-1, 4)[positive], regression_targets, beta=1 / 9, reduction="sum")
        objectness_loss = F.binary_cross_entropy_with_logits(logits.reshape(-1)[sampled], torch.cat(labels)[sampled])
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss / sampled.numel()}

    def forward(
        self,
        images: ImageList,
        features: Mapping[str, Tensor],
        targets: Sequence[Mapping[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals for each image, and the losses in training.

        Args:
            images: the padded, resized batch (``image_sizes`` bound the proposals).
            features: level name -> ``[B, C, H_l, W_l]``.
            targets: per image ``boxes [G_i, 4]`` in pixels of the resized image; needed in training.

        Returns:
            ``(proposals, losses)``: per image ``[P_i, 4]`` xyxy boxes (no gradient) by decreasing
            objectness; ``losses`` has ``loss_objectness`` and ``loss_rpn_box_reg`` in training,
            else it is ``{}``.
        """
        names = list(features) if self.in_levels is None else list(self.in_levels)
        missing = [name for name in names if name not in features]
        if missing:
            raise KeyError(f"RPN: feature levels {missing} are missing; got {list(features)}")
        maps = [features[name] for name in names]
        level_logits, level_deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)[0]
        anchors_per_level = [int(x.shape[1] * x.shape[2] * x.shape[3]) for x in level_logits]
        logits, deltas = _flatten_levels(level_logits, level_deltas)

        proposals = self._select_proposals(anchors, logits, deltas, images.image_sizes, anchors_per_level)
        if not self.training:
            return proposals, {}
        if targets is None:
            raise ValueError("RPN: targets are required in training mode")
        return proposals, self._losses(anchors, logits, deltas, targets)
