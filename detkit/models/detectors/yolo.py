"""YOLOv3 (Redmon & Farhadi 2018): one-stage detector on a fixed-size input.

``images -> YOLOPreprocess (resize or letterbox to input_size, normalise) -> backbone -> neck ->
head -> training: the head's loss / eval: the head's decoding, score = objectness x class
probability, threshold, NMS -> boxes mapped back to each input image``. The input stage and the
way back are :mod:`detkit.models.preprocess.yolo` (``resize_mode`` "resize" or "letterbox",
multi-scale ``train_sizes``), the loss and the detection :mod:`detkit.models.dense_heads.yolo_head`;
this detector wires them and keeps darknet's conv order and batch-norm fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detkit.models.backbones.darknet import ConvPair
from detkit.models.fuse import fold_batch_norms
from detkit.models.dense_heads.yolo_head import YOLOv3Head
from detkit.utils.deprecation import MovedAttribute, renamed_keyword
from detkit.models.detectors.base import Detector, hand_on_settings, preprocess_or_build
from detkit.models.preprocess.yolo import RESIZE_MODES, YOLOPreprocess
from detkit.structures import ImageList

__all__ = ["PREPROCESS_MODES", "YOLOv3"]

PREPROCESS_MODES = RESIZE_MODES  # the old name of YOLOPreprocess's resize modes


class YOLOv3(Detector):
    """YOLOv3 / YOLOv3-tiny detector.

    Args:
        backbone: ``[B, 3, H, W]`` -> ``{cK: map}`` (:class:`~detkit.models.backbones.darknet.Darknet53`
            or ``DarknetTiny``).
        neck: ``{cK} -> {pK}`` (:class:`~detkit.models.necks.yolo_neck.YOLOv3Neck`); built without
            ``in_shapes`` it is sized from ``backbone.output_shape()``, given ones are checked.
        head: :class:`~detkit.models.dense_heads.yolo_head.YOLOv3Head` on the neck's levels (sized
            from the neck's ``output_shape()`` likewise); it owns the detection settings.
        input_size: ``(H, W)`` of the network input for inference; multiples of 32.
        resize_mode: ``"resize"`` or ``"letterbox"`` (see :mod:`detkit.models.preprocess.yolo`).
        train_sizes: Square input sizes drawn per training batch (multi-scale training), or None
            to train at ``input_size``.
        pixel_mean: Subtracted from the [0, 1] RGB pixels (darknet: none).
        pixel_std: Divides them afterwards (darknet: none).
        num_classes: optional: checked against ``head.num_classes``.
        class_names: Name of each class, or None.
        preprocess: the input stage (a :class:`YOLOPreprocess`); None builds one from
            ``input_size``, ``resize_mode``, ``train_sizes``, ``pixel_mean`` and ``pixel_std``. A
            string is the deprecated spelling of ``resize_mode``.
        score_thresh, nms_thresh, class_agnostic_nms, multi_label, pre_nms_topk, detections_per_img:
            deprecated here: the head's detection settings, set on the head when given (also as
            ``pre_nms_top_k`` and ``max_detections``, their older names).

    Call ``detector(images, targets=None) -> (predictions, losses)`` (docs/conventions.md):
    ``images`` are ``[3, H_i, W_i]`` RGB in [0, 1]; in training ``losses`` has ``loss_xy``,
    ``loss_wh``, ``loss_obj``, ``loss_cls``; in eval each prediction has ``boxes [K, 4]`` xyxy in
    pixels of its image, ``labels [K]`` and ``scores [K]`` by decreasing score.
    """

    require_float_images = False  # uint8 images are 8-bit levels, read by the preprocess
    # A uint8 image is read as k / 255 (YOLOPreprocess): the Predictor hands uint8 photos over as
    # they are, and the 8-bit resize makes no trip to float and back.
    uint8_images_are_levels = True
    # One fixed input size: the inference fast path reorders each conv's weight for oneDNN once
    # and fuses the LeakyReLU into it (detkit.models.packed_conv, via detkit.models.fuse).
    prepack_convs = True

    train_sizes = MovedAttribute("preprocess.train_sizes")
    pixel_mean = MovedAttribute("preprocess.pixel_mean")
    pixel_std = MovedAttribute("preprocess.pixel_std")
    score_thresh = MovedAttribute("head.score_thresh")
    nms_thresh = MovedAttribute("head.nms_thresh")
    class_agnostic_nms = MovedAttribute("head.class_agnostic_nms")
    multi_label = MovedAttribute("head.multi_label")
    pre_nms_top_k = MovedAttribute("head.pre_nms_topk")
    max_detections = MovedAttribute("head.detections_per_img")

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: YOLOv3Head,
        *,
        input_size: Sequence[int] = (416, 416),
        resize_mode: str = "resize",
        train_sizes: Sequence[int] | None = None,
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        preprocess: YOLOPreprocess | str | None = None,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        class_agnostic_nms: bool | None = None,
        multi_label: bool | None = None,
        pre_nms_topk: int | None = None,
        detections_per_img: int | None = None,
        pre_nms_top_k: int | None = None,
        max_detections: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(preprocess, str):
            resize_mode = renamed_keyword("YOLOv3", "preprocess", preprocess, "resize_mode", resize_mode, "resize")
            preprocess = None
        self.preprocess = preprocess_or_build(
            "YOLOv3", preprocess, lambda: YOLOPreprocess(input_size, resize_mode, train_sizes, pixel_mean, pixel_std),
            dict(input_size=(input_size, (416, 416)), resize_mode=(resize_mode, "resize"),
                 train_sizes=(train_sizes, None), pixel_mean=(pixel_mean, (0.0, 0.0, 0.0)),
                 pixel_std=(pixel_std, (1.0, 1.0, 1.0))),
        )  # fmt: skip
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.size_parts(backbone, neck, [head])
        self.init_classes(num_classes, class_names)
        self.fused = False
        settings = dict(
            score_thresh=score_thresh, nms_thresh=nms_thresh, class_agnostic_nms=class_agnostic_nms,
            multi_label=multi_label,
            pre_nms_topk=pre_nms_topk if pre_nms_topk is not None else pre_nms_top_k,
            detections_per_img=detections_per_img if detections_per_img is not None else max_detections,
        )  # fmt: skip
        hand_on_settings("YOLOv3", head, settings, head.configure)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the network input at inference (the preprocess's)."""
        return self.preprocess.input_size

    def forward_batch(
        self, batch: ImageList, targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Backbone, neck and head on the network input (see :class:`Detector`)."""
        raw = self.head(self.neck(self.backbone(batch.tensor)))
        return self.head.train_or_predict(raw, None, batch.image_sizes, targets)

    # ------------------------------------------------------------------ darknet order, fusion

    def darknet_convs(self) -> list[ConvPair]:
        """Every ``(conv, bn or None)`` in darknet's cfg order (the order of a ``.weights`` file).

        darknet interleaves neck and head: backbone, then for each level from the deepest the
        neck's convs of that level followed by the head's 3x3 and prediction convs.
        """
        pairs = list(self.backbone.darknet_convs())
        for neck_level, head_level in zip(self.neck.darknet_convs_per_level(), self.head.darknet_convs_per_level()):
            pairs += neck_level + head_level
        return pairs

    @torch.no_grad()
    def fuse(self) -> YOLOv3:
        """Folds every batch norm into its conv for inference (same outputs, fewer ops).

        Puts the model in eval mode; a fused model cannot be trained or exported to ``.weights``.
        On CPU, ``model.fuse().to(memory_format=torch.channels_last)`` is the fast configuration
        (about 0.6x the time of the plain model: see tools/benchmark_yolo.py).

        Returns:
            ``self``.
        """
        self.eval()
        fold_batch_norms(self)  # the shared fold of detkit.models.fuse
        self.fused = True
        return self

    def train(self, mode: bool = True) -> YOLOv3:
        """Sets train mode; a fused model has no batch norms left to train and refuses."""
        if mode and getattr(self, "fused", False):
            raise RuntimeError("YOLOv3: this model was fused for inference (fuse()); build a new one to train")
        return super().train(mode)
