"""CloseMosaic: the last N epochs of a run train on plain images (ultralytics' close_mosaic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detkit.data.mosaic import MixupDataset, MosaicDataset
from detkit.engine import MultiStepLR, TrainSettings, Trainer, build_optimizer, build_train_loader
from detkit.engine.close_mosaic import CloseMosaic, multi_image_wrappers
from detkit.utils.image_io import image_to_tensor
from toy_detector import ToyDetector

SIDE = 16


class _Images:
    """Raw 16 x 16 images, each with one box covering it (a mosaic keeps part of tile 0's box)."""

    def __len__(self) -> int:
        return 6

    def load_raw(self, index: int):
        image = np.full((SIDE, SIDE, 3), 10 * index, dtype=np.uint8)
        target = {"boxes": torch.tensor([[0.0, 0.0, SIDE, SIDE]]), "labels": torch.tensor([index % 3])}
        return image, target


class _RecordingDetector(ToyDetector):
    """Records the side of the images of every training call (32 for a mosaic, 16 plain)."""

    def __init__(self) -> None:
        super().__init__()
        self.sides: list[int] = []

    def forward(self, images, targets=None):
        if self.training:
            self.sides.extend(int(image.shape[-1]) for image in images)
        return super().forward(images, targets)


def _to_tensor(image, target):
    return image_to_tensor(image), target


def _trainer(tmp_path, dataset, hook, *, num_workers=0, persistent=False, **train):
    torch.manual_seed(0)
    model = _RecordingDetector()
    settings = TrainSettings.from_config({
        "max_epochs": 5, "output_dir": str(tmp_path), "progress_bar": False, "checkpoint_period": 0,
        "device": "cpu", "hooks": [hook], **train,
    })  # fmt: skip
    loader = build_train_loader(dataset, batch_size=2, num_workers=num_workers, persistent_workers=persistent)
    optimizer = build_optimizer(model, name="SGD", lr=0.01, momentum=0.9, weight_decay=0.0)
    return Trainer(model, optimizer, MultiStepLR(milestones=[100]), loader, settings), model


@pytest.mark.parametrize("num_workers", [0, 1])
def test_last_epochs_have_no_mosaic(tmp_path, num_workers):
    dataset = MosaicDataset(_Images(), output_size=SIDE, transforms=_to_tensor, prob=1.0)
    hook = CloseMosaic(epochs=2)
    trainer, model = _trainer(tmp_path, dataset, hook, num_workers=num_workers)
    trainer.train()
    per_epoch = [model.sides[i : i + 6] for i in range(0, len(model.sides), 6)]  # 3 batches of 2 per epoch
    assert per_epoch == [[2 * SIDE] * 6] * 3 + [[SIDE] * 6] * 2
    assert hook.closed and dataset.prob == 0.0


def test_mixup_closes_too_unless_told(tmp_path):
    mosaic = MosaicDataset(_Images(), output_size=SIDE, prob=1.0)
    dataset = MixupDataset(mosaic, transforms=_to_tensor, prob=0.5)
    assert multi_image_wrappers(torch.utils.data.Subset(dataset, [0, 1])) == [dataset, mosaic]
    trainer, _ = _trainer(tmp_path, dataset, CloseMosaic(epochs=1, mixup=False))
    trainer.train()
    assert mosaic.prob == 0.0 and dataset.prob == 0.5
    trainer, _ = _trainer(tmp_path / "again", dataset, CloseMosaic(epochs=1))
    trainer.train()
    assert dataset.prob == 0.0


def test_resumed_or_short_runs_close_at_the_start(tmp_path):
    dataset = MosaicDataset(_Images(), output_size=SIDE, transforms=_to_tensor, prob=1.0)
    hook = CloseMosaic(epochs=10)  # longer than the run (5 epochs): closed from epoch 0, as ultralytics
    trainer, model = _trainer(tmp_path, dataset, hook)
    assert hook.first_closed_epoch(trainer) == 0
    trainer.train()
    assert set(model.sides) == {SIDE}

    dataset = MosaicDataset(_Images(), output_size=SIDE, transforms=_to_tensor, prob=1.0)
    hook = CloseMosaic(epochs=2)
    trainer, _ = _trainer(tmp_path / "resumed", dataset, hook, max_epochs=None, max_iter=15)
    assert hook.first_closed_epoch(trainer) == 3  # 15 steps of 3 per epoch: 5 epochs
    trainer.iteration = 10  # as a resume at epoch 3 leaves it
    hook.before_train(trainer)
    assert dataset.prob == 0.0


def test_persistent_workers_and_bad_settings_are_refused(tmp_path):
    dataset = MosaicDataset(_Images(), output_size=SIDE, transforms=_to_tensor, prob=1.0)
    trainer, _ = _trainer(tmp_path, dataset, CloseMosaic(epochs=2), num_workers=1, persistent=True)
    with pytest.raises(ValueError, match="persistent workers"):
        trainer.train()
    with pytest.raises(ValueError, match="CloseMosaic: epochs must be >= 0"):
        CloseMosaic(epochs=-1)
