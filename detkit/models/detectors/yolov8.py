"""YOLOv8 and YOLO11 (ultralytics): one anchor-free detector, two sets of blocks.

``images -> LetterboxPreprocess (ultralytics' LetterBox: ratio-keeping resize, grey 114 padding,
the smallest stride-multiple rectangle at inference) -> backbone (c3, c4, c5) -> PAN neck (p3, p4,
p5) -> YOLOv8Head -> training: the head's loss (task-aligned assignment, CIoU + DFL + BCE) / eval:
DFL decoding, score threshold, per-class NMS, max detections -> boxes mapped back to each input
image (ultralytics' scale_boxes)``.

YOLO11 is this detector with ``variant="yolo11"`` parts (C3k2 blocks, C2PSA, a depthwise class
branch): :func:`yolov8_parts` builds either. The weights of an ultralytics ``DetectionModel`` of
either variant convert with :mod:`detkit.models.convert.ultralytics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detkit.models.backbones.yolov8 import YOLOv8Backbone
from detkit.models.dense_heads.yolov8_head import YOLOv8Head
from detkit.models.detectors.base import Detector, preprocess_or_build
from detkit.models.necks.yolov8_pan import YOLOv8PAN
from detkit.models.preprocess.letterbox import LetterboxPreprocess
from detkit.structures import ImageList

__all__ = ["CHANNELS_LAST_MODES", "YOLOv8", "yolov8_parts"]

CHANNELS_LAST_MODES = ("train", "off")  # YOLOv8(channels_last=...)


def yolov8_parts(
    variant: str = "yolov8", scale: str | Sequence[float] = "n", num_classes: int = 80, **head_kwargs: object
) -> dict[str, nn.Module]:
    """``{"backbone", "neck", "head"}`` of a YOLOv8 / YOLO11 model at ``scale``.

    Args:
        variant: ``"yolov8"`` or ``"yolo11"``.
        scale: ``"n"``, ``"s"``, ``"m"``, ``"l"``, ``"x"`` or ``(depth, width, max_channels)``.
        num_classes: object classes.
        **head_kwargs: passed to :class:`YOLOv8Head` (``loss``, ``score_thresh``...).
    """
    return dict(
        backbone=YOLOv8Backbone(variant, scale),
        neck=YOLOv8PAN(variant=variant, scale=scale),
        head=YOLOv8Head(num_classes=num_classes, variant=variant, **head_kwargs),  # type: ignore[arg-type]
    )


class YOLOv8(Detector):
    """YOLOv8 / YOLO11 detector (see the module docstring).

    Args:
        backbone: ``[B, 3, H, W] -> {c3, c4, c5}`` (:class:`YOLOv8Backbone`).
        neck: ``{c3, c4, c5} -> {p3, p4, p5}`` (:class:`YOLOv8PAN`); sized from the backbone's
            ``output_shape()`` when built without ``in_shapes``.
        head: :class:`YOLOv8Head` on the neck's levels (sized likewise); it owns the detection
            settings and the loss.
        input_size: ``(H, W)`` letterbox target (ultralytics' ``imgsz``), multiples of 32.
        rect: at inference, letterbox to the smallest multiple-of-32 rectangle when the batch's
            images share a shape (ultralytics' predictor); False: always ``input_size``.
        num_classes: optional: checked against ``head.num_classes``.
        class_names: name of each class, or None.
        preprocess: the input stage; None builds a :class:`LetterboxPreprocess` from
            ``input_size`` and ``rect``.
        channels_last: memory format of the batch in training. ``"train"`` (default): on the CPU
            a training batch is channels-last (NHWC) in memory, so every convolution, batch norm
            and their backward run oneDNN's NHWC kernels (a train step takes 12-20 % less CPU
            time than in NCHW, tools/benchmark_yolov8.py); the weights keep their format
            (checkpoints are as before), eval mode and other devices are untouched. ``"off"``:
            NCHW throughout. The values are those of ultralytics' NCHW step up to float
            accumulation order: a convolution's weight gradient sums over every pixel, and the
            gradients differ by at most ~1e-4 of each tensor's largest one
            (tests/models/yolov8/test_yolov8_training_loss.py states the bound).

    Call ``detector(images, targets=None) -> (predictions, losses)`` (docs/conventions.md): in
    training ``losses`` has ``loss_box``, ``loss_cls``, ``loss_dfl``; in eval each prediction has
    ``boxes [K, 4]`` xyxy in pixels of its image, ``labels [K]`` and ``scores [K]`` by decreasing score.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: YOLOv8Head,
        *,
        input_size: Sequence[int] = (640, 640),
        rect: bool = True,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        preprocess: nn.Module | None = None,
        channels_last: str = "train",
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.preprocess = preprocess_or_build(
            "YOLOv8", preprocess, lambda: LetterboxPreprocess(input_size, rect),
            dict(input_size=(input_size, (640, 640)), rect=(rect, True)),
        )  # fmt: skip
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.size_parts(backbone, neck, [head])
        self.init_classes(num_classes, class_names)

    @property
    def channels_last(self) -> str:
        """``"train"`` or ``"off"``: the batch's memory format in training (see the class docstring)."""
        return self._channels_last

    @channels_last.setter
    def channels_last(self, mode: str) -> None:
        if mode not in CHANNELS_LAST_MODES:
            raise ValueError(f"YOLOv8: channels_last must be one of {', '.join(CHANNELS_LAST_MODES)}, got {mode!r}")
        self._channels_last = mode

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` letterbox target (the preprocess's)."""
        return self.preprocess.input_size

    def forward_batch(
        self, batch: ImageList, targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Backbone, neck and head on the letterboxed batch (see :class:`Detector`)."""
        images = batch.tensor
        if self.training and self.channels_last == "train" and images.device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        raw = self.head(self.neck(self.backbone(images)))
        return self.head.train_or_predict(raw, None, batch.image_sizes, targets)
