"""The anchor-free, decoupled head of YOLOv8 and YOLO11 (ultralytics' ``Detect``), with DFL decoding.

Per level ``l`` (stride ``s_l``, map ``[B, C_l, h, w]``) two branches:

- box: ``Conv 3x3 -> Conv 3x3 -> conv 1x1`` to ``4 * reg_max`` channels, ``c2 = max(16, C_p3 // 4,
  4 * reg_max)`` wide: for each side (left, top, right, bottom, in that order) the logits of a
  distribution over the distances ``0 .. reg_max - 1`` in cells (distribution focal loss, DFL);
- class: ``c3 = max(C_p3, min(num_classes, 100))`` wide, ``Conv 3x3 -> Conv 3x3 -> conv 1x1``
  (YOLOv8) or ``(depthwise 3x3 -> 1x1) x 2 -> conv 1x1`` (YOLO11), to ``num_classes`` logits.

:meth:`YOLOv8Head.forward` returns per level ``[B, 4 * reg_max + C, h, w]``: the box channels
first, then the class logits (the layout ultralytics' ``Detect`` trains on, and that
``detkit.models.yolov8_loss.YOLOv8Loss`` reads).

Decoding (:meth:`YOLOv8Head.decode`), in pixels of the network input: the anchor point of cell
``(row, col)`` is ``(col + 0.5, row + 0.5)`` (ultralytics' ``make_anchors``); each side's distance
is the expectation of its softmax over the bins, ``d = sum_i softmax(logits)_i * i``; the box is
``(anchor - (d_l, d_t), anchor + (d_r, d_b)) * s_l``, computed as ultralytics does it (centre and
size, then corners), so that the boxes are the same floats and NMS keeps the same ones. Class
scores are independent sigmoids.

Detection (:meth:`YOLOv8Head.predict`) is ultralytics' ``non_max_suppression`` through
:func:`~detkit.models.postprocess.select_detections`: every class above ``score_thresh`` with
``multi_label`` (ultralytics' validation), else each box's best class (its predictor); the
``pre_nms_topk`` best (``max_nms`` 30000); NMS at ``nms_thresh`` per class (ultralytics' shift of
each class by ``label * 7680`` pixels, so that the IoUs round as theirs) or over all classes with
``class_agnostic_nms``; the ``detections_per_img`` best (``max_det``).

Defaults are ultralytics' validation settings (score 0.001, IoU 0.7, 300 detections, multi-label):
detkit's ``score_thresh`` is the evaluation threshold; its predictor uses ``score_thresh=0.25``
and ``multi_label=False``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones.yolov8_blocks import Conv, depthwise_conv
from detkit.models.dense_heads.base import DenseHead
from detkit.models.postprocess import select_detections
from detkit.models.sizing import SizedByInputs
from detkit.structures import ShapeSpec

__all__ = ["NMS_CLASS_OFFSET", "YOLOv8Head", "anchor_points"]

NMS_CLASS_OFFSET = 7680.0  # ultralytics' max_wh: each class's boxes are shifted by label * 7680 px for one NMS


def anchor_points(
    sizes: Sequence[tuple[int, int]], strides: Sequence[int], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Cell centres of every level, in cells, and their strides (ultralytics' ``make_anchors``).

    Args:
        sizes: ``(h, w)`` of each level's map.
        strides: pixels per cell of each level.

    Returns:
        ``points [2, A]`` (x then y, ``col + 0.5``, ``row + 0.5``; levels in order, rows then
        columns within a level) and ``strides [1, A]``; ``A = sum h * w``.
    """
    points, level_strides = [], []
    for (height, width), stride in zip(sizes, strides):
        xs = torch.arange(width, device=device, dtype=dtype) + 0.5
        ys = torch.arange(height, device=device, dtype=dtype) + 0.5
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1))))
        level_strides.append(torch.full((1, height * width), float(stride), device=device, dtype=dtype))
    return torch.cat(points, 1), torch.cat(level_strides, 1)


