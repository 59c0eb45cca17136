"""Sample a fixed-size, class-balanced minibatch of anchors or proposals per image (Faster R-CNN)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class BalancedPositiveNegativeSampler:
    """Draw up to ``batch_size_per_image`` elements per image, at most ``positive_fraction`` of them
    positive; negatives fill the rest (Faster R-CNN: 256 anchors at 1:1 for the RPN, 512 RoIs at
    1:3 for the box head).

    Same semantics as torchvision's ``det_utils.BalancedPositiveNegativeSampler``: for each image in
    turn it draws ``torch.randperm`` over the positives, then over the negatives, and keeps a prefix
    of each. Without a ``generator`` it uses the global RNG of the elements' device, so under the
    same ``torch.manual_seed`` it selects exactly what torchvision selects. Pass a
    ``torch.Generator`` (on the same device as the labels) for sampling independent of global state.

    Args:
        batch_size_per_image: number of elements to select per image (fewer when there are not
            enough labelled elements).
        positive_fraction: largest fraction of the selection that is positive, in [0, 1].
        generator: optional source of randomness.
    """

    def __init__(
        self, batch_size_per_image: int, positive_fraction: float, generator: torch.Generator | None = None
    ) -> None:
        if batch_size_per_image < 0:
            raise ValueError(f"batch_size_per_image must be >= 0, got {batch_size_per_image}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.generator = generator

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_size_per_image={self.batch_size_per_image}, "
            f"positive_fraction={self.positive_fraction})"
        )

    def _random_subset(self, indices: Tensor, count: int) -> Tensor:
        """``count`` elements of ``indices`` in random order (a randperm prefix, as torchvision)."""
        permutation = torch.randperm(indices.numel(), device=indices.device, generator=self.generator)
        return indices[permutation[:count]]

    def __call__(self, labels: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Select positives and negatives for each image.

        Args:
            labels: per image, ``[A_i]`` integer labels: ``>= 1`` positive, ``0`` negative
                (background), ``-1`` ignored (never sampled).

        Returns:
            ``(positive_masks, negative_masks)``: per image, ``[A_i]`` bool masks of the selected
            positives and negatives (torchvision returns uint8 masks with the same ones).
        """
        positive_masks: list[Tensor] = []
        negative_masks: list[Tensor] = []
        for labels_per_image in labels:
            positives = torch.where(labels_per_image >= 1)[0]
            negatives = torch.where(labels_per_image == 0)[0]
            num_positives = min(positives.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_negatives = min(negatives.numel(), self.batch_size_per_image - num_positives)

            positive_mask = torch.zeros_like(labels_per_image, dtype=torch.bool)
            negative_mask = torch.zeros_like(labels_per_image, dtype=torch.bool)
            positive_mask[self._random_subset(positives, num_positives)] = True
            negative_mask[self._random_subset(negatives, num_negatives)] = True
            positive_masks.append(positive_mask)
            negative_masks.append(negative_mask)
        return positive_masks, negative_masks
