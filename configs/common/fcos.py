"""FCOS model trees (torchvision's ``fcos_resnet50_fpn``), as functions returning fresh L() trees.

Same wiring as RetinaNet (configs/common/retinanet.py: ResNet C3-C5, FPN P3-P7 with P6 from P5,
``num_classes`` said once at the detector node), with one stride-sized point per location
(anchor sizes 8..128, ratio 1) and the :class:`~detkit.models.dense_heads.FCOSHead`. The training
recipe is :func:`configs.common.retinanet.one_stage_1x_training`.
"""

from __future__ import annotations

from collections.abc import Sequence

from configs.common.retinanet import one_stage_fpn_parts
from detkit.config import Inherit, L, LazyCall
from detkit.models.anchors import AnchorGenerator
from detkit.models.dense_heads import FCOSHead
from detkit.models.detectors import FCOS
from detkit.models.preprocess import RCNNPreprocess

FCOS_STRIDES = (8, 16, 32, 64, 128)


def fcos_points(strides: Sequence[int] = FCOS_STRIDES) -> LazyCall:
    """torchvision's FCOS "anchors": one square of the level's stride per location."""
    return L(AnchorGenerator)(sizes=tuple((s,) for s in strides), aspect_ratios=((1.0,),) * len(strides))


def fcos(
    num_classes: int = 80,
    *,
    depth: int = 50,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    norm: str = "frozen_bn",
    frozen_stages: int = 2,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """FCOS on ResNet-``depth`` + FPN P3-P7 (torchvision's ``fcos_resnet50_fpn`` at depth 50):
    GroupNorm subnets, centre sampling radius 1.5, ranges 4-8 strides per level; detection as
    torchvision: score above 0.2, 1000 candidates per level, NMS 0.6, 100 per image."""
    return L(FCOS)(
        **one_stage_fpn_parts(depth, norm, frozen_stages, backbone_weights, fpn_channels, "p5"),
        head=L(FCOSHead)(num_classes=Inherit("num_classes")),
        anchor_generator=fcos_points(),
        preprocess=L(RCNNPreprocess)(min_size=min_size, max_size=max_size),
        num_classes=num_classes,
        class_names=None if class_names is None else list(class_names),
    )
