"""The dense-head contract: raw per-location maps, their loss, and their detections.

A dense head predicts at every location of every feature level (an anchor, a default box, a
grid cell). Its three steps, which a detector wires (see ``detectors/ssd.py``, ``detectors/yolo.py``):

* ``forward(features) -> raw``: the network part; ``raw`` is the head's own per-level output
  (the RPN: per-level objectness and delta maps; SSD: class logits and deltas of every default
  box, levels concatenated; YOLOv3: one map per level).
* ``loss(raw, priors, targets, image_sizes) -> {name: scalar}``: matching the targets to the
  priors and the losses, each weighted (the detector sums them with its other stages').
* ``predict(raw, priors, image_sizes) -> per-image dicts``: decoding, then
  :func:`~detkit.models.postprocess.select_detections` with the head's own thresholds
  (``score_thresh``, ``pre_nms_topk``, ``nms_thresh``, ``detections_per_img``); boxes in pixels
  of the batch's images (the detector's preprocess maps them back to the inputs).

``priors`` are the anchors or points of every location, ``[A, 4]`` xyxy pixels in the head's
order (from an :class:`~detkit.models.anchors.AnchorGenerator` or
:class:`~detkit.models.default_boxes.DefaultBoxGenerator`), or None for a head that derives them
itself (YOLOv3's anchors are per-level shapes on the cell grid). ``targets`` are per image
``boxes [N, 4]`` in pixels of the batch's image and ``labels [N]`` int64 0-based.

A new dense family (RetinaNet, FCOS) is a subclass of :class:`DenseHead` with these three methods,
plus a detector that wires backbone, neck, head and priors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from detkit.models.postprocess import NMSOptions

__all__ = ["DenseHead"]


class DenseHead(NMSOptions, nn.Module):
    """Base of the dense heads (see the module docstring).

    Every dense head has the NMS settings of :class:`~detkit.models.postprocess.NMSOptions`
    (``nms_method``, ``class_agnostic_nms``, ``soft_nms_*``), which its ``predict`` hands to
    :func:`~detkit.models.postprocess.select_detections`.

    Attributes:
        num_classes: object classes ``C`` (background excluded); the detector reads its number
            of classes from here.
    """

    num_classes: int

    def forward(self, features: Any) -> Any:
        """Raw per-level predictions of ``features`` (a level -> map dict or a list of maps)."""
        raise NotImplementedError

    def loss(
        self,
        raw: Any,
        priors: Tensor | None,
        targets: Sequence[Mapping[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
    ) -> dict[str, Tensor]:
        """Training losses.

        Args:
            raw: the output of :meth:`forward` for ``B`` images.
            priors: ``[A, 4]`` anchors or points, or None (see the module docstring).
            targets: per image ``boxes [N_i, 4]`` in pixels of the batch's image, ``labels [N_i]``.
            image_sizes: ``(height, width)`` of each image in the batch.

        Returns:
            ``{loss name: weighted scalar}``.
        """
        raise NotImplementedError

    def predict(
        self, raw: Any, priors: Tensor | None, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Detections per image.

        Args:
            raw: the output of :meth:`forward` for ``B`` images.
            priors: ``[A, 4]`` anchors or points, or None.
            image_sizes: ``(height, width)`` of each image in the batch.

        Returns:
            Per image ``boxes [K, 4]`` (pixels of the batch's image), ``scores [K]`` by decreasing
            score and ``labels [K]`` int64 0-based.
        """
        raise NotImplementedError

    def train_or_predict(
        self,
        raw: Any,
        priors: Tensor | None,
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[Mapping[str, Tensor]] | None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """``([], loss(...))`` in training mode, ``(predict(...), {})`` in eval mode: a one-stage
        detector's last step."""
        if self.training:
            if targets is None:
                raise ValueError(f"{type(self).__name__}: targets are required in training mode")
            return [], self.loss(raw, priors, targets, image_sizes)
        return self.predict(raw, priors, image_sizes), {}

    def set_given(self, **settings: Any) -> None:
        """Set each setting that is not None (a head's ``configure(...)``: only what is given
        changes)."""
        for name, value in settings.items():
            if value is not None:
                setattr(self, name, value)
