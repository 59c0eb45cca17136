"""MTCNN (Zhang et al. 2016): a cascade of three small networks that finds faces and five landmarks.

``PNet`` scans an image pyramid (fully convolutional, one 12x12 window every 2 pixels), ``RNet``
re-scores 24x24 crops of its candidates and ``ONet`` 48x48 crops, adding five landmarks. Each
stage keeps candidates above its threshold, suppresses duplicates (NMS) and calibrates the boxes
with its regression outputs; candidates are made square ("rerec") before they are cropped.

Inference reproduces facenet-pytorch 2.6.0 (``facenet_pytorch/models/utils/detect_face.py``), so
its converted weights (:mod:`detkit.models.convert.mtcnn_facenet`) give its results to about 1e-5
in probability. Its conventions, each kept on purpose:

* Pixels: the networks see ``(v - 127.5) * 0.0078125`` of 0-255 values; detkit's images are in
  [0, 1], so they are multiplied by ``pixel_scale = 255`` first.
* Pyramid: scales ``12 / min_face_size * factor**k`` while the shorter side, scaled, is >= 12;
  level ``k`` is the image resized to ``(int(H * s + 1), int(W * s + 1))`` by area interpolation
  (``F.interpolate(mode="area")``, i.e. adaptive average pooling).
* PNet boxes: output cell ``(x, y)`` of a level with scale ``s`` is the window
  ``floor((2x + 1) / s), floor((2y + 1) / s), floor((2x + 12) / s), floor((2y + 12) / s)``
  (1-based pixel indices of the original MATLAB code, kept as they are), kept when ``p >= 0.6``.
* NMS: PNet within each scale (IoU 0.5) then across scales (0.7), RNet 0.7, all with continuous
  areas (torchvision's); ONet 0.7 on intersection over the smaller box with ``+1`` widths (the
  numpy NMS of the original, ``area = (x2 - x1 + 1) * (y2 - y1 + 1)``): realised by calling
  :func:`detkit.ops.batched_nms` on boxes whose ``x2, y2`` are moved by +1.
* Calibration: after PNet ``x1 += dx1 * (x2 - x1)`` (no +1); after RNet and ONet ``+1`` widths,
  ``x1 += dx1 * (x2 - x1 + 1)``. Landmarks: ``x = x1 - 1 + px * (x2 - x1 + 1)`` on the box
  before ONet's calibration.
* Crops: boxes are truncated to integers, clipped to ``[1, W] x [1, H]`` (1-based, inclusive) and
  the rows ``y1 - 1 .. y2 - 1`` / columns ``x1 - 1 .. x2 - 1`` are resized by area interpolation
  (NOT zero-padded: a box that leaves the image is squeezed into the square). Here that crop and
  resize runs for all boxes of all images at once on integral images (:func:`area_crop_resize`).
  A box whose crop is empty is dropped (facenet-pytorch skips its crop but keeps the box, which
  misaligns its later ones).

Batching and speed: images of the same size run PNet as one batch per pyramid level (a loop over
levels and distinct image sizes, never over faces); RNet and ONet take the crops of all images at
once. Each image's integral image gives both the pyramid levels and the crops
(:mod:`detkit.models.detectors.mtcnn.resampling`). The input normalisation is folded into each
network's first convolution (:mod:`detkit.models.detectors.mtcnn.networks`), and the networks run
in channels_last memory format, which mkldnn's kernels handle fastest.

The cascade is a :class:`~detkit.models.detectors.base.Detector` as far as it fits: the input
checks, the targets contract (training draws each stage's samples from the annotated images,
:mod:`detkit.models.detectors.mtcnn.training`) and the class names are the base's; it has no
preprocess module (each network resamples the images itself).

Outputs are facenet-pytorch's numbers; with ``clip_boxes=True`` (the default) boxes are clipped to
the image (facenet-pytorch does not clip; its faces inside the image are unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import guard_or_false, guard_or_true

from detkit.models.detectors.base import Detector, check_image_values
from detkit.models.detectors.mtcnn.networks import ONet, PNet, RNet, input_affine
from detkit.models.detectors.mtcnn.resampling import IntegralImages, area_crop_resize, area_resize, summed_area_table
from detkit.ops import batched_nms
from detkit.structures import check_image_list

__all__ = ["MTCNN", "square_boxes"]


def square_boxes(boxes: Tensor) -> Tensor:
    """MTCNN's ``rerec``: the square of side ``max(w, h)`` with the same centre (no +1).

    Args: boxes ``[N, 4]`` xyxy. Returns ``[N, 4]``.
    """
    wh = boxes[:, 2:] - boxes[:, :2]
    side = wh.max(dim=1, keepdim=True).values
    top_left = boxes[:, :2] + wh * 0.5 - side * 0.5
    return torch.cat([top_left, top_left + side], dim=1)


def _calibrate(boxes: Tensor, deltas: Tensor, plus_one: bool) -> Tensor:
    """``x1 + dx1 * w`` etc., with ``w = x2 - x1 (+ 1)`` (PNet: no +1; RNet and ONet: +1)."""
    wh = boxes[:, 2:] - boxes[:, :2] + (1.0 if plus_one else 0.0)
    return boxes + deltas * wh.repeat(1, 2)


class MTCNN(Detector):
    """The MTCNN cascade: images in, faces with five landmarks out.

    Args:
        pnet, rnet, onet: the three networks (fresh ones when ``None``).
        min_face_size: smallest face searched for, in pixels (sets the first pyramid scale).
        scale_factor: ratio between pyramid levels.
        thresholds: face probability each stage keeps (PNet ``>=``, RNet and ONet ``>``).
        nms_thresholds: PNet within a scale, PNet across scales, RNet (IoU), ONet (over the
            smaller box, +1 widths).
        pixel_scale: multiplies the [0, 1] images into the 0-255 range the networks expect.
        clip_boxes: clip output boxes to the image.
        train_samples: per image and stage, ``(negatives, parts, positives)`` drawn for the
            training losses (see :mod:`detkit.models.mtcnn_training`).
        train_stages: which networks train-mode ``forward`` computes losses for.
    """

    num_classes = 1
    class_names = ["face"]
    require_float_images = False  # scaled to 0-255 float32 by the cascade, as before
    allow_empty_batch = True

    def __init__(
        self,
        pnet: PNet | None = None,
        rnet: RNet | None = None,
        onet: ONet | None = None,
        min_face_size: float = 20.0,
        scale_factor: float = 0.709,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        nms_thresholds: Sequence[float] = (0.5, 0.7, 0.7, 0.7),
        pixel_scale: float = 255.0,
        clip_boxes: bool = True,
        train_samples: Sequence[int] = (24, 8, 8),
        train_stages: Sequence[str] = ("pnet", "rnet", "onet"),
    ) -> None:
        super().__init__()
        if len(thresholds) != 3 or len(nms_thresholds) != 4:
            raise ValueError(f"need 3 thresholds and 4 NMS thresholds, got {thresholds} and {nms_thresholds}")
        if not 0 < scale_factor < 1 or min_face_size < 12:
            raise ValueError(f"need 0 < scale_factor < 1 and min_face_size >= 12, got {scale_factor}, {min_face_size}")
        unknown = set(train_stages) - {"pnet", "rnet", "onet"}
        if unknown:
            raise ValueError(f"unknown train_stages {sorted(unknown)}; use 'pnet', 'rnet', 'onet'")
        self.pnet = pnet if pnet is not None else PNet()
        self.rnet = rnet if rnet is not None else RNet()
        self.onet = onet if onet is not None else ONet()
        self.min_face_size = float(min_face_size)
        self.scale_factor = float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.pixel_scale = float(pixel_scale)
        self.clip_boxes = clip_boxes
        self.train_samples = tuple(int(n) for n in train_samples)
        self.train_stages = tuple(train_stages)

    def pyramid_scales(self, height: int, width: int) -> list[float]:
        """Scales of the image pyramid, computed in Python floats in facenet-pytorch's order."""
        m = 12.0 / self.min_face_size
        min_side = min(height, width) * m
        scales, scale = [], m
        while min_side >= 12:
            scales.append(scale)
            scale *= self.scale_factor
            min_side *= self.scale_factor
        return scales

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detects faces, or in training mode computes the stage losses.

        Args:
            images: ``[3, H_i, W_i]`` float RGB in [0, 1], any sizes.
            targets: per image ``boxes [G, 4]`` xyxy and optionally ``landmarks [G, 5, 2]``
                (NaN or absent where not annotated) and ``ignore [G]`` bool; needed in training.

        Returns:
            ``(predictions, losses)``. Predictions per image: ``boxes [N, 4]``, ``scores [N]``
            (face probabilities, decreasing), ``labels [N]`` zeros, ``landmarks [N, 5, 2]`` xy,
            in the pixels of the given image. Losses (training): ``{stage}_{cls,box,landmark}``
            weighted as in the paper.
        """
        if self.training and targets is not None:
            # Faces need no labels: the one class is implied.
            targets = [
                target if "labels" in target
                else {**target, "labels": torch.zeros(len(target["boxes"]), dtype=torch.int64)}
                for target in targets
            ]  # fmt: skip
        self.check_inputs(images, targets)
        if self.training:
            # Imported here: the training module builds on this one (networks, crops).
            from detkit.models.detectors.mtcnn.training import mtcnn_losses

            return [], mtcnn_losses(self, images, targets)
        with torch.no_grad():
            return self._detect(images), {}

    @torch.no_grad()
    def detect(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Runs the cascade on a list of ``[3, H, W]`` [0, 1] images (see :meth:`forward`).

        Raises:
            TypeError, ValueError: the images break the input contract (not ``[3, H, W]``,
                empty, NaN or infinite values), as in :meth:`forward`.
        """
        name = type(self).__name__
        check_image_list(images, name, require_float=self.require_float_images, allow_empty=self.allow_empty_batch)
        check_image_values(images, name)
        return self._detect(images)

    def _detect(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """:meth:`detect` on images already checked."""
        if len(images) == 0:
            return []
        # Images of the same size run PNet as one batch; their integral images serve the pyramid
        # (area resizing) and the crops of RNet and ONet.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault((image.shape[1], image.shape[2]), []).append(i)
        tables: list[Tensor] = [images[0]] * len(images)
        stage1 = []
        for members in groups.values():
            # 0-255 values, as the networks were trained on: exact integers for 8-bit images.
            batch = (images[members[0]][None] if len(members) == 1 else torch.stack([images[i] for i in members]))
            batch = batch.to(torch.float32) * self.pixel_scale
            table = summed_area_table(batch)
            for k, i in enumerate(members):
                tables[i] = table[k]
            stage1.append(self._stage_pnet(table, torch.tensor(members, device=table.device)))
        boxes, scores, image_idx = (torch.cat(parts) for parts in zip(*stage1))
        keep = batched_nms(boxes[:, :4], scores, image_idx, self.nms_thresholds[1])
        boxes = square_boxes(_calibrate(boxes[keep, :4], boxes[keep, 4:], plus_one=False))
        scores, image_idx = scores[keep], image_idx[keep]
        landmarks = boxes.new_zeros((0, 5, 2))
        # Shortcuts for no window left; under torch.export (unknown counts) the stages run on any.
        if guard_or_true(boxes.shape[0] != 0):
            integral = IntegralImages(tables)
            boxes, scores, image_idx = self._stage_rnet(integral, boxes, image_idx)
            if guard_or_true(boxes.shape[0] != 0):
                boxes, scores, image_idx, landmarks = self._stage_onet(integral, boxes, image_idx)
        return self._split(images, boxes, scores, image_idx, landmarks)

    def _stage_pnet(self, table: Tensor, image_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """PNet over the pyramid of a batch of same-size images, NMS within each scale.

        Args:
            table: ``[B, H + 1, W + 1, 3]`` integral images of the batch (0-255 values).
            image_idx: ``[B]`` index of each image in the call.

        Returns:
            ``boxes_and_deltas [K, 8]`` (window xyxy, then PNet's deltas), ``scores [K]``, ``image_idx [K]``.
        """
        height, width = table.shape[1] - 1, table.shape[2] - 1
        found = [(table.new_zeros((0, 8), dtype=torch.float32), table.new_zeros((0,), dtype=torch.float32), image_idx[:0])]
        for scale in self.pyramid_scales(height, width):
            level = area_resize(table, (int(height * scale + 1), int(width * scale + 1)))
            logits, deltas = self.pnet(level, *input_affine(1.0))
            prob = torch.sigmoid(logits[:, 1] - logits[:, 0])  # = softmax(logits)[:, 1], one pass fewer
            b, y, x = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)
            if guard_or_false(b.numel() == 0):  # under torch.export: zero windows run through
                continue
            # Window of cell (x, y): 1-based pixel indices as in the original (module docstring).
            cell = torch.stack([x, y], dim=1).to(torch.float32)
            boxes = torch.cat([((2 * cell + 1) / scale).floor(), ((2 * cell + 12) / scale).floor()], dim=1)
            scores = prob[b, y, x]
            keep = batched_nms(boxes, scores, b, self.nms_thresholds[0])
            b, y, x = b[keep], y[keep], x[keep]
            found.append((torch.cat([boxes[keep], deltas[b, :, y, x]], dim=1), scores[keep], image_idx[b]))
        return tuple(torch.cat(parts) for parts in zip(*found))  # type: ignore[return-value]

    def _crops(self, integral: IntegralImages, boxes: Tensor, image_idx: Tensor, size: int) -> tuple[Tensor, Tensor]:
        """``[N', 3, size, size]`` crops of the boxes (image units), and which boxes had a non-empty crop."""
        corners = boxes.trunc().to(torch.int64)  # facenet-pytorch: boxes.trunc().int()
        heights, widths = integral.heights[image_idx], integral.widths[image_idx]
        # 1-based inclusive [x, ex] clipped to [1, W]: the 0-based half-open range [x - 1, ex).
        x0 = corners[:, 0].clamp(min=1) - 1
        y0 = corners[:, 1].clamp(min=1) - 1
        x1 = torch.minimum(corners[:, 2], widths)
        y1 = torch.minimum(corners[:, 3], heights)
        valid = (x1 > x0) & (y1 > y0)
        crops = area_crop_resize(integral, image_idx[valid], x0[valid], y0[valid], x1[valid], y1[valid], size)
        return crops, valid

    def _stage_rnet(self, integral: IntegralImages, boxes: Tensor, image_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        crops, valid = self._crops(integral, boxes, image_idx, 24)
        boxes, image_idx = boxes[valid], image_idx[valid]
        logits, deltas = self.rnet(crops, *input_affine(1.0))
        scores = torch.softmax(logits, dim=1)[:, 1]
        passed = scores > self.thresholds[1]
        boxes, scores, image_idx, deltas = boxes[passed], scores[passed], image_idx[passed], deltas[passed]
        keep = batched_nms(boxes, scores, image_idx, self.nms_thresholds[2])
        boxes = square_boxes(_calibrate(boxes[keep], deltas[keep], plus_one=True))
        return boxes, scores[keep], image_idx[keep]

    def _stage_onet(
        self, integral: IntegralImages, boxes: Tensor, image_idx: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        crops, valid = self._crops(integral, boxes, image_idx, 48)
        boxes, image_idx = boxes[valid], image_idx[valid]
        logits, deltas, points = self.onet(crops, *input_affine(1.0))
        scores = torch.softmax(logits, dim=1)[:, 1]
        passed = scores > self.thresholds[2]
        boxes, scores, image_idx = boxes[passed], scores[passed], image_idx[passed]
        deltas, points = deltas[passed], points[passed]
        # Landmarks on the box before calibration, +1 widths and a -1 shift (1-based indices).
        wh = boxes[:, 2:] - boxes[:, :2] + 1
        landmarks = boxes[:, None, :2] - 1 + points.reshape(-1, 2, 5).transpose(1, 2) * wh[:, None, :]
        boxes = _calibrate(boxes, deltas, plus_one=True)
        # "Min" NMS with +1 widths: x2 + 1, y2 + 1 make detkit's continuous areas the +1 ones.
        plus_one = torch.cat([boxes[:, :2], boxes[:, 2:] + 1], dim=1)
        keep = batched_nms(plus_one, scores, image_idx, self.nms_thresholds[3], overlap="min")
        return boxes[keep], scores[keep], image_idx[keep], landmarks[keep]

    def _split(
        self, images: Sequence[Tensor], boxes: Tensor, scores: Tensor, image_idx: Tensor, landmarks: Tensor
    ) -> list[dict[str, Tensor]]:
        """Per-image prediction dicts, sorted by decreasing score."""
        order = torch.argsort(scores, descending=True, stable=True)
        boxes, scores, image_idx, landmarks = boxes[order], scores[order], image_idx[order], landmarks[order]
        predictions = []
        for i, image in enumerate(images):
            mine = image_idx == i
            image_boxes = boxes[mine]
            if self.clip_boxes:
                height, width = image.shape[1:]
                limits = image_boxes.new_tensor([width, height, width, height])
                image_boxes = torch.minimum(image_boxes.clamp(min=0), limits)
            predictions.append({
                "boxes": image_boxes,
                "scores": scores[mine],
                "labels": torch.zeros_like(scores[mine], dtype=torch.int64),
                "landmarks": landmarks[mine],
            })
        return predictions

