"""BalancedPositiveNegativeSampler against torchvision's under the same seed."""

from __future__ import annotations

import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler as TorchvisionSampler

from detkit.models.sampler import BalancedPositiveNegativeSampler


def _labels(generator: torch.Generator) -> list[torch.Tensor]:
    # -1 ignored, 0 negative, >= 1 positive; one image short of positives, one short of negatives.
    return [
        torch.randint(-1, 3, (2000,), generator=generator),
        torch.cat([torch.ones(3, dtype=torch.int64), torch.zeros(400, dtype=torch.int64)]),
        torch.cat([torch.full((300,), 2, dtype=torch.int64), torch.zeros(10, dtype=torch.int64)]),
        torch.full((20,), -1, dtype=torch.int64),
    ]


def test_same_selection_as_torchvision_under_same_seed() -> None:
    labels = _labels(torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    positives, negatives = BalancedPositiveNegativeSampler(256, 0.25)(labels)
    torch.manual_seed(123)
    expected_positives, expected_negatives = TorchvisionSampler(256, 0.25)(labels)
    for got, want in zip(positives + negatives, expected_positives + expected_negatives):
        assert got.dtype == torch.bool
        assert torch.equal(got, want.bool())


def test_fractions_and_labels_respected() -> None:
    labels = _labels(torch.Generator().manual_seed(0))
    positives, negatives = BalancedPositiveNegativeSampler(256, 0.25, torch.Generator().manual_seed(0))(labels)
    for label, positive, negative in zip(labels, positives, negatives):
        assert (label[positive] >= 1).all() and (label[negative] == 0).all()
        num_pos = min(int((label >= 1).sum()), 64)
        assert int(positive.sum()) == num_pos
        assert int(negative.sum()) == min(int((label == 0).sum()), 256 - num_pos)
    assert [int(p.sum()) for p in positives] == [64, 3, 64, 0]
    assert [int(n.sum()) for n in negatives] == [192, 253, 10, 0]


def test_generator_makes_sampling_reproducible() -> None:
    labels = _labels(torch.Generator().manual_seed(0))

    def draw(seed: int) -> list[torch.Tensor]:
        positives, negatives = BalancedPositiveNegativeSampler(64, 0.5, torch.Generator().manual_seed(seed))(labels)
        return positives + negatives

    torch.manual_seed(0)
    first = draw(7)
    torch.manual_seed(99)  # global state does not matter
    assert all(torch.equal(a, b) for a, b in zip(first, draw(7)))
    assert not all(torch.equal(a, b) for a, b in zip(first, draw(8)))
