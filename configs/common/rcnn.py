"""Faster / Mask / Keypoint R-CNN model trees (torchvision's defaults), as functions returning fresh L() trees.

Values that cut across the model are parameters: ``num_classes`` (object classes, no background),
backbone ``depth``, input ``min_size`` / ``max_size``, FPN ``fpn_channels`` and the box head's
``representation_size``. Children call a function and then set attributes, e.g.
``model.rpn.post_nms_topk_test = 300``.

``num_classes`` and ``class_names`` are said once, at the detector node; the RoI heads, the box
predictor and the mask head take ``Inherit("num_classes")``, so ``model.num_classes=20`` is the one
override that changes the number of classes (with class names given, they must change too: the
error names both keys).

The FPN sizes itself from ``backbone.output_shape()`` and the RPN head from the FPN's, so
``model.backbone.depth=18`` is the one override that changes the backbone.

Level names: ResNet gives ``c2``..``c5``, the FPN ``p2``..``p5`` plus ``p6`` (max-pool); the RPN
uses ``p2``..``p6``, the RoI poolers ``p2``..``p5`` (torchvision's ``"0"``..``"3"``).
"""

from __future__ import annotations

from collections.abc import Sequence

from configs.common.datasets import dataset_sections
from detkit.config import Inherit, L, LazyCall
from detkit.engine import MultiStepLR, build_optimizer, default_train
from detkit.models.anchors import AnchorGenerator
from detkit.models.backbones import MobileNetV3, ResNet
from detkit.models.dense_heads import RPN, RPNHead
from detkit.models.detectors import FasterRCNN, KeypointRCNN, MaskRCNN
from detkit.models.necks.fpn import FPN
from detkit.models.preprocess import RCNNPreprocess
from detkit.models.roi_heads import FastRCNNPredictor, KeypointHead, MaskHead, RoIHeads, TwoMLPHead
from detkit.ops import MultiScaleRoIAlign

ASPECT_RATIOS = (0.5, 1.0, 2.0)
RESNET_LEVELS = ("c2", "c3", "c4", "c5")
POOLED_LEVELS = ["p2", "p3", "p4", "p5"]


# Shrinks an R-CNN experiment config for tests/test_configs.py (same structure, small inputs, few
# proposals); each R-CNN config sets ``test_overrides = list(TEST_OVERRIDES)``.
TEST_OVERRIDES = [
    "model.preprocess.min_size=96",
    "model.preprocess.max_size=128",
    "model.rpn.pre_nms_topk_train=200",
    "model.rpn.post_nms_topk_train=100",
    "model.rpn.pre_nms_topk_test=100",
    "model.rpn.post_nms_topk_test=50",
]

def rpn(
    in_levels: Sequence[str],
    anchor_sizes: Sequence[Sequence[float]],
    score_thresh: float = 0.0,
) -> LazyCall:
    """torchvision's RPN: 3 aspect ratios, 2000/1000 proposals (train/test) per image."""
    num_anchors = len(anchor_sizes[0]) * len(ASPECT_RATIOS)
    return L(RPN)(
        head=L(RPNHead)(num_anchors=num_anchors),  # sized from the neck
        anchor_generator=L(AnchorGenerator)(
            sizes=tuple(tuple(s) for s in anchor_sizes), aspect_ratios=(ASPECT_RATIOS,) * len(anchor_sizes)
        ),
        in_levels=tuple(in_levels),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk_train=2000,
        pre_nms_topk_test=1000,
        post_nms_topk_train=2000,
        post_nms_topk_test=1000,
        nms_thresh=0.7,
        score_thresh=score_thresh,
    )


