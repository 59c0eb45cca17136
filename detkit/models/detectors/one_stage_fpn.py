"""One-stage detectors on an FPN: RetinaNet (Lin et al. 2017) and FCOS (Tian et al. 2019).

``images -> RCNNPreprocess (normalise, resize, pad) -> backbone -> FPN (P3-P7) -> dense head
(class and box subnets on every level) -> training: the head's matching and losses / eval: the
head's per-level top-k and NMS -> boxes mapped back to the input images``. The two families
differ only in their head (:class:`~detkit.models.dense_heads.retinanet_head.RetinaNetHead`,
:class:`~detkit.models.dense_heads.fcos_head.FCOSHead`) and their anchors (9 per location for
RetinaNet, one stride-sized square per location for FCOS); this detector wires the parts, the
checks, preprocessing and mapping back are :class:`~detkit.models.detectors.base.Detector`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from detkit.models.anchors import AnchorGenerator
from detkit.models.dense_heads.fpn_dense_head import FPNDenseHead
from detkit.models.detectors.base import Detector
from detkit.models.preprocess import RCNNPreprocess
from detkit.structures import ImageList

__all__ = ["FCOS", "OneStageFPNDetector", "RetinaNet"]


class OneStageFPNDetector(Detector):
    """A backbone, an FPN, a dense head and its anchors (see the module docstring).

    Args:
        backbone: images ``[B, 3, H, W]`` -> dict of feature maps.
        neck: feature dict -> feature dict (an FPN with P6/P7), sized from
            ``backbone.output_shape()`` when built without input shapes; the head reads every
            output level, in order.
        head: the dense head; sized from the neck's channels when built without them.
        anchor_generator: anchors (or points) of every level, in the head's order.
        preprocess: normalisation, resizing and padding (torchvision's ``GeneralizedRCNNTransform``).
        num_classes: optional: checked against ``head.num_classes`` (object classes, labels 0-based).
        class_names: optional name of each class.

    Call ``detector(images, targets=None) -> (predictions, losses)``:

    * ``images``: list of ``[3, H_i, W_i]`` float RGB in [0, 1], sizes may differ.
    * ``targets`` (training): per image ``boxes [N, 4]`` xyxy pixels and ``labels [N]`` int64
      0-based; ``N = 0`` is fine.
    * training: ``([], losses)``: ``loss_classifier``, ``loss_box_reg`` (and FCOS's ``loss_centerness``).
    * eval: per image ``boxes [K, 4]`` in pixels of the input image, ``labels [K]``, ``scores [K]``
      by decreasing score; ``losses == {}``.

    Raises:
        ValueError: the head's anchors per cell differ from the generator's on some level.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: FPNDenseHead,
        anchor_generator: AnchorGenerator,
        preprocess: RCNNPreprocess,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.anchor_generator = anchor_generator
        self.preprocess = preprocess
        self.size_parts(backbone, neck, [head])
        self.init_classes(num_classes, class_names)
        per_cell = anchor_generator.num_anchors_per_location()
        if any(count != head.num_anchors for count in per_cell):
            raise ValueError(
                f"{type(self).__name__}: head predicts {head.num_anchors} anchors per cell but the "
                f"anchor_generator gives {per_cell} per level"
            )

    def forward_batch(
        self, batch: ImageList, targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Backbone, FPN, head and anchors on the padded batch (see :class:`Detector`)."""
        maps = list(self.neck(self.backbone(batch.tensor)).values())
        raw = self.head(maps)
        priors = self.anchor_generator(batch, maps)[0]
        return self.head.train_or_predict(raw, priors, batch.image_sizes, targets)


class RetinaNet(OneStageFPNDetector):
    """RetinaNet: :class:`OneStageFPNDetector` with a
    :class:`~detkit.models.dense_heads.retinanet_head.RetinaNetHead` (9 anchors per cell).

    Args: as :class:`OneStageFPNDetector`.
    """


class FCOS(OneStageFPNDetector):
    """FCOS: :class:`OneStageFPNDetector` with an :class:`~detkit.models.dense_heads.fcos_head.FCOSHead`
    (one point per location, stride-sized anchors).

    Args: as :class:`OneStageFPNDetector`.
    """
