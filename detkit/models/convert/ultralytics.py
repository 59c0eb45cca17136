"""Convert an ultralytics YOLOv8 / YOLO11 ``DetectionModel`` state dict into a detkit checkpoint.

Architectures (:data:`ARCHS`): ``yolov8{n,s,m,l,x}`` and ``yolo11{n,s,m,l,x}``; the detkit model is
:class:`~detkit.models.detectors.yolov8.YOLOv8` with ``yolov8_parts(variant, scale, num_classes)``
(configs/common/yolov8.py), ``num_classes`` read from the state dict. detkit's blocks keep
ultralytics' attribute names inside each layer, so the mapping is one prefix per yaml layer:

==========================================  ============================  =========================
ultralytics (yolov8.yaml / yolo11.yaml)     detkit                        what
==========================================  ============================  =========================
``model.0``                                 ``backbone.stem``             Conv s2
``model.1`` / ``model.2``                   ``backbone.stage2.0`` / ``.1`` Conv s2, C2f / C3k2
``model.3`` .. ``model.6``                  ``backbone.stage3.*``, ``stage4.*``
``model.7``, ``.8``, ``.9`` (, ``.10``)     ``backbone.stage5.0`` .. ``.3``  Conv, block, SPPF, C2PSA
``model.12`` / ``model.13``                 ``neck.top_down_p4``          (YOLOv8 / YOLO11 index)
``model.15`` / ``model.16``                 ``neck.top_down_p3``
``model.16`` / ``model.17``                 ``neck.down_p3``
``model.18`` / ``model.19``                 ``neck.bottom_up_p4``
``model.19`` / ``model.20``                 ``neck.down_p4``
``model.21`` / ``model.22``                 ``neck.bottom_up_p5``
``model.22.cv2`` / ``model.23.cv2``         ``head.box_branches``         Detect's box branch
``model.22.cv3`` / ``model.23.cv3``         ``head.cls_branches``         Detect's class branch
``model.22.dfl.conv.weight``                (dropped: the fixed bins 0 .. 15, a detkit buffer)
==========================================  ============================  =========================

The converted state dict is checked key by key and shape by shape against the detkit model of
``arch`` (built on the meta device), so weights of another architecture or scale are refused with
a one-line error naming the first key that differs. Reading an ultralytics ``.pt`` file (a pickled
model) is :mod:`detkit.models.convert.ultralytics_checkpoint`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from detkit.models.backbones.yolov8_blocks import YOLO_SCALES
from detkit.models.convert.checkpoint import converted_checkpoint
from detkit.models.detectors.yolov8 import YOLOv8, yolov8_parts

__all__ = ["ARCHS", "convert_ultralytics", "parse_arch", "ultralytics_key_map"]

ARCHS = tuple(f"{variant}{scale}" for variant in ("yolov8", "yolo11") for scale in YOLO_SCALES[variant])

_BACKBONE = {0: "backbone.stem", 1: "backbone.stage2.0", 2: "backbone.stage2.1", 3: "backbone.stage3.0",
             4: "backbone.stage3.1", 5: "backbone.stage4.0", 6: "backbone.stage4.1", 7: "backbone.stage5.0",
             8: "backbone.stage5.1", 9: "backbone.stage5.2"}  # fmt: skip
_NECK = ("neck.top_down_p4", None, None, "neck.top_down_p3", "neck.down_p3", None, "neck.bottom_up_p4",
         "neck.down_p4", None, "neck.bottom_up_p5")  # fmt: skip  (yaml layers after the backbone, in order)


def parse_arch(arch: str) -> tuple[str, str]:
    """``"yolo11n" -> ("yolo11", "n")``.

    Raises:
        ValueError: not one of :data:`ARCHS`.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown ultralytics architecture {arch!r}; supported: {', '.join(ARCHS)}")
    return arch[:-1], arch[-1]


