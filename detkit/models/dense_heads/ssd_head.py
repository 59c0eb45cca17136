"""SSD's prediction head and SSDLite's depthwise-separable variant.

For each feature map ``k`` one predictor gives ``P_k * (num_classes + 1)`` class logits and one
gives ``P_k * 4`` box deltas per cell (``P_k`` default boxes per cell): a 3x3 conv in SSD (Liu et
al. 2016, sec. 2.1), a depthwise 3x3 conv + BatchNorm + ReLU6 followed by a 1x1 conv in SSDLite
(MobileNetV2 paper, sec. 6.2).

Output order (torchvision's ``SSDScoringHead``): the ``P_k * K`` channels of a cell are read as
``[P_k, K]`` (box-major), and anchors are flattened level by level, then ``y``, ``x``, box, the
order of :class:`~detkit.models.default_boxes.DefaultBoxGenerator`.

Classes: index 0 of the logits is the background, object class ``c`` (detkit's 0-based label) is
index ``c + 1``, as torchvision's, so converted weights need no reordering.

The head is a :class:`~detkit.models.dense_heads.base.DenseHead`; its priors are the default boxes
(``[A, 4]`` xyxy pixels of the resized image). Numbers follow torchvision's ``SSD``:

* Matching (sec. 2.2 "Matching strategy"): each default box takes the gt box it overlaps most
  when the IoU is at least ``iou_thresh`` (0.5), and each gt box also takes its best default box
  (:class:`~detkit.models.matcher.SSDMatcher`).
* Loss (sec. 2.2 "Training objective"): smooth L1 (``beta = 1``) on the ``(10, 10, 5, 5)``-weighted
  deltas of the positives plus cross entropy on the positives and the hardest negatives,
  ``neg_pos_ratio`` (3) per positive per image ("hard negative mining"); both sums are divided by
  the number of positives in the batch (at least 1). An image without positives would then add
  nothing (torchvision, the paper), so it keeps its ``empty_image_negatives`` hardest negatives
  instead (3 by default, the floor torchvision's code sketches in a commented-out line); images
  with positives keep ``3 * positives >= 3`` anyway, so batches where every image has an object
  give torchvision's loss exactly. ``empty_image_negatives=0`` is torchvision's rule.
* Detection: softmax scores; per class, the ``pre_nms_topk`` best boxes scoring above
  ``score_thresh``; class-wise NMS at ``nms_thresh``; the ``detections_per_img`` best; boxes are
  clipped to the resized image before NMS (:func:`~detkit.models.postprocess.select_detections`
  with ``topk_per="class"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.box_coder import BoxCoder
from detkit.models.dense_heads.base import DenseHead
from detkit.utils.deprecation import MovedAttribute, renamed_keyword
from detkit.models.layers import ConvNormAct
from detkit.models.losses import cross_entropy_with_hard_negative_mining, smooth_l1_loss
from detkit.models.matcher import SSDMatcher
from detkit.models.postprocess import select_detections
from detkit.ops import box_iou, clip_boxes_to_image
from detkit.structures import ShapeSpec

# SSD's box parametrisation weights (as Fast R-CNN's box head).
SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _flatten_predictions(outputs: Sequence[Tensor], num_columns: int) -> Tensor:
    """``[N, P_k * K, H_k, W_k]`` per level -> ``[N, sum_k H_k W_k P_k, K]`` (y, x, box order)."""
    flat = []
    for output in outputs:
        batch, _, height, width = output.shape
        output = output.view(batch, -1, num_columns, height, width).permute(0, 3, 4, 1, 2)
        flat.append(output.reshape(batch, -1, num_columns))
    return torch.cat(flat, dim=1)


class SSDHead(DenseHead):
    """SSD's head: a 3x3 conv for class logits and one for box deltas on each feature map.

    Args:
        in_channels: channels of each feature map, shallowest first; None: sized by its detector
            from the backbone's ``output_shape()``.
        num_anchors: default boxes per cell of each feature map
            (``DefaultBoxGenerator.num_anchors_per_location()``).
        num_classes: object classes (the background logit is added here).
        iou_thresh: IoU at or above which a default box matches a gt box.
        neg_pos_ratio: hard negatives kept per positive.
        empty_image_negatives: hard negatives kept in an image without positives (0: none, as
            torchvision, so images without objects do not train).
        bbox_reg_weights: ``(wx, wy, ww, wh)`` of the box coder.
        score_thresh: class scores at or below this are dropped at detection.
        nms_thresh: IoU above which NMS drops a box of the same class.
        pre_nms_topk: boxes kept per class before NMS.
        detections_per_img: detections kept per image after NMS.
        nms_method, class_agnostic_nms, soft_nms_method, soft_nms_sigma, soft_nms_min_score: the NMS
            (:class:`~detkit.models.postprocess.NMSOptions`; greedy NMS per class by default).
        topk_candidates: deprecated name of ``pre_nms_topk``.

    Attributes:
        cls_logits: one predictor per level, ``[N, C_k, H, W] -> [N, P_k * (num_classes + 1), H, W]``.
        bbox_pred: one predictor per level, ``[N, C_k, H, W] -> [N, P_k * 4, H, W]``.
    """

    topk_candidates = MovedAttribute("pre_nms_topk")

    def __init__(
        self,
        in_channels: Sequence[int] | None,
        num_anchors: Sequence[int],
        num_classes: int,
        *,
        iou_thresh: float = 0.5,
        neg_pos_ratio: int = 3,
        empty_image_negatives: int = 3,
        bbox_reg_weights: tuple[float, float, float, float] = SSD_BOX_WEIGHTS,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        pre_nms_topk: int = 400,
        detections_per_img: int = 200,
        topk_candidates: int | None = None,
        nms_method: str = "hard",
        class_agnostic_nms: bool = False,
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes (object classes, background excluded) must be >= 1, got {num_classes}")
        self.in_channels: list[int] | None = None
        self.num_anchors = [int(a) for a in num_anchors]
        self.num_classes = num_classes
        self.configure(
            iou_thresh=iou_thresh, neg_pos_ratio=neg_pos_ratio, empty_image_negatives=empty_image_negatives,
            bbox_reg_weights=bbox_reg_weights, score_thresh=score_thresh, nms_thresh=nms_thresh,
            pre_nms_topk=renamed_keyword(
                type(self).__name__, "topk_candidates", topk_candidates, "pre_nms_topk", pre_nms_topk, 400
            ),
            detections_per_img=detections_per_img, nms_method=nms_method, class_agnostic_nms=class_agnostic_nms,
            soft_nms_method=soft_nms_method, soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        self.cls_logits = nn.ModuleList()
        self.bbox_pred = nn.ModuleList()
        if in_channels is not None:
            self._build([int(c) for c in in_channels])

    def configure(
        self,
        *,
        iou_thresh: float | None = None,
        neg_pos_ratio: int | None = None,
        empty_image_negatives: int | None = None,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        pre_nms_topk: int | None = None,
        detections_per_img: int | None = None,
        topk_candidates: int | None = None,
        nms_method: str | None = None,
        class_agnostic_nms: bool | None = None,
        soft_nms_method: str | None = None,
        soft_nms_sigma: float | None = None,
        soft_nms_min_score: float | None = None,
    ) -> None:
        """Set the training and detection settings that are given (see the class docstring)."""
        self.configure_nms(
            nms_method=nms_method, class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method,
            soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        if topk_candidates is not None:
            pre_nms_topk = topk_candidates
        for name, value in (("neg_pos_ratio", neg_pos_ratio), ("empty_image_negatives", empty_image_negatives)):
            if value is not None and value < 0:
                raise ValueError(f"neg_pos_ratio and empty_image_negatives must be >= 0, got {name}={value}")
        if iou_thresh is not None:
            self.matcher = SSDMatcher(iou_thresh)
        if bbox_reg_weights is not None:
            self.box_coder = BoxCoder(bbox_reg_weights)
        self.set_given(
            neg_pos_ratio=neg_pos_ratio, empty_image_negatives=empty_image_negatives, score_thresh=score_thresh,
            nms_thresh=nms_thresh, pre_nms_topk=pre_nms_topk, detections_per_img=detections_per_img,
        )  # fmt: skip

    # ------------------------------------------------------------------------------- layers

    @property
    def is_sized(self) -> bool:
        """Whether the predictors exist (``in_channels`` known)."""
        return self.in_channels is not None

    def _build(self, in_channels: list[int]) -> None:
        if len(in_channels) != len(self.num_anchors):
            raise ValueError(
                f"got {len(in_channels)} in_channels but {len(self.num_anchors)} num_anchors (one each per feature map)"
            )
        self.in_channels = in_channels
        levels = list(zip(self.in_channels, self.num_anchors))
        num_columns = self.num_classes + 1  # background first
        self.cls_logits.extend(self._predictor(channels, anchors * num_columns) for channels, anchors in levels)
        self.bbox_pred.extend(self._predictor(channels, anchors * 4) for channels, anchors in levels)
        self._init_weights()

    def bind_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str = "backbone") -> None:
        """Build from the channels of ``shapes`` (one level per feature map, in order), or check them.

        Raises:
            ValueError: the given ``in_channels`` differ from the channels of ``shapes``.
        """
        channels = [shape.channels for shape in shapes.values()]
        if self.in_channels is None:
            self._build(channels)
        elif channels != list(self.in_channels):
            raise ValueError(
                f"{source} gives channels {channels} but head expects {self.in_channels}; "
                f"leave the head's in_channels out to size it from the {source}"
            )

    def _predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def _init_weights(self) -> None:
        # SSD (and torchvision's SSDHead): Xavier-uniform weights, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Predict class logits and box deltas for every default box.

        Args:
            features: ``[N, C_k, H_k, W_k]`` feature maps, shallowest first.

        Returns:
            ``(cls_logits [N, A, num_classes + 1], bbox_deltas [N, A, 4])`` with
            ``A = sum_k H_k * W_k * P_k`` in default-box order; column 0 of the logits is the
            background.
        """
        name = type(self).__name__
        if self.in_channels is None:
            raise RuntimeError(f"{name} was built without in_channels: pass them or let its detector size it")
        if len(features) != len(self.cls_logits):
            raise ValueError(f"{name} has {len(self.cls_logits)} levels, got {len(features)} feature maps")
        for level, (feature, channels) in enumerate(zip(features, self.in_channels)):
            if feature.dim() != 4 or feature.shape[1] != channels:
                expected = f"[N, {channels}, H, W]"
                raise ValueError(f"{name}: feature map {level} must be {expected}, got {list(feature.shape)}")
        logits = _flatten_predictions([conv(x) for conv, x in zip(self.cls_logits, features)], self.num_classes + 1)
        deltas = _flatten_predictions([conv(x) for conv, x in zip(self.bbox_pred, features)], 4)
        return logits, deltas

    # ------------------------------------------------------------------------------- training

    def match(self, anchors: Tensor, targets: Sequence[Mapping[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """Assign a class and a gt box to every default box of every image.

        Args:
            anchors: ``[A, 4]`` default boxes, xyxy pixels of the resized image.
            targets: per image ``boxes [N_i, 4]`` in the same pixels and ``labels [N_i]`` 0-based.

        Returns:
            ``(labels [B, A] int64, matched_boxes [B, A, 4])``: label ``c + 1`` for a default box
            matched to a gt of class ``c``, 0 for the background; ``matched_boxes`` holds the
            matched gt box (garbage where the label is 0).
        """
        num_images, num_anchors = len(targets), anchors.shape[0]
        labels = torch.zeros((num_images, num_anchors), dtype=torch.int64, device=anchors.device)
        matched_boxes = anchors.new_zeros((num_images, num_anchors, 4))
        for index, target in enumerate(targets):
            boxes, classes = target["boxes"], target["labels"]
            if boxes.shape[0] == 0:
                continue
            matches = self.matcher(box_iou(boxes, anchors))  # [A]: gt index or -1
            safe = matches.clamp(min=0)
            labels[index] = torch.where(matches >= 0, classes[safe] + 1, 0)
            matched_boxes[index] = boxes[safe]
        return labels, matched_boxes

    def loss(
        self,
        raw: tuple[Tensor, Tensor],
        priors: Tensor,
        targets: Sequence[Mapping[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor]:
        """SSD's multibox loss.

        Args:
            raw: ``(cls_logits [B, A, num_classes + 1], bbox_deltas [B, A, 4])`` from :meth:`forward`.
            priors: ``[A, 4]`` default boxes, xyxy pixels of the resized image.
            targets: per image ``boxes [N_i, 4]`` in pixels of the resized image, ``labels [N_i]``.
            image_sizes: unused (every default box takes part).

        Returns:
            ``{"loss_classifier": ..., "loss_box_reg": ...}``, each a scalar divided by the number
            of positive default boxes in the batch (at least 1).
        """
        cls_logits, bbox_deltas = raw
        labels, matched_boxes = self.match(priors, targets)
        positive = labels > 0
        anchors_of_positives = priors.expand(labels.shape[0], -1, -1)[positive]
        regression_targets = self.box_coder.encode(matched_boxes[positive], anchors_of_positives)
        box_loss = smooth_l1_loss(bbox_deltas[positive], regression_targets, beta=1.0, reduction="sum")
        cls_loss, num_positives = cross_entropy_with_hard_negative_mining(cls_logits, labels, self.neg_pos_ratio)
        empty = ~positive.any(dim=1)  # [B] images without positives: every default box is background
        if self.empty_image_negatives > 0 and bool(empty.any()):
            empty_logits = cls_logits[empty]  # [E, A, K]
            background = empty_logits.new_zeros(empty_logits.shape[:2], dtype=torch.int64)
            losses = F.cross_entropy(empty_logits.transpose(1, 2), background, reduction="none")  # [E, A]
            cls_loss = cls_loss + losses.topk(min(self.empty_image_negatives, losses.shape[1]), dim=1).values.sum()
        normaliser = num_positives.clamp(min=1).to(cls_logits.dtype)
        return {"loss_classifier": cls_loss / normaliser, "loss_box_reg": box_loss / normaliser}

    # ------------------------------------------------------------------------------- detection

    def predict(
        self, raw: tuple[Tensor, Tensor], priors: Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Scores, decoded boxes, per-class top-k and class-wise NMS, in pixels of the resized image.

        Args:
            raw: ``(cls_logits [B, A, num_classes + 1], bbox_deltas [B, A, 4])``.
            priors: ``[A, 4]`` default boxes.
            image_sizes: ``(height, width)`` of the resized images (one fixed size).

        Returns:
            Per image ``boxes [K, 4]``, ``scores [K]``, ``labels [K]`` (0-based), by decreasing score.
        """
        cls_logits, bbox_deltas = raw
        num_images, num_anchors, _ = cls_logits.shape
        scores = F.softmax(cls_logits, dim=-1)[..., 1:]  # [B, A, C], background dropped
        boxes = self.box_coder.decode(bbox_deltas.reshape(-1, 4), priors.repeat(num_images, 1))
        boxes = clip_boxes_to_image(boxes, tuple(image_sizes[0])).view(num_images, num_anchors, 4)
        detections = []
        for image_scores, image_boxes in zip(scores, boxes):
            kept = select_detections(
                image_boxes, image_scores, score_thresh=self.score_thresh, pre_nms_topk=self.pre_nms_topk,
                topk_per="class", nms_thresh=self.nms_thresh, detections_per_img=self.detections_per_img,
                **self.nms_options(),
            )  # fmt: skip
            detections.append(kept.as_dict())
        return detections


class SSDLiteHead(SSDHead):
    """SSDLite's head: depthwise 3x3 conv + norm + ReLU6, then a 1x1 conv, per level and output.

    Keys of a predictor: ``0.0`` depthwise conv, ``0.1`` norm, ``1`` the 1x1 conv (torchvision's
    ``_prediction_block``).

    Args:
        in_channels: channels of each feature map, shallowest first (None: sized by its detector).
        num_anchors: default boxes per cell of each feature map.
        num_classes: object classes (the background logit is added here).
        norm: norm kind of the depthwise convs (``"bn"`` as torchvision).
        norm_eps: norm ``eps`` (1e-3, torchvision's SSDLite).
        norm_momentum: BatchNorm momentum (0.03, torchvision's SSDLite).
        iou_thresh, neg_pos_ratio, empty_image_negatives, bbox_reg_weights, score_thresh,
            nms_thresh, pre_nms_topk, detections_per_img, topk_candidates, nms_method,
            class_agnostic_nms, soft_nms_method, soft_nms_sigma, soft_nms_min_score: as :class:`SSDHead`
            (same defaults; torchvision's SSDLite320 uses 0.001, 0.55, 300 and 300).
    """

    def __init__(
        self,
        in_channels: Sequence[int] | None,
        num_anchors: Sequence[int],
        num_classes: int,
        *,
        norm: str = "bn",
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.03,
        iou_thresh: float = 0.5,
        neg_pos_ratio: int = 3,
        empty_image_negatives: int = 3,
        bbox_reg_weights: tuple[float, float, float, float] = SSD_BOX_WEIGHTS,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        pre_nms_topk: int = 400,
        detections_per_img: int = 200,
        topk_candidates: int | None = None,
        nms_method: str = "hard",
        class_agnostic_nms: bool = False,
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
    ) -> None:
        # Plain attributes may be set before nn.Module.__init__; _predictor and _build need them.
        self.norm = norm
        self.norm_eps = norm_eps
        self.norm_momentum = norm_momentum
        super().__init__(
            in_channels, num_anchors, num_classes, iou_thresh=iou_thresh, neg_pos_ratio=neg_pos_ratio,
            empty_image_negatives=empty_image_negatives, bbox_reg_weights=bbox_reg_weights,
            score_thresh=score_thresh, nms_thresh=nms_thresh, pre_nms_topk=pre_nms_topk,
            detections_per_img=detections_per_img, topk_candidates=topk_candidates, nms_method=nms_method,
            class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method, soft_nms_sigma=soft_nms_sigma,
            soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip

    def _build(self, in_channels: list[int]) -> None:
        super()._build(in_channels)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = self.norm_momentum

    def _predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Sequential(
            ConvNormAct(
                in_channels, in_channels, 3, groups=in_channels, norm=self.norm, norm_eps=self.norm_eps,
                activation=nn.ReLU6,
            ),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )

    def _init_weights(self) -> None:
        # torchvision's SSDLite (_normal_init): N(0, 0.03) conv weights, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.03)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
