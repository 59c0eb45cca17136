"""Every experiment config in configs/ builds, trains one step and predicts on CPU, so no config rots.

A config file may define ``test_overrides`` (a list of ``"key.path=value"`` strings) that shrink it
for this test (smaller input sizes, fewer proposals); the model's structure stays the config's own.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from detkit.config import instantiate, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_CONFIGS = sorted(
    p for p in (REPO_ROOT / "configs").glob("*/*.py") if p.parent.name != "common" and p.name != "__init__.py"
)


def _load_reduced(path: Path):
    overrides = list(load_config(path).get("test_overrides", []))
    return load_config(path, overrides)


def _random_targets(sizes: list[tuple[int, int]], num_classes: int, generator: torch.Generator):
    """Three random boxes (with box-shaped masks) per image, except the last image: no objects."""
    targets = []
    for index, (height, width) in enumerate(sizes):
        count = 0 if index == len(sizes) - 1 else 3
        corner = torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.6, height * 0.6])
        side = torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.3, height * 0.3]) + 8
        boxes = torch.cat([corner, corner + side], dim=1)
        masks = torch.zeros(count, height, width, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().to(torch.int64).tolist()):
            masks[k, y1:y2, x1:x2] = 1
        targets.append({"boxes": boxes, "labels": torch.randint(0, num_classes, (count,), generator=generator),
                        "masks": masks})
    return targets


def test_there_are_configs_to_check():
    # Guards the parametrised test below from silently checking nothing.
    assert (REPO_ROOT / "configs").is_dir()
    if not EXPERIMENT_CONFIGS:
        pytest.skip("no experiment configs under configs/<family>/ yet")


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in EXPERIMENT_CONFIGS])
def test_config_trains_one_step_and_predicts(path: Path):
    torch.manual_seed(0)
    cfg = _load_reduced(path)
    assert "model" in cfg, f"{path} defines no `model`"
    model = instantiate(cfg.model)
    num_classes = int(model.num_classes)
    generator = torch.Generator().manual_seed(0)
    sizes = [(96, 128), (128, 96)]
    images = [torch.rand(3, h, w, generator=generator) for h, w in sizes]
    targets = _random_targets(sizes, num_classes, generator)
    assert targets[0]["boxes"].shape[0] == 3 and targets[-1]["boxes"].shape[0] == 0

    model.train()
    _, losses = model(images, targets)
    assert losses, f"{path}: no losses in training mode"
    total = sum(losses.values())
    assert math.isfinite(float(total.detach())), f"{path}: non-finite loss {losses}"
    total.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable), f"{path}: no gradient"

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
