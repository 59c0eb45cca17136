"""Region Proposal Network (Ren et al. 2015) with torchvision's proposal and loss semantics.

Head: a shared 3x3 conv with ReLU on every level, then 1x1 convs giving one objectness logit and
four box deltas per anchor. Parameter names follow torchvision's ``RPNHead``
(``conv.0.0``, ``cls_logits``, ``bbox_pred``).

Proposals, per image (torchvision's ``RegionProposalNetwork.filter_proposals``):

1. on each level separately, keep the ``pre_nms_topk`` anchors with the highest objectness
   logits (``_get_top_n_idx``: per level, so small levels are not crowded out), for the whole
   batch at once (:func:`~detkit.models.postprocess.topk_per_level`);
2. decode their deltas (weights ``(1, 1, 1, 1)``) and clip them to the image; then
   :func:`~detkit.models.postprocess.select_detections` keeps scores ``sigmoid(logit) >=
   score_thresh``, drops boxes narrower or lower than ``1e-3`` px,
3. runs NMS at ``nms_thresh`` separately per level (levels never suppress each other),
4. and keeps the ``post_nms_topk`` best, by decreasing score, over all levels.

``pre_nms_topk`` and ``post_nms_topk`` have separate training and test values.

The RPN is a :class:`~detkit.models.dense_heads.base.DenseHead`: ``forward(features)`` gives the
per-level maps, :meth:`RPN.loss` and :meth:`RPN.predict` take them with the anchors, and
:meth:`RPN.propose` is the two-stage detector's stage (proposals, and the losses in training).

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
from detkit.models.dense_heads.base import DenseHead
from detkit.utils.deprecation import MovedAttribute, renamed_keyword
from detkit.models.layers import ConvNormAct
from detkit.models.losses import smooth_l1_loss
from detkit.models.matcher import Matcher
from detkit.models.postprocess import select_detections, topk_per_level
from detkit.models.sampler import BalancedPositiveNegativeSampler
from detkit.ops import box_iou, clip_boxes_to_image
from detkit.structures import ImageList, ShapeSpec, format_shapes

# Proposals narrower or lower than this (pixels) are dropped (torchvision's constant).
MIN_PROPOSAL_SIZE = 1e-3


class RPNHead(nn.Module):
    """Shared conv(s), objectness logits and box deltas, applied to every level.

    Args:
        in_channels: channels of every input level; None: sized by its detector from the neck's
            ``output_shape()`` (every level the RPN reads must then have the same channels).
        num_anchors: anchors per feature-map cell.
        conv_depth: number of 3x3 conv + ReLU layers before the predictions.
    """

    def __init__(self, in_channels: int | None = None, num_anchors: int = 3, conv_depth: int = 1) -> None:
        super().__init__()
        self.in_channels = None
        self.num_anchors = num_anchors
        self.conv_depth = conv_depth
        self.conv = nn.Sequential()
        self.cls_logits: nn.Conv2d | None = None
        self.bbox_pred: nn.Conv2d | None = None
        if in_channels is not None:
            self._build(int(in_channels))

    @property
    def is_sized(self) -> bool:
        """Whether the layers exist (``in_channels`` known)."""
        return self.in_channels is not None

    def _build(self, in_channels: int) -> None:
        self.in_channels = in_channels
        for _ in range(self.conv_depth):
            self.conv.append(ConvNormAct(in_channels, in_channels, 3, norm=None))
        self.cls_logits = nn.Conv2d(in_channels, self.num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, self.num_anchors * 4, kernel_size=1)
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def bind_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str = "neck") -> None:
        """Build from the channels of ``shapes`` (one value for every level), or check ``in_channels``.

        Raises:
            ValueError: the levels' channels differ, or differ from the given ``in_channels``.
        """
        channels = sorted({shape.channels for shape in shapes.values()})
        if len(channels) != 1:
            raise ValueError(
                f"RPNHead shares its convs across levels, but the {source}'s {format_shapes(shapes)} differ in channels"
            )
        if self.in_channels is None:
            self._build(channels[0])
        elif self.in_channels != channels[0]:
            raise ValueError(
                f"RPNHead: in_channels={self.in_channels} but the {source}'s levels {format_shapes(shapes)} have "
                f"{channels[0]} channels; leave in_channels out to size it from the {source}"
            )

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level, ``[B, A, H, W]`` logits and ``[B, 4A, H, W]`` deltas (anchor-major: ``4a:4a+4``)."""
        if self.cls_logits is None or self.bbox_pred is None:
            raise RuntimeError("RPNHead was built without in_channels: pass in_channels or let its detector size it")
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


