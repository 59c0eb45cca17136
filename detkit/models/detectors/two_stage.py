"""Two-stage detectors: Faster R-CNN (Ren et al. 2015), Mask R-CNN and Keypoint R-CNN (He et al. 2017).

``images -> preprocess (normalise, resize, pad) -> backbone -> neck (FPN) -> RPN proposals ->
RoI heads -> detections mapped back to the input images``. Every part is a ready module; the
detector only wires them (the checks, preprocessing, loss merging and mapping back are
:class:`~detkit.models.detectors.base.Detector`'s; see docs/conventions.md for the formats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from torch import Tensor, nn

from detkit.models.dense_heads.rpn import RPN
from detkit.models.detectors.base import Detector
from detkit.models.preprocess import RCNNPreprocess
from detkit.models.roi_heads.roi_heads import RoIHeads
from detkit.structures import ImageList

__all__ = ["FasterRCNN", "KeypointRCNN", "MaskRCNN"]


class FasterRCNN(Detector):
    """Faster R-CNN: a region proposal network and a box head on shared features.

    Args:
        backbone: images ``[B, 3, H, W]`` -> dict of feature maps.
        neck: feature dict -> feature dict (an FPN), or None to use the backbone's maps directly.
            A neck built without input shapes is sized from ``backbone.output_shape()`` here,
            and the RPN head from the neck's ``output_shape()``; given shapes are checked.
        rpn: the proposal stage.
        roi_heads: the box (and mask) stage; the detector's ``num_classes`` is its ``num_classes``.
        preprocess: normalisation, resizing and padding of the inputs.
        num_classes: optional: checked against ``roi_heads.num_classes`` (object classes,
            background excluded; labels are 0-based).
        class_names: optional name of each class.

    Call ``detector(images, targets=None) -> (predictions, losses)``:

    * ``images``: list of ``[3, H_i, W_i]`` float RGB in [0, 1], sizes may differ.
    * ``targets`` (training): per image ``boxes [N, 4]`` xyxy pixels, ``labels [N]`` int64 0-based
      (and ``masks [N, H_i, W_i]`` uint8 for Mask R-CNN); images without objects are fine.
    * training: ``predictions == []``, ``losses`` has ``loss_classifier``, ``loss_box_reg``,
      (``loss_mask``), ``loss_objectness``, ``loss_rpn_box_reg``, each a weighted scalar.
    * eval: per image ``boxes [K, 4]`` in pixels of the input image, ``labels [K]``, ``scores [K]``
      by decreasing score (and ``masks [K, H_i, W_i]`` probabilities); ``losses == {}``.
    """

    classes_from = "roi_heads"

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: RPN,
        roi_heads: RoIHeads,
        preprocess: RCNNPreprocess,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.preprocess = preprocess
        self.size_parts(backbone, neck, [rpn])
        self.init_classes(num_classes, class_names)

    def forward_batch(
        self, batch: ImageList, targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Backbone, neck, proposals and RoI heads on the resized batch (see :class:`Detector`)."""
        features = self.backbone(batch.tensor)
        if self.neck is not None:
            features = self.neck(features)
        proposals, rpn_losses = self.rpn.propose(batch, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        return detections, self.merge_losses(roi_losses, rpn_losses)


class MaskRCNN(FasterRCNN):
    """Mask R-CNN: Faster R-CNN whose ``roi_heads`` has a mask head; targets need ``masks``.

    Args: as :class:`FasterRCNN`.
    """

    required_target_keys = ("masks",)

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: RPN,
        roi_heads: RoIHeads,
        preprocess: RCNNPreprocess,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not roi_heads.has_mask:
            raise ValueError("MaskRCNN needs roi_heads with a mask_pooler and a mask_head")
        super().__init__(backbone, neck, rpn, roi_heads, preprocess, num_classes, class_names)


def _check_pairs(pairs: Sequence[Sequence[int]], num_keypoints: int, what: str) -> list[tuple[int, int]]:
    checked = [tuple(int(i) for i in pair) for pair in pairs]
    for pair in checked:
        if len(pair) != 2 or not all(0 <= i < num_keypoints for i in pair):
            raise ValueError(f"KeypointRCNN: {what} must be pairs of keypoint indices in [0, {num_keypoints}), "
                             f"got {list(pair)}")
    return checked  # type: ignore[return-value]


class KeypointRCNN(FasterRCNN):
    """Keypoint R-CNN: Faster R-CNN whose ``roi_heads`` has a keypoint head; targets need ``keypoints``.

    Args:
        backbone, neck, rpn, roi_heads, preprocess, num_classes, class_names: as :class:`FasterRCNN`.
        keypoint_names: optional name of each of the ``K`` keypoints.
        keypoint_flip_pairs: ``(left, right)`` keypoint indices a horizontal flip swaps (test-time
            augmentation reads them, :mod:`detkit.models.tta`).
        skeleton: ``(i, j)`` keypoint index pairs joined when drawing (0-based).

    Targets (training) add ``keypoints [N, K, 3]`` float ``(x, y, visibility)`` in pixels of the
    input image (visibility 0: not labelled, not trained). Predictions (eval) add ``keypoints
    [N, K, 3]`` ``(x, y, 1)`` in pixels of the input image and ``keypoint_scores [N, K]``
    (torchvision's ``keypoints_scores``: heat-map logits at the chosen points); the loss
    ``loss_keypoint``.
    """

    required_target_keys = ("keypoints",)

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: RPN,
        roi_heads: RoIHeads,
        preprocess: RCNNPreprocess,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        *,
        keypoint_names: Sequence[str] | None = None,
        keypoint_flip_pairs: Sequence[Sequence[int]] | None = None,
        skeleton: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if not roi_heads.has_keypoint:
            raise ValueError("KeypointRCNN needs roi_heads with a keypoint_pooler and a keypoint_head")
        super().__init__(backbone, neck, rpn, roi_heads, preprocess, num_classes, class_names)
        num_keypoints = int(roi_heads.keypoint_head.num_keypoints)
        if keypoint_names is not None and len(keypoint_names) != num_keypoints:
            raise ValueError(f"KeypointRCNN: got {len(keypoint_names)} keypoint_names for the {num_keypoints} "
                             "keypoints of its keypoint head")
        self.num_keypoints = num_keypoints
        self.keypoint_names = None if keypoint_names is None else list(keypoint_names)
        self.keypoint_flip_pairs = (None if keypoint_flip_pairs is None
                                    else _check_pairs(keypoint_flip_pairs, num_keypoints, "keypoint_flip_pairs"))
        self.skeleton = [] if skeleton is None else _check_pairs(skeleton, num_keypoints, "skeleton")

    def check_inputs(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None
    ) -> list[tuple[int, int]]:
        """:meth:`Detector.check_inputs`, and in training each target's ``keypoints`` shape."""
        sizes = super().check_inputs(images, targets)
        if self.training and targets is not None:
            for index, target in enumerate(targets):
                keypoints = target["keypoints"]
                if (not isinstance(keypoints, torch.Tensor) or keypoints.dim() != 3
                        or keypoints.shape[1:] != (self.num_keypoints, 3)
                        or keypoints.shape[0] != target["boxes"].shape[0]):
                    shape = list(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
                    raise ValueError(f"image {index}: KeypointRCNN targets need 'keypoints' [N, {self.num_keypoints}, "
                                     f"3] float (x, y, visibility), one row per box; got {shape}")
        return sizes
