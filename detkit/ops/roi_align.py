"""RoIAlign (He et al., Mask R-CNN 2017): ``roi_align`` and the module ``RoIAlign``.

Semantics are torchvision.ops.roi_align's (see csrc/cpu/roi_align.cpp for the conventions: half-pixel
offset when ``aligned``, adaptive sampling grid when ``sampling_ratio <= 0``, points more than a pixel
outside the map contribute zero). The compiled kernel runs where there is one for the device and
dtype; the pure-PyTorch fallback is exact to float rounding and differentiable with respect to the
input features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.ops._ext import use_ext

# Upper bound on (bins x sampling points x 4 neighbours) index/weight entries per fallback chunk.
_FALLBACK_ENTRIES_PER_CHUNK = 1 << 23
# dtypes with compiled kernels on each device type (CUDA adds half precision).
_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64), "cuda": (torch.float16, torch.float32, torch.float64)}
# Mixed precision: features in these dtypes may come with float32 RoIs (autocast keeps boxes in float32).
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _pair(output_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and all(isinstance(v, int) for v in output_size):
        return int(output_size[0]), int(output_size[1])
    raise ValueError(f"roi_align: output_size must be an int or a pair (height, width) of ints, got {output_size!r}")


def boxes_to_rois(boxes: Tensor | list[Tensor]) -> Tensor:
    """Turn per-image boxes into the ``[K, 5]`` (batch index, x1, y1, x2, y2) RoI format.

    Args:
        boxes: a ``[K, 5]`` tensor (returned as is) or a list with one ``[K_i, 4]`` xyxy tensor per image.

    Returns:
        ``[sum K_i, 5]`` RoIs in the boxes' dtype and device.
    """
    if isinstance(boxes, Tensor):
        return boxes
    if not isinstance(boxes, (list, tuple)) or not all(isinstance(b, Tensor) for b in boxes):
        raise TypeError("roi_align: rois must be a [K, 5] tensor or a list of [K_i, 4] tensors, one per image")
    for index, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"roi_align: boxes[{index}] must have shape [K, 4], got {list(b.shape)}")
    concatenated = torch.cat(list(boxes), dim=0)
    batch_index = torch.cat([torch.full((b.shape[0], 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)])
    return torch.cat([batch_index.to(concatenated), concatenated], dim=1)


def _check_roi_align_inputs(input: Tensor, rois: Tensor, spatial_scale: float, sampling_ratio: int) -> None:
    if not isinstance(input, Tensor) or input.dim() != 4:
        shape = list(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(f"roi_align: input must be a [N, C, H, W] tensor, got {shape}")
    if not input.is_floating_point():
        raise ValueError(f"roi_align: input must be floating point, got {input.dtype}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_align: rois must have shape [K, 5] (batch index, x1, y1, x2, y2), got {list(rois.shape)}")
    if rois.dtype != input.dtype and not (input.dtype in _LOW_PRECISION and rois.dtype == torch.float32):
        raise ValueError(f"roi_align: rois ({rois.dtype}) must have the dtype of input ({input.dtype}), "
                         "or float32 for float16 / bfloat16 input")
    if rois.device != input.device:
        raise ValueError(f"roi_align: rois ({rois.device}) and input ({input.device}) must be on the same device")
    if not (isinstance(spatial_scale, (int, float)) and spatial_scale > 0 and math.isfinite(spatial_scale)):
        raise ValueError(f"roi_align: spatial_scale must be a positive number, got {spatial_scale!r}")
    if not isinstance(sampling_ratio, int):
        raise ValueError(f"roi_align: sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")


def roi_align(
    input: Tensor,
    rois: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Pool a fixed-size feature for each region of interest by bilinear sampling.

    Args:
        input: ``[N, C, H, W]`` feature map.
        rois: ``[K, 5]`` (batch index, x1, y1, x2, y2) in input-image pixels, or a list of ``[K_i, 4]``
            xyxy boxes, one tensor per image.
        output_size: ``(pooled_height, pooled_width)`` or one int for both.
        spatial_scale: feature-map pixels per input-image pixel (e.g. 1/16 for stride 16).
        sampling_ratio: sampling points per bin along each axis; <= 0 uses ``ceil(roi_size / output_size)``
            per RoI.
        aligned: shift the RoI by -0.5 pixel so that pixel centres are sampled exactly (the correct
            convention; False reproduces the original Mask R-CNN behaviour).

    Mixed precision: float16 / bfloat16 ``input`` (with RoIs of its dtype or float32) runs the
    float16 CUDA kernel where there is one for both, and otherwise the exact upcast: computed in
    float32 (forward and backward) and returned in the input's dtype, so the result is the float32
    result rounded once, as torchvision's autocast does for its roi_align.

    Returns:
        ``[K, C, pooled_height, pooled_width]`` pooled features, in ``input``'s dtype.
    """
    rois = boxes_to_rois(rois)
    _check_roi_align_inputs(input, rois, spatial_scale, sampling_ratio)
    pooled_height, pooled_width = _pair(output_size)
    kernel_dtypes = _KERNEL_DTYPES.get(input.device.type, ())
    if input.dtype in _LOW_PRECISION and (rois.dtype != input.dtype or input.dtype not in kernel_dtypes):
        pooled = roi_align(input.float(), rois.float(), (pooled_height, pooled_width), spatial_scale,
                           sampling_ratio, aligned)
        return pooled.to(input.dtype)
    if input.dtype in kernel_dtypes and use_ext("roi_align", input.device):
        return torch.ops.detkit.roi_align(
            input, rois, float(spatial_scale), pooled_height, pooled_width, sampling_ratio, bool(aligned)
        )
    return _roi_align_fallback(input, rois, float(spatial_scale), pooled_height, pooled_width, sampling_ratio, aligned)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align` with fixed output size, scale, sampling ratio and alignment."""

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        """``input [N, C, H, W]``, ``rois [K, 5]`` or per-image boxes -> ``[K, C, *output_size]``."""
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )


# --------------------------------------------------------------------------------------------------
# Pure-PyTorch fallback
# --------------------------------------------------------------------------------------------------


def _axis_samples(
    start: Tensor, bin_size: Tensor, grid: Tensor, max_grid: int, pooled: int, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbour indices and bilinear weights of the sampling points along one axis.

    Args:
        start, bin_size: ``[K]`` RoI start and bin size on the feature map.
        grid: ``[K]`` int sampling points per bin for each RoI; ``max_grid`` its maximum.
        pooled: bins along this axis; ``size``: feature-map extent along this axis.

    Returns:
        ``low, high [K, pooled, max_grid]`` int64 indices, and ``weight_low, weight_high`` of the same
        shape (zero for points beyond a RoI's own grid and for points more than a pixel off the map).
    """
    dtype = start.dtype
    bins = torch.arange(pooled, device=start.device, dtype=dtype)
    steps = torch.arange(max_grid, device=start.device, dtype=dtype)
    grid_f = grid.to(dtype)
    # Same arithmetic order as the kernel: start + bin * bin_size + (i + 0.5) * bin_size / grid.
    coordinate = (
        start[:, None, None]
        + bins[None, :, None] * bin_size[:, None, None]
        + (steps[None, None, :] + 0.5) * bin_size[:, None, None] / grid_f.clamp(min=1)[:, None, None]
    )
    inside = (coordinate >= -1.0) & (coordinate <= size) & (steps[None, None, :] < grid_f[:, None, None])
    coordinate = coordinate.clamp(min=0)
    low = coordinate.to(torch.int64)
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coordinate = torch.where(at_edge, low.to(dtype), coordinate)
    weight_high = coordinate - low.to(dtype)
    weight_low = 1 - weight_high
    zero = torch.zeros((), dtype=dtype, device=start.device)
    return low, high, torch.where(inside, weight_low, zero), torch.where(inside, weight_high, zero)


def _roi_align_fallback(
    input: Tensor,
    rois: Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign as a weighted gather: each output bin is a weighted sum of feature-map pixels (its
    sampling points' bilinear neighbours), computed by ``F.embedding_bag`` over the map seen as a
    ``[N*H*W, C]`` table. Differentiable with respect to ``input``; loops only over chunks of RoIs."""
    batch, channels, height, width = input.shape
    num_rois = rois.shape[0]
    if num_rois == 0 or input.numel() == 0:
        # Zeros that stay in the autograd graph, so that backward gives the input a zero gradient.
        return input.new_zeros((num_rois, channels, pooled_height, pooled_width)) + input.sum() * 0
    batch_index = rois[:, 0].to(torch.int64)
    bad = (batch_index < 0) | (batch_index >= batch)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"roi_align: rois[{first}, 0] = {rois[first, 0].item()} is not a valid batch index for an input "
            f"of batch size {batch}"
        )

    dtype = input.dtype
    scale = torch.tensor(spatial_scale, dtype=dtype, device=input.device)
    offset = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * scale - offset
    start_y = rois[:, 2] * scale - offset
    roi_width = (rois[:, 3] * scale - offset) - start_x
    roi_height = (rois[:, 4] * scale - offset) - start_y
    if not aligned:  # the original convention forces malformed RoIs to 1x1
        roi_width = roi_width.clamp(min=1)
        roi_height = roi_height.clamp(min=1)
    bin_h = roi_height / pooled_height
    bin_w = roi_width / pooled_width
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.int64, device=input.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_height / pooled_height).to(torch.int64)
        grid_w = torch.ceil(roi_width / pooled_width).to(torch.int64)
    count = (grid_h * grid_w).clamp(min=1).to(dtype)

    bins = pooled_height * pooled_width
    # The map as an embedding table: row (n * H + y) * W + x holds the C channels of pixel (y, x).
    # That is a channels-last copy of the whole map; when the RoIs sample it at fewer points than
    # it has pixels (a few detections on a large map), each chunk gathers just the rows it reads.
    points_per_bin = sampling_ratio * sampling_ratio if sampling_ratio > 0 else 4
    sparse = num_rois * bins * points_per_bin * 4 < batch * height * width
    table = None if sparse else input.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    planes = input.reshape(batch, channels, height * width)
    # Process RoIs in order of grid size so that each chunk pads to a grid close to its members'.
    order = torch.argsort(grid_h * grid_w)
    grid_sizes = (grid_h * grid_w)[order].tolist()
    output = input.new_empty((num_rois, bins, channels))
    start = 0
    while start < num_rois:
        stop = start + 1
        while stop < num_rois and (stop + 1 - start) * bins * max(grid_sizes[stop], 1) * 4 <= _FALLBACK_ENTRIES_PER_CHUNK:
            stop += 1
        chunk = order[start:stop]
        gh, gw = int(grid_h[chunk].max().clamp(min=1)), int(grid_w[chunk].max().clamp(min=1))
        y_low, y_high, wy_low, wy_high = _axis_samples(start_y[chunk], bin_h[chunk], grid_h[chunk], gh, pooled_height, height)
        x_low, x_high, wx_low, wx_high = _axis_samples(start_x[chunk], bin_w[chunk], grid_w[chunk], gw, pooled_width, width)
        k = chunk.shape[0]
        # [k, PH, gh, PW, gw, 4]: the four neighbours (low/high y) x (low/high x) of every point.
        rows = torch.stack([y_low, y_low, y_high, y_high], dim=-1)[:, :, :, None, None, :]
        cols = torch.stack([x_low, x_high, x_low, x_high], dim=-1)[:, None, None, :, :, :]
        weight_y = torch.stack([wy_low, wy_low, wy_high, wy_high], dim=-1)[:, :, :, None, None, :]
        weight_x = torch.stack([wx_low, wx_high, wx_low, wx_high], dim=-1)[:, None, None, :, :, :]
        pixel = (batch_index[chunk].view(k, 1, 1, 1, 1, 1) * height + rows) * width + cols
        weight = (weight_y * weight_x) / count[chunk].view(k, 1, 1, 1, 1, 1)
        # Bags are bins: [k, PH, PW] x (gh * gw * 4) entries each.
        pixel = pixel.permute(0, 1, 3, 2, 4, 5).reshape(k * bins, gh * gw * 4)
        weight = weight.permute(0, 1, 3, 2, 4, 5).reshape(k * bins, gh * gw * 4)
        if table is None:
            needed, pixel = torch.unique(pixel, return_inverse=True)
            chunk_table = planes[needed // (height * width), :, needed % (height * width)]
        else:
            chunk_table = table
        output[chunk] = F.embedding_bag(pixel, chunk_table, per_sample_weights=weight, mode="sum").view(
            k, bins, channels
        )
        start = stop
    return output.permute(0, 2, 1).reshape(num_rois, channels, pooled_height, pooled_width)