class YOLOv8Head(SizedByInputs, DenseHead):
    """Box and class branches, DFL decoding, loss and detection of YOLOv8 / YOLO11.

    Args:
        in_shapes: the neck's ``p3``, ``p4``, ``p5`` (shallowest first); None: sized by its
            detector from the neck's ``output_shape()``.
        num_classes: object classes ``C``.
        variant: ``"yolov8"`` (3x3 class branch) or ``"yolo11"`` (depthwise class branch).
        reg_max: bins of each side's distance distribution (16).
        loss: the training loss, called ``loss(raw, targets, image_size)`` and returning
            ``loss_box``, ``loss_cls``, ``loss_dfl``; None builds
            ``detkit.models.yolov8_loss.YOLOv8Loss(num_classes, reg_max, strides)`` (ultralytics'
            default weights) when the head is sized.
        score_thresh: candidates need ``score > score_thresh`` (ultralytics' ``conf``).
        nms_thresh: NMS IoU (ultralytics' ``iou``).
        multi_label: every class above the threshold (ultralytics' validation) or the best one.
        class_agnostic_nms: one NMS over all classes (ultralytics' ``agnostic_nms``).
        pre_nms_topk: candidates kept per image before NMS (``max_nms``).
        detections_per_img: detections kept per image (``max_det``).
        nms_method, soft_nms_method, soft_nms_sigma, soft_nms_min_score: the shared NMS settings of
            :class:`~detkit.models.postprocess.NMSOptions` (``"hard"`` is ultralytics'; ``"soft"``
            and ``"none"`` are detkit's options for every detector).
    """

    def __init__(
        self,
        in_shapes: Mapping[str, ShapeSpec] | None = None,
        num_classes: int = 80,
        variant: str = "yolov8",
        reg_max: int = 16,
        loss: nn.Module | None = None,
        *,
        score_thresh: float = 0.001,
        nms_thresh: float = 0.7,
        multi_label: bool = True,
        class_agnostic_nms: bool = False,
        pre_nms_topk: int = 30000,
        detections_per_img: int = 300,
        nms_method: str = "hard",
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
    ) -> None:
        super().__init__()
        if variant not in ("yolov8", "yolo11"):
            raise ValueError(f"YOLOv8Head: variant must be 'yolov8' or 'yolo11', got {variant!r}")
        if num_classes < 1 or reg_max < 1:
            raise ValueError(f"YOLOv8Head: num_classes ({num_classes}) and reg_max ({reg_max}) must be >= 1")
        self.num_classes = int(num_classes)
        self.variant = variant
        self.reg_max = int(reg_max)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.multi_label = multi_label
        self.configure_nms(
            nms_method=nms_method, class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method,
            soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        self.pre_nms_topk = pre_nms_topk
        self.detections_per_img = detections_per_img
        self.register_buffer("bins", torch.arange(self.reg_max, dtype=torch.float32), persistent=False)
        self.criterion = loss
        self.in_levels: tuple[str, ...] = ()
        self.strides: tuple[int, ...] = ()
        self.box_branches = nn.ModuleList()
        self.cls_branches = nn.ModuleList()
        self._init_in_shapes(in_shapes)

    def configure(
        self,
        *,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        multi_label: bool | None = None,
        class_agnostic_nms: bool | None = None,
        pre_nms_topk: int | None = None,
        detections_per_img: int | None = None,
        nms_method: str | None = None,
        soft_nms_method: str | None = None,
        soft_nms_sigma: float | None = None,
        soft_nms_min_score: float | None = None,
    ) -> None:
        """Set the detection settings that are given (see the class docstring)."""
        self.configure_nms(
            nms_method=nms_method, class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method,
            soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        self.set_given(
            score_thresh=score_thresh, nms_thresh=nms_thresh, multi_label=multi_label,
            pre_nms_topk=pre_nms_topk, detections_per_img=detections_per_img,
        )  # fmt: skip

    def _build(self, in_shapes: dict[str, ShapeSpec]) -> None:
        self.in_shapes = dict(in_shapes)
        self.in_levels = tuple(in_shapes)
        self.strides = tuple(int(spec.stride) for spec in in_shapes.values())
        channels = [spec.channels for spec in in_shapes.values()]
        box_width = max(16, channels[0] // 4, 4 * self.reg_max)
        cls_width = max(channels[0], min(self.num_classes, 100))
        for width in channels:
            self.box_branches.append(
                nn.Sequential(Conv(width, box_width, 3), Conv(box_width, box_width, 3),
                              nn.Conv2d(box_width, 4 * self.reg_max, 1))
            )  # fmt: skip
            if self.variant == "yolov8":
                cls_convs = [Conv(width, cls_width, 3), Conv(cls_width, cls_width, 3)]
            else:
                cls_convs = [
                    nn.Sequential(depthwise_conv(width, width, 3), Conv(width, cls_width, 1)),
                    nn.Sequential(depthwise_conv(cls_width, cls_width, 3), Conv(cls_width, cls_width, 1)),
                ]
            self.cls_branches.append(nn.Sequential(*cls_convs, nn.Conv2d(cls_width, self.num_classes, 1)))
        self._init_biases()
        if self.criterion is None:
            from detkit.models.yolov8_loss import YOLOv8Loss

            self.criterion = YOLOv8Loss(self.num_classes, reg_max=self.reg_max, strides=self.strides)
        for name, mine in (("strides", self.strides), ("reg_max", self.reg_max), ("num_classes", self.num_classes)):
            theirs = getattr(self.criterion, name, None)
            if theirs is not None and (tuple(theirs) if name == "strides" else theirs) != mine:
                raise ValueError(f"YOLOv8Head: its loss has {name}={theirs} but the head {name}={mine}")

    @torch.no_grad()
    def _init_biases(self) -> None:
        """ultralytics' ``bias_init``: box logits 2.0; class logits ``log(5 / C / (640 / s)^2)``
        (about 0.01 objects per cell of a 640 image)."""
        for box, cls, stride in zip(self.box_branches, self.cls_branches, self.strides):
            box[-1].bias.fill_(2.0)
            cls[-1].bias.fill_(math.log(5 / self.num_classes / (640 / stride) ** 2))

    def forward(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        """Raw predictions per level.

        Args:
            features: ``{level: [B, C_l, h_l, w_l]}`` with the levels of ``in_shapes``.

        Returns:
            ``[B, 4 * reg_max + num_classes, h_l, w_l]`` per level, shallowest first (box
            distribution logits, then class logits).
        """
        self._require_sized()
        return [
            torch.cat((box(features[name]), cls(features[name])), 1)
            for name, box, cls in zip(self.in_levels, self.box_branches, self.cls_branches)
        ]

    def decode(self, raw: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Boxes and class probabilities of every location (see the module docstring).

        Args:
            raw: the output of :meth:`forward`.

        Returns:
            ``boxes [B, A, 4]`` xyxy in network-input pixels and ``scores [B, A, C]`` in [0, 1];
            ``A = sum_l h_l * w_l``, levels in order, each row-major.
        """
        batch = raw[0].shape[0]
        flat = torch.cat([level.flatten(2) for level in raw], 2)  # [B, 4 * reg_max + C, A]
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.num_classes), 1)
        count = flat.shape[2]
        # The expectation over the bins as a 1x1 conv over them, as ultralytics' DFL layer (same floats).
        probs = box_logits.view(batch, 4, self.reg_max, count).transpose(2, 1).softmax(1)  # [B, reg_max, 4, A]
        weight = self.bins.to(flat.dtype).view(1, self.reg_max, 1, 1)
        distances = F.conv2d(probs, weight).view(batch, 4, count)  # [B, 4, A]
        points, strides = anchor_points([tuple(level.shape[-2:]) for level in raw], self.strides, flat.dtype, flat.device)
        left_top, right_bottom = distances.chunk(2, 1)
        top_left, bottom_right = points - left_top, points + right_bottom
        # Centre and size first, then the corners: ultralytics' dist2bbox, "* strides" and xywh2xyxy.
        centre = (top_left + bottom_right) / 2 * strides
        half = (bottom_right - top_left) * strides / 2
        boxes = torch.cat((centre - half, centre + half), 1)  # [B, 4, A]
        return boxes.transpose(1, 2), cls_logits.sigmoid().transpose(1, 2)

    def loss(
        self,
        raw: Sequence[Tensor],
        priors: Tensor | None,
        targets: Sequence[Mapping[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
    ) -> dict[str, Tensor]:
        """The training loss of ``criterion`` (task-aligned assignment, CIoU + DFL + BCE).

        Args:
            raw: Output of :meth:`forward` for ``B`` images.
            priors: None (the points are the head's, per level).
            targets: Per image ``boxes [M_i, 4]`` xyxy in pixels of the batch image and ``labels [M_i]``.
            image_sizes: ``(H, W)`` of the network input, per image (one size for the batch).

        Returns:
            ``loss_box``, ``loss_cls``, ``loss_dfl``: weighted scalars.
        """
        return self.criterion(list(raw), list(targets), tuple(image_sizes[0]))

    def predict(
        self, raw: Sequence[Tensor], priors: Tensor | None, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Detections per image in network-input pixels (ultralytics' ``non_max_suppression``).

        Args:
            raw: Output of :meth:`forward`.
            priors: None.
            image_sizes: ``(H, W)`` of the network input, per image.

        Returns:
            Per image ``boxes [K, 4]``, ``scores [K]`` by decreasing score, ``labels [K]``.
        """
        boxes, scores = self.decode(raw)
        return [
            select_detections(
                image_boxes, image_scores, score_thresh=self.score_thresh, multi_label=self.multi_label,
                pre_nms_topk=self.pre_nms_topk, nms_thresh=self.nms_thresh, nms_class_offset=NMS_CLASS_OFFSET,
                detections_per_img=self.detections_per_img, **self.nms_options(),
            ).as_dict()
            for image_boxes, image_scores in zip(boxes, scores)
        ]  # fmt: skip
