"""YOLOv3's detection head: per level a 3x3 conv, a 1x1 prediction conv, decoding, loss, detection.

Per level the prediction conv outputs ``A * (5 + C)`` channels: for each of the level's ``A``
anchors (darknet's ``mask``), ``(tx, ty, tw, th, objectness, class_0 .. class_{C-1})`` in that
channel order (darknet's ``[yolo]`` layout). Decoding, in pixels of the network input of size
``(H, W)`` with a grid of ``(h, w)`` cells::

    cx = (col + sigmoid(tx)) * W / w        cy = (row + sigmoid(ty)) * H / h
    bw = exp(tw) * anchor_w                 bh = exp(th) * anchor_h   (anchors in input pixels)
    objectness = sigmoid(to)                class probabilities = sigmoid(tc)   (independent)

The loss (:meth:`YOLOv3Head.loss`) follows darknet's ``[yolo]`` layer:

- Assignment: each ground-truth box goes to the one anchor, over all levels, whose shape best
  matches its shape (IoU of the two ``(w, h)`` boxes placed at the same centre); it is a positive
  of that anchor's level, in the cell holding its centre. Only that anchor predicts it.
- Ignore: a prediction that is not a positive but whose decoded box overlaps some ground truth of
  its image with IoU > ``ignore_thresh`` (darknet: 0.7 in the cfgs, 0.5 in the paper) gets no
  objectness loss; the other non-positives learn objectness 0.
- Objectness and classes: binary cross-entropy on the logits (classes one-hot, positives only).
- Box: darknet's own choice, squared error on ``sigmoid(tx), sigmoid(ty)`` against the centre's
  offset in its cell and on ``tw, th`` against ``log(w / anchor_w)``, ``log(h / anchor_h)``,
  weighted by ``2 - w * h / (W * H)`` so that small boxes count more. (Chosen over GIoU because it
  is what the published weights were trained with and needs no extra balancing.)
- Every term is a sum over cells divided by the number of images, times its weight.

Detection (:meth:`YOLOv3Head.predict`): score = objectness x class probability (OpenCV's region
layer, darknet), each box's best class (or every class with ``multi_label``) above
``score_thresh``, the ``pre_nms_topk`` best, NMS per class (or over all classes with
``class_agnostic_nms``) at ``nms_thresh``, the ``detections_per_img`` best
(:func:`~detkit.models.postprocess.select_detections`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones.darknet import ConvPair, conv_pair, darknet_conv
from detkit.models.dense_heads.base import DenseHead
from detkit.utils.deprecation import MovedAttribute, renamed_keyword
from detkit.models.postprocess import select_detections
from detkit.models.sizing import SizedByInputs
from detkit.ops import box_iou
from detkit.structures import ShapeSpec

# darknet's COCO anchors (yolov3.cfg, width x height in pixels of a 416x416 input), 3 per level.
COCO_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
COCO_ANCHOR_MASKS = ((0, 1, 2), (3, 4, 5), (6, 7, 8))
# yolov3-tiny.cfg: 6 anchors, 3 on p4 and 3 on p5.
TINY_COCO_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
TINY_ANCHOR_MASKS = ((0, 1, 2), (3, 4, 5))


def wh_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """IoU of boxes given by their sizes only, as if they shared a centre.

    Args:
        wh1: ``[M, 2]`` widths and heights.
        wh2: ``[K, 2]`` widths and heights.

    Returns:
        ``[M, K]`` IoU.
    """
    inter = torch.minimum(wh1[:, None], wh2[None]).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter)


class YOLOv3Head(SizedByInputs, DenseHead):
    """Prediction convs, decoding, loss and detection of YOLOv3 (one set of anchors per level).

    Args:
        in_shapes: The neck's levels (``p3``.., shallowest first); None: sized by its detector
            from the neck's ``output_shape()``.
        num_classes: Number of object classes ``C`` (80: COCO).
        anchors: All anchors ``(w, h)`` in pixels of the network input, small to large.
        anchor_masks: Indices into ``anchors`` used by each level, shallowest first.
        mid_channels: Channels of each level's 3x3 conv, shallowest first.
        norm: Norm kind of the 3x3 convs.
        ignore_thresh: IoU above which a non-positive prediction gets no objectness loss.
        loss_weights: Weights of ``loss_xy``, ``loss_wh``, ``loss_obj``, ``loss_cls``.
        score_thresh: Detections need ``objectness x class probability > score_thresh``.
        nms_thresh: IoU threshold of the NMS.
        class_agnostic_nms: One NMS over all classes (OpenCV's sample) instead of one per class.
        multi_label: Keep every class above the threshold for a box, not only its best class.
        pre_nms_topk: Candidates kept (highest scores) per image before the NMS.
        detections_per_img: Detections kept per image after the NMS.
        nms_method, soft_nms_method, soft_nms_sigma, soft_nms_min_score: the NMS kind and Soft-NMS's
            settings (:class:`~detkit.models.postprocess.NMSOptions`; greedy NMS by default).
        pre_nms_top_k, max_detections: deprecated names of ``pre_nms_topk`` and ``detections_per_img``.
    """

    pre_nms_top_k = MovedAttribute("pre_nms_topk")
    max_detections = MovedAttribute("detections_per_img")

    def __init__(
        self,
        in_shapes: Mapping[str, ShapeSpec] | None = None,
        num_classes: int = 80,
        anchors: Sequence[Sequence[float]] = COCO_ANCHORS,
        anchor_masks: Sequence[Sequence[int]] = COCO_ANCHOR_MASKS,
        mid_channels: Sequence[int] = (256, 512, 1024),
        norm: str = "bn",
        ignore_thresh: float = 0.7,
        loss_weights: Mapping[str, float] | None = None,
        *,
        score_thresh: float = 0.005,
        nms_thresh: float = 0.45,
        class_agnostic_nms: bool = False,
        multi_label: bool = False,
        pre_nms_topk: int = 1000,
        detections_per_img: int = 100,
        nms_method: str = "hard",
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
        pre_nms_top_k: int | None = None,
        max_detections: int | None = None,
    ) -> None:
        super().__init__()
        if len(anchor_masks) != len(mid_channels):
            raise ValueError(
                f"YOLOv3Head: {len(anchor_masks)} anchor_masks and {len(mid_channels)} mid_channels must be as many"
            )
        flat = sorted(i for mask in anchor_masks for i in mask)
        if any(i < 0 or i >= len(anchors) for i in flat) or len(set(flat)) != len(flat):
            raise ValueError(
                f"YOLOv3Head: anchor_masks {anchor_masks} must index anchors 0..{len(anchors) - 1} once each"
            )
        if len({len(mask) for mask in anchor_masks}) != 1:
            raise ValueError(f"YOLOv3Head: every level needs as many anchors, got masks {anchor_masks}")
        self.num_classes = num_classes
        self.anchor_masks = tuple(tuple(int(i) for i in mask) for mask in anchor_masks)
        self.num_anchors = len(anchor_masks[0])
        self.mid_channels = tuple(int(c) for c in mid_channels)
        self.norm = norm
        self.ignore_thresh = ignore_thresh
        weights = {"loss_xy": 1.0, "loss_wh": 1.0, "loss_obj": 1.0, "loss_cls": 1.0}
        unknown = set(loss_weights or {}) - set(weights)
        if unknown:
            raise ValueError(f"YOLOv3Head: unknown loss_weights keys {sorted(unknown)}; expected {sorted(weights)}")
        weights.update(loss_weights or {})
        self.loss_weights = weights
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.configure_nms(
            nms_method=nms_method, class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method,
            soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        self.multi_label = multi_label
        self.pre_nms_topk = renamed_keyword(
            "YOLOv3Head", "pre_nms_top_k", pre_nms_top_k, "pre_nms_topk", pre_nms_topk, 1000
        )
        self.detections_per_img = renamed_keyword(
            "YOLOv3Head", "max_detections", max_detections, "detections_per_img", detections_per_img, 100
        )
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).reshape(-1, 2), persistent=False)
        self.in_levels: tuple[str, ...] = ()
        self.convs = nn.ModuleList()
        self.preds = nn.ModuleList()
        self._init_in_shapes(in_shapes)

    def configure(
        self,
        *,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        class_agnostic_nms: bool | None = None,
        multi_label: bool | None = None,
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
            score_thresh=score_thresh, nms_thresh=nms_thresh, multi_label=multi_label, pre_nms_topk=pre_nms_topk,
            detections_per_img=detections_per_img,
        )  # fmt: skip

    def _build(self, in_shapes: dict[str, ShapeSpec]) -> None:
        levels = list(in_shapes)
        if len(levels) != len(self.anchor_masks):
            raise ValueError(
                f"YOLOv3Head: {len(levels)} levels {levels}, {len(self.anchor_masks)} anchor_masks and "
                f"{len(self.mid_channels)} mid_channels must be as many"
            )
        self.in_shapes = dict(in_shapes)
        self.in_levels = tuple(levels)
        outputs = self.num_anchors * (5 + self.num_classes)
        self.convs.extend(
            darknet_conv(in_shapes[name].channels, mid, 3, norm=self.norm)
            for name, mid in zip(levels, self.mid_channels)
        )
        self.preds.extend(nn.Conv2d(mid, outputs, 1) for mid in self.mid_channels)

    def forward(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        """Raw predictions per level.

        Args:
            features: ``{level: [B, C_l, h_l, w_l]}`` with the levels of ``in_shapes``.

        Returns:
            ``[B, A * (5 + C), h_l, w_l]`` per level, shallowest first.
        """
        self._require_sized()
        return [pred(conv(features[name])) for name, conv, pred in zip(self.in_levels, self.convs, self.preds)]

    def _split(self, raw: Tensor) -> Tensor:
        """``[B, A*(5+C), h, w] -> [B, A, h, w, 5+C]``."""
        batch, _, height, width = raw.shape
        return raw.view(batch, self.num_anchors, 5 + self.num_classes, height, width).permute(0, 1, 3, 4, 2)

    def _decode_level(self, p: Tensor, level: int, input_size: tuple[int, int]) -> Tensor:
        """Boxes ``[B, A, h, w, 4]`` xyxy in input pixels from split predictions ``[B, A, h, w, 5+C]``."""
        height, width = p.shape[2:4]
        stride_y, stride_x = input_size[0] / height, input_size[1] / width
        cols = torch.arange(width, device=p.device, dtype=p.dtype)
        rows = torch.arange(height, device=p.device, dtype=p.dtype)[:, None]
        anchors = self.anchors[list(self.anchor_masks[level])].to(p.dtype)
        cx = (p[..., 0].sigmoid() + cols) * stride_x
        cy = (p[..., 1].sigmoid() + rows) * stride_y
        half_w = p[..., 2].exp() * anchors[:, 0, None, None] / 2
        half_h = p[..., 3].exp() * anchors[:, 1, None, None] / 2
        return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)

    def decode(self, raw: Sequence[Tensor], input_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Decodes every level's predictions.

        Args:
            raw: Output of :meth:`forward`.
            input_size: ``(H, W)`` of the network input, pixels.

        Returns:
            ``boxes [B, N, 4]`` xyxy in input pixels, ``objectness [B, N]`` and class
            probabilities ``[B, N, C]`` (both in [0, 1]); ``N = sum_l A * h_l * w_l``, levels
            shallowest first, each in ``(anchor, row, col)`` order.
        """
        boxes, objectness, classes = [], [], []
        for level, out in enumerate(raw):
            p = self._split(out)
            batch = p.shape[0]
            boxes.append(self._decode_level(p, level, input_size).reshape(batch, -1, 4))
            objectness.append(p[..., 4].sigmoid().reshape(batch, -1))
            classes.append(p[..., 5:].sigmoid().reshape(batch, -1, self.num_classes))
        return torch.cat(boxes, 1), torch.cat(objectness, 1), torch.cat(classes, 1)

    def loss(
        self,
        raw: Sequence[Tensor],
        priors: Tensor | None,
        targets: Sequence[Mapping[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
    ) -> dict[str, Tensor]:
        """The YOLOv3 loss (see the module docstring).

        Args:
            raw: Output of :meth:`forward` for ``B`` images.
            priors: None (the anchors are the head's, per level).
            targets: Per image ``boxes [M_i, 4]`` xyxy in input pixels and ``labels [M_i]`` int64;
                ``M_i = 0`` is fine.
            image_sizes: ``(H, W)`` of the network input, per image (one size for the batch).

        Returns:
            ``loss_xy``, ``loss_wh``, ``loss_obj``, ``loss_cls``: weighted scalars.
        """
        input_size = tuple(image_sizes[0])
        device = raw[0].device
        batch = raw[0].shape[0]
        gt_boxes = torch.cat([t["boxes"].to(device, torch.float32).reshape(-1, 4) for t in targets])
        gt_labels = torch.cat([t["labels"].to(device).reshape(-1) for t in targets])
        gt_image = torch.cat(
            [torch.full((len(t["labels"]),), i, device=device, dtype=torch.int64) for i, t in enumerate(targets)]
        )
        gt_wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
        valid = (gt_wh > 0).all(1)  # degenerate boxes have no shape to match
        gt_boxes, gt_labels, gt_image, gt_wh = gt_boxes[valid], gt_labels[valid], gt_image[valid], gt_wh[valid]
        gt_centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        best_anchor = wh_iou(gt_wh, self.anchors).argmax(1) if len(gt_boxes) else gt_labels
        # 2 - relative area: darknet's weight that makes small boxes count more.
        box_scale = 2.0 - gt_wh.prod(1) / (input_size[0] * input_size[1])

        zero = sum(out.sum() for out in raw) * 0.0  # keeps the graph connected with no positives
        totals = {name: zero for name in self.loss_weights}
        for level, out in enumerate(raw):
            p = self._split(out)
            height, width = p.shape[2:4]
            stride = gt_boxes.new_tensor([input_size[1] / width, input_size[0] / height])
            mask = torch.tensor(self.anchor_masks[level], device=device)
            # Which gts this level predicts, and with which of its anchors.
            match = best_anchor[:, None] == mask[None]
            pos = match.any(1)
            local = match.float().argmax(1)[pos]
            image, labels = gt_image[pos], gt_labels[pos]
            grid_xy = gt_centre[pos] / stride
            cell = grid_xy.floor().long()
            col = cell[:, 0].clamp(0, width - 1)
            row = cell[:, 1].clamp(0, height - 1)
            anchor_wh = self.anchors[mask][local]

            # Ignore non-positives whose decoded box already overlaps a gt of their image.
            with torch.no_grad():
                decoded = self._decode_level(p.detach(), level, input_size).reshape(batch, -1, 4)
                best_iou = torch.zeros(decoded.shape[:2], device=device)
                if len(gt_boxes):
                    ious = box_iou(decoded.reshape(-1, 4), gt_boxes).reshape(batch, -1, len(gt_boxes))
                    same_image = torch.arange(batch, device=device)[:, None, None] == gt_image[None, None]
                    best_iou = ious.masked_fill(~same_image, 0.0).amax(2)
            obj_weight = (best_iou <= self.ignore_thresh).float().reshape(p.shape[:4])
            obj_target = torch.zeros_like(obj_weight)
            obj_weight[image, local, row, col] = 1.0
            obj_target[image, local, row, col] = 1.0
            totals["loss_obj"] = totals["loss_obj"] + F.binary_cross_entropy_with_logits(
                p[..., 4], obj_target, weight=obj_weight, reduction="sum"
            )

            chosen = p[image, local, row, col]  # [P, 5 + C]
            scale = box_scale[pos][:, None]
            xy_target = grid_xy - torch.stack([col, row], 1).to(grid_xy.dtype)
            wh_target = torch.log(gt_wh[pos] / anchor_wh)
            totals["loss_xy"] = totals["loss_xy"] + ((chosen[:, :2].sigmoid() - xy_target) ** 2 * scale).sum()
            totals["loss_wh"] = totals["loss_wh"] + ((chosen[:, 2:4] - wh_target) ** 2 * scale).sum()
            class_target = F.one_hot(labels, self.num_classes).to(chosen.dtype)
            totals["loss_cls"] = totals["loss_cls"] + F.binary_cross_entropy_with_logits(
                chosen[:, 5:], class_target, reduction="sum"
            )
        return {name: value * self.loss_weights[name] / batch for name, value in totals.items()}

    def predict(
        self, raw: Sequence[Tensor], priors: Tensor | None, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Detections per image in network-input pixels: :meth:`decode`, then :meth:`select`.

        Args:
            raw: Output of :meth:`forward`.
            priors: None (the anchors are the head's).
            image_sizes: ``(H, W)`` of the network input, per image (one size for the batch).
        """
        return self.select(*self.decode(raw, tuple(image_sizes[0])))

    def select(self, boxes: Tensor, objectness: Tensor, class_probs: Tensor) -> list[dict[str, Tensor]]:
        """Scores, threshold, top-k, NMS and cap on decoded predictions.

        Args:
            boxes: ``[B, N, 4]`` xyxy in network-input pixels.
            objectness: ``[B, N]`` in [0, 1].
            class_probs: ``[B, N, C]`` in [0, 1].

        Returns:
            Per image ``boxes [K, 4]`` (network-input pixels), ``scores [K]`` by decreasing score,
            ``labels [K]``.
        """
        # OpenCV's region layer and darknet both report objectness x class probability.
        scores = objectness[..., None] * class_probs
        return [
            select_detections(
                image_boxes, image_scores, score_thresh=self.score_thresh, multi_label=self.multi_label,
                pre_nms_topk=self.pre_nms_topk, nms_thresh=self.nms_thresh, detections_per_img=self.detections_per_img,
                **self.nms_options(),
            ).as_dict()
            for image_boxes, image_scores in zip(boxes, scores)
        ]  # fmt: skip

    def darknet_convs_per_level(self) -> list[list[ConvPair]]:
        """Per level, deepest first: ``[(3x3 conv, bn), (prediction conv, None)]`` in cfg order."""
        return [[conv_pair(conv), (pred, None)] for conv, pred in zip(reversed(self.convs), reversed(self.preds))]