def box_roi_heads(pooled_levels: Sequence[str], channels: int = 256, representation_size: int = 1024) -> LazyCall:
    """RoIAlign 7x7 (sampling ratio 2), two 1024-d FC layers, class scores and per-class deltas;
    ``num_classes`` inherited from the detector node."""
    return L(RoIHeads)(
        box_pooler=L(MultiScaleRoIAlign)(in_levels=list(pooled_levels), output_size=7, sampling_ratio=2),
        box_head=L(TwoMLPHead)(in_channels=channels, resolution=7, representation_size=representation_size),
        box_predictor=L(FastRCNNPredictor)(in_channels=representation_size, num_classes=Inherit("num_classes")),
        num_classes=Inherit("num_classes"),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=512,
        positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,
    )


def faster_rcnn(
    num_classes: int = 80,
    *,
    depth: int = 50,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    representation_size: int = 1024,
    frozen_stages: int = 2,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """Faster R-CNN on ResNet-``depth`` + FPN (torchvision's ``fasterrcnn_resnet50_fpn`` at depth 50)."""
    return L(FasterRCNN)(
        backbone=L(ResNet)(
            depth=depth, out_levels=RESNET_LEVELS, norm="frozen_bn", frozen_stages=frozen_stages,
            weights=backbone_weights,
        ),
        neck=L(FPN)(out_channels=fpn_channels, extra_levels="maxpool"),  # sized from the backbone
        rpn=rpn(("p2", "p3", "p4", "p5", "p6"), ((32,), (64,), (128,), (256,), (512,))),
        roi_heads=box_roi_heads(POOLED_LEVELS, fpn_channels, representation_size),
        preprocess=L(RCNNPreprocess)(min_size=min_size, max_size=max_size),
        num_classes=num_classes,
        class_names=None if class_names is None else list(class_names),
    )


def mask_rcnn(num_classes: int = 80, *, mask_channels: int = 256, **kwargs) -> LazyCall:
    """Mask R-CNN: :func:`faster_rcnn` (same keyword arguments) plus RoIAlign 14x14 (sampling
    ratio 2), four 3x3 convs, a 2x2 deconv and per-class 28x28 mask logits."""
    model = faster_rcnn(num_classes, **kwargs)
    fpn_channels = model.neck.out_channels
    model.roi_heads.mask_pooler = L(MultiScaleRoIAlign)(in_levels=POOLED_LEVELS, output_size=14, sampling_ratio=2)
    model.roi_heads.mask_head = L(MaskHead)(
        in_channels=fpn_channels, num_classes=Inherit("num_classes"), conv_channels=(mask_channels,) * 4,
        deconv_channels=mask_channels,
    )
    return L(MaskRCNN)(**{key: value for key, value in model.items() if key != "_target_"})


# COCO's person keypoints (person_keypoints_*.json order), the left/right pairs a flip swaps and
# the skeleton drawn (COCO's, 0-based).
COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)
COCO_PERSON_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_PERSON_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


def keypoint_rcnn(
    num_classes: int = 1,
    *,
    num_keypoints: int = 17,
    keypoint_channels: int = 512,
    keypoint_convs: int = 8,
    keypoint_names: Sequence[str] | None = COCO_PERSON_KEYPOINTS,
    keypoint_flip_pairs: Sequence[Sequence[int]] | None = COCO_PERSON_FLIP_PAIRS,
    skeleton: Sequence[Sequence[int]] | None = COCO_PERSON_SKELETON,
    min_size: int | Sequence[int] = (640, 672, 704, 736, 768, 800),
    **kwargs,
) -> LazyCall:
    """Keypoint R-CNN (torchvision's ``keypointrcnn_resnet50_fpn`` at the defaults: one class, the
    17 COCO person keypoints, training short sides 640..800, evaluation at 800): :func:`faster_rcnn`
    (same keyword arguments) plus RoIAlign 14x14 (sampling ratio 2), ``keypoint_convs`` 3x3 convs
    of ``keypoint_channels``, a 4x4 stride-2 deconv and a bilinear x2 (56x56 heat maps).

    With other keypoints, give ``num_keypoints`` and their ``keypoint_names``,
    ``keypoint_flip_pairs`` and ``skeleton`` (or None)."""
    model = faster_rcnn(num_classes, min_size=min_size, **kwargs)
    fpn_channels = model.neck.out_channels
    model.roi_heads.keypoint_pooler = L(MultiScaleRoIAlign)(in_levels=POOLED_LEVELS, output_size=14, sampling_ratio=2)
    model.roi_heads.keypoint_head = L(KeypointHead)(
        in_channels=fpn_channels, num_keypoints=num_keypoints, conv_channels=(keypoint_channels,) * keypoint_convs
    )
    return L(KeypointRCNN)(
        **{key: value for key, value in model.items() if key != "_target_"},
        keypoint_names=None if keypoint_names is None else list(keypoint_names),
        keypoint_flip_pairs=None if keypoint_flip_pairs is None else [list(p) for p in keypoint_flip_pairs],
        skeleton=None if skeleton is None else [list(p) for p in skeleton],
    )


