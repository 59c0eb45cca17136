"""SSD's default boxes (Liu et al. 2016, sec. 2.2 "Choosing scales and aspect ratios").

Feature map ``k`` (of ``m``) has scale ``s_k`` (a fraction of the image side). Each of its cells
gets ``2 + 2 * len(aspect_ratios[k])`` boxes, centred on the cell, in this order (torchvision's
``DefaultBoxGenerator``, so that heads ported from torchvision line up anchor by anchor):

1. ``s_k x s_k``,
2. ``s'_k x s'_k`` with ``s'_k = sqrt(s_k * s_{k+1})``,
3. for each ratio ``a`` of the level: ``(s_k sqrt(a)) x (s_k / sqrt(a))`` then its transpose.

Boxes are ordered level by level, then row by row (``y``), column by column (``x``), then box by
box, which is the order in which :class:`~detkit.models.dense_heads.ssd_head.SSDHead` flattens its
outputs. Scales either come explicitly (``m + 1`` values, the last one only used for ``s'_m``) or
are spread linearly from ``min_ratio`` to ``max_ratio`` with a final ``1.0`` (torchvision's rule;
the paper's Caffe models instead give explicit scales, e.g. SSD300 COCO's
``(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)``).

Centres: ``((j + 0.5) / f_x, (i + 0.5) / f_y)`` with ``f = image_size / step`` when ``steps`` is
given (the Caffe models tile with a fixed step: 8, 16, 32, 64, 100, 300 for SSD300), else
``f`` = the feature map size. With ``clip`` the width and height (not the centre) are clamped to
[0, 1] in ``(cx, cy, w, h)`` form, as torchvision does. Boxes come out xyxy in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# Number of (grid sizes, image size, dtype, device) results kept; SSD runs at one fixed size.
_CACHE_SIZE = 4


class DefaultBoxGenerator(nn.Module):
    """Default boxes of SSD for a fixed set of feature-map sizes (see the module docstring).

    Args:
        aspect_ratios: per feature map, the extra aspect ratios ``a`` (e.g. ``[[2], [2, 3], ...]``);
            each adds two boxes (``a`` and ``1/a``).
        min_ratio: smallest scale when ``scales`` is None.
        max_ratio: largest scale (of the last map) when ``scales`` is None.
        scales: ``len(aspect_ratios) + 1`` explicit scales, fractions of the image side.
        steps: per feature map, the distance in pixels between neighbouring box centres, or None
            to spread the centres evenly over each feature map.
        clip: clamp box width and height to the image side.
    """

    def __init__(
        self,
        aspect_ratios: Sequence[Sequence[float]],
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        scales: Sequence[float] | None = None,
        steps: Sequence[float] | None = None,
        clip: bool = True,
    ) -> None:
        super().__init__()
        num_levels = len(aspect_ratios)
        if num_levels == 0:
            raise ValueError("aspect_ratios must give at least one feature map")
        if steps is not None and len(steps) != num_levels:
            raise ValueError(f"got {len(steps)} steps for {num_levels} feature maps (aspect_ratios)")
        if any(a <= 0 for ratios in aspect_ratios for a in ratios):
            raise ValueError(f"aspect ratios must be > 0, got {aspect_ratios}")
        if scales is None:
            if num_levels > 1:
                # s_k = s_min + (s_max - s_min) * k / (m - 1), then 1.0 for the last s'_k.
                scales = [min_ratio + (max_ratio - min_ratio) * k / (num_levels - 1.0) for k in range(num_levels)]
                scales.append(1.0)
            else:
                scales = [min_ratio, max_ratio]
        if len(scales) != num_levels + 1:
            raise ValueError(f"scales needs {num_levels + 1} values (one per feature map plus one), got {len(scales)}")
        self.aspect_ratios = [[float(a) for a in ratios] for ratios in aspect_ratios]
        self.scales = [float(s) for s in scales]
        self.steps = None if steps is None else [float(s) for s in steps]
        self.clip = clip
        # [P_k, 2] (w, h) per level, fractions of the image side, in the order of the module docstring.
        self._wh_pairs = [self._wh_pairs_of_level(k) for k in range(num_levels)]
        self._cache: dict[tuple, Tensor] = {}

    def _wh_pairs_of_level(self, k: int) -> Tensor:
        s_k = self.scales[k]
        s_prime = math.sqrt(self.scales[k] * self.scales[k + 1])
        pairs = [[s_k, s_k], [s_prime, s_prime]]
        for ratio in self.aspect_ratios[k]:
            root = math.sqrt(ratio)
            pairs += [[s_k * root, s_k / root], [s_k / root, s_k * root]]
        wh = torch.tensor(pairs, dtype=torch.float32)
        return wh.clamp(min=0, max=1) if self.clip else wh

    def num_anchors_per_location(self) -> list[int]:
        """Boxes per cell of each feature map: ``2 + 2 * len(aspect_ratios[k])``."""
        return [2 + 2 * len(ratios) for ratios in self.aspect_ratios]

    def extra_repr(self) -> str:
        return f"aspect_ratios={self.aspect_ratios}, scales={self.scales}, steps={self.steps}, clip={self.clip}"

    def forward(
        self,
        image_size: tuple[int, int],
        grid_sizes: Sequence[tuple[int, int]],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Default boxes of one image (every image of a batch shares them: SSD resizes to a fixed size).

        Args:
            image_size: ``(height, width)`` in pixels of the (resized) network input.
            grid_sizes: ``(h_k, w_k)`` of each feature map, shallowest first.
            dtype: dtype of the result.
            device: device of the result.

        Returns:
            ``[A, 4]`` xyxy boxes in pixels, ``A = sum_k h_k * w_k * num_anchors_per_location()[k]``.
            The tensor is cached and shared: do not modify it in place.
        """
        grid_sizes = tuple((int(h), int(w)) for h, w in grid_sizes)
        if len(grid_sizes) != len(self._wh_pairs):
            raise ValueError(
                f"{type(self).__name__} was built for {len(self._wh_pairs)} feature maps, got {len(grid_sizes)}"
            )
        key = (grid_sizes, (int(image_size[0]), int(image_size[1])), dtype, torch.device(device))
        boxes = self._cache.get(key)
        if boxes is None:
            boxes = self._generate(key[1], grid_sizes, dtype).to(device)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = boxes
        return boxes

    def _generate(
        self, image_size: tuple[int, int], grid_sizes: tuple[tuple[int, int], ...], dtype: torch.dtype
    ) -> Tensor:
        height, width = image_size
        # The arithmetic follows torchvision operation by operation (float32 centres from an int
        # arange, (c -+ w/2) * size) so that the boxes agree to the last bit.
        size_xy = torch.tensor([width, height])
        levels = []
        for k, (grid_h, grid_w) in enumerate(grid_sizes):
            if self.steps is not None:
                cells_x, cells_y = width / self.steps[k], height / self.steps[k]
            else:
                cells_x, cells_y = grid_w, grid_h
            shifts_x = ((torch.arange(0, grid_w) + 0.5) / cells_x).to(dtype)
            shifts_y = ((torch.arange(0, grid_h) + 0.5) / cells_y).to(dtype)
            centre_y, centre_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            centres = torch.stack((centre_x.reshape(-1), centre_y.reshape(-1)), dim=1)  # [HW, 2]
            wh = self._wh_pairs[k].to(dtype)  # [P, 2]
            centres = centres[:, None, :].expand(-1, wh.shape[0], -1)  # [HW, P, 2]
            wh = wh[None].expand(centres.shape[0], -1, -1)
            boxes = torch.cat(((centres - 0.5 * wh) * size_xy, (centres + 0.5 * wh) * size_xy), dim=-1)
            levels.append(boxes.reshape(-1, 4))
        return torch.cat(levels, dim=0)
