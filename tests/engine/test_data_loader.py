"""Training loader: order a function of (seed, epoch), rank slices, resumable, seeded samples."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from detkit.engine import MultiStepLR, TrainSettings, Trainer, build_optimizer
from detkit.data.collate import collate_detection
from detkit.engine.data import DataLoadingError, EpochBatchSampler, build_train_loader
from toy_detector import ToyDataset, ToyDetector


def batches(sampler: EpochBatchSampler, epoch: int, start: int = 0) -> list[list[tuple[int, int]]]:
    sampler.set_epoch(epoch, start)
    return list(sampler)


def test_order_depends_on_seed_and_epoch_only():
    sampler = EpochBatchSampler(10, 2, seed=3, rank=0, world_size=1)
    first = batches(sampler, 0)
    assert len(first) == 5 and sorted(i for b in first for i, _ in b) == list(range(10))
    assert batches(EpochBatchSampler(10, 2, seed=3, rank=0, world_size=1), 0) == first
    assert batches(sampler, 1) != first
    assert batches(EpochBatchSampler(10, 2, seed=4, rank=0, world_size=1), 0) != first
    assert batches(sampler, 0, start=3) == first[3:]  # resume skips without drawing


def test_ranks_split_the_global_batch_of_one_process():
    single = batches(EpochBatchSampler(13, 4, seed=0, rank=0, world_size=1), 2)
    ranks = [batches(EpochBatchSampler(13, 2, seed=0, rank=r, world_size=2), 2) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 3  # 13 // 4, incomplete dropped
    for step, batch in enumerate(single):
        assert batch == ranks[0][step] + ranks[1][step]


def test_too_small_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one global batch of 8"):
        EpochBatchSampler(5, 4, rank=0, world_size=2)


def _epoch_images(num_workers: int, start: int = 0) -> list[torch.Tensor]:
    loader = build_train_loader(ToyDataset(size=8, augment=True), batch_size=2, seed=5,
                                num_workers=num_workers)
    loader.batch_sampler.set_epoch(1, start)
    return [image for images, _ in loader for image in images]


def test_augmentation_depends_on_the_sample_not_on_workers_or_resume():
    reference = _epoch_images(0)
    assert all(torch.equal(a, b) for a, b in zip(reference, _epoch_images(2)))
    resumed = _epoch_images(0, start=2)
    assert all(torch.equal(a, b) for a, b in zip(reference[4:], resumed))


def test_loading_does_not_touch_the_global_generators():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    _epoch_images(0)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_collate_keeps_lists():
    images, targets = collate_detection([(torch.zeros(3, 4, 5), {"a": 1}),
                                         (torch.ones(3, 6, 2), {"a": 2})])
    assert [tuple(i.shape) for i in images] == [(3, 4, 5), (3, 6, 2)]
    assert targets == [{"a": 1}, {"a": 2}]


def test_trainer_refuses_a_loader_it_cannot_resume(tmp_path):
    model = ToyDetector()
    loader = torch.utils.data.DataLoader(ToyDataset(size=4), batch_size=2, shuffle=True,
                                         collate_fn=collate_detection)
    settings = TrainSettings.from_config({"max_iter": 1, "output_dir": str(tmp_path)})
    with pytest.raises(TypeError, match=r"resumable batch sampler.*set_epoch\(epoch, start_batch\)"):
        Trainer(model, build_optimizer(model), MultiStepLR([5]), loader, settings)


class BrokenDataset(ToyDataset):
    """Raises ``error`` when sample ``bad_index`` is read for the ``on_read``-th time."""

    def __init__(self, error: BaseException, bad_index: int = 2, on_read: int = 1) -> None:
        super().__init__(size=4)
        self.error, self.bad_index, self.on_read, self.reads = error, bad_index, on_read, 0

    def __getitem__(self, index: int):
        if index == self.bad_index:
            self.reads += 1
            if self.reads == self.on_read:
                raise self.error
        return super().__getitem__(index)


def train_on(dataset: torch.utils.data.Dataset, tmp_path, num_workers: int = 0) -> Trainer:
    model = ToyDetector()
    loader = build_train_loader(dataset, batch_size=1, shuffle=False, num_workers=num_workers)
    settings = TrainSettings.from_config({"max_iter": 12, "output_dir": str(tmp_path),
                                          "progress_bar": False, "checkpoint_period": 0})
    trainer = Trainer(model, build_optimizer(model), MultiStepLR([50]), loader, settings)
    trainer.train()
    return trainer


def test_a_data_error_names_the_iteration_and_keeps_the_message(tmp_path):
    original = ValueError("data/ann.json: image 'b.jpg' (id 2): box 0 is not finite")
    with pytest.raises(DataLoadingError) as error:
        train_on(BrokenDataset(original, bad_index=2, on_read=2), tmp_path / "a")
    # 4 images, batch 1, dataset order: index 2 is read by steps 3 and 7 (epoch 1).
    assert str(error.value) == ("iteration 7 (epoch 1): data/ann.json: image 'b.jpg' (id 2): "
                                "box 0 is not finite")
    assert error.value.__cause__ is original and isinstance(error.value, ValueError)
    assert not list((tmp_path / "a").glob("*.pth"))

    with pytest.raises(DataLoadingError) as error:
        train_on(BrokenDataset(TypeError("bad operand\nsecond line")), tmp_path / "b")
    assert str(error.value) == "iteration 3 (epoch 0): TypeError: bad operand; second line"


def test_a_data_error_in_a_worker_keeps_only_the_original_message(tmp_path):
    original = ValueError("data/ann.json: image 'b.jpg' (id 2): box 0 is not finite")
    with pytest.raises(DataLoadingError) as error:
        train_on(BrokenDataset(original), tmp_path, num_workers=1)
    assert str(error.value) == ("iteration 3 (epoch 0): data/ann.json: image 'b.jpg' (id 2): "
                                "box 0 is not finite (in DataLoader worker process 0)")


def test_a_keyboard_interrupt_while_loading_is_not_wrapped(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_on(BrokenDataset(KeyboardInterrupt()), tmp_path)
