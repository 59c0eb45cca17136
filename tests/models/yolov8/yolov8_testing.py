"""Shared set-up of the YOLOv8 / YOLO11 tests: ultralytics (tests only) and a pair of models on the same weights."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from detkit.models.convert.ultralytics import convert_ultralytics, parse_arch
from detkit.models.detectors.yolov8 import YOLOv8, yolov8_parts

SAMPLES = sorted((Path(__file__).resolve().parents[3] / "detkit" / "model_data" / "samples").glob("*.jpg"))


def import_ultralytics(name: str):
    """``ultralytics.<name>``, its settings folder in a temporary directory (never ~/.config); the
    test is skipped without ultralytics."""
    import pytest

    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_config_"))
    pytest.importorskip("ultralytics")
    return __import__(f"ultralytics.{name}", fromlist=["_"])


def spread_weights(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights that keep activations of order 1 through the network (He-normal convs,
    batch norms with random statistics), so that scores and boxes vary from place to place: the
    default initialisation gives nearly equal scores everywhere, whose ties would decide the NMS."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.weight.requires_grad:
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (1.5 / fan_in) ** 0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                count = module.num_features
                module.running_mean.copy_(torch.randn(count, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(count, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(count, generator=generator) * 0.1)


def ultralytics_model(arch: str, seed: int = 0, num_classes: int = 80, cls_bias: float | None = None):
    """ultralytics' ``DetectionModel`` built from its yaml after ``torch.manual_seed(seed)``, in eval
    mode; with ``cls_bias`` its weights are spread (:func:`spread_weights`) and every class logit
    bias set to it (random weights detect little otherwise)."""
    tasks = import_ultralytics("nn.tasks")
    torch.manual_seed(seed)
    model = tasks.DetectionModel(f"{arch}.yaml", nc=num_classes, verbose=False).eval()
    if cls_bias is not None:
        spread_weights(model, seed)
        with torch.no_grad():
            detect = model.model[-1]
            for box_branch, cls_branch in zip(detect.cv2, detect.cv3):
                box_branch[-1].weight.mul_(4.0)  # peaked side distributions: boxes of every size
                cls_branch[-1].weight.mul_(8.0)  # class logits spread by a few units around cls_bias
                cls_branch[-1].bias.fill_(cls_bias)
    return model


def detkit_twin(reference, arch: str) -> YOLOv8:
    """detkit's model of ``arch`` with the converted weights of ``reference``, in eval mode."""
    checkpoint = convert_ultralytics(reference.state_dict(), arch)
    variant, scale = parse_arch(arch)
    model = YOLOv8(**yolov8_parts(variant, scale, checkpoint["meta"]["num_classes"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()