def faster_rcnn_mobilenet_v3_fpn(
    num_classes: int = 80,
    *,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    backbone_weights: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LazyCall:
    """torchvision's ``fasterrcnn_mobilenet_v3_large_fpn``: MobileNetV3-Large tapped twice at stride
    32 (first stride-32 block and last conv), FPN with a max-pool level, 5 anchor sizes x 3 ratios on
    each of the 3 levels, RPN score threshold 0.05; frozen BN with eps 1e-5 as torchvision's
    detection wrapper."""
    levels = ("p5_entry", "p5", "p6")
    return L(FasterRCNN)(
        backbone=L(MobileNetV3)(
            out_levels=("c5_entry", "c5"), norm="frozen_bn", norm_eps=1e-5, frozen_stages=3, weights=backbone_weights
        ),
        neck=L(FPN)(out_channels=256, extra_levels="maxpool"),  # sized from the backbone
        rpn=rpn(levels, ((32, 64, 128, 256, 512),) * len(levels), score_thresh=0.05),
        roi_heads=box_roi_heads(["p5_entry", "p5"], 256, 1024),
        preprocess=L(RCNNPreprocess)(min_size=min_size, max_size=max_size),
        num_classes=num_classes,
        class_names=None if class_names is None else list(class_names),
    )


# ------------------------------------------------------------------------------------------------
# training schedules

# detectron2's multi-scale training short sides (INPUT.MIN_SIZE_TRAIN). Pass them as the model's
# ``min_size``: RCNNPreprocess draws one per image in training and evaluates at the last (800,
# detectron2's MIN_SIZE_TEST). The resize has to be the model's: a resize in the data pipeline
# (rcnn_train_transforms' short_edge_lengths) would be undone by the model's own resize to min_size.
COCO_TRAIN_MIN_SIZES = (640, 672, 704, 736, 768, 800)  # Base-RCNN-FPN.yaml
VOC_TRAIN_MIN_SIZES = tuple(range(480, 801, 32))  # PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml


def rcnn_1x_training(
    name: str,
    dataset: str = "coco",
    *,
    with_masks: bool = False,
    root: str | None = None,
    images_per_gpu: int = 2,
    num_workers: int = 4,
) -> dict:
    """``dataloader``, ``optimizer``, ``lr_schedule`` and ``train`` of detectron2's
    1x recipe for Faster / Mask R-CNN (``configs/common``'s model trees); outputs in runs/<name>.

    The reference assumes 8 GPUs x ``images_per_gpu`` = 2, a total batch of 16:

    - SGD lr 0.02, momentum 0.9, weight decay 1e-4 (biases too, norms none: detectron2's
      ``WEIGHT_DECAY_NORM = 0``); linear warm-up over 1000 iterations from 0.001 x lr;
    - COCO (``dataset="coco"``): 90k iterations (about 12 epochs of train2017), lr x 0.1 at 60k
      and 80k (``Base-RCNN-FPN.yaml`` + ``mask_rcnn_R_50_FPN_1x.yaml``);
    - VOC (``"voc"``): VOC07+12 trainval, 18k iterations, steps at 12k and 16k
      (detectron2's ``PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml``), VOC2007-test 11-point mAP;
    - VOC with masks: VOC2012 segmentation train (1464 images, see ``configs/common/datasets.py``),
      for which no reference recipe exists: the same length in epochs as the VOC box recipe
      (18k x 16 / 16551 = 17.4 epochs): 18 epochs, lr x 0.1 after epochs 12 and 16, 100 warm-up
      iterations (1000 would be 11 epochs at 91 iterations per epoch).

    Augmentation: horizontal flip (crowd boxes dropped); multi-scale comes from the model's
    ``min_size`` choices (:data:`COCO_TRAIN_MIN_SIZES`, :data:`VOC_TRAIN_MIN_SIZES`).

    Initialisation: like detectron2's and torchvision's, the recipe starts from an ImageNet-trained
    backbone, whose batch-norm statistics the model freezes (``frozen_bn``, first stages frozen).
    Nothing is downloaded: give a local checkpoint in torchvision's key format, e.g.
    ``model.backbone.weights=/models/resnet50-0676ba61.pth``. Without one the backbone starts
    from random weights with frozen, meaningless statistics; to train from scratch instead, set
    ``model.backbone.norm=bn model.backbone.frozen_stages=0`` and expect a much longer schedule.

    The steps and the warm-up are fractions of the run (``milestone_fractions``,
    ``warmup_fraction``), so they follow a ``train.max_iter`` override; explicit
    ``lr_schedule.milestones`` / ``lr_schedule.warmup_iters`` (in iterations) win over them.

    Other GPU counts, by the linear scaling rule (detectron2's ``REFERENCE_WORLD_SIZE``): with a
    total batch ``B = gpus x images_per_gpu``, multiply lr by ``B / 16`` and the iterations by
    ``16 / B`` (steps and warm-up follow); e.g. one GPU with 2 images: ``optimizer.lr=0.0025
    train.max_iter=720000``.

    Args:
        name: the config's name, for ``train.output_dir = runs/<name>``.
        dataset: ``"coco"`` or ``"voc"``.
        with_masks: Mask R-CNN: masks in the data, ``segm`` AP too.
        root: the dataset folder (default ``datasets/coco`` / ``datasets/VOCdevkit``).
        images_per_gpu: training images per process.
        num_workers: data-loading processes per process.
    """
    data = dataset_sections(dataset, root, batch_size=images_per_gpu, num_workers=num_workers, with_masks=with_masks)
    if dataset == "voc" and with_masks:
        length = dict(max_epochs=18)
        lr_schedule = L(MultiStepLR)(
            milestones=None, milestone_fractions=[12 / 18, 16 / 18], by_epoch=True, warmup_iters=100,
            warmup_factor=0.001,
        )
    elif dataset == "voc":  # steps at 12k and 16k of 18k, warm-up 1000 iterations
        length = dict(max_iter=18000)
        lr_schedule = L(MultiStepLR)(
            milestones=None, milestone_fractions=[12000 / 18000, 16000 / 18000], warmup_iters=None,
            warmup_fraction=1000 / 18000,
            warmup_factor=0.001,
        )
    else:  # steps at 60k and 80k of 90k, warm-up 1000 iterations
        length = dict(max_iter=90000)
        lr_schedule = L(MultiStepLR)(
            milestones=None, milestone_fractions=[60000 / 90000, 80000 / 90000], warmup_iters=None,
            warmup_fraction=1000 / 90000,
            warmup_factor=0.001,
        )
    return dict(
        dataloader=data["dataloader"],
        optimizer=L(build_optimizer)(
            name="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4, weight_decay_bias=1e-4, weight_decay_norm=0.0
        ),
        lr_schedule=lr_schedule,
        train=default_train(
            **length, output_dir=f"runs/{name}", checkpoint_period=5000, best_metric=data["best_metric"]
        ),
    )
