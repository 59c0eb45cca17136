"""The second stage of Faster / Mask / Keypoint R-CNN: classify and refine the proposals, segment
them and find their keypoints.

Training (torchvision's ``RoIHeads`` semantics, so losses agree for the same draws):

1. The gt boxes are appended to each image's proposals.
2. Each proposal is matched to the gt it overlaps most: IoU ``>= fg_iou_thresh`` (0.5) is
   foreground with that gt's class, below ``bg_iou_thresh`` (0.5) background, in between ignored.
3. ``batch_size_per_image`` (512) proposals are sampled per image, at most ``positive_fraction``
   (1/4) foreground, with the global RNG (``torch.randperm``), like torchvision.
4. Loss: cross-entropy over ``num_classes + 1`` logits (mean over sampled RoIs) and smooth L1
   (``beta = 1/9``, torchvision's value, which Detectron uses for the RPN too) on the deltas of the
   gt class of the foreground RoIs, summed and divided by the number of sampled RoIs (not of
   foreground RoIs: torchvision's ``fastrcnn_loss`` normalisation).
5. Masks: the foreground RoIs are pooled again (14 x 14), the mask head predicts one map per class,
   and the loss is the BCE of the gt class's map against the gt mask cropped to the RoI.
6. Keypoints: the same foreground RoIs are pooled for the keypoint head (14 x 14), which predicts
   one 56 x 56 heat map per keypoint; the loss is the cross-entropy of each labelled keypoint's
   map against its cell (:mod:`~detkit.models.roi_heads.keypoint_head`).

Inference: softmax over classes, per-class decoding of the deltas (weights ``(10, 10, 5, 5)``),
clip to the image, drop the background column, keep scores ``> score_thresh``, remove boxes under
``1e-2`` px, NMS per class at ``nms_thresh``, keep the best ``detections_per_img``; masks are
predicted for the kept boxes from their class's map, keypoints from the heat maps of the kept boxes.

Labels: the head works internally with torchvision's indices (0 background, ``k + 1`` object class
``k``); it takes and returns detkit's 0-based labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.box_coder import BoxCoder
from detkit.models.losses import smooth_l1_loss
from detkit.models.matcher import Matcher
from detkit.models.postprocess import NMSOptions, select_detections
from detkit.models.roi_heads.keypoint_head import heatmaps_to_keypoints, keypoint_rcnn_loss, keypoints_to_heatmap
from detkit.models.roi_heads.mask_head import mask_rcnn_loss, project_masks_on_boxes
from detkit.models.sampler import BalancedPositiveNegativeSampler
from detkit.ops import MultiScaleRoIAlign, box_iou, clip_boxes_to_image

# Detections narrower or lower than this (pixels) are dropped (torchvision's constant).
MIN_DETECTION_SIZE = 1e-2


class RoIHeads(NMSOptions, nn.Module):
    """Box (and optionally mask and keypoint) heads on top of proposals.

    Args:
        box_pooler: pools ``[R, C, 7, 7]`` features for the boxes.
        box_head: ``[R, C, 7, 7] -> [R, D]`` (e.g. :class:`~detkit.models.roi_heads.box_head.TwoMLPHead`).
        box_predictor: ``[R, D] -> (logits [R, K + 1], deltas [R, 4 (K + 1)])``.
        num_classes: ``K``, object classes (background excluded).
        fg_iou_thresh: IoU at or above which a proposal is foreground in training.
        bg_iou_thresh: IoU below which a proposal is background in training.
        batch_size_per_image: RoIs sampled per image in training.
        positive_fraction: largest foreground fraction of the sample.
        bbox_reg_weights: box coder weights ``(wx, wy, ww, wh)``.
        score_thresh: detections need a class probability above this (test time).
        nms_thresh: per-class NMS IoU threshold (test time).
        detections_per_img: detections kept per image (test time).
        mask_pooler: pools ``[R, C, 14, 14]`` features for the masks (Mask R-CNN), or None.
        mask_head: ``[R, C, 14, 14] -> [R, K, 28, 28]`` mask logits, or None.
        keypoint_pooler: pools ``[R, C, 14, 14]`` features for the keypoints (Keypoint R-CNN), or None.
        keypoint_head: ``[R, C, 14, 14] -> [R, K', 56, 56]`` heat-map logits of ``K'`` keypoints
            (a :class:`~detkit.models.roi_heads.keypoint_head.KeypointHead`), or None.
        nms_method, class_agnostic_nms, soft_nms_method, soft_nms_sigma, soft_nms_min_score: the NMS
            of the detections (:class:`~detkit.models.postprocess.NMSOptions`; greedy per class by
            default, torchvision's); ``configure_nms(...)`` changes them later.
    """

    def __init__(
        self,
        box_pooler: MultiScaleRoIAlign,
        box_head: nn.Module,
        box_predictor: nn.Module,
        num_classes: int,
        *,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        mask_pooler: MultiScaleRoIAlign | None = None,
        mask_head: nn.Module | None = None,
        keypoint_pooler: MultiScaleRoIAlign | None = None,
        keypoint_head: nn.Module | None = None,
        nms_method: str = "hard",
        class_agnostic_nms: bool = False,
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
    ) -> None:
        super().__init__()
        if (mask_pooler is None) != (mask_head is None):
            raise ValueError("RoIHeads: give both mask_pooler and mask_head, or neither")
        if (keypoint_pooler is None) != (keypoint_head is None):
            raise ValueError("RoIHeads: give both keypoint_pooler and keypoint_head, or neither")
        self.keypoint_pooler = keypoint_pooler
        self.keypoint_head = keypoint_head
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.num_classes = num_classes
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.configure_nms(
            nms_method=nms_method, class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method,
            soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip

    @property
    def has_mask(self) -> bool:
        return self.mask_head is not None

    @property
    def has_keypoint(self) -> bool:
        return self.keypoint_head is not None

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, score_thresh={self.score_thresh}, nms_thresh={self.nms_thresh}, "
            f"detections_per_img={self.detections_per_img}, matcher={self.proposal_matcher}, sampler={self.sampler}"
        )

    # ------------------------------------------------------------------ training
    def _sample_proposals(
        self, proposals: list[Tensor], targets: Sequence[Mapping[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Match and sample RoIs for the loss.

        Returns:
            Per image: sampled RoIs ``[S_i, 4]``, their internal labels ``[S_i]`` (0 background,
            ``k + 1`` class ``k``) and their matched gt index ``[S_i]`` (0 for background).
        """
        all_labels: list[Tensor] = []
        all_matches: list[Tensor] = []
        with_gt: list[Tensor] = []
        for proposals_per_image, target in zip(proposals, targets):
            gt_boxes = target["boxes"].to(proposals_per_image.dtype)
            rois = torch.cat([proposals_per_image, gt_boxes])
            matches = self.proposal_matcher(box_iou(gt_boxes, rois)) if gt_boxes.shape[0] else None
            if matches is None:  # no objects: every RoI is background
                matched = torch.zeros(rois.shape[0], dtype=torch.int64, device=rois.device)
                labels = torch.zeros_like(matched)
            else:
                matched = matches.clamp(min=0)
                labels = target["labels"][matched] + 1  # + 1: index 0 is the background
                labels[matches == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[matches == Matcher.BETWEEN_THRESHOLDS] = -1  # ignored by the sampler
            with_gt.append(rois)
            all_labels.append(labels)
            all_matches.append(matched)

        positives, negatives = self.sampler(all_labels)
        sampled_rois, sampled_labels, sampled_matches = [], [], []
        for rois, labels, matched, positive, negative in zip(with_gt, all_labels, all_matches, positives, negatives):
            keep = torch.where(positive | negative)[0]
            sampled_rois.append(rois[keep])
            sampled_labels.append(labels[keep])
            sampled_matches.append(matched[keep])
        return sampled_rois, sampled_labels, sampled_matches

    def _box_losses(
        self,
        class_logits: Tensor,
        box_deltas: Tensor,
        rois: list[Tensor],
        labels: list[Tensor],
        matches: list[Tensor],
        targets: Sequence[Mapping[str, Tensor]],
    ) -> dict[str, Tensor]:
        all_labels = torch.cat(labels)
        classification = F.cross_entropy(class_logits, all_labels)
        foreground = torch.where(all_labels > 0)[0]
        matched_gt = torch.cat([self._matched_boxes(r, m, t) for r, m, t in zip(rois, matches, targets)])
        regression_targets = self.box_coder.encode(matched_gt[foreground], torch.cat(rois)[foreground])
        deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)[foreground, all_labels[foreground]]
        # Sum over foreground RoIs, divided by all sampled RoIs (torchvision's fastrcnn_loss).
        box_loss = smooth_l1_loss(deltas, regression_targets, beta=1 / 9, reduction="sum") / all_labels.numel()
        return {"loss_classifier": classification, "loss_box_reg": box_loss}

    @staticmethod
    def _matched_boxes(rois: Tensor, matches: Tensor, target: Mapping[str, Tensor]) -> Tensor:
        """Gt box of each RoI; zeros for an image without objects (all its RoIs are background)."""
        gt_boxes = target["boxes"].to(rois.dtype)
        if gt_boxes.shape[0] == 0:
            return rois.new_zeros(rois.shape)
        return gt_boxes[matches]

    @staticmethod
    def _foreground(
        rois: list[Tensor], labels: list[Tensor], matches: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image, the foreground RoIs and their gt index: what the mask and keypoint branches train on."""
        foreground = [torch.where(image_labels > 0)[0] for image_labels in labels]
        return ([image_rois[index] for image_rois, index in zip(rois, foreground)],
                [image_matches[index] for image_matches, index in zip(matches, foreground)])

    def _mask_loss(
        self,
        features: Mapping[str, Tensor],
        mask_rois: list[Tensor],
        mask_matches: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: Sequence[Mapping[str, Tensor]],
    ) -> Tensor:
        assert self.mask_pooler is not None and self.mask_head is not None
        mask_logits = self.mask_head(self.mask_pooler(features, mask_rois, image_sizes))
        size = mask_logits.shape[-1]
        mask_targets = torch.cat(
            [
                project_masks_on_boxes(target["masks"], image_rois, image_matches, size)
                for target, image_rois, image_matches in zip(targets, mask_rois, mask_matches)
            ]
        )
        mask_labels = torch.cat([target["labels"][m] for target, m in zip(targets, mask_matches)])
        return mask_rcnn_loss(mask_logits, mask_labels, mask_targets)

    def _keypoint_loss(
        self,
        features: Mapping[str, Tensor],
        keypoint_rois: list[Tensor],
        keypoint_matches: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: Sequence[Mapping[str, Tensor]],
    ) -> Tensor:
        assert self.keypoint_pooler is not None and self.keypoint_head is not None
        keypoint_logits = self.keypoint_head(self.keypoint_pooler(features, keypoint_rois, image_sizes))
        size = keypoint_logits.shape[-1]
        cells, trained = [], []
        for target, image_rois, image_matches in zip(targets, keypoint_rois, keypoint_matches):
            gt_keypoints = target["keypoints"].to(image_rois.dtype)
            if gt_keypoints.dim() != 3 or gt_keypoints.shape[1:] != (keypoint_logits.shape[1], 3):
                raise ValueError(f"RoIHeads: target 'keypoints' must be [N, {keypoint_logits.shape[1]}, 3] "
                                 f"(x, y, visibility) for this keypoint head, got {list(gt_keypoints.shape)}")
            image_cells, image_trained = keypoints_to_heatmap(gt_keypoints[image_matches], image_rois, size)
            cells.append(image_cells)
            trained.append(image_trained)
        return keypoint_rcnn_loss(keypoint_logits, torch.cat(cells), torch.cat(trained))

    # ------------------------------------------------------------------ inference
    def _postprocess(
        self, class_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        num_scores = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        all_boxes = self.box_coder.decode(box_deltas, torch.cat(proposals)).reshape(-1, num_scores, 4)
        all_scores = F.softmax(class_logits, -1)
        detections = []
        for boxes, scores, image_size in zip(
            all_boxes.split(boxes_per_image), all_scores.split(boxes_per_image), image_sizes
        ):
            boxes = clip_boxes_to_image(boxes, image_size)
            # Drop the background column: one candidate per (RoI, class), RoI-major.
            kept = select_detections(
                boxes[:, 1:], scores[:, 1:], score_thresh=self.score_thresh, min_size=MIN_DETECTION_SIZE,
                nms_thresh=self.nms_thresh, detections_per_img=self.detections_per_img, **self.nms_options(),
            )  # fmt: skip
            detections.append({"boxes": kept.boxes, "labels": kept.labels, "scores": kept.scores})
        return detections

    def _predict_masks(
        self, features: Mapping[str, Tensor], detections: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]]
    ) -> None:
        assert self.mask_pooler is not None and self.mask_head is not None
        mask_logits = self.mask_head(self.mask_pooler(features, [d["boxes"] for d in detections], image_sizes))
        labels = torch.cat([d["labels"] for d in detections])
        probabilities = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels].sigmoid()
        for detection, masks in zip(detections, probabilities.split([d["labels"].shape[0] for d in detections])):
            detection["masks"] = masks[:, None]

    def _predict_keypoints(
        self, features: Mapping[str, Tensor], detections: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]]
    ) -> None:
        assert self.keypoint_pooler is not None and self.keypoint_head is not None
        boxes = [d["boxes"] for d in detections]
        keypoint_logits = self.keypoint_head(self.keypoint_pooler(features, boxes, image_sizes))
        max_rois = None if self.detections_per_img is None else self.detections_per_img * len(boxes)
        keypoints, scores = heatmaps_to_keypoints(keypoint_logits, torch.cat(boxes), max_rois)
        counts = [b.shape[0] for b in boxes]
        for detection, image_keypoints, image_scores in zip(detections, keypoints.split(counts), scores.split(counts)):
            detection["keypoints"] = image_keypoints
            detection["keypoint_scores"] = image_scores

    def forward(
        self,
        features: Mapping[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: Sequence[Mapping[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detections (eval) or losses (training).

        Args:
            features: level name -> ``[B, C, H_l, W_l]``.
            proposals: per image ``[P_i, 4]`` xyxy boxes in pixels of the (resized) image.
            image_sizes: per image ``(height, width)`` before padding.
            targets: per image ``boxes [G_i, 4]``, ``labels [G_i]`` (0-based) and, with a mask
                head, ``masks [G_i, H_i, W_i]``, with a keypoint head ``keypoints [G_i, K, 3]``
                float ``(x, y, visibility)``, in pixels of the resized image; needed in training.

        Returns:
            ``(detections, losses)``. In training ``detections`` is ``[]`` and ``losses`` has
            ``loss_classifier``, ``loss_box_reg`` (and ``loss_mask``, ``loss_keypoint``). In eval,
            per image ``boxes [N, 4]``, ``labels [N]`` (0-based), ``scores [N]`` by decreasing
            score (and ``masks [N, 1, 28, 28]`` probabilities inside the boxes; ``keypoints [N, K,
            3]`` ``(x, y, 1)`` in pixels and ``keypoint_scores [N, K]`` heat-map logits), and
            ``losses`` is ``{}``.
        """
        if not self.training:
            box_features = self.box_head(self.box_pooler(features, proposals, image_sizes))
            class_logits, box_deltas = self.box_predictor(box_features)
            detections = self._postprocess(class_logits, box_deltas, proposals, image_sizes)
            if self.has_mask:
                self._predict_masks(features, detections, image_sizes)
            if self.has_keypoint:
                self._predict_keypoints(features, detections, image_sizes)
            return detections, {}

        if targets is None:
            raise ValueError("RoIHeads: targets are required in training mode")
        if self.has_mask and not all("masks" in target for target in targets):
            raise KeyError("RoIHeads: every target needs 'masks' [N, H, W] to train a mask head")
        if self.has_keypoint and not all("keypoints" in target for target in targets):
            raise KeyError("RoIHeads: every target needs 'keypoints' [N, K, 3] to train a keypoint head")
        rois, labels, matches = self._sample_proposals(proposals, targets)
        class_logits, box_deltas = self.box_predictor(self.box_head(self.box_pooler(features, rois, image_sizes)))
        losses = self._box_losses(class_logits, box_deltas, rois, labels, matches, targets)
        if self.has_mask or self.has_keypoint:
            foreground_rois, foreground_matches = self._foreground(rois, labels, matches)
        if self.has_mask:
            losses["loss_mask"] = self._mask_loss(features, foreground_rois, foreground_matches, image_sizes, targets)
        if self.has_keypoint:
            losses["loss_keypoint"] = self._keypoint_loss(
                features, foreground_rois, foreground_matches, image_sizes, targets
            )
        return [], losses
