"""The YOLOv3-tiny shapes config's training data feed its model: boxes stay on their objects through
the mosaic and the letterbox, and one training step on a real batch gives finite losses."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from detkit.config import instantiate, load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "yolo" / "yolov3_tiny_320_shapes.py"


def _small_config(root: Path):
    cfg = load_config(CONFIG, list(load_config(CONFIG).test_overrides))
    for split in ("train", "test"):
        loader = cfg.dataloader[split]
        dataset = loader.dataset.dataset if split == "train" else loader.dataset  # train: inside the mosaic
        dataset.root, dataset.num_train, dataset.num_val, dataset.image_size = str(root), 8, 4, 64
    cfg.dataloader.train.batch_size = 4
    return cfg


def test_training_sections():
    cfg = load_config(CONFIG)
    assert cfg.train.output_dir == "runs/yolov3_tiny_320_shapes"
    schedule = instantiate(cfg.lr_schedule, "lr_schedule")
    schedule.fit_to_run(cfg.train.max_iter, 1)  # the schedule follows the run's length
    assert cfg.train.max_iter >= schedule.warmup_iters > 0
    assert schedule.max_t == cfg.train.max_iter
    assert cfg.evaluator.iou_types == ["bbox"]


def test_train_batch_feeds_the_model(tmp_path):
    torch.manual_seed(0)
    cfg = _small_config(tmp_path / "shapes")
    loader = instantiate(cfg.dataloader.train, "dataloader.train")
    images, targets = next(iter(loader))
    assert len(images) == 4
    for image, target in zip(images, targets):
        assert image.shape == (3, 320, 320) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        boxes = target["boxes"]
        assert boxes.shape[1] == 4 and len(boxes) == len(target["labels"])
        if len(boxes):
            assert float(boxes.min()) >= 0 and float(boxes.max()) <= 320
            assert bool((boxes[:, 2:] > boxes[:, :2]).all())

    model = instantiate(cfg.model, "model")
    model.train()
    _, losses = model(images, targets)
    total = sum(losses.values())
    assert math.isfinite(float(total.detach()))
    total.backward()

    test_images, test_targets = next(iter(instantiate(cfg.dataloader.test, "dataloader.test")))
    assert test_images[0].shape == (3, 64, 64) and "boxes" in test_targets[0]  # plain images: the model letterboxes
