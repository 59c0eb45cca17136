"""Every experiment config in configs/ builds, trains one step and predicts on CPU, so no config rots.

A config file may define ``test_overrides`` (a list of ``"key.path=value"`` strings) that shrink it
for this test (smaller input sizes, fewer proposals); the model's structure stays the config's own.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from detkit.config import (
    InstantiationError, UnsafeConfigError, config_from_data, config_to_data, instantiate, load_config,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_CONFIGS = sorted(
    p for p in (REPO_ROOT / "configs").glob("*/*.py") if p.parent.name != "common" and p.name != "__init__.py"
)


def _load_reduced(path: Path, extra: list[str] | None = None):
    overrides = list(load_config(path).get("test_overrides", []))
    return load_config(path, overrides + list(extra or []))


def _random_targets(sizes: list[tuple[int, int]], num_classes: int, generator: torch.Generator,
                    num_keypoints: int = 0):
    """Three random boxes (with box-shaped masks, and ``num_keypoints`` random keypoints inside
    them for a keypoint model) per image, except the last image: no objects."""
    targets = []
    for index, (height, width) in enumerate(sizes):
        count = 0 if index == len(sizes) - 1 else 3
        corner = torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.6, height * 0.6])
        side = torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.3, height * 0.3]) + 8
        boxes = torch.cat([corner, corner + side], dim=1)
        masks = torch.zeros(count, height, width, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().to(torch.int64).tolist()):
            masks[k, y1:y2, x1:x2] = 1
        target = {"boxes": boxes, "labels": torch.randint(0, num_classes, (count,), generator=generator),
                  "masks": masks}
        if num_keypoints:
            inside = torch.rand(count, num_keypoints, 2, generator=generator)
            points = boxes[:, None, :2] + inside * (boxes[:, None, 2:] - boxes[:, None, :2])
            target["keypoints"] = torch.cat([points, torch.full((count, num_keypoints, 1), 2.0)], dim=2)
        targets.append(target)
    return targets


def test_there_are_configs_to_check():
    # Guards the parametrised test below from silently checking nothing.
    assert (REPO_ROOT / "configs").is_dir()
    if not EXPERIMENT_CONFIGS:
        pytest.skip("no experiment configs under configs/<family>/ yet")


def _trains_one_step_and_predicts(cfg, where: str) -> None:
    """One training step (finite loss, gradients) and one inference step (boxes inside the images)."""
    model = instantiate(cfg.model)
    num_classes = int(model.num_classes)
    generator = torch.Generator().manual_seed(0)
    sizes = [(96, 128), (128, 96)]
    images = [torch.rand(3, h, w, generator=generator) for h, w in sizes]
    targets = _random_targets(sizes, num_classes, generator, int(getattr(model, "num_keypoints", 0)))
    assert targets[0]["boxes"].shape[0] == 3 and targets[-1]["boxes"].shape[0] == 0

    model.train()
    _, losses = model(images, targets)
    assert losses, f"{where}: no losses in training mode"
    total = sum(losses.values())
    assert math.isfinite(float(total.detach())), f"{where}: non-finite loss {losses}"
    total.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable), f"{where}: no gradient"

    model.eval()
    with torch.no_grad():
        predictions, _ = model(images)
    assert len(predictions) == len(images)
    for prediction, (height, width) in zip(predictions, sizes):
        boxes = prediction["boxes"]
        assert boxes.dim() == 2 and boxes.shape[1] == 4
        assert prediction["labels"].dtype == torch.int64 and prediction["scores"].shape == (boxes.shape[0],)
        if boxes.numel():
            assert int(prediction["labels"].min()) >= 0 and int(prediction["labels"].max()) < num_classes
            assert float(boxes[:, 0::2].min()) >= 0 and float(boxes[:, 0::2].max()) <= width
            assert float(boxes[:, 1::2].min()) >= 0 and float(boxes[:, 1::2].max()) <= height
        if "masks" in prediction:
            assert prediction["masks"].shape[-2:] == (height, width)


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in EXPERIMENT_CONFIGS])
def test_config_trains_one_step_and_predicts(path: Path):
    torch.manual_seed(0)
    cfg = _load_reduced(path)
    assert "model" in cfg, f"{path} defines no `model`"
    _trains_one_step_and_predicts(cfg, str(path))


# The number of classes is said once, at the detector node: one override changes every head.
NUM_CLASSES_CONFIGS = [
    "faster_rcnn/faster_rcnn_r50_fpn_1x_coco", "mask_rcnn/mask_rcnn_r50_fpn_1x_coco", "ssd/ssd300_vgg16_120e_coco",
    "ssd/ssdlite320_mobilenetv3_600e_coco", "yolo/yolov3_tiny_416_coco",
]


@pytest.mark.parametrize("name", NUM_CLASSES_CONFIGS)
def test_one_num_classes_override_builds_and_trains(name: str):
    torch.manual_seed(0)
    path = REPO_ROOT / "configs" / f"{name}.py"
    extra = ["model.num_classes=20"]
    if load_config(path).model.get("class_names") is not None:  # YOLO's COCO names: they must follow
        extra.append(f"model.class_names={[f'c{k}' for k in range(20)]}")
    cfg = _load_reduced(path, extra)
    model = instantiate(cfg.model)
    assert model.num_classes == 20
    heads = [m for m in model.modules() if hasattr(m, "num_classes") and m is not model]
    assert heads and all(m.num_classes == 20 for m in heads), [(type(m).__name__, m.num_classes) for m in heads]
    _trains_one_step_and_predicts(cfg, name)


@pytest.mark.parametrize("name", ["faster_rcnn/faster_rcnn_r50_fpn_1x_voc", "yolo/yolov3_tiny_416_coco"])
def test_num_classes_that_disagrees_with_the_class_names_names_both_keys(name: str):
    cfg = load_config(REPO_ROOT / "configs" / f"{name}.py", ["model.num_classes=3"])
    with pytest.raises(InstantiationError, match=r"model\.num_classes=3 but model\.class_names has (20|80) names"):
        instantiate(cfg.model)


@pytest.mark.parametrize("family", ["faster_rcnn", "mask_rcnn"])
def test_backbone_depth_override_builds_and_trains(family: str):
    # The FPN sizes itself from the backbone, so the depth is the one key to change.
    path = REPO_ROOT / "configs" / family / f"{family}_r50_fpn_1x_coco.py"
    _trains_one_step_and_predicts(_load_reduced(path, ["model.backbone.depth=18"]), "depth 18")


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in EXPERIMENT_CONFIGS])
def test_model_section_round_trips_through_the_checkpoint_data_form(path: Path, tmp_path: Path):
    model = load_config(path).model
    data = config_to_data(model)
    torch.save({"model_config": data}, tmp_path / "data.pth")
    read = torch.load(tmp_path / "data.pth", weights_only=True)["model_config"]
    demo = path.parent.name == "demo"  # ready-made models that fetch their weights: refused by default
    if demo:
        with pytest.raises(UnsafeConfigError, match="detkit.models"):
            config_from_data(read)
    back = config_from_data(read, denied_modules=()) if demo else config_from_data(read)
    assert back == model


SHAPES_CONFIGS = sorted(p for p in EXPERIMENT_CONFIGS if p.stem.endswith("_shapes"))
# Every family and architecture, not only the shapes configs: SSD300's VGG, YOLOv3's Darknet-53,
# Faster R-CNN's MobileNetV3, MTCNN's cascade and its three stage trainings.
BF16_CONFIGS = SHAPES_CONFIGS + [REPO_ROOT / "configs" / name for name in (
    "ssd/ssd300_vgg16_120e_voc.py", "yolo/yolov3_d53_416_voc.py", "faster_rcnn/faster_rcnn_mobilenetv3_fpn_1x_coco.py",
    "mtcnn/mtcnn_facenet_wider_face.py", "mtcnn/mtcnn_pnet_train_wider_face.py", "mtcnn/mtcnn_rnet_train_wider_face.py",
    "mtcnn/mtcnn_onet_train_wider_face.py")]


@pytest.mark.parametrize("path", BF16_CONFIGS, ids=[p.stem for p in BF16_CONFIGS])
def test_a_bf16_autocast_step_trains_every_family_on_the_cpu(path: Path):
    # train.amp='bf16' on the CPU: the trainer runs the step under this autocast. The RPN and
    # heads then hand bf16 boxes to NMS and RoIAlign (ops compare them in float32, the exact upcast).
    torch.manual_seed(0)
    cfg = _load_reduced(path)
    model = instantiate(cfg.model).train()
    generator = torch.Generator().manual_seed(0)
    sizes = [(96, 128), (128, 96)]
    images = [torch.rand(3, h, w, generator=generator) for h, w in sizes]
    targets = _random_targets(sizes, int(model.num_classes), generator, int(getattr(model, "num_keypoints", 0)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = model(images, targets)
    total = sum(losses.values())
    assert math.isfinite(float(total.detach())), f"{path.stem}: non-finite bf16 loss {losses}"
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
