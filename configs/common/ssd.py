"""SSD300 / SSD512 on VGG16 and SSDLite320 on MobileNetV3-Large, as functions returning fresh L() trees.

``num_classes`` counts object classes (no background). Default-box scales are fractions of the
input side, one per feature map plus one (see :mod:`detkit.models.default_boxes`); they come from
the SSD paper's Caffe models (``ssd_pascal.py``, ``ssd_coco.py``: ``min_ratio``/``max_ratio`` in
percent, the first map at half the minimum ratio), which torchvision's ssd300_vgg16 uses for COCO:

=============  =================================================================
SSD300 COCO    0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05       (min 15 %, max 90 %)
SSD300 VOC     0.10, 0.20, 0.37, 0.54, 0.71, 0.88, 1.05       (min 20 %, max 90 %)
SSD512 COCO    0.04, 0.10, 0.26, 0.42, 0.58, 0.74, 0.90, 1.06 (min 10 %, max 90 %)
SSD512 VOC     0.07, 0.15, 0.30, 0.45, 0.60, 0.75, 0.90, 1.05 (min 15 %, max 90 %)
=============  =================================================================

SSDLite320 spreads its scales linearly from 0.2 to 0.95 (torchvision's ssdlite320 settings).
"""

from __future__ import annotations

from collections.abc import Sequence

from detkit.config import L, LazyCall
from detkit.models.backbones.ssd_vgg import SSDVGG
from detkit.models.backbones.ssdlite_mobilenet import SSDLiteMobileNetV3
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads.ssd_head import SSDHead, SSDLiteHead
from detkit.models.detectors.ssd import (
    SSD,
    SSD_VGG_PIXEL_MEAN,
    SSD_VGG_PIXEL_STD,
    SSDLITE_PIXEL_MEAN,
    SSDLITE_PIXEL_STD,
)

SSD300_SCALES_COCO = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
SSD300_SCALES_VOC = (0.10, 0.20, 0.37, 0.54, 0.71, 0.88, 1.05)
SSD512_SCALES_COCO = (0.04, 0.10, 0.26, 0.42, 0.58, 0.74, 0.90, 1.06)
SSD512_SCALES_VOC = (0.07, 0.15, 0.30, 0.45, 0.60, 0.75, 0.90, 1.05)

# Extra aspect ratios per feature map and distances between box centres (pixels).
SSD300_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD300_STEPS = (8, 16, 32, 64, 100, 300)
SSD512_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD512_STEPS = (8, 16, 32, 64, 128, 256, 512)
# Channels of SSDVGG's levels c3 (conv4_3), c4 (fc7), c5 (conv8_2), c6 ... (see ssd_vgg.py).
SSD_VGG_CHANNELS = {300: (512, 1024, 512, 256, 256, 256), 512: (512, 1024, 512, 256, 256, 256, 256)}
# SSDLiteMobileNetV3 (reduced tail): c4_expand, c5, then the four extra blocks.
SSDLITE_CHANNELS = (672, 480, 512, 256, 256, 128)


def _num_anchors(aspect_ratios: Sequence[Sequence[float]]) -> list[int]:
    return [2 + 2 * len(ratios) for ratios in aspect_ratios]


def ssd_vgg16(
    num_classes: int = 80,
    *,
    input_size: int = 300,
    scales: Sequence[float] = SSD300_SCALES_COCO,
    frozen_stages: int = 0,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """SSD300 (``input_size=300``, torchvision's ssd300_vgg16) or SSD512 on VGG16.

    ``frozen_stages=1`` is torchvision's default with ImageNet VGG16 weights
    (``trainable_backbone_layers=4``); without them torchvision trains everything (0).
    """
    aspect_ratios = SSD300_ASPECT_RATIOS if input_size == 300 else SSD512_ASPECT_RATIOS
    steps = SSD300_STEPS if input_size == 300 else SSD512_STEPS
    return L(SSD)(
        backbone=L(SSDVGG)(input_size=input_size, frozen_stages=frozen_stages, weights=backbone_weights),
        head=L(SSDHead)(
            in_channels=SSD_VGG_CHANNELS[input_size], num_anchors=_num_anchors(aspect_ratios), num_classes=num_classes
        ),
        default_boxes=L(DefaultBoxGenerator)(aspect_ratios=aspect_ratios, scales=tuple(scales), steps=steps),
        num_classes=num_classes,
        image_size=(input_size, input_size),
        pixel_mean=SSD_VGG_PIXEL_MEAN,
        pixel_std=SSD_VGG_PIXEL_STD,
        score_thresh=0.01,
        nms_thresh=0.45,
        topk_candidates=400,
        detections_per_img=200,
        class_names=None if class_names is None else list(class_names),
    )


def ssdlite320_mobilenet_v3(
    num_classes: int = 80,
    *,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """torchvision's ssdlite320_mobilenet_v3_large: reduced-tail MobileNetV3-Large, 6 maps of
    2 + 2x2 boxes per cell, scores above 0.001, NMS 0.55, 300 candidates and detections."""
    aspect_ratios = ((2, 3),) * 6
    return L(SSD)(
        backbone=L(SSDLiteMobileNetV3)(reduced_tail=True, weights=backbone_weights),
        head=L(SSDLiteHead)(
            in_channels=SSDLITE_CHANNELS, num_anchors=_num_anchors(aspect_ratios), num_classes=num_classes
        ),
        default_boxes=L(DefaultBoxGenerator)(aspect_ratios=aspect_ratios, min_ratio=0.2, max_ratio=0.95),
        num_classes=num_classes,
        image_size=(320, 320),
        pixel_mean=SSDLITE_PIXEL_MEAN,
        pixel_std=SSDLITE_PIXEL_STD,
        score_thresh=0.001,
        nms_thresh=0.55,
        topk_candidates=300,
        detections_per_img=300,
        class_names=None if class_names is None else list(class_names),
    )
