"""Multi-level RoIAlign for feature pyramids (``MultiScaleRoIAlign``).

Each RoI is pooled from one pyramid level chosen by the FPN paper's rule (Lin et al. 2017, eq. 1):
``level = floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)``, clamped to the levels
present. The levels' scales are inferred from the feature-map sizes relative to the largest image,
each rounded to a power of two. These are torchvision's MultiScaleRoIAlign semantics, so that models
ported from torchvision pool exactly the same features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detkit.ops.boxes import box_area
from detkit.ops.roi_align import _pair, boxes_to_rois, roi_align
from detkit.utils.deprecation import renamed_keyword


def infer_scale(feature_size: tuple[int, int], image_size: tuple[int, int]) -> float:
    """Power-of-two scale of a feature map relative to the image, from their heights.

    Args:
        feature_size: ``(height, width)`` of the feature map.
        image_size: ``(height, width)`` of the (largest) image in the batch.

    Returns:
        ``2 ** round(log2(feature_height / image_height))``, e.g. 0.25 for a stride-4 map.
    """
    approx = float(feature_size[0]) / float(image_size[0])
    # torchvision computes log2 in float32; the rounding matches for any realistic ratio.
    return 2.0 ** float(torch.tensor(approx).log2().round())


def map_levels(
    boxes: list[Tensor], level_min: int, level_max: int, canonical_scale: int = 224, canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """FPN level of each box, as an offset from ``level_min``.

    Args:
        boxes: per-image ``[K_i, 4]`` xyxy boxes in image pixels.
        level_min, level_max: the pyramid's first and last level (k in P_k, stride 2**k).
        canonical_scale, canonical_level: a box of side ``canonical_scale`` maps to ``canonical_level``.
        eps: added before flooring so that exact powers of two land on the upper level.

    Returns:
        ``[sum K_i]`` int64 indices in ``[0, level_max - level_min]``.
    """
    sides = torch.sqrt(torch.cat([box_area(b) for b in boxes]))
    levels = torch.floor(canonical_level + torch.log2(sides / canonical_scale) + torch.tensor(eps, dtype=sides.dtype))
    return (levels.clamp(min=level_min, max=level_max).to(torch.int64) - level_min)


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over several pyramid levels, each RoI pooled from the level that suits its size.

    Args:
        in_levels: names of the levels to pool from, in increasing stride (e.g. ``["p2", "p3", "p4", "p5"]``).
        output_size: pooled ``(height, width)`` or one int.
        sampling_ratio: as in :func:`detkit.ops.roi_align`.
        canonical_scale, canonical_level: the level-mapping constants (224 and 4, from the FPN paper).
        aligned: as in :func:`detkit.ops.roi_align` (False, like torchvision's detection models).
        featmap_names: deprecated name of ``in_levels`` (torchvision's).
    """

    def __init__(
        self,
        in_levels: Sequence[str] | None = None,
        output_size: int | tuple[int, int] = 7,
        sampling_ratio: int = 2,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
        aligned: bool = False,
        featmap_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        in_levels = renamed_keyword("MultiScaleRoIAlign", "featmap_names", featmap_names, "in_levels", in_levels, None)
        if not in_levels:
            raise ValueError("MultiScaleRoIAlign: in_levels must name at least one feature level")
        self.in_levels = list(in_levels)
        self.output_size = _pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.aligned = aligned

    def forward(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Tensor:
        """Pool a feature for each box.

        Args:
            features: level name -> ``[N, C, H_l, W_l]``; levels not in ``in_levels`` are ignored.
            boxes: per-image ``[K_i, 4]`` xyxy boxes in image pixels (``len(boxes) == N``).
            image_sizes: per-image ``(height, width)`` before padding.

        Returns:
            ``[sum K_i, C, *output_size]``, in the order of the concatenated boxes.
        """
        missing = [name for name in self.in_levels if name not in features]
        if missing:
            raise KeyError(
                f"MultiScaleRoIAlign: feature levels {missing} are missing; available: {sorted(features)}"
            )
        if not image_sizes:
            raise ValueError("MultiScaleRoIAlign: image_sizes must not be empty")
        maps = [features[name] for name in self.in_levels]
        largest = (max(h for h, _ in image_sizes), max(w for _, w in image_sizes))
        scales = [infer_scale(tuple(m.shape[-2:]), largest) for m in maps]
        rois = boxes_to_rois(boxes)
        if len(maps) == 1:
            return roi_align(maps[0], rois, self.output_size, scales[0], self.sampling_ratio, self.aligned)

        level_min = int(-math.log2(scales[0]))
        level_max = int(-math.log2(scales[-1]))
        levels = map_levels(boxes, level_min, level_max, self.canonical_scale, self.canonical_level)
        first = maps[0]
        result = first.new_zeros((rois.shape[0], first.shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(maps, scales)):
            index = torch.where(levels == level)[0]  # may be empty: no branch on it (export-clean)
            pooled = roi_align(feature, rois[index], self.output_size, scale, self.sampling_ratio, self.aligned)
            result.index_copy_(0, index, pooled.to(result.dtype))
        return result

    def extra_repr(self) -> str:
        return (
            f"in_levels={self.in_levels}, output_size={self.output_size}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
