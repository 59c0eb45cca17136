"""Anchor boxes tiled over feature maps (Faster R-CNN / RetinaNet style).

Same anchors, in the same order, as torchvision's ``anchor_utils.AnchorGenerator``:

* Cell anchors of a level: for each aspect ratio ``r = height / width`` (outer loop) and each size
  ``s`` (inner loop), a box of area about ``s**2`` centred on 0: ``h = sqrt(r) * s``,
  ``w = s / sqrt(r)``, corners ``[-w, -h, w, h] / 2`` rounded to whole pixels (Detectron's
  convention, which torchvision keeps).
* The stride of a level is ``padded_image_size // feature_map_size`` (integer division, per axis).
  The cell anchors are shifted to ``(x * stride_w, y * stride_h)`` for every feature-map cell: the
  top-left corner of the cell, not its centre (torchvision's choice; no half-pixel offset).
* Anchors are ordered level by level, within a level row-major over cells (y, then x), and within
  a cell in cell-anchor order, which is the order in which a head lays out its
  ``[B, A * 4, H, W]`` predictions once permuted to ``[B, H, W, A, 4]`` and flattened.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detkit.structures import ImageList


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
    """Zero-centred anchors of one level.

    Args:
        sizes: anchor sides in pixels (the square root of the area).
        aspect_ratios: ``height / width`` ratios.

    Returns:
        ``[len(aspect_ratios) * len(sizes), 4]`` float32 xyxy boxes, ratio-major then size,
        rounded to whole pixels.
    """
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    height_factors = torch.sqrt(ratios)
    width_factors = 1 / height_factors
    widths = (width_factors[:, None] * scales[None, :]).reshape(-1)
    heights = (height_factors[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for a batch of images and its feature maps, one level per feature map.

    Args:
        sizes: per level, anchor sizes in pixels, e.g. ``((32,), (64,), (128,), (256,), (512,))``
            for an FPN or ``((128, 256, 512),)`` for a single C4 level.
        aspect_ratios: per level, ``height / width`` ratios, e.g. ``((0.5, 1.0, 2.0),) * 5``.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]] = ((128, 256, 512),),
        aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),),
    ) -> None:
        super().__init__()
        if len(sizes) == 0 or not all(isinstance(level, Sequence) and len(level) > 0 for level in sizes):
            raise ValueError(f"sizes must be one non-empty sequence per level, got {sizes!r}")
        if not all(isinstance(level, Sequence) and len(level) > 0 for level in aspect_ratios):
            raise ValueError(f"aspect_ratios must be one non-empty sequence per level, got {aspect_ratios!r}")
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"sizes has {len(sizes)} levels but aspect_ratios has {len(aspect_ratios)}")
        self.sizes = tuple(tuple(level) for level in sizes)
        self.aspect_ratios = tuple(tuple(level) for level in aspect_ratios)
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)]
        # (level, grid h, grid w, stride h, stride w, device, dtype) -> [H * W * A, 4] anchors.
        # Bounded: multi-scale training sees many grid sizes; it is simply emptied when full.
        self._cache: dict[tuple, Tensor] = {}
        self._cache_capacity = 128

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, aspect_ratios={self.aspect_ratios}"

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per feature-map cell, per level: ``len(sizes[l]) * len(aspect_ratios[l])``."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def _level_anchors(
        self, level: int, grid_size: tuple[int, int], stride: tuple[int, int], device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        key = (level, *grid_size, *stride, device, dtype)
        anchors = self._cache.get(key)
        if anchors is None:
            grid_height, grid_width = grid_size
            shifts_x = torch.arange(grid_width, dtype=torch.int64, device=device) * stride[1]
            shifts_y = torch.arange(grid_height, dtype=torch.int64, device=device) * stride[0]
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
            base = self.cell_anchors[level].to(device=device, dtype=dtype)
            anchors = (shifts + base[None]).reshape(-1, 4)  # int64 + float -> dtype
            if len(self._cache) >= self._cache_capacity:
                self._cache.clear()
            self._cache[key] = anchors
        return anchors

    def forward(self, images: ImageList | Tensor, feature_maps: Sequence[Tensor]) -> list[Tensor]:
        """Anchors of every image in the batch.

        Args:
            images: the padded batch, an :class:`ImageList` or its ``[B, C, H, W]`` tensor. Only its
                batch size and padded size matter: every image gets the same anchors, including
                those over its padding (a head masks or clips them as it needs).
            feature_maps: per level, ``[B, C_l, H_l, W_l]`` features; their dtype and device are
                those of the anchors.

        Returns:
            ``B`` tensors ``[sum_l H_l * W_l * A_l, 4]``, xyxy in pixels of the padded batch
            (``A_l = num_anchors_per_location()[l]``), ordered as in the module docstring.
        """
        batch = images.tensor if isinstance(images, ImageList) else images
        if batch.dim() != 4:
            raise ValueError(f"images must be an ImageList or a [B, C, H, W] tensor, got {list(batch.shape)}")
        if len(feature_maps) != len(self.cell_anchors):
            raise ValueError(
                f"got {len(feature_maps)} feature maps but the generator has {len(self.cell_anchors)} levels "
                f"(sizes={self.sizes})"
            )
        image_height, image_width = batch.shape[-2:]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        per_level = []
        for level, feature_map in enumerate(feature_maps):
            grid_height, grid_width = feature_map.shape[-2:]
            stride = (image_height // grid_height, image_width // grid_width)
            per_level.append(self._level_anchors(level, (grid_height, grid_width), stride, device, dtype))
        all_anchors = torch.cat(per_level)
        # One tensor per image (fresh, so a caller may modify an image's anchors in place).
        return [all_anchors] + [all_anchors.clone() for _ in range(batch.shape[0] - 1)]
