"""SSD: Single Shot MultiBox Detector (Liu et al. 2016); SSDLite is the same detector with its own backbone and head.

``images -> SSDPreprocess (normalise, resize to a fixed size) -> backbone -> head (class logits
and box deltas for every default box) -> training: the head's matching and multibox loss / eval:
the head's decoding, per-class top-k and NMS -> boxes mapped back to the input images``. Numbers
follow torchvision's ``SSD``: the input stage is :mod:`detkit.models.preprocess.ssd`, the loss
and the detection :mod:`detkit.models.dense_heads.ssd_head`; this detector wires them with the
default boxes.

torchvision's SSD300 feeds VGG16 0..255 pixels minus the Caffe mean: ``mean (0.48235, 0.45882,
0.40784)`` and ``std 1/255`` reproduce that (:data:`SSD_VGG_PIXEL_MEAN`, :data:`SSD_VGG_PIXEL_STD`);
SSDLite uses mean = std = 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads.ssd_head import SSD_BOX_WEIGHTS, SSDHead
from detkit.utils.deprecation import MovedAttribute
from detkit.models.detectors.base import Detector, hand_on_settings, preprocess_or_build
from detkit.models.preprocess import SSDPreprocess
from detkit.structures import ImageList

__all__ = [
    "SSD", "SSDLITE_PIXEL_MEAN", "SSDLITE_PIXEL_STD", "SSD_BOX_WEIGHTS", "SSD_VGG_PIXEL_MEAN", "SSD_VGG_PIXEL_STD",
]  # fmt: skip

# torchvision's ssd300_vgg16: the Caffe VGG16 mean (123, 117, 104) / 255 on 0..255 pixels; in
# detkit's [0, 1] units a std of 1/255 scales the normalised pixels back to 0..255.
SSD_VGG_PIXEL_MEAN = (0.48235, 0.45882, 0.40784)
SSD_VGG_PIXEL_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)
# torchvision's ssdlite320_mobilenet_v3_large: pixels mapped to [-1, 1].
SSDLITE_PIXEL_MEAN = (0.5, 0.5, 0.5)
SSDLITE_PIXEL_STD = (0.5, 0.5, 0.5)


class SSD(Detector):
    """SSD / SSDLite detector (see the module docstring).

    Args:
        backbone: normalised images ``[B, 3, H, W]`` -> dict of feature maps, shallowest first
            (:class:`~detkit.models.backbones.ssd_vgg.SSDVGG`,
            :class:`~detkit.models.backbones.ssdlite_mobilenet.SSDLiteMobileNetV3`).
        head: class logits and box deltas per default box, its loss and detection
            (:class:`SSDHead`, ``SSDLiteHead``); a head built without ``in_channels`` is sized
            from ``backbone.output_shape()``, given ones are checked.
        default_boxes: the default boxes; one per head output, same order.
        num_classes: optional: checked against ``head.num_classes`` (object classes, background
            excluded; labels are 0-based).
        image_size: ``(height, width)`` every image is resized to (300x300 for SSD300).
        pixel_mean: per-channel mean of RGB pixels in [0, 1].
        pixel_std: per-channel std, same units.
        channels_last: memory format of the convolutions, which oneDNN (CPU) and cuDNN run
            faster in channels-last (NHWC) than in NCHW (CPU: see tools/benchmark_ssd.py).
            ``"train"`` (default): the batch is NHWC in training only, so training runs NHWC
            convolutions while evaluation reproduces torchvision's outputs bit for bit;
            ``"always"``: the backbone and head weights and the batch are NHWC in both modes
            (fastest; outputs equal torchvision's up to float rounding, about 5e-6 relative on
            the boxes of a random-weight SSD300); ``"off"``: NCHW throughout. Weights loaded
            later keep their format (``load_state_dict`` copies into them).
        class_names: optional name of each class.
        preprocess: the input stage; None builds an :class:`SSDPreprocess` from ``image_size``,
            ``pixel_mean``, ``pixel_std`` and ``channels_last``.
        iou_thresh, neg_pos_ratio, empty_image_negatives, bbox_reg_weights, score_thresh,
            nms_thresh, pre_nms_topk, topk_candidates, detections_per_img: deprecated here:
            the head's settings (``head.score_thresh`` ...), set on the head when given.

    Call ``detector(images, targets=None) -> (predictions, losses)``:

    * ``images``: list of ``[3, H_i, W_i]`` float RGB in [0, 1], sizes may differ.
    * ``targets`` (training): per image ``boxes [N, 4]`` xyxy pixels and ``labels [N]`` int64
      0-based; ``N = 0`` is fine.
    * training: ``([], {"loss_classifier": ..., "loss_box_reg": ...})``.
    * eval: per image ``boxes [K, 4]`` in pixels of the input image, ``labels [K]``, ``scores [K]``
      by decreasing score; ``losses == {}``.
    """

    matcher = MovedAttribute("head.matcher")
    box_coder = MovedAttribute("head.box_coder")
    neg_pos_ratio = MovedAttribute("head.neg_pos_ratio")
    empty_image_negatives = MovedAttribute("head.empty_image_negatives")
    score_thresh = MovedAttribute("head.score_thresh")
    nms_thresh = MovedAttribute("head.nms_thresh")
    topk_candidates = MovedAttribute("head.pre_nms_topk")
    detections_per_img = MovedAttribute("head.detections_per_img")
    image_size = MovedAttribute("preprocess.image_size")
    pixel_mean = MovedAttribute("preprocess.pixel_mean")
    pixel_std = MovedAttribute("preprocess.pixel_std")

    def __init__(
        self,
        backbone: nn.Module,
        head: SSDHead,
        default_boxes: DefaultBoxGenerator,
        num_classes: int | None = None,
        *,
        image_size: tuple[int, int] = (300, 300),
        pixel_mean: Sequence[float] = SSD_VGG_PIXEL_MEAN,
        pixel_std: Sequence[float] = SSD_VGG_PIXEL_STD,
        channels_last: str = "train",
        class_names: Sequence[str] | None = None,
        preprocess: SSDPreprocess | None = None,
        iou_thresh: float | None = None,
        neg_pos_ratio: int | None = None,
        empty_image_negatives: int | None = None,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        pre_nms_topk: int | None = None,
        topk_candidates: int | None = None,
        detections_per_img: int | None = None,
    ) -> None:
        super().__init__()
        self.preprocess = preprocess_or_build(
            "SSD", preprocess, lambda: SSDPreprocess(image_size, pixel_mean, pixel_std, channels_last),
            dict(image_size=(image_size, (300, 300)), pixel_mean=(pixel_mean, SSD_VGG_PIXEL_MEAN),
                 pixel_std=(pixel_std, SSD_VGG_PIXEL_STD), channels_last=(channels_last, "train")),
        )  # fmt: skip
        self.backbone = backbone
        self.head = head
        self.default_boxes = default_boxes
        self.size_parts(backbone, None, [head])
        self.init_classes(num_classes, class_names)
        if list(head.num_anchors) != default_boxes.num_anchors_per_location():
            raise ValueError(
                f"head predicts {head.num_anchors} boxes per cell but default_boxes gives "
                f"{default_boxes.num_anchors_per_location()}"
            )
        settings = dict(
            iou_thresh=iou_thresh, neg_pos_ratio=neg_pos_ratio, empty_image_negatives=empty_image_negatives,
            bbox_reg_weights=bbox_reg_weights, score_thresh=score_thresh, nms_thresh=nms_thresh,
            pre_nms_topk=pre_nms_topk, topk_candidates=topk_candidates, detections_per_img=detections_per_img,
        )  # fmt: skip
        hand_on_settings("SSD", head, settings, head.configure)
        if self.preprocess.channels_last == "always":
            self.backbone.to(memory_format=torch.channels_last)
            self.head.to(memory_format=torch.channels_last)

    @property
    def channels_last(self) -> str:
        """``"off"``, ``"train"`` or ``"always"`` (see the class docstring); the batch's format."""
        return self.preprocess.channels_last

    @channels_last.setter
    def channels_last(self, mode: str) -> None:
        self.preprocess.channels_last = mode

    def forward_batch(
        self, batch: ImageList, targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Backbone, head and default boxes on the resized batch (see :class:`Detector`)."""
        features = list(self.backbone(batch.tensor).values())
        raw = self.head(features)
        grid_sizes = [tuple(feature.shape[-2:]) for feature in features]
        deltas = raw[1]
        priors = self.default_boxes(tuple(batch.image_sizes[0]), grid_sizes, dtype=deltas.dtype, device=deltas.device)
        return self.head.train_or_predict(raw, priors, batch.image_sizes, targets)
