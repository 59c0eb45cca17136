"""Two-stage detectors: Faster R-CNN (Ren et al. 2015) and Mask R-CNN (He et al. 2017).

``images -> preprocess (normalise, resize, pad) -> backbone -> neck (FPN) -> RPN proposals ->
RoI heads -> detections mapped back to the input images``. Every part is a ready module; the
detector only wires them and checks its inputs (see docs/conventions.md for the formats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from detkit.models.dense_heads.rpn import RPN
from detkit.models.preprocess import RCNNPreprocess
from detkit.models.roi_heads.roi_heads import RoIHeads
from detkit.structures import check_image_list, validate_targets


class FasterRCNN(nn.Module):
    """Faster R-CNN: a region proposal network and a box head on shared features.

    Args:
        backbone: images ``[B, 3, H, W]`` -> dict of feature maps.
        neck: feature dict -> feature dict (an FPN), or None to use the backbone's maps directly.
        rpn: the proposal stage.
        roi_heads: the box (and mask) stage; its ``num_classes`` must equal ``num_classes``.
        preprocess: normalisation, resizing and padding of the inputs.
        num_classes: number of object classes (background excluded; labels are 0-based).
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

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: RPN,
        roi_heads: RoIHeads,
        preprocess: RCNNPreprocess,
        num_classes: int,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if roi_heads.num_classes != num_classes:
            raise ValueError(f"roi_heads has {roi_heads.num_classes} classes but the detector has {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class_names for num_classes={num_classes}")
        self.backbone = backbone
        self.neck = neck
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.preprocess = preprocess
        self.num_classes = num_classes
        self.class_names = None if class_names is None else list(class_names)

    def _check_images(self, images: Sequence[Tensor]) -> list[tuple[int, int]]:
        # Floating point is checked by the preprocess, which normalises the images.
        return check_image_list(images, type(self).__name__)

    def _check_targets(self, targets: Sequence[Mapping[str, Tensor]], sizes: list[tuple[int, int]]) -> None:
        validate_targets(targets, image_sizes=sizes, num_classes=self.num_classes)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detect (eval) or compute the losses (training); see the class docstring."""
        original_sizes = self._check_images(images)
        if self.training:
            if targets is None:
                raise ValueError(f"{type(self).__name__} needs targets in training mode (call .eval() to detect)")
            self._check_targets(targets, original_sizes)
        else:
            targets = None  # losses are computed in training mode only

        batch, resized_targets = self.preprocess(images, targets)
        features = self.backbone(batch.tensor)
        if self.neck is not None:
            features = self.neck(features)
        proposals, rpn_losses = self.rpn(batch, features, resized_targets)
        detections, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, resized_targets)
        if self.training:
            return [], {**roi_losses, **rpn_losses}
        return self.preprocess.postprocess(detections, batch.image_sizes, original_sizes), {}


class MaskRCNN(FasterRCNN):
    """Mask R-CNN: Faster R-CNN whose ``roi_heads`` has a mask head; targets need ``masks``.

    Args: as :class:`FasterRCNN`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: RPN,
        roi_heads: RoIHeads,
        preprocess: RCNNPreprocess,
        num_classes: int,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not roi_heads.has_mask:
            raise ValueError("MaskRCNN needs roi_heads with a mask_pooler and a mask_head")
        super().__init__(backbone, neck, rpn, roi_heads, preprocess, num_classes, class_names)

    def _check_targets(self, targets: Sequence[Mapping[str, Tensor]], sizes: list[tuple[int, int]]) -> None:
        super()._check_targets(targets, sizes)
        for index, target in enumerate(targets):
            if "masks" not in target:
                raise KeyError(f"image {index}: MaskRCNN targets need 'masks' [N, H, W] (has {sorted(target)})")
