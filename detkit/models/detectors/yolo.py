"""YOLOv3 (Redmon & Farhadi 2018): one-stage detector on a fixed-size input.

``images -> resize or letterbox to input_size, normalise -> backbone -> neck -> head ->
decode, score = objectness x class probability, threshold, NMS -> boxes mapped back to each
input image``.

Preprocessing (``preprocess``):

- ``"resize"``: a plain bilinear resize of each image to ``input_size`` ignoring its aspect ratio,
  as OpenCV's ``cv2.dnn.blobFromImage(..., crop=False)`` and darknet's ``detector test`` do. An
  image that already has the input size is used as is.
- ``"letterbox"``: resize keeping the aspect ratio so that the image fits, centre it and pad the
  rest with grey 0.5 (darknet's ``letterbox_image``).

Either way a box ``x`` in the network input maps back to ``(x - offset_x) / scale_x`` in the image
(``scale = resized size / image size`` per axis, ``offset`` the letterbox padding, 0 for resize),
then boxes are clipped to the image.

Training: targets are mapped into the network input the same way. ``train_sizes`` enables
multi-scale training: each batch draws its (square) input size from that list (multiples of 32).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones.darknet import ConvPair, conv_pair
from detkit.ops import batched_nms, nms
from detkit.structures import check_image_list, validate_targets

PREPROCESS_MODES = ("resize", "letterbox")
LETTERBOX_FILL = 0.5  # darknet pads letterboxed images with grey 0.5


class YOLOv3(nn.Module):
    """YOLOv3 / YOLOv3-tiny detector.

    Args:
        backbone: ``[B, 3, H, W]`` -> ``{cK: map}`` (:class:`~detkit.models.backbones.darknet.Darknet53`
            or ``DarknetTiny``).
        neck: ``{cK} -> {pK}`` (:class:`~detkit.models.necks.yolo_neck.YOLOv3Neck`).
        head: :class:`~detkit.models.dense_heads.yolo_head.YOLOv3Head` on the neck's levels.
        input_size: ``(H, W)`` of the network input for inference; multiples of 32.
        preprocess: ``"resize"`` or ``"letterbox"`` (see the module docstring).
        train_sizes: Square input sizes drawn per training batch (multi-scale training), or None
            to train at ``input_size``.
        pixel_mean: Subtracted from the [0, 1] RGB pixels (darknet: none).
        pixel_std: Divides them afterwards (darknet: none).
        score_thresh: Detections need ``objectness x class probability > score_thresh``.
        nms_thresh: IoU threshold of the NMS.
        class_agnostic_nms: One NMS over all classes (OpenCV's sample) instead of one per class.
        multi_label: Keep every class above the threshold for a box, not only its best class.
        pre_nms_top_k: Candidates kept (highest scores) per image before the NMS.
        max_detections: Detections kept per image after the NMS.
        class_names: Name of each class, or None.

    Call ``detector(images, targets=None) -> (predictions, losses)`` (docs/conventions.md):
    ``images`` are ``[3, H_i, W_i]`` RGB in [0, 1]; in training ``losses`` has ``loss_xy``,
    ``loss_wh``, ``loss_obj``, ``loss_cls``; in eval each prediction has ``boxes [K, 4]`` xyxy in
    pixels of its image, ``labels [K]`` and ``scores [K]`` by decreasing score.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        *,
        input_size: Sequence[int] = (416, 416),
        preprocess: str = "resize",
        train_sizes: Sequence[int] | None = None,
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
        score_thresh: float = 0.005,
        nms_thresh: float = 0.45,
        class_agnostic_nms: bool = False,
        multi_label: bool = False,
        pre_nms_top_k: int = 1000,
        max_detections: int = 100,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"YOLOv3: preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        input_size = tuple(int(s) for s in input_size)
        sizes = [*input_size, *(train_sizes or ())]
        if len(input_size) != 2 or any(s <= 0 or s % 32 for s in sizes):
            raise ValueError(
                f"YOLOv3: input_size {input_size} and train_sizes {train_sizes} must be positive multiples of 32"
            )
        if class_names is not None and len(class_names) != head.num_classes:
            raise ValueError(f"YOLOv3: got {len(class_names)} class_names for {head.num_classes} classes")
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.num_classes = head.num_classes
        self.class_names = None if class_names is None else list(class_names)
        self.input_size: tuple[int, int] = input_size  # type: ignore[assignment]
        self.preprocess = preprocess
        self.train_sizes = None if train_sizes is None else [int(s) for s in train_sizes]
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).reshape(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).reshape(3, 1, 1), persistent=False)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.class_agnostic_nms = class_agnostic_nms
        self.multi_label = multi_label
        self.pre_nms_top_k = pre_nms_top_k
        self.max_detections = max_detections
        self.fused = False

    # ------------------------------------------------------------------ preprocessing

    def prepare(self, image: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Resizes or letterboxes one image to the network input.

        Args:
            image: ``[3, h, w]`` float RGB in [0, 1].
            size: ``(H, W)`` network input.

        Returns:
            The input ``[3, H, W]`` (not normalised) and ``(scale_x, scale_y, offset_x, offset_y)``
            such that ``x_input = x_image * scale_x + offset_x`` (likewise for y).
        """
        height, width = image.shape[-2:]
        if self.preprocess == "resize":
            new_h, new_w = size
        else:
            ratio = min(size[0] / height, size[1] / width)
            new_h, new_w = max(1, round(height * ratio)), max(1, round(width * ratio))
        if (new_h, new_w) != (height, width):
            image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
        left, top = (size[1] - new_w) // 2, (size[0] - new_h) // 2
        if (new_h, new_w) != tuple(size):
            canvas = image.new_full((image.shape[0], *size), LETTERBOX_FILL)
            canvas[:, top : top + new_h, left : left + new_w] = image
            image = canvas
        transform = torch.tensor([new_w / width, new_h / height, left, top], dtype=torch.float32)
        return image, transform

    def _batch(self, images: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Stacked normalised inputs ``[B, 3, H, W]`` and transforms ``[B, 4]``."""
        prepared = [self.prepare(image.to(self.pixel_mean.device, self.pixel_mean.dtype), size) for image in images]
        batch = torch.stack([image for image, _ in prepared])
        transforms = torch.stack([t for _, t in prepared]).to(batch.device)
        if self.pixel_mean.any() or (self.pixel_std != 1).any():
            batch = (batch - self.pixel_mean) / self.pixel_std
        return batch, transforms

    # ------------------------------------------------------------------ forward

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detect (eval) or compute the losses (training); see the class docstring."""
        sizes = self._check_images(images)
        if self.training:
            if targets is None:
                raise ValueError("YOLOv3 needs targets in training mode (call .eval() to detect)")
            validate_targets(targets, image_sizes=sizes, num_classes=self.num_classes)
            size = self.input_size
            if self.train_sizes:
                side = self.train_sizes[int(torch.randint(len(self.train_sizes), ()))]
                size = (side, side)
            batch, transforms = self._batch(images, size)
            raw = self.head(self.neck(self.backbone(batch)))
            mapped = [
                {"boxes": t["boxes"].to(batch) * tf[:2].repeat(2) + tf[2:].repeat(2), "labels": t["labels"]}
                for t, tf in zip(targets, transforms)
            ]
            return [], self.head.loss(raw, mapped, size)
        batch, transforms = self._batch(images, self.input_size)
        raw = self.head(self.neck(self.backbone(batch)))
        boxes, objectness, class_probs = self.head.decode(raw, self.input_size)
        return self.postprocess(boxes, objectness, class_probs, transforms, sizes), {}

    @staticmethod
    def _check_images(images: Sequence[Tensor]) -> list[tuple[int, int]]:
        return check_image_list(images, "YOLOv3")

    # ------------------------------------------------------------------ postprocessing

    def postprocess(
        self,
        boxes: Tensor,
        objectness: Tensor,
        class_probs: Tensor,
        transforms: Tensor,
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Scores, thresholds, NMS and maps boxes back to the images.

        Args:
            boxes: ``[B, N, 4]`` xyxy in network-input pixels.
            objectness: ``[B, N]`` in [0, 1].
            class_probs: ``[B, N, C]`` in [0, 1].
            transforms: ``[B, 4]`` ``(scale_x, scale_y, offset_x, offset_y)`` from :meth:`prepare`.
            image_sizes: ``(h, w)`` of each image.

        Returns:
            Per image ``boxes [K, 4]`` (image pixels, clipped), ``labels [K]``, ``scores [K]``.
        """
        # OpenCV's region layer and darknet both report objectness x class probability.
        scores = objectness[..., None] * class_probs
        results = []
        for index, (height, width) in enumerate(image_sizes):
            image_scores = scores[index]
            if self.multi_label:
                candidate, labels = (image_scores > self.score_thresh).nonzero(as_tuple=True)
                kept_scores = image_scores[candidate, labels]
            else:
                kept_scores, labels = image_scores.max(1)
                candidate = (kept_scores > self.score_thresh).nonzero(as_tuple=True)[0]
                kept_scores, labels = kept_scores[candidate], labels[candidate]
            if kept_scores.numel() > self.pre_nms_top_k:
                kept_scores, top = kept_scores.topk(self.pre_nms_top_k)
                candidate, labels = candidate[top], labels[top]
            image_boxes = boxes[index, candidate]
            if self.class_agnostic_nms:
                keep = nms(image_boxes, kept_scores, self.nms_thresh)
            else:
                keep = batched_nms(image_boxes, kept_scores, labels, self.nms_thresh)
            keep = keep[: self.max_detections]
            scale, offset = transforms[index, :2].repeat(2), transforms[index, 2:].repeat(2)
            mapped = (image_boxes[keep] - offset) / scale
            mapped[:, 0::2] = mapped[:, 0::2].clamp(0, width)
            mapped[:, 1::2] = mapped[:, 1::2].clamp(0, height)
            results.append({"boxes": mapped, "labels": labels[keep], "scores": kept_scores[keep]})
        return results

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
        for unit in self.modules():
            if not isinstance(unit, nn.Sequential) or len(unit) < 2 or not isinstance(unit[0], nn.Conv2d):
                continue
            conv, norm = conv_pair(unit)
            if norm is None:
                continue
            scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
            fused = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, conv.groups, bias=True,
            ).to(conv.weight)  # fmt: skip
            fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
            fused.bias.copy_((bias - norm.running_mean) * scale + norm.bias)
            unit[0] = fused
            unit[1] = nn.Identity()
        self.fused = True
        return self

    def train(self, mode: bool = True) -> YOLOv3:
        """Sets train mode; a fused model has no batch norms left to train and refuses."""
        if mode and getattr(self, "fused", False):
            raise RuntimeError("YOLOv3: this model was fused for inference (fuse()); build a new one to train")
        return super().train(mode)
