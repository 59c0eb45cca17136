"""RetinaNet's head (Lin et al. 2017, "Focal Loss for Dense Object Detection") with torchvision's conventions.

Subnets (:class:`~detkit.models.dense_heads.fpn_dense_head.DenseSubnet`): four 3x3 convs + ReLU,
then ``A * C`` class logits (bias ``-log((1 - 0.01) / 0.01)``) and ``A * 4`` box deltas, ``A = 9``
anchors per cell (3 sizes x 3 ratios). torchvision's ``retinanet_resnet50_fpn`` has plain convs
(``norm=None``, L1 box loss); ``retinanet_resnet50_fpn_v2`` puts GroupNorm(32) after each tower
conv and uses the GIoU loss (``norm="gn"``, ``box_loss="giou"``).

Training (torchvision's ``RetinaNet.compute_loss``):

* Matching: each anchor takes the gt it overlaps most; IoU ``>= fg_iou_thresh`` (0.5) is
  foreground, ``< bg_iou_thresh`` (0.4) background, in between ignored; each gt's best anchors
  are foreground too (:class:`~detkit.models.matcher.Matcher` with low-quality matches). An image
  without objects has background anchors only.
* ``loss_classifier``: sigmoid focal loss (``alpha = 0.25``, ``gamma = 2``) summed over the
  non-ignored anchors and every class (one-hot targets), divided by the image's foreground count
  (at least 1), averaged over the images.
* ``loss_box_reg``: on the foreground anchors, L1 on the ``(1, 1, 1, 1)``-weighted deltas
  (``box_loss="l1"``) or ``1 - GIoU`` of the decoded boxes (``"giou"``), summed, divided by the
  image's foreground count, averaged over the images.

Detection: ``sigmoid(logit)`` scores, then the shared per-level top-k and NMS of
:class:`~detkit.models.dense_heads.fpn_dense_head.FPNDenseHead` (torchvision: score above 0.05,
1000 per level, NMS 0.5, 300 per image).

Classes: one sigmoid per object class, no background column; detkit's label ``k`` is logit ``k``
(torchvision's COCO models have 91 logits indexed by category id, so label = torchvision label).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from detkit.models.box_coder import BoxCoder
from detkit.models.dense_heads.focal_loss import dense_focal_loss
from detkit.models.dense_heads.fpn_dense_head import DenseOutputs, FPNDenseHead
from detkit.models.losses import giou_loss, l1_loss
from detkit.models.matcher import Matcher
from detkit.ops import box_iou

__all__ = ["RETINANET_BOX_LOSSES", "RetinaNetHead", "per_image_mean"]

RETINANET_BOX_LOSSES = ("l1", "giou")


def per_image_mean(values: Tensor, image_index: Tensor, normaliser: Tensor) -> Tensor:
    """``mean_i (sum of values of image i) / normaliser[i]``: ``values [N]``, ``image_index [N]``,
    ``normaliser [B]`` (torchvision's per-image normalisation of the dense losses)."""
    sums = normaliser.new_zeros(normaliser.shape).index_add(0, image_index, values.to(normaliser.dtype))
    return (sums / normaliser).sum() / normaliser.shape[0]


class RetinaNetHead(FPNDenseHead):
    """RetinaNet's class and box subnets, focal-loss training and detection (module docstring).

    Args:
        in_channels: channels of every FPN level; None: sized by its detector from the neck.
        num_classes: object classes (one sigmoid logit each).
        num_anchors: anchors per cell (``AnchorGenerator.num_anchors_per_location()``).
        norm: norm after each tower conv: None (v1) or ``"gn"`` (v2).
        box_loss: ``"l1"`` on deltas (v1) or ``"giou"`` on decoded boxes (v2).
        fg_iou_thresh: IoU at or above which an anchor is foreground.
        bg_iou_thresh: IoU below which an anchor is background.
        focal_alpha: weight of the positives in the focal loss.
        focal_gamma: focusing exponent of the focal loss.
        bbox_reg_weights: ``(wx, wy, ww, wh)`` of the box coder.
        num_convs: convs in each subnet's tower.
        prior_probability: initial foreground probability of the class logits.
        score_thresh: scores at or below this are dropped at detection.
        nms_thresh: IoU above which NMS drops a box of the same class.
        pre_nms_topk: candidates kept per level before NMS.
        detections_per_img: detections kept per image.
        nms_method, class_agnostic_nms, soft_nms_method, soft_nms_sigma, soft_nms_min_score:
            the NMS (:class:`~detkit.models.postprocess.NMSOptions`).
    """

    def __init__(
        self,
        in_channels: int | None = None,
        num_classes: int = 80,
        num_anchors: int = 9,
        *,
        norm: str | None = None,
        box_loss: str = "l1",
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        num_convs: int = 4,
        prior_probability: float = 0.01,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        pre_nms_topk: int = 1000,
        detections_per_img: int = 300,
        nms_method: str = "hard",
        class_agnostic_nms: bool = False,
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
    ) -> None:
        if box_loss not in RETINANET_BOX_LOSSES:
            raise ValueError(f"RetinaNetHead: box_loss must be one of {RETINANET_BOX_LOSSES}, got {box_loss!r}")
        super().__init__(
            in_channels, num_classes, num_anchors, {"bbox_reg": 4}, num_convs=num_convs, norm=norm,
            prior_probability=prior_probability, score_thresh=score_thresh, nms_thresh=nms_thresh,
            pre_nms_topk=pre_nms_topk, detections_per_img=detections_per_img, nms_method=nms_method,
            class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method, soft_nms_sigma=soft_nms_sigma,
            soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        self.box_loss = box_loss
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    # ------------------------------------------------------------------ detection

    def class_scores(self, raw: DenseOutputs) -> Tensor:
        """``sigmoid`` of the class logits, ``[B, A, num_classes]``."""
        return torch.sigmoid(raw.maps["cls_logits"])

    def decode(self, raw: DenseOutputs, priors: Tensor, batch_index: Tensor, anchor_index: Tensor) -> Tensor:
        """Boxes ``[B, M, 4]`` of the deltas of the anchors ``anchor_index [B, M]``."""
        deltas = raw.maps["bbox_reg"][batch_index, anchor_index]
        boxes = self.box_coder.decode(deltas.reshape(-1, 4), priors[anchor_index].reshape(-1, 4))
        return boxes.view(*anchor_index.shape, 4)

    # ------------------------------------------------------------------ training

    def match(self, priors: Tensor, targets: Sequence[Mapping[str, Tensor]]) -> Tensor:
        """``[B, A]`` int64: each anchor's gt index, ``-1`` background or ``-2`` ignored."""
        matches = []
        for target in targets:
            boxes = target["boxes"].to(priors.dtype)
            if boxes.shape[0] == 0:
                matches.append(torch.full((priors.shape[0],), Matcher.BELOW_LOW_THRESHOLD, device=priors.device))
            else:
                matches.append(self.matcher(box_iou(boxes, priors)))
        return torch.stack(matches)

    def loss(
        self,
        raw: DenseOutputs,
        priors: Tensor,
        targets: Sequence[Mapping[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor]:
        """``loss_classifier`` (focal) and ``loss_box_reg`` (L1 or GIoU), see the module docstring.

        Args:
            raw: :meth:`forward`'s output for ``B`` images.
            priors: ``[A, 4]`` anchors, xyxy pixels of the padded batch.
            targets: per image ``boxes [N_i, 4]`` in pixels of the resized image, ``labels [N_i]``.
            image_sizes: unused (anchors over the padding are matched like any other, as torchvision).
        """
        logits, deltas = raw.maps["cls_logits"], raw.maps["bbox_reg"]
        matches = self.match(priors, targets)
        foreground = matches >= 0
        normaliser = foreground.sum(dim=1).clamp(min=1).to(logits.dtype)  # [B]
        image_index, anchor_index = foreground.nonzero(as_tuple=True)
        gt_index = matches[image_index, anchor_index]
        offsets = torch.tensor([0] + [t["boxes"].shape[0] for t in targets], device=priors.device).cumsum(0)
        all_boxes = torch.cat([t["boxes"].to(priors.dtype) for t in targets])
        all_labels = torch.cat([t["labels"] for t in targets])
        flat_gt = offsets[image_index] + gt_index  # index into the batch's concatenated gt

        classes = torch.full_like(matches, -1).index_put_((image_index, anchor_index), all_labels[flat_gt])
        # Each image's non-ignored anchors, over its foreground count, averaged over the images.
        weights = (matches != Matcher.BETWEEN_THRESHOLDS).to(logits.dtype) / (normaliser[:, None] * len(targets))
        cls_loss = dense_focal_loss(logits, classes, weights, self.focal_alpha, self.focal_gamma)

        gt_boxes, anchors = all_boxes[flat_gt], priors[anchor_index]
        if self.box_loss == "l1":
            box_losses = l1_loss(deltas[image_index, anchor_index], self.box_coder.encode(gt_boxes, anchors)).sum(1)
        else:
            boxes = self.box_coder.decode(deltas[image_index, anchor_index], anchors)
            box_losses = giou_loss(boxes, gt_boxes)
        return {"loss_classifier": cls_loss, "loss_box_reg": per_image_mean(box_losses, image_index, normaliser)}