def _anchors_per_level(logits: Sequence[Tensor]) -> list[int]:
    """Anchors of each level from its ``[B, A, H, W]`` logits."""
    return [int(x.shape[1] * x.shape[2] * x.shape[3]) for x in logits]


class RPN(DenseHead):
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
        pre_nms_topk_train: per level, candidates kept before NMS in training.
        pre_nms_topk_test: same at test time.
        post_nms_topk_train: proposals kept per image after NMS in training.
        post_nms_topk_test: same at test time.
        nms_thresh: NMS IoU threshold.
        score_thresh: proposals need ``sigmoid(logit) >= score_thresh``.
        pre_nms_top_n_train, pre_nms_top_n_test, post_nms_top_n_train, post_nms_top_n_test:
            deprecated names of the four ``*_topk_*`` arguments.
    """

    pre_nms_top_n_train = MovedAttribute("pre_nms_topk_train")
    pre_nms_top_n_test = MovedAttribute("pre_nms_topk_test")
    post_nms_top_n_train = MovedAttribute("post_nms_topk_train")
    post_nms_top_n_test = MovedAttribute("post_nms_topk_test")

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
        pre_nms_topk_train: int = 2000,
        pre_nms_topk_test: int = 1000,
        post_nms_topk_train: int = 2000,
        post_nms_topk_test: int = 1000,
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
        pre_nms_top_n_train: int | None = None,
        pre_nms_top_n_test: int | None = None,
        post_nms_top_n_train: int | None = None,
        post_nms_top_n_test: int | None = None,
    ) -> None:
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.in_levels = None if in_levels is None else tuple(in_levels)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.anchor_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_topk_train = renamed_keyword(
            "RPN", "pre_nms_top_n_train", pre_nms_top_n_train, "pre_nms_topk_train", pre_nms_topk_train, 2000
        )
        self.pre_nms_topk_test = renamed_keyword(
            "RPN", "pre_nms_top_n_test", pre_nms_top_n_test, "pre_nms_topk_test", pre_nms_topk_test, 1000
        )
        self.post_nms_topk_train = renamed_keyword(
            "RPN", "post_nms_top_n_train", post_nms_top_n_train, "post_nms_topk_train", post_nms_topk_train, 2000
        )
        self.post_nms_topk_test = renamed_keyword(
            "RPN", "post_nms_top_n_test", post_nms_top_n_test, "post_nms_topk_test", post_nms_topk_test, 1000
        )
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh

    def extra_repr(self) -> str:
        return (
            f"in_levels={self.in_levels}, pre_nms_topk=(train {self.pre_nms_topk_train}, "
            f"test {self.pre_nms_topk_test}), post_nms_topk=(train {self.post_nms_topk_train}, "
            f"test {self.post_nms_topk_test}), nms_thresh={self.nms_thresh}, score_thresh={self.score_thresh}, "
            f"matcher={self.anchor_matcher}, sampler={self.sampler}"
        )

    # ------------------------------------------------------------------ sizing, levels

    @property
    def is_sized(self) -> bool:
        """Whether the head's layers exist."""
        return getattr(self.head, "is_sized", True)

    def bind_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str = "neck") -> None:
        """Size (or check) the head from the shapes of the levels the RPN reads.

        Raises:
            ValueError: an ``in_levels`` entry is not in ``shapes``, or the head does not fit them.
        """
        names = list(shapes) if self.in_levels is None else list(self.in_levels)
        missing = [name for name in names if name not in shapes]
        if missing:
            raise ValueError(f"RPN: in_levels {missing} are not among the {source}'s levels {list(shapes)}")
        bind = getattr(self.head, "bind_in_shapes", None)
        if bind is not None:
            bind({name: shapes[name] for name in names}, source)

    def _maps(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        names = list(features) if self.in_levels is None else list(self.in_levels)
        missing = [name for name in names if name not in features]
        if missing:
            raise KeyError(f"RPN: feature levels {missing} are missing; got {list(features)}")
        return [features[name] for name in names]

    def anchors(self, images: ImageList, features: Mapping[str, Tensor]) -> Tensor:
        """``[A, 4]`` anchors of the levels read, xyxy pixels of the padded batch (same for every image)."""
        return self.anchor_generator(images, self._maps(features))[0]

    # ------------------------------------------------------------------ DenseHead

    def forward(self, features: Mapping[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level read, ``[B, A, H_l, W_l]`` objectness logits and ``[B, 4A, H_l, W_l]`` deltas.

        Args:
            features: level name -> ``[B, C, H_l, W_l]``.
        """
        return self.head(self._maps(features))

    def loss(
        self,
        raw: tuple[list[Tensor], list[Tensor]],
        priors: Tensor,
        targets: Sequence[Mapping[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
    ) -> dict[str, Tensor]:
        """``loss_objectness`` and ``loss_rpn_box_reg`` (see the module docstring).

        Args:
            raw: :meth:`forward`'s output.
            priors: ``[A, 4]`` anchors (:meth:`anchors`).
            targets: per image ``boxes [G_i, 4]`` in pixels of the resized image.
            image_sizes: ``(height, width)`` of each resized image (unused: anchors over the
                padding are matched like any other, as torchvision).
        """
        logits, deltas = _flatten_levels(*raw)
        return self._losses(priors, logits, deltas, targets)

    def predict(
        self, raw: tuple[list[Tensor], list[Tensor]], priors: Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Proposals per image: ``boxes [P_i, 4]`` (no gradient, clipped to the image) and their
        objectness ``scores [P_i]``, by decreasing score; the train or test numbers by mode."""
        logits, deltas = _flatten_levels(*raw)
        return self._select_proposals(priors, logits, deltas, image_sizes, _anchors_per_level(raw[0]))

    def propose(
        self,
        images: ImageList,
        features: Mapping[str, Tensor],
        targets: Sequence[Mapping[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """The two-stage detector's first stage: proposals for each image, and the losses in training.

        Args:
            images: the padded, resized batch (``image_sizes`` bound the proposals).
            features: level name -> ``[B, C, H_l, W_l]``.
            targets: per image ``boxes [G_i, 4]`` in pixels of the resized image; needed in training.

        Returns:
            ``(proposals, losses)``: per image ``[P_i, 4]`` xyxy boxes (no gradient) by decreasing
            objectness; ``losses`` has ``loss_objectness`` and ``loss_rpn_box_reg`` in training,
            else it is ``{}``.
        """
        maps = self._maps(features)
        level_logits, level_deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)[0]
        logits, deltas = _flatten_levels(level_logits, level_deltas)
        selected = self._select_proposals(anchors, logits, deltas, images.image_sizes, _anchors_per_level(level_logits))
        proposals = [selection["boxes"] for selection in selected]
        if not self.training:
            return proposals, {}
        if targets is None:
            raise ValueError("RPN: targets are required in training mode")
        return proposals, self._losses(anchors, logits, deltas, targets)

    # ------------------------------------------------------------------ internals

    def _select_proposals(
        self,
        anchors: Tensor,
        logits: Tensor,
        deltas: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        anchors_per_level: list[int],
    ) -> list[dict[str, Tensor]]:
        """Steps 1-4 of the module docstring. ``anchors [N, 4]``, ``logits [B, N]``, ``deltas [B, N, 4]``.

        Only the pre-NMS candidates are decoded (decoding is per anchor, so the boxes are those
        torchvision gets by decoding every anchor first).
        """
        pre_nms_topk = self.pre_nms_topk_train if self.training else self.pre_nms_topk_test
        post_nms_topk = self.post_nms_topk_train if self.training else self.post_nms_topk_test
        logits, deltas = logits.detach(), deltas.detach()
        indices, levels = topk_per_level(logits, anchors_per_level, pre_nms_topk)
        batch_index = torch.arange(logits.shape[0], device=logits.device)[:, None]
        scores = torch.sigmoid(logits[batch_index, indices])
        proposals = self.box_coder.decode(deltas[batch_index, indices].reshape(-1, 4), anchors[indices].reshape(-1, 4))
        proposals = proposals.view(*indices.shape, 4)

        selected = []
        for boxes, image_scores, image_levels, image_size in zip(proposals, scores, levels, image_sizes):
            kept = select_detections(
                clip_boxes_to_image(boxes, image_size), image_scores, image_levels,
                score_thresh=self.score_thresh, thresh_inclusive=True, min_size=MIN_PROPOSAL_SIZE,
                nms_thresh=self.nms_thresh, detections_per_img=post_nms_topk,
            )  # fmt: skip
            selected.append({"boxes": kept.boxes, "scores": kept.scores})
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
