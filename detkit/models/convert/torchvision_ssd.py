"""Convert torchvision's SSD300-VGG16 and SSDLite320-MobileNetV3 state dicts into detkit checkpoints.

Supported architectures (``ARCHS``): ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large``; the
detkit models are configs/common/ssd.py's ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3`` with
``num_classes = torchvision's num_classes - 1``.

Key mapping, ssd300_vgg16 (torchvision's ``SSDFeatureExtractorVGG``; see
:mod:`detkit.models.backbones.ssd_vgg`):

===============================================  ==========================================
``backbone.features.<i>`` (conv1_1 .. conv4_3)   ``backbone.vgg.features.<i>``
``backbone.extra.0.<j>`` (pool4 .. conv5_3)      ``backbone.vgg.features.<23 + j>``
``backbone.extra.0.7.1`` / ``.7.3``              ``backbone.fc6`` / ``backbone.fc7``
``backbone.extra.<k>`` (k >= 1)                  ``backbone.extra.<k - 1>``
``backbone.scale_weight``                        ``backbone.l2_scale``
===============================================  ==========================================

Key mapping, ssdlite320_mobilenet_v3_large (torchvision splits MobileNetV3's ``features`` at the
C4 expansion conv of block ``c`` = 13; see :mod:`detkit.models.backbones.ssdlite_mobilenet`):

===============================================  ==========================================
``backbone.features.0.<i>`` (i < c)              ``backbone.features.<i>``
``backbone.features.0.<c>`` (expansion conv)     ``backbone.features.<c>.block.0``
``backbone.features.1.0.<j>`` (rest of block c)  ``backbone.features.<c>.block.<j>`` (j >= 1)
``backbone.features.1.<k>`` (k >= 1)             ``backbone.features.<c + k>``
``backbone.extra.*``                             unchanged
===============================================  ==========================================

Both heads: ``head.classification_head.module_list.<i>`` -> ``head.cls_logits.<i>`` and
``head.regression_head.module_list.<i>`` -> ``head.bbox_pred.<i>``.

Classes: torchvision's logit 0 is the background, as in detkit's head, so detkit's label ``k`` is
torchvision's ``k + 1`` with no reordering. ``coco_contiguous=True`` cuts torchvision's 91-way COCO
logits (category ids, 10 unused) to the 80 COCO classes in category-id order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from detkit.models.convert.checkpoint import converted_checkpoint
from detkit.models.convert.torchvision_rcnn import COCO_CATEGORY_IDS

ARCHS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large")

# Index of torchvision's vgg16 pool4 in `features` (conv4_3's ReLU is 22): extra.0 starts there.
_VGG_POOL4_INDEX = 23
_HEAD_RENAMES = (
    ("head.classification_head.module_list.", "head.cls_logits."),
    ("head.regression_head.module_list.", "head.bbox_pred."),
)


def _rename_vgg(key: str) -> str:
    if key == "backbone.scale_weight":
        return "backbone.l2_scale"
    if key.startswith("backbone.features."):
        return "backbone.vgg." + key[len("backbone.") :]
    match = re.match(r"backbone\.extra\.0\.7\.(\d+)\.(.*)", key)
    if match:
        layer = {"1": "fc6", "3": "fc7"}.get(match.group(1))
        if layer is None:
            raise ValueError(f"unexpected torchvision SSD key {key}")
        return f"backbone.{layer}.{match.group(2)}"
    match = re.match(r"backbone\.extra\.0\.(\d+)\.(.*)", key)
    if match:
        return f"backbone.vgg.features.{_VGG_POOL4_INDEX + int(match.group(1))}.{match.group(2)}"
    match = re.match(r"backbone\.extra\.(\d+)\.(.*)", key)
    if match:
        return f"backbone.extra.{int(match.group(1)) - 1}.{match.group(2)}"
    return key


def _rename_mobilenet(key: str, c4_block: int) -> str:
    match = re.match(r"backbone\.features\.0\.(\d+)\.(.*)", key)
    if match:
        index = int(match.group(1))
        if index < c4_block:
            return f"backbone.features.{index}.{match.group(2)}"
        return f"backbone.features.{c4_block}.block.0.{match.group(2)}"
    match = re.match(r"backbone\.features\.1\.0\.(\d+)\.(.*)", key)
    if match:
        # block[1:] is a Sequential slice, which keeps the children's names (1, 2, ...).
        return f"backbone.features.{c4_block}.block.{match.group(1)}.{match.group(2)}"
    match = re.match(r"backbone\.features\.1\.(\d+)\.(.*)", key)
    if match:
        return f"backbone.features.{c4_block + int(match.group(1))}.{match.group(2)}"
    return key


def _rename_head(key: str) -> str:
    for old, new in _HEAD_RENAMES:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _cls_output_keys(state_dict: Mapping[str, Tensor]) -> list[str]:
    """Keys of the last conv of each class predictor (``[P * K, ...]`` outputs)."""
    pattern = re.compile(r"head\.cls_logits\.\d+\.(1\.)?(weight|bias)$")
    return [key for key in state_dict if pattern.match(key)]


def _num_classes_with_background(state_dict: Mapping[str, Tensor], num_anchors_first_level: int) -> int:
    return state_dict[_cls_output_keys(state_dict)[0]].shape[0] // num_anchors_first_level


def _select_classes(state_dict: dict[str, Tensor], num_anchors: list[int], keep: Tensor) -> None:
    """Keep logits ``keep`` (background included) of every class predictor; outputs are ``[P, K]``."""
    for key in _cls_output_keys(state_dict):
        level = int(key.split(".")[2])
        value = state_dict[key]
        grouped = value.reshape(num_anchors[level], -1, *value.shape[1:])
        state_dict[key] = grouped[:, keep].reshape(-1, *value.shape[1:]).contiguous()


def convert_torchvision_ssd(
    state_dict: Mapping[str, Tensor], arch: str, *, coco_contiguous: bool = False
) -> dict[str, object]:
    """Turn a torchvision SSD / SSDLite state dict into a detkit checkpoint.

    Args:
        state_dict: ``model.state_dict()`` of a torchvision ``arch`` model (any number of classes).
        arch: one of :data:`ARCHS`.
        coco_contiguous: cut a 91-way COCO classifier to the 80 COCO classes (module docstring).

    Returns:
        ``{"model": detkit state dict, "meta": {...}}``; ``meta`` gives ``source``, ``arch``,
        ``num_classes`` (object classes, for the detkit config), ``coco_contiguous``,
        ``detkit_version`` and ``date``.

    Raises:
        ValueError: unknown ``arch``, a state dict of another architecture, or
            ``coco_contiguous`` on a classifier that is not 91-way.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown torchvision architecture {arch!r}; supported: {', '.join(ARCHS)}")
    required = ["head.classification_head.module_list.0", "head.regression_head.module_list.0", "backbone.extra.0"]
    required.append("backbone.scale_weight" if arch == "ssd300_vgg16" else "backbone.features.1.0")
    missing = [prefix for prefix in required if not any(key.startswith(prefix) for key in state_dict)]
    if missing:
        raise ValueError(f"this is not a torchvision {arch} state dict: no keys under {missing}")

    if arch == "ssd300_vgg16":
        rename = _rename_vgg
    else:
        c4_block = max(int(m.group(1)) for key in state_dict if (m := re.match(r"backbone\.features\.0\.(\d+)\.", key)))
        rename = lambda key: _rename_mobilenet(key, c4_block)  # noqa: E731
    converted = {_rename_head(rename(key)): value.detach().clone() for key, value in state_dict.items()}

    # Boxes per cell of each level, from the regression predictors' 4 * P outputs.
    reg_pattern = re.compile(r"head\.bbox_pred\.(\d+)\.(1\.)?bias$")
    num_anchors = [0] * sum(1 for key in converted if reg_pattern.match(key))
    for key in converted:
        match = reg_pattern.match(key)
        if match:
            num_anchors[int(match.group(1))] = converted[key].shape[0] // 4
    num_outputs = _num_classes_with_background(converted, num_anchors[0])
    if coco_contiguous:
        if num_outputs != 91:
            raise ValueError(f"coco_contiguous needs torchvision's 91-way COCO classifier, got {num_outputs} outputs")
        _select_classes(converted, num_anchors, torch.tensor((0, *COCO_CATEGORY_IDS)))
        num_outputs = len(COCO_CATEGORY_IDS) + 1
    return converted_checkpoint(
        converted,
        source="torchvision",
        arch=arch,
        num_classes=int(num_outputs - 1),
        coco_contiguous=bool(coco_contiguous),
    )
