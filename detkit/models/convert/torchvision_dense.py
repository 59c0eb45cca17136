"""Convert torchvision's RetinaNet and FCOS state dicts into detkit checkpoints.

Supported architectures (``ARCHS``): ``retinanet_resnet50_fpn``, ``retinanet_resnet50_fpn_v2`` and
``fcos_resnet50_fpn``; the detkit models are configs/common/retinanet.py's ``retinanet(version=1)``
/ ``retinanet(version=2)`` and configs/common/fcos.py's ``fcos``, with ``num_classes`` =
torchvision's ``num_classes`` (sigmoid classifiers have no background logit).

Key mapping (torchvision -> detkit):

=================================================  ================================================
``backbone.body.*``                                ``backbone.*`` (same ResNet names)
``backbone.fpn.*``                                 ``neck.*`` (``fpn_state_dict_from_torchvision``,
                                                   levels ``c3``-``c5``, extra ``p6``/``p7``)
``head.classification_head.conv.<i>.<j>.*``        ``head.cls_subnet.conv.<i>.<j>.*`` (RetinaNet;
                                                   its legacy ``conv.<2i>.*`` too)
``head.classification_head.conv.<3i + j>.*``       ``head.cls_subnet.conv.<i>.<j>.*`` (FCOS: conv,
                                                   GroupNorm, ReLU flat)
``head.classification_head.cls_logits.*``          ``head.cls_subnet.cls_logits.*``
``head.regression_head.conv.*``                    ``head.box_subnet.conv.*`` (as above)
``head.regression_head.bbox_reg`` / ``bbox_ctrness``  ``head.box_subnet.bbox_reg`` / ``bbox_ctrness``
=================================================  ================================================

BatchNorm ``num_batches_tracked`` counters are dropped (detkit's frozen norms have none; a
``BatchNorm2d`` fills its own in).

Classes: logit ``k`` is detkit's label ``k`` (torchvision's COCO models: 91 logits indexed by
category id, the unused ones included). With ``coco_contiguous=True`` the 91 logits of each anchor
are cut to COCO's 80 categories in category-id order, so label ``k`` is the ``k``-th COCO category.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from detkit.models.convert.checkpoint import converted_checkpoint
from detkit.models.convert.torchvision_rcnn import COCO_CATEGORY_IDS
from detkit.models.necks.fpn import fpn_state_dict_from_torchvision

__all__ = ["ARCHS", "convert_torchvision_dense"]

ARCHS = ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn")

_SUBNETS = {"head.classification_head.": "head.cls_subnet.", "head.regression_head.": "head.box_subnet."}
_TOWER_KEY = re.compile(r"conv\.(\d+)\.(?:(\d+)\.)?(weight|bias|running_mean|running_var)$")


def _tower_key(rest: str, fcos: bool) -> str:
    """detkit name of a subnet key after its prefix (``conv.3.weight`` -> ``conv.1.0.weight`` for FCOS)."""
    match = _TOWER_KEY.fullmatch(rest)
    if match is None:
        return rest
    index, inner, name = int(match[1]), match[2], match[3]
    if inner is not None:  # RetinaNet v2 layout: already conv.<i>.<j>
        return rest
    block, position = divmod(index, 3 if fcos else 2)  # FCOS: conv, norm, relu; legacy RetinaNet: conv, relu
    return f"conv.{block}.{position}.{name}"


def _coco_rows(num_rows: int, columns: int) -> Tensor:
    """Output channels that keep the 80 COCO categories of each anchor (``columns`` = 91 per anchor)."""
    anchors = num_rows // columns
    ids = torch.tensor(COCO_CATEGORY_IDS)
    return (torch.arange(anchors)[:, None] * columns + ids[None, :]).reshape(-1)


def convert_torchvision_dense(
    state_dict: Mapping[str, Tensor], arch: str, *, coco_contiguous: bool = False
) -> dict[str, object]:
    """Turn a torchvision RetinaNet / FCOS state dict into a detkit checkpoint.

    Args:
        state_dict: ``model.state_dict()`` of a torchvision ``arch`` model (any number of classes).
        arch: one of :data:`ARCHS`.
        coco_contiguous: cut 91-way COCO logits to the 80 COCO classes (module docstring).

    Returns:
        ``{"model": detkit state dict, "meta": {...}}`` with ``meta`` giving ``source``, ``arch``,
        ``num_classes`` (object classes, for the detkit config), ``detkit_version`` and ``date``.

    Raises:
        ValueError: unknown ``arch``, a state dict of another architecture, or ``coco_contiguous``
            on logits that are not 91 per anchor.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown torchvision architecture {arch!r}; supported: {', '.join(ARCHS)}")
    fcos = arch.startswith("fcos")
    required = ["backbone.fpn.inner_blocks.0.0.weight", "head.classification_head.cls_logits.weight",
                "head.regression_head.bbox_reg.weight"]
    if fcos:
        required.append("head.regression_head.bbox_ctrness.weight")
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise ValueError(f"this is not a torchvision {arch} state dict: missing {missing}")
    if not fcos and "head.regression_head.bbox_ctrness.weight" in state_dict:
        raise ValueError(f"this is a torchvision FCOS state dict, not {arch} (it has a centerness predictor)")

    converted: dict[str, Tensor] = {
        "neck." + key: value.detach().clone()
        for key, value in fpn_state_dict_from_torchvision(
            state_dict, ("c3", "c4", "c5"), ("p6", "p7"), "backbone.fpn."
        ).items()
    }
    for key, value in state_dict.items():
        if key.startswith("backbone.fpn.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith("backbone.body."):
            converted["backbone." + key[len("backbone.body.") :]] = value.detach().clone()
            continue
        prefix = next((p for p in _SUBNETS if key.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"this is not a torchvision {arch} state dict: unexpected key {key!r}")
        converted[_SUBNETS[prefix] + _tower_key(key[len(prefix) :], fcos)] = value.detach().clone()

    num_anchors = converted["head.box_subnet.bbox_reg.weight"].shape[0] // 4
    num_classes = converted["head.cls_subnet.cls_logits.weight"].shape[0] // num_anchors
    if coco_contiguous:
        if num_classes != 91:
            raise ValueError(f"coco_contiguous needs torchvision's 91 COCO logits per anchor, got {num_classes}")
        rows = _coco_rows(num_anchors * num_classes, num_classes)
        for suffix in ("weight", "bias"):
            key = f"head.cls_subnet.cls_logits.{suffix}"
            converted[key] = converted[key][rows]
        num_classes = len(COCO_CATEGORY_IDS)
    return converted_checkpoint(
        converted, source="torchvision", arch=arch, num_classes=int(num_classes), coco_contiguous=bool(coco_contiguous)
    )
