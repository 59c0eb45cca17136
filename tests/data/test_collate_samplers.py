"""Collate functions, aspect-ratio grouping, distributed sharding and exact resume."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.data import DataLoader, SequentialSampler

from detkit.data import (
    CocoDetection,
    DistributedShardSampler,
    GroupedBatchSampler,
    aspect_ratio_group_ids,
    collate_detection,
    collate_padded,
    rcnn_test_transforms,
)
from detkit.data.shapes import ShapesDatasetPaths
from detkit.structures import ImageList


def _batch() -> list[tuple[torch.Tensor, dict]]:
    return [
        (torch.rand(3, 20, 30), {"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0]]), "labels": torch.tensor([0])}),
        (torch.rand(3, 33, 17), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}),
    ]


def test_collate_detection_keeps_lists() -> None:
    batch = _batch()
    images, targets = collate_detection(batch)
    assert [image.shape for image in images] == [(3, 20, 30), (3, 33, 17)]
    assert targets[0] is batch[0][1] and targets[1] is batch[1][1]


def test_collate_padded_pads_to_a_multiple() -> None:
    batch = _batch()
    images, targets = collate_padded(batch, size_divisibility=32)
    assert isinstance(images, ImageList) and images.tensor.shape == (2, 3, 64, 32)
    assert images.image_sizes == [(20, 30), (33, 17)]
    assert torch.equal(images.tensor[1, :, :33, :17], batch[1][0]) and images.tensor[1, :, 33:].abs().sum() == 0
    assert len(targets) == 2


def test_dataloader_with_shapes(shapes: ShapesDatasetPaths) -> None:
    dataset = CocoDetection(shapes.image_dir, shapes.coco_json("val"), transforms=rcnn_test_transforms())
    loader = DataLoader(dataset, batch_size=3, collate_fn=functools.partial(collate_padded, size_divisibility=32))
    images, targets = next(iter(loader))
    assert images.tensor.shape == (3, 3, 96, 128) and len(targets) == 3


def test_grouped_batches_hold_one_group_and_cover_everything() -> None:
    ratios = [1.5, 0.5, 0.7, 2.0, 1.0, 1.3, 0.9, 1.1, 0.6, 1.8, 0.75]  # w / h
    groups = aspect_ratio_group_ids(ratios)
    assert groups[:5] == [0, 1, 1, 0, 1]  # square (w == h) goes with portrait
    sampler = GroupedBatchSampler(SequentialSampler(range(len(ratios))), groups, batch_size=2)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert all(len({groups[i] for i in batch}) == 1 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(ratios)))
    # 5 landscape (0 3 5 7 9) and 6 portrait: a batch is yielded when its group's buffer fills,
    # the landscape leftover at the end.
    assert batches == [[1, 2], [0, 3], [4, 6], [5, 7], [8, 10], [9]]
    dropped = list(GroupedBatchSampler(SequentialSampler(range(len(ratios))), groups, 2, drop_last=True))
    assert all(len(batch) == 2 for batch in dropped) and len(dropped) == 5


def test_grouping_by_dataset_aspect_ratios(shapes: ShapesDatasetPaths) -> None:
    dataset = CocoDetection(shapes.image_dir, shapes.coco_json("train"))
    assert dataset.aspect_ratios() == [128 / 96] * 8
    assert set(aspect_ratio_group_ids(dataset.aspect_ratios())) == {0}


@pytest.mark.parametrize(("size", "replicas"), [(12, 3), (10, 3), (2, 4)])
def test_distributed_shards_are_disjoint_and_cover(size: int, replicas: int) -> None:
    shards = [DistributedShardSampler(size, replicas, rank, seed=7) for rank in range(replicas)]
    lists = [list(shard) for shard in shards]
    assert len({len(indices) for indices in lists}) == 1 and len(lists[0]) == len(shards[0])  # equal steps
    flat = [i for indices in lists for i in indices]
    assert set(flat) == set(range(size))
    if size % replicas == 0:
        assert len(flat) == len(set(flat)) == size  # disjoint
    else:
        assert len(flat) - len(set(flat)) == replicas * len(lists[0]) - size  # only the padding repeats


def test_distributed_epochs_reorder_the_same_way_on_every_instance() -> None:
    a, b = DistributedShardSampler(20, 1, 0, seed=3), DistributedShardSampler(20, 1, 0, seed=3)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    assert sorted(list(a)) == list(range(20))
    assert list(DistributedShardSampler(5, 1, 0, shuffle=False)) == [0, 1, 2, 3, 4]


def test_distributed_resume_yields_the_same_remaining_order() -> None:
    sampler = DistributedShardSampler(50, 2, 1, seed=11)
    sampler.set_epoch(4)
    order = list(sampler)
    consumed = 9
    state = sampler.state_dict(consumed=consumed)
    assert all(isinstance(value, int) for value in state.values())

    resumed = DistributedShardSampler(50, 2, 1, seed=0)  # seed and epoch come from the state
    resumed.load_state_dict(state)
    assert len(resumed) == len(order) - consumed
    assert list(resumed) == order[consumed:]
    assert list(resumed) == order  # the skip applies once; the (same) epoch restarts
    with pytest.raises(ValueError, match="ranks"):
        DistributedShardSampler(50, 4, 1).load_state_dict(state)


def test_grouped_resume_yields_the_same_remaining_batches() -> None:
    groups = [i % 3 == 0 for i in range(40)]
    sampler = GroupedBatchSampler(DistributedShardSampler(40, 2, 0, seed=5), groups, batch_size=3)
    sampler.set_epoch(2)
    batches = list(sampler)
    state = sampler.state_dict(consumed=4)
    resumed = GroupedBatchSampler(DistributedShardSampler(40, 2, 0, seed=5), groups, batch_size=3)
    resumed.load_state_dict(state)
    assert list(resumed) == batches[4:]
