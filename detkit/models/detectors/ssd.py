"""SSD: Single Shot MultiBox Detector (Liu et al. 2016); SSDLite is the same detector with its own backbone and head.

``images -> normalise -> resize to a fixed size -> backbone -> head (class logits and box deltas
for every default box) -> training: matching + losses / eval: decode, per-class top-k, NMS ->
boxes mapped back to the input images``. Numbers follow torchvision's ``SSD``:

* Input: ``(image - pixel_mean) / pixel_std`` on RGB in [0, 1], then a bilinear resize
  (``align_corners=False``) to ``image_size`` (torchvision's ``GeneralizedRCNNTransform`` with
  ``fixed_size``; the aspect ratio is not kept). torchvision's SSD300 feeds VGG16 0..255 pixels
  minus the Caffe mean: ``mean (0.48235, 0.45882, 0.40784)`` and ``std 1/255`` reproduce that
  (:data:`SSD_VGG_PIXEL_MEAN`, :data:`SSD_VGG_PIXEL_STD`); SSDLite uses mean = std = 0.5.
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
* Detection: softmax scores; per class, the ``topk_candidates`` best boxes scoring above
  ``score_thresh``; class-wise NMS at ``nms_thresh``; the ``detections_per_img`` best; boxes are
  clipped to the resized image before NMS, scaled back to the input image after and clipped to it
  (torchvision does not clip again, so its boxes may exceed the image by float32 rounding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.box_coder import BoxCoder
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads.ssd_head import SSDHead
from detkit.models.losses import cross_entropy_with_hard_negative_mining, smooth_l1_loss
from detkit.models.matcher import SSDMatcher
from detkit.models.preprocess import resize_boxes
from detkit.ops import batched_nms, box_iou, clip_boxes_to_image
from detkit.structures import check_image_list, validate_targets

# torchvision's ssd300_vgg16: the Caffe VGG16 mean (123, 117, 104) / 255 on 0..255 pixels; in
# detkit's [0, 1] units a std of 1/255 scales the normalised pixels back to 0..255.
SSD_VGG_PIXEL_MEAN = (0.48235, 0.45882, 0.40784)
SSD_VGG_PIXEL_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)
# torchvision's ssdlite320_mobilenet_v3_large: pixels mapped to [-1, 1].
SSDLITE_PIXEL_MEAN = (0.5, 0.5, 0.5)
SSDLITE_PIXEL_STD = (0.5, 0.5, 0.5)
# SSD's box parametrisation weights (as Fast R-CNN's box head).
SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


class SSD(nn.Module):
    """SSD / SSDLite detector (see the module docstring).

    Args:
        backbone: normalised images ``[B, 3, H, W]`` -> dict of feature maps, shallowest first
            (:class:`~detkit.models.backbones.ssd_vgg.SSDVGG`,
            :class:`~detkit.models.backbones.ssdlite_mobilenet.SSDLiteMobileNetV3`).
        head: class logits and box deltas per default box (:class:`SSDHead`, ``SSDLiteHead``).
        default_boxes: the default boxes; one per head output, same order.
        num_classes: object classes (background excluded; labels are 0-based).
        image_size: ``(height, width)`` every image is resized to (300x300 for SSD300).
        pixel_mean: per-channel mean of RGB pixels in [0, 1].
        pixel_std: per-channel std, same units.
        iou_thresh: IoU at or above which a default box matches a gt box.
        neg_pos_ratio: hard negatives kept per positive.
        empty_image_negatives: hard negatives kept in an image without positives (0: none, as
            torchvision, so images without objects do not train).
        bbox_reg_weights: ``(wx, wy, ww, wh)`` of the box coder.
        score_thresh: class scores at or below this are dropped at detection.
        nms_thresh: IoU above which NMS drops a box of the same class.
        topk_candidates: boxes kept per class before NMS.
        detections_per_img: detections kept per image after NMS.
        channels_last: memory format of the convolutions, which oneDNN (CPU) and cuDNN run
            faster in channels-last (NHWC) than in NCHW (CPU: see tools/benchmark_ssd.py).
            ``"train"`` (default): the batch is NHWC in training only, so training runs NHWC
            convolutions while evaluation reproduces torchvision's outputs bit for bit;
            ``"always"``: the backbone and head weights and the batch are NHWC in both modes
            (fastest; outputs equal torchvision's up to float rounding, about 5e-6 relative on
            the boxes of a random-weight SSD300); ``"off"``: NCHW throughout. Weights loaded
            later keep their format (``load_state_dict`` copies into them).
        class_names: optional name of each class.

    Call ``detector(images, targets=None) -> (predictions, losses)``:

    * ``images``: list of ``[3, H_i, W_i]`` float RGB in [0, 1], sizes may differ.
    * ``targets`` (training): per image ``boxes [N, 4]`` xyxy pixels and ``labels [N]`` int64
      0-based; ``N = 0`` is fine.
    * training: ``([], {"loss_classifier": ..., "loss_box_reg": ...})``.
    * eval: per image ``boxes [K, 4]`` in pixels of the input image, ``labels [K]``, ``scores [K]``
      by decreasing score; ``losses == {}``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: SSDHead,
        default_boxes: DefaultBoxGenerator,
        num_classes: int,
        *,
        image_size: tuple[int, int] = (300, 300),
        pixel_mean: Sequence[float] = SSD_VGG_PIXEL_MEAN,
        pixel_std: Sequence[float] = SSD_VGG_PIXEL_STD,
        iou_thresh: float = 0.5,
        neg_pos_ratio: int = 3,
        empty_image_negatives: int = 3,
        bbox_reg_weights: tuple[float, float, float, float] = SSD_BOX_WEIGHTS,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        topk_candidates: int = 400,
        detections_per_img: int = 200,
        channels_last: str = "train",
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if head.num_classes != num_classes:
            raise ValueError(f"head has {head.num_classes} classes but the detector has {num_classes}")
        if list(head.num_anchors) != default_boxes.num_anchors_per_location():
            raise ValueError(
                f"head predicts {head.num_anchors} boxes per cell but default_boxes gives "
                f"{default_boxes.num_anchors_per_location()}"
            )
        if hasattr(backbone, "output_shape"):
            channels = [shape.channels for shape in backbone.output_shape().values()]
            if channels != list(head.in_channels):
                raise ValueError(f"backbone gives channels {channels} but head expects {head.in_channels}")
        if len(image_size) != 2 or min(image_size) <= 0:
            raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError(f"pixel_mean and pixel_std need 3 values (std > 0), got {pixel_mean}, {pixel_std}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class_names for num_classes={num_classes}")
        self.backbone = backbone
        self.head = head
        self.default_boxes = default_boxes
        self.num_classes = num_classes
        self.class_names = None if class_names is None else list(class_names)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        mean, std = (torch.tensor(values, dtype=torch.float32).view(3, 1, 1) for values in (pixel_mean, pixel_std))
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self.matcher = SSDMatcher(iou_thresh)
        self.box_coder = BoxCoder(bbox_reg_weights)
        if neg_pos_ratio < 0 or empty_image_negatives < 0:
            raise ValueError(
                f"neg_pos_ratio and empty_image_negatives must be >= 0, got {neg_pos_ratio}, {empty_image_negatives}"
            )
        self.neg_pos_ratio = neg_pos_ratio
        self.empty_image_negatives = empty_image_negatives
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.topk_candidates = topk_candidates
        self.detections_per_img = detections_per_img
        if channels_last not in ("off", "train", "always"):
            raise ValueError(f"channels_last must be 'off', 'train' or 'always', got {channels_last!r}")
        self.channels_last = channels_last
        if channels_last == "always":
            self.backbone.to(memory_format=torch.channels_last)
            self.head.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------------------- inputs

    def _check_images(self, images: Sequence[Tensor]) -> list[tuple[int, int]]:
        return check_image_list(images, "SSD", require_float=True)

    def preprocess(self, images: Sequence[Tensor]) -> Tensor:
        """Normalise each image, then resize it to ``image_size`` (torchvision's order).

        Args:
            images: ``B`` tensors ``[3, H_i, W_i]``, RGB in [0, 1].

        Returns:
            ``[B, 3, image_size[0], image_size[1]]`` normalised batch, channels-last in memory
            when ``channels_last`` asks for it.
        """
        batch = []
        for image in images:
            image = (image - self.pixel_mean.to(image.dtype)) / self.pixel_std.to(image.dtype)
            if tuple(image.shape[-2:]) != self.image_size:  # same size: bilinear would be the identity
                image = F.interpolate(image[None], size=self.image_size, mode="bilinear", align_corners=False)[0]
            batch.append(image)
        nhwc = self.channels_last == "always" or (self.channels_last == "train" and self.training)
        return torch.stack(batch).contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)

    # ------------------------------------------------------------------------------- forward

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detect (eval) or compute the losses (training); see the class docstring."""
        original_sizes = self._check_images(images)
        if self.training:
            if targets is None:
                raise ValueError("SSD needs targets in training mode (call .eval() to detect)")
            validate_targets(targets, image_sizes=original_sizes, num_classes=self.num_classes)
            if len(targets) != len(images):
                raise ValueError(f"got {len(images)} images but {len(targets)} targets")

        batch = self.preprocess(images)
        features = list(self.backbone(batch).values())
        cls_logits, bbox_deltas = self.head(features)
        grid_sizes = [tuple(feature.shape[-2:]) for feature in features]
        anchors = self.default_boxes(self.image_size, grid_sizes, dtype=bbox_deltas.dtype, device=bbox_deltas.device)

        if self.training:
            gt_boxes = [resize_boxes(t["boxes"], size, self.image_size) for t, size in zip(targets, original_sizes)]
            gt_labels = [t["labels"] for t in targets]
            return [], self.loss(cls_logits, bbox_deltas, anchors, gt_boxes, gt_labels)
        detections = self.postprocess(cls_logits, bbox_deltas, anchors)
        for detection, size in zip(detections, original_sizes):
            # Clipped again: float32 scaling can land 1e-4 px outside the image (torchvision's does).
            detection["boxes"] = clip_boxes_to_image(resize_boxes(detection["boxes"], self.image_size, size), size)
        return detections, {}

    # ------------------------------------------------------------------------------- training

    def match(self, anchors: Tensor, gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Assign a class and a gt box to every default box of every image.

        Args:
            anchors: ``[A, 4]`` default boxes, xyxy pixels of the resized image.
            gt_boxes: per image ``[N_i, 4]`` gt boxes in the same pixels.
            gt_labels: per image ``[N_i]`` 0-based labels.

        Returns:
            ``(labels [B, A] int64, matched_boxes [B, A, 4])``: label ``c + 1`` for a default box
            matched to a gt of class ``c``, 0 for the background; ``matched_boxes`` holds the
            matched gt box (garbage where the label is 0).
        """
        num_images, num_anchors = len(gt_boxes), anchors.shape[0]
        labels = torch.zeros((num_images, num_anchors), dtype=torch.int64, device=anchors.device)
        matched_boxes = anchors.new_zeros((num_images, num_anchors, 4))
        for index, (boxes, classes) in enumerate(zip(gt_boxes, gt_labels)):
            if boxes.shape[0] == 0:
                continue
            matches = self.matcher(box_iou(boxes, anchors))  # [A]: gt index or -1
            safe = matches.clamp(min=0)
            labels[index] = torch.where(matches >= 0, classes[safe] + 1, 0)
            matched_boxes[index] = boxes[safe]
        return labels, matched_boxes

    def loss(
        self,
        cls_logits: Tensor,
        bbox_deltas: Tensor,
        anchors: Tensor,
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
    ) -> dict[str, Tensor]:
        """SSD's multibox loss.

        Args:
            cls_logits: ``[B, A, num_classes + 1]`` head logits (column 0 the background).
            bbox_deltas: ``[B, A, 4]`` head box deltas.
            anchors: ``[A, 4]`` default boxes, xyxy pixels of the resized image.
            gt_boxes: per image ``[N_i, 4]`` gt boxes in pixels of the resized image.
            gt_labels: per image ``[N_i]`` int64 0-based labels.

        Returns:
            ``{"loss_classifier": ..., "loss_box_reg": ...}``, each a scalar divided by the number
            of positive default boxes in the batch (at least 1).
        """
        labels, matched_boxes = self.match(anchors, gt_boxes, gt_labels)
        positive = labels > 0
        anchors_of_positives = anchors.expand(labels.shape[0], -1, -1)[positive]
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

    def postprocess(self, cls_logits: Tensor, bbox_deltas: Tensor, anchors: Tensor) -> list[dict[str, Tensor]]:
        """Scores, decoded boxes, per-class top-k and class-wise NMS, in pixels of the resized image.

        Args:
            cls_logits: ``[B, A, num_classes + 1]`` head logits.
            bbox_deltas: ``[B, A, 4]`` head box deltas.
            anchors: ``[A, 4]`` default boxes.

        Returns:
            Per image ``boxes [K, 4]``, ``scores [K]``, ``labels [K]`` (0-based), by decreasing score.
        """
        num_images, num_anchors, _ = cls_logits.shape
        scores = F.softmax(cls_logits, dim=-1)[..., 1:]  # [B, A, C], background dropped
        boxes = self.box_coder.decode(bbox_deltas.reshape(-1, 4), anchors.repeat(num_images, 1))
        boxes = clip_boxes_to_image(boxes, self.image_size).view(num_images, num_anchors, 4)
        k = min(self.topk_candidates, num_anchors)
        detections = []
        for image_scores, image_boxes in zip(scores, boxes):
            class_scores = image_scores.t()  # [C, A]
            above = class_scores > self.score_thresh
            if int(above.sum(dim=1).max()) <= k:
                # No class has more than k candidates: all boxes above the threshold go to NMS.
                classes, anchor_index = above.nonzero(as_tuple=True)
                candidate_scores = class_scores[classes, anchor_index]
            else:
                # The k best of each class, then the threshold (same set as threshold then top-k).
                top_scores, top_index = class_scores.topk(k, dim=1)  # [C, k]
                keep = top_scores > self.score_thresh
                classes = keep.nonzero(as_tuple=True)[0]
                candidate_scores, anchor_index = top_scores[keep], top_index[keep]
            candidate_boxes = image_boxes[anchor_index]
            keep = batched_nms(candidate_boxes, candidate_scores, classes, self.nms_thresh)[: self.detections_per_img]
            detections.append(
                {"boxes": candidate_boxes[keep], "scores": candidate_scores[keep], "labels": classes[keep]}
            )
        return detections