def ultralytics_key_map(variant: str) -> tuple[dict[int, str], int]:
    """``({yaml layer index: detkit prefix}, index of the Detect layer)`` of ``variant``."""
    layers = dict(_BACKBONE)
    first_neck = 10
    if variant == "yolo11":
        layers[10] = "backbone.stage5.3"  # C2PSA
        first_neck = 11
    # The neck's layers: 2 upsample/concat layers before each top-down block, 1 concat before each
    # bottom-up block (None rows of _NECK).
    index = first_neck + 2
    for prefix in _NECK:
        if prefix is not None:
            layers[index] = prefix
        index += 1
    return layers, first_neck + 12


def _rename(key: str, layers: Mapping[int, str], detect: int) -> str | None:
    match = re.match(r"model\.(\d+)\.(.+)$", key)
    if match is None:
        raise ValueError(f"key {key!r} is not an ultralytics DetectionModel key ('model.<layer>.*')")
    index, rest = int(match.group(1)), match.group(2)
    if index == detect:
        if rest.startswith("dfl."):
            return None
        for source, target in (("cv2.", "head.box_branches."), ("cv3.", "head.cls_branches.")):
            if rest.startswith(source):
                return target + rest[len(source):]
        raise ValueError(f"key {key!r}: the Detect layer has no such part (an end-to-end or other head?)")
    if index not in layers:
        raise ValueError(f"key {key!r}: layer {index} has no weights in this architecture")
    return f"{layers[index]}.{rest}"


def _reference_shapes(variant: str, scale: str, num_classes: int) -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = YOLOv8(**yolov8_parts(variant, scale, num_classes, loss=nn.Identity()))
    return {key: value.shape for key, value in model.state_dict().items()}


def convert_ultralytics(state_dict: Mapping[str, Tensor], arch: str) -> dict[str, object]:
    """Turn an ultralytics ``DetectionModel.state_dict()`` into a detkit checkpoint.

    Args:
        state_dict: the state dict of an ultralytics ``arch`` detection model (any number of
            classes), keys ``model.<layer>.*``.
        arch: one of :data:`ARCHS`, e.g. ``"yolov8n"``, ``"yolo11s"``.

    Returns:
        ``{"model": detkit state dict, "meta": {...}}``; ``meta`` gives ``source``, ``arch``,
        ``variant``, ``scale``, ``num_classes``, ``detkit_version`` and ``date``.

    Raises:
        ValueError: unknown ``arch``, or a state dict of another architecture or scale (one line,
            naming the first key or shape that differs).
    """
    variant, scale = parse_arch(arch)
    layers, detect = ultralytics_key_map(variant)
    cls_bias = f"model.{detect}.cv3.0.2.bias"
    if cls_bias not in state_dict:
        raise ValueError(f"this is not an ultralytics {arch} DetectionModel state dict: it has no {cls_bias!r}")
    num_classes = int(state_dict[cls_bias].shape[0])
    converted: dict[str, Tensor] = {}
    source_key: dict[str, str] = {}
    for key, value in state_dict.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"key {key!r} is a {type(value).__name__}, not a tensor")
        name = _rename(key, layers, detect)
        if name is not None:
            converted[name] = value.detach().clone()
            source_key[name] = key
    expected = _reference_shapes(variant, scale, num_classes)
    missing = [key for key in expected if key not in converted]
    unexpected = [key for key in converted if key not in expected]
    if missing or unexpected:
        raise ValueError(
            f"this is not an ultralytics {arch} state dict: {len(missing)} detkit keys missing (first "
            f"{missing[:1]}), {len(unexpected)} unexpected (first {unexpected[:1]})"
        )
    for key, shape in expected.items():
        if converted[key].shape != shape:
            raise ValueError(
                f"this is not an ultralytics {arch} state dict: {source_key[key]} (detkit {key}) has shape "
                f"{list(converted[key].shape)}, {arch} needs {list(shape)} (another scale?)"
            )
    return converted_checkpoint(
        converted, source="ultralytics", arch=arch, variant=variant, scale=scale, num_classes=num_classes
    )
