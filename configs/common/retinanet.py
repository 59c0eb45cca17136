"""RetinaNet model trees (torchvision's ``retinanet_resnet50_fpn`` and ``_v2``) and the one-stage 1x recipe.

``num_classes`` (object classes, no background) and ``class_names`` are said once, at the detector
node; the head takes ``Inherit("num_classes")``. The FPN sizes itself from
``backbone.output_shape()`` and the head from the FPN's, so ``model.backbone.depth=18`` is the one
override that changes the backbone.

Levels: ResNet ``c3``..``c5`` (torchvision's ``returned_layers=[2, 3, 4]``), the FPN ``p3``..``p7``
(P6/P7 from P5 in v1, ``LastLevelP6P7(256, 256)``; from C5 in v2, ``LastLevelP6P7(2048, 256)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from configs.common.rcnn import rcnn_1x_training
from detkit.config import Inherit, L, LazyCall
from detkit.models.anchors import AnchorGenerator
from detkit.models.backbones import ResNet
from detkit.models.dense_heads import RetinaNetHead
from detkit.models.detectors import RetinaNet
from detkit.models.necks.fpn import FPN
from detkit.models.preprocess import RCNNPreprocess

ONE_STAGE_LEVELS = ("c3", "c4", "c5")
RETINANET_BASE_SIZES = (32, 64, 128, 256, 512)

# Shrinks a RetinaNet / FCOS experiment config for tests/test_configs.py (same structure, small
# inputs, fewer candidates); each such config sets ``test_overrides = list(TEST_OVERRIDES)``.
TEST_OVERRIDES = [
    "model.preprocess.min_size=96",
    "model.preprocess.max_size=128",
    "model.head.pre_nms_topk=100",
]


def retinanet_anchors(base_sizes: Sequence[int] = RETINANET_BASE_SIZES) -> LazyCall:
    """torchvision's RetinaNet anchors: per level sizes ``(x, int(x 2^(1/3)), int(x 2^(2/3)))``
    and ratios ``(0.5, 1, 2)``: 9 per cell."""
    sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in base_sizes)
    return L(AnchorGenerator)(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))


def one_stage_fpn_parts(
    depth: int, norm: str, frozen_stages: int, backbone_weights: str | None, fpn_channels: int, p6p7_source: str
) -> dict[str, LazyCall]:
    """``backbone`` (ResNet C3-C5) and ``neck`` (FPN P3-P7) of RetinaNet and FCOS."""
    return dict(
        backbone=L(ResNet)(
            depth=depth, out_levels=ONE_STAGE_LEVELS, norm=norm, frozen_stages=frozen_stages, weights=backbone_weights
        ),
        neck=L(FPN)(out_channels=fpn_channels, extra_levels="p6p7", p6p7_source=p6p7_source),
    )


def retinanet(
    num_classes: int = 80,
    *,
    version: int = 1,
    depth: int = 50,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    norm: str = "frozen_bn",
    frozen_stages: int = 2,
    anchor_base_sizes: Sequence[int] = RETINANET_BASE_SIZES,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """RetinaNet on ResNet-``depth`` + FPN P3-P7: torchvision's ``retinanet_resnet50_fpn``
    (``version=1``: plain subnets, L1 box loss, P6 from P5) or ``retinanet_resnet50_fpn_v2``
    (``version=2``: GroupNorm subnets, GIoU box loss, P6 from C5). Detection as torchvision:
    score above 0.05, 1000 candidates per level, NMS 0.5, 300 per image."""
    if version not in (1, 2):
        raise ValueError(f"retinanet: version must be 1 or 2, got {version!r}")
    return L(RetinaNet)(
        **one_stage_fpn_parts(depth, norm, frozen_stages, backbone_weights, fpn_channels, "p5" if version == 1 else "c5"),
        head=L(RetinaNetHead)(
            num_classes=Inherit("num_classes"), num_anchors=9, norm=None if version == 1 else "gn",
            box_loss="l1" if version == 1 else "giou",
        ),  # fmt: skip
        anchor_generator=retinanet_anchors(anchor_base_sizes),
        preprocess=L(RCNNPreprocess)(min_size=min_size, max_size=max_size),
        num_classes=num_classes,
        class_names=None if class_names is None else list(class_names),
    )


def one_stage_1x_training(name: str, dataset: str = "coco", **kwargs) -> dict:
    """``dataloader``, ``optimizer``, ``lr_schedule`` and ``train`` of detectron2's 1x recipe for
    RetinaNet (``COCO-Detection/retinanet_R_50_FPN_1x``) and FCOS (``fcos_R_50_FPN_1x``): the R-CNN
    1x recipe (:func:`configs.common.rcnn.rcnn_1x_training`: batch 16, 90k iterations on COCO with
    steps at 60k and 80k, 18k with steps at 12k and 16k on VOC07+12, 1000 warm-up iterations,
    weight decay 1e-4, multi-scale short side from the model's ``min_size``) with the one-stage
    base learning rate, 0.01 instead of 0.02 (``SOLVER.BASE_LR``; torchvision's RetinaNet and FCOS
    recipes also use 0.01 at batch 16, for 26 epochs with steps at 16 and 22). ``kwargs`` go to
    ``rcnn_1x_training`` (``root``, ``images_per_gpu``, ``num_workers``); the linear scaling rule
    there applies (lr x ``B / 16``)."""
    training = rcnn_1x_training(name, dataset, **kwargs)
    training["optimizer"].lr = 0.01
    return training
