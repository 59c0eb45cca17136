"""FCOS's head (Tian et al. 2019, "FCOS: Fully Convolutional One-Stage Object Detection"), torchvision's conventions.

Subnets (:class:`~detkit.models.dense_heads.fpn_dense_head.DenseSubnet`): four 3x3 convs (with a
bias) + GroupNorm(32) + ReLU each; the class subnet gives ``C`` logits per location (bias
``-log((1 - 0.01) / 0.01)``), the box subnet four distances ``(l, t, r, b)`` (a ReLU keeps them
>= 0) and one centerness logit, from the same tower (centerness on the regression branch, as
torchvision and the FCOS paper's improved version).

Points: one "anchor" per location, a square of the level's stride (``AnchorGenerator`` sizes
``(8,), (16,), (32,), (64,), (128,)`` on P3-P7), so its centre is the location and its side the
stride; distances are in strides (:class:`~detkit.models.box_coder.LinearBoxCoder`).

Training (torchvision's ``FCOS.compute_loss``): a location is a candidate for a gt box when

* centre sampling: it lies within ``center_sampling_radius`` (1.5) strides of the gt's centre
  (Chebyshev distance), and inside the box;
* its largest distance to the box's sides is within the level's range: above ``4 * stride``
  (0 on the first level) and below ``8 * stride`` (unbounded on the last level), i.e. torchvision's
  P3-P7 ranges 0-64-128-256-512-inf at strides 8-128;

among its candidates a location takes the smallest-area gt. Losses, each divided by the number of
foreground locations in the batch (at least 1): ``loss_classifier`` sigmoid focal loss over every
location and class, ``loss_box_reg`` ``1 - GIoU`` of the decoded boxes and ``loss_centerness``
binary cross entropy of the centerness logit against ``sqrt(min(l, r) / max(l, r) * min(t, b) /
max(t, b))``, both on the foreground.

Detection: score ``sqrt(sigmoid(class logit) * sigmoid(centerness logit))``, then the shared
per-level top-k and NMS of :class:`~detkit.models.dense_heads.fpn_dense_head.FPNDenseHead`
(torchvision: score above 0.2, 1000 per level, NMS 0.6, 100 per image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from detkit.models.box_coder import LinearBoxCoder
from detkit.models.dense_heads.focal_loss import dense_focal_loss
from detkit.models.dense_heads.fpn_dense_head import DenseOutputs, FPNDenseHead
from detkit.models.losses import giou_loss

__all__ = ["FCOSHead"]


class FCOSHead(FPNDenseHead):
    """FCOS's class, box and centerness predictions, training and detection (module docstring).

    Args:
        in_channels: channels of every FPN level; None: sized by its detector from the neck.
        num_classes: object classes (one sigmoid logit each).
        center_sampling_radius: candidates lie within this many strides of the gt's centre.
        range_factors: ``(low, high)``: a level's range of largest side distance is
            ``(low * stride, high * stride)``, open below on the first level and above on the last.
        focal_alpha: weight of the positives in the focal loss.
        focal_gamma: focusing exponent of the focal loss.
        num_convs: convs in each subnet's tower.
        norm: norm after each tower conv (GroupNorm, as FCOS).
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
        *,
        center_sampling_radius: float = 1.5,
        range_factors: tuple[float, float] = (4.0, 8.0),
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        num_convs: int = 4,
        norm: str | None = "gn",
        prior_probability: float = 0.01,
        score_thresh: float = 0.2,
        nms_thresh: float = 0.6,
        pre_nms_topk: int = 1000,
        detections_per_img: int = 100,
        nms_method: str = "hard",
        class_agnostic_nms: bool = False,
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
    ) -> None:
        super().__init__(
            in_channels, num_classes, 1, {"bbox_reg": 4, "bbox_ctrness": 1}, num_convs=num_convs, norm=norm,
            conv_bias=True, prior_probability=prior_probability, score_thresh=score_thresh, nms_thresh=nms_thresh,
            pre_nms_topk=pre_nms_topk, detections_per_img=detections_per_img, nms_method=nms_method,
            class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method, soft_nms_sigma=soft_nms_sigma,
            soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        self.center_sampling_radius = center_sampling_radius
        self.range_factors = (float(range_factors[0]), float(range_factors[1]))
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_coder = LinearBoxCoder(normalize_by_size=True)

    def forward(self, features: Sequence[Tensor]) -> DenseOutputs:
        """As :meth:`FPNDenseHead.forward`; ``bbox_reg`` (distances) through a ReLU, and ``bbox_ctrness [B, A, 1]``."""
        raw = super().forward(features)
        raw.maps["bbox_reg"] = F.relu(raw.maps["bbox_reg"])
        return raw

    # ------------------------------------------------------------------ detection

    def class_scores(self, raw: DenseOutputs) -> Tensor:
        """``sqrt(sigmoid(class) * sigmoid(centerness))``, ``[B, A, num_classes]``."""
        return torch.sqrt(torch.sigmoid(raw.maps["cls_logits"]) * torch.sigmoid(raw.maps["bbox_ctrness"]))

    def decode(self, raw: DenseOutputs, priors: Tensor, batch_index: Tensor, anchor_index: Tensor) -> Tensor:
        """Boxes ``[B, M, 4]`` of the distances predicted at the points ``anchor_index [B, M]``."""
        return self.box_coder.decode(raw.maps["bbox_reg"][batch_index, anchor_index], priors[anchor_index])

    # ------------------------------------------------------------------ training

    def match(self, priors: Tensor, targets: Sequence[Mapping[str, Tensor]], num_per_level: Sequence[int]) -> Tensor:
        """``[B, A]`` int64: each point's gt index (module docstring), ``-1`` for the background."""
        centers = (priors[:, :2] + priors[:, 2:]) / 2  # [A, 2]
        strides = priors[:, 2] - priors[:, 0]  # [A]
        lower = strides * self.range_factors[0]
        lower[: num_per_level[0]] = 0
        upper = strides * self.range_factors[1]
        upper[-num_per_level[-1] :] = float("inf")
        matches = []
        for target in targets:
            boxes = target["boxes"].to(priors.dtype)
            if boxes.shape[0] == 0:
                matches.append(torch.full((priors.shape[0],), -1, dtype=torch.int64, device=priors.device))
                continue
            gt_centers = (boxes[:, :2] + boxes[:, 2:]) / 2
            near = (centers[:, None] - gt_centers[None]).abs().max(dim=2).values < self.center_sampling_radius * strides[
                :, None
            ]
            x, y = centers[:, 0:1], centers[:, 1:2]  # [A, 1]
            distances = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2)
            candidate = near & (distances.min(dim=2).values > 0)
            largest = distances.max(dim=2).values
            candidate &= (largest > lower[:, None]) & (largest < upper[:, None])
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            # The smallest box among the candidates (torchvision's 1e8 - area trick).
            quality = candidate.to(torch.float32) * (1e8 - areas[None, :])
            best, index = quality.max(dim=1)
            matches.append(torch.where(best < 1e-5, -1, index))
        return torch.stack(matches)

    def loss(
        self,
        raw: DenseOutputs,
        priors: Tensor,
        targets: Sequence[Mapping[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor]:
        """``loss_classifier``, ``loss_box_reg`` and ``loss_centerness`` (module docstring).

        Args:
            raw: :meth:`forward`'s output for ``B`` images.
            priors: ``[A, 4]`` points (stride-sized squares), xyxy pixels of the padded batch.
            targets: per image ``boxes [N_i, 4]`` in pixels of the resized image, ``labels [N_i]``.
            image_sizes: unused (points over the padding are matched like any other, as torchvision).
        """
        logits, distances, centerness = (raw.maps[k] for k in ("cls_logits", "bbox_reg", "bbox_ctrness"))
        matches = self.match(priors, targets, raw.num_per_level)
        image_index, point_index = (matches >= 0).nonzero(as_tuple=True)
        offsets = torch.tensor([0] + [t["boxes"].shape[0] for t in targets], device=priors.device).cumsum(0)
        flat_gt = offsets[image_index] + matches[image_index, point_index]
        gt_boxes = torch.cat([t["boxes"].to(priors.dtype) for t in targets])[flat_gt]
        gt_labels = torch.cat([t["labels"] for t in targets])[flat_gt]
        normaliser = image_index.new_tensor(image_index.numel()).clamp(min=1).to(logits.dtype)

        classes = torch.full_like(matches, -1).index_put_((image_index, point_index), gt_labels)
        cls_loss = dense_focal_loss(logits, classes, None, self.focal_alpha, self.focal_gamma)

        points = priors[point_index]
        boxes = self.box_coder.decode(distances[image_index, point_index], points)
        box_loss = giou_loss(boxes, gt_boxes, reduction="sum")

        sides = self.box_coder.encode(gt_boxes, points)  # [F, 4] (l, t, r, b)
        left_right, top_bottom = sides[:, [0, 2]], sides[:, [1, 3]]
        target_centerness = torch.sqrt(
            (left_right.min(dim=1).values / left_right.max(dim=1).values)
            * (top_bottom.min(dim=1).values / top_bottom.max(dim=1).values)
        )
        centerness_loss = F.binary_cross_entropy_with_logits(
            centerness[image_index, point_index, 0], target_centerness, reduction="sum"
        )
        return {
            "loss_classifier": cls_loss / normaliser,
            "loss_box_reg": box_loss / normaliser,
            "loss_centerness": centerness_loss / normaliser,
        }
