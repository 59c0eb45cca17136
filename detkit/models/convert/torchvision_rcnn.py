"""Convert torchvision's Faster / Mask / Keypoint R-CNN state dicts into detkit checkpoints.

Supported architectures (``ARCHS``): ``fasterrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn``,
``keypointrcnn_resnet50_fpn`` and ``fasterrcnn_mobilenet_v3_large_fpn``; the detkit models are those
of configs/common/rcnn.py (``faster_rcnn``, ``mask_rcnn``, ``keypoint_rcnn``,
``faster_rcnn_mobilenet_v3_fpn``) with ``num_classes = torchvision's num_classes - 1``.

Key mapping (torchvision -> detkit):

==========================================  ================================================
``backbone.body.*`` (ResNet)                ``backbone.*`` (same names)
``backbone.body.<i>.*`` (MobileNetV3)       ``backbone.features.<i>.*``
``backbone.fpn.*``                          ``neck.*`` (see ``fpn_state_dict_from_torchvision``)
``rpn.head.*``, ``roi_heads.box_head.*``,   unchanged
``roi_heads.box_predictor.*``
``roi_heads.mask_head.<i>.0.*``             ``roi_heads.mask_head.convs.<i>.0.*``
``roi_heads.mask_predictor.conv5_mask.*``   ``roi_heads.mask_head.deconv.*``
``roi_heads.mask_predictor.mask_fcn_logits``  ``roi_heads.mask_head.mask_logits`` minus channel 0
``roi_heads.keypoint_head.<2i>.*``          ``roi_heads.keypoint_head.convs.<i>.0.*``
``roi_heads.keypoint_predictor.kps_score_lowres``  ``roi_heads.keypoint_head.keypoint_logits``
==========================================  ================================================

BatchNorm ``num_batches_tracked`` counters are dropped (detkit's frozen norms have none).

Classes: torchvision's index 0 is the background and object classes start at 1, so detkit's label
``k`` is torchvision's ``k + 1``. The box predictor keeps torchvision's layout (background row
included); the mask logits lose their unused background channel. With ``coco_contiguous=True`` a
91-way COCO predictor (torchvision's category ids, 10 of them unused "N/A") is cut to COCO's 80
classes in category-id order, so label ``k`` is the ``k``-th COCO category, as detkit's COCO dataset
numbers them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from detkit.models.convert.checkpoint import converted_checkpoint
from detkit.models.necks.fpn import fpn_state_dict_from_torchvision

ARCHS = ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn",
         "fasterrcnn_mobilenet_v3_large_fpn")

# FPN input levels of each backbone, in torchvision's inner_blocks order.
_FPN_LEVELS = {
    "fasterrcnn_resnet50_fpn": ("c2", "c3", "c4", "c5"),
    "maskrcnn_resnet50_fpn": ("c2", "c3", "c4", "c5"),
    "keypointrcnn_resnet50_fpn": ("c2", "c3", "c4", "c5"),
    "fasterrcnn_mobilenet_v3_large_fpn": ("c5_entry", "c5"),
}

# The 80 COCO category ids used by the dataset; torchvision's 91 outputs are indexed by category id
# (0 = background, ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are unused "N/A").
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


def _rename(key: str, arch: str) -> str | None:
    """detkit name of a non-FPN torchvision key (None: drop it)."""
    if key.endswith("num_batches_tracked"):
        return None
    if key.startswith("backbone.body."):
        rest = key[len("backbone.body.") :]
        return ("backbone.features." if arch == "fasterrcnn_mobilenet_v3_large_fpn" else "backbone.") + rest
    if key.startswith("roi_heads.mask_head."):
        return "roi_heads.mask_head.convs." + key[len("roi_heads.mask_head.") :]
    if key.startswith("roi_heads.mask_predictor.conv5_mask."):
        return "roi_heads.mask_head.deconv." + key.rsplit(".", 1)[1]
    if key.startswith("roi_heads.mask_predictor.mask_fcn_logits."):
        return "roi_heads.mask_head.mask_logits." + key.rsplit(".", 1)[1]
    if key.startswith("roi_heads.keypoint_head."):  # Sequential(conv, ReLU, conv, ReLU, ...)
        index, suffix = key[len("roi_heads.keypoint_head.") :].split(".")
        return f"roi_heads.keypoint_head.convs.{int(index) // 2}.0.{suffix}"
    if key.startswith("roi_heads.keypoint_predictor.kps_score_lowres."):
        return "roi_heads.keypoint_head.keypoint_logits." + key.rsplit(".", 1)[1]
    return key


def _select_classes(state_dict: dict[str, Tensor], rows: Tensor) -> None:
    """Keep predictor outputs for the background and the given torchvision class indices."""
    keep = torch.cat([torch.zeros(1, dtype=torch.int64), rows])
    box_rows = (keep[:, None] * 4 + torch.arange(4)).reshape(-1)
    for suffix in ("weight", "bias"):
        score_key, delta_key = (f"roi_heads.box_predictor.{name}.{suffix}" for name in ("cls_score", "bbox_pred"))
        state_dict[score_key] = state_dict[score_key][keep]
        state_dict[delta_key] = state_dict[delta_key][box_rows]
        mask_key = f"roi_heads.mask_head.mask_logits.{suffix}"
        if mask_key in state_dict:  # no background channel: torchvision's channel k is detkit's k - 1
            state_dict[mask_key] = state_dict[mask_key][rows - 1]


def convert_torchvision_rcnn(
    state_dict: Mapping[str, Tensor], arch: str, *, coco_contiguous: bool = False
) -> dict[str, object]:
    """Turn a torchvision R-CNN state dict into a detkit checkpoint.

    Args:
        state_dict: ``model.state_dict()`` of a torchvision ``arch`` model (any number of classes).
        arch: one of :data:`ARCHS`.
        coco_contiguous: cut a 91-way COCO predictor to the 80 COCO classes (module docstring).

    Returns:
        ``{"model": detkit state dict, "meta": {...}}`` with ``meta`` giving ``source``, ``arch``,
        ``num_classes`` (object classes, for the detkit config), ``detkit_version`` and ``date``.

    Raises:
        ValueError: unknown ``arch``, a state dict of another architecture, or
            ``coco_contiguous`` on a predictor that is not 91-way.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown torchvision architecture {arch!r}; supported: {', '.join(ARCHS)}")
    required = ["backbone.fpn.inner_blocks.0.0.weight", "rpn.head.cls_logits.weight",
                "roi_heads.box_predictor.cls_score.weight"]
    if arch.startswith("maskrcnn"):
        required.append("roi_heads.mask_predictor.mask_fcn_logits.weight")
    if arch.startswith("keypointrcnn"):
        required.append("roi_heads.keypoint_predictor.kps_score_lowres.weight")
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise ValueError(f"this is not a torchvision {arch} state dict: missing {missing}")

    levels = _FPN_LEVELS[arch]
    converted: dict[str, Tensor] = {
        "neck." + key: value
        for key, value in fpn_state_dict_from_torchvision(state_dict, levels, ("p6", "p7"), "backbone.fpn.").items()
    }
    for key, value in state_dict.items():
        if key.startswith("backbone.fpn."):
            continue
        new_key = _rename(key, arch)
        if new_key is not None:
            converted[new_key] = value.detach().clone()
    for suffix in ("weight", "bias"):  # drop the unused background mask channel
        mask_key = f"roi_heads.mask_head.mask_logits.{suffix}"
        if mask_key in converted:
            converted[mask_key] = converted[mask_key][1:]

    num_outputs = converted["roi_heads.box_predictor.cls_score.weight"].shape[0]
    if coco_contiguous:
        if num_outputs != 91:
            raise ValueError(f"coco_contiguous needs torchvision's 91-way COCO predictor, got {num_outputs} outputs")
        _select_classes(converted, torch.tensor(COCO_CATEGORY_IDS))
    num_classes = converted["roi_heads.box_predictor.cls_score.weight"].shape[0] - 1
    return converted_checkpoint(
        converted,
        source="torchvision",
        arch=arch,
        num_classes=int(num_classes),
        coco_contiguous=bool(coco_contiguous),
    )
