"""Area resampling on integral images: MTCNN's image pyramid and its crops, exactly as
``F.interpolate(mode="area")`` (adaptive average pooling), for every box of every image at once.

Each image's integral image (:func:`summed_area_table`: exact int32 sums of 0-255 values for 8-bit
images, else float64) gives both the pyramid levels (:func:`area_resize`, separable, cheaper than
a pass over the whole image) and the crops of RNet and ONet (:func:`area_crop_resize` on
:class:`IntegralImages`, no loop over boxes). Averages are float32, correctly rounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import guard_or_false

__all__ = ["IntegralImages", "area_crop_resize", "area_resize", "summed_area_table"]


def summed_area_table(images: Tensor, integer_tolerance: float = 1e-3) -> Tensor:
    """Integral images, channels last: ``table[..., y, x, c]`` is the sum of ``images[..., c, :y, :x]``.

    Images whose values are all within ``integer_tolerance`` of integers (8-bit pixels times 255)
    are summed exactly in int32 (int64 when the sums could overflow it): half the memory traffic
    of float64. Other images are summed in float64, which keeps box sums of 1080p images exact to
    ~1e-10 (float32 would lose whole pixel values). Under ``torch.export`` the values are unknown
    and the table is float64: the same sums, so the exported program gives the eager averages.

    8-bit images on the CPU (every value an integer in 0-255, as ``uint8 / 255 * 255`` gives
    exactly in float32) take OpenCV's ``cv2.integral``: one pass, the same int32 sums.

    Args: images ``[..., C, H, W]``. Returns ``[..., H + 1, W + 1, C]``.
    """
    table = _opencv_uint8_table(images)
    if table is not None:
        return table
    values = images.movedim(-3, -1)
    rounded = values.round()
    # Both sums are exact, so the choice is speed only: guard_or_false takes float64 where the
    # values are unknown (torch.export), rather than a branch on data.
    integral = values.numel() > 0 and guard_or_false(((values - rounded).abs().max() <= integer_tolerance).item())
    if integral:
        low, high = torch.aminmax(rounded)
        bound = max(-float(low), float(high)) * images.shape[-1] * images.shape[-2]
        dtype, values = (torch.int32 if bound < 2**31 else torch.int64), rounded
    else:
        dtype = torch.float64
    *batch, height, width, channels = values.shape
    table = values.new_empty((*batch, height + 1, width + 1, channels), dtype=dtype)
    table[..., 0, :, :] = 0
    table[..., :, 0, :] = 0
    table[..., 1:, 1:, :] = values
    return table.cumsum_(-3).cumsum_(-2)


def _opencv_uint8_table(images: Tensor) -> Tensor | None:
    """:func:`summed_area_table` by OpenCV when ``images`` (CPU float32) hold uint8 values exactly,
    else ``None``: interleaving, the uint8 conversion, its exactness check and ``cv2.integral``
    are each one vectorised pass. Only eager tensors (under ``torch.export`` it returns ``None``)."""
    if (images.device.type != "cpu" or images.dtype != torch.float32 or images.numel() == 0
            or not 1 <= images.shape[-3] <= 4 or torch.compiler.is_compiling()):  # fmt: skip
        return None
    import cv2  # a detkit dependency; imported here, off the torch.export path
    import numpy as np

    *batch, channels, height, width = images.shape
    tables = []
    for values in images.detach().reshape(-1, channels, height, width).contiguous().numpy():
        pixels = values.astype(np.uint8)  # [C, H, W]; out-of-range or fractional values fail the check
        if cv2.norm(values.reshape(channels, -1), pixels.reshape(channels, -1).astype(np.float32), cv2.NORM_INF) != 0:
            return None
        interleaved = cv2.merge(list(pixels)).reshape(height, width, channels)
        tables.append(torch.from_numpy(cv2.integral(interleaved).reshape(height + 1, width + 1, channels)))
    table = tables[0][None] if len(tables) == 1 else torch.stack(tables)
    return table.reshape(*batch, height + 1, width + 1, channels)


def _area_bins(start: Tensor, stop: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Input ranges of adaptive average pooling (what ``F.interpolate(mode="area")`` runs).

    Output cell ``i`` of a range of length ``L`` resized to ``S`` averages
    ``[floor(i L / S), ceil((i + 1) L / S))``, computed in integers as ATen does.

    Args: start, stop ``[N]`` int64. Returns ``(lo, hi)``, each ``[N, size]`` int64 absolute.
    """
    cells = torch.arange(size, device=start.device)
    length = (stop - start)[:, None]
    lo = torch.div(cells * length, size, rounding_mode="floor")
    hi = torch.div((cells + 1) * length + size - 1, size, rounding_mode="floor")
    return start[:, None] + lo, start[:, None] + hi


def _mean(sums: Tensor, counts: Tensor) -> Tensor:
    """float32 ``sums / counts``, correctly rounded: integer sums below 2**24 are exact in float32,
    so they are divided there; others go through float64."""
    if not sums.is_floating_point() and sums.numel() and int(sums.max()) < 2**24:
        return sums.to(torch.float32) / counts.to(torch.float32)
    return (sums.to(torch.float64) / counts).to(torch.float32)


def area_resize(table: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.interpolate(images, size, mode="area")`` from the images' integral ``table``.

    Separable: row bins are taken from the table, then column bins, so a pyramid level costs
    about ``h * W`` operations instead of a pass over the whole image.

    Args:
        table: ``[B, H + 1, W + 1, C]`` from :func:`summed_area_table`.
        size: output ``(h, w)``.

    Returns:
        ``[B, C, h, w]`` float32 averages, in channels_last memory format.
    """
    zero = torch.zeros((1,), dtype=torch.int64, device=table.device)
    ya, yb = (e[0] for e in _area_bins(zero, zero + table.shape[-3] - 1, size[0]))
    xa, xb = (e[0] for e in _area_bins(zero, zero + table.shape[-2] - 1, size[1]))
    rows = table.index_select(-3, yb) - table.index_select(-3, ya)
    sums = rows.index_select(-2, xb) - rows.index_select(-2, xa)
    counts = ((yb - ya)[:, None] * (xb - xa)[None, :])[:, :, None]
    return _mean(sums, counts).movedim(-1, -3)


class IntegralImages:
    """Integral images of several images (of any sizes) in one flat buffer, for batched crops.

    Args:
        tables: per image ``[H_i + 1, W_i + 1, 3]`` from :func:`summed_area_table` (one dtype).
    """

    def __init__(self, tables: Sequence[Tensor]) -> None:
        device = tables[0].device
        sizes = torch.tensor([[t.shape[0] - 1, t.shape[1] - 1] for t in tables], dtype=torch.int64, device=device)
        numels = torch.tensor([t.numel() for t in tables], dtype=torch.int64, device=device)
        self.flat = tables[0].reshape(-1) if len(tables) == 1 else torch.cat([t.reshape(-1) for t in tables])
        self.heights, self.widths = sizes[:, 0], sizes[:, 1]
        self.offsets = torch.cumsum(numels, 0) - numels

    def box_sums(self, image_idx: Tensor, y0: Tensor, y1: Tensor, x0: Tensor, x1: Tensor) -> Tensor:
        """Sums over ``[y0, y1) x [x0, x1)`` per channel.

        Args:
            image_idx: ``[N]`` int64 image of each box.
            y0, y1: ``[N, A]`` int64 row ranges (``0 <= y0 <= y1 <= H``).
            x0, x1: ``[N, B]`` int64 column ranges.

        Returns:
            ``[N, A, B, 3]`` sums (channels last), in the tables' dtype.
        """
        # Whole pixels (3 channels each) are gathered: the indices are a third of the elements'.
        pixels = self.flat.view(-1, 3)
        row_stride = (self.widths[image_idx] + 1)[:, None]
        base = torch.div(self.offsets[image_idx], 3, rounding_mode="floor")[:, None]
        rows0, rows1 = base + y0 * row_stride, base + y1 * row_stride

        def at(rows: Tensor, x: Tensor) -> Tensor:
            return pixels.index_select(0, (rows[:, :, None] + x[:, None, :]).reshape(-1))

        sums = at(rows1, x1) - at(rows0, x1) - at(rows1, x0) + at(rows0, x0)
        return sums.view(y0.shape[0], y0.shape[1], x0.shape[1], 3)


def area_crop_resize(
    integral: IntegralImages, image_idx: Tensor, x0: Tensor, y0: Tensor, x1: Tensor, y1: Tensor, size: int
) -> Tensor:
    """Crops integer pixel ranges and resizes them to ``size x size`` by area interpolation.

    Gives what ``F.interpolate(image[:, y0:y1, x0:x1][None], (size, size), mode="area")`` gives,
    for every box of every image at once (no loop over boxes).

    Args:
        integral: the images' integral images.
        image_idx: ``[N]`` int64 image of each box.
        x0, y0, x1, y1: ``[N]`` int64 crop ranges ``[x0, x1) x [y0, y1)``, non-empty, inside the image.
        size: output side in pixels.

    Returns:
        ``[N, 3, size, size]`` float32 crops in the images' units, in channels_last memory
        format (which mkldnn's convolutions and pooling run fastest on).
    """
    ya, yb = _area_bins(y0, y1, size)
    xa, xb = _area_bins(x0, x1, size)
    sums = integral.box_sums(image_idx, ya, yb, xa, xb)
    counts = ((yb - ya)[:, :, None] * (xb - xa)[:, None, :])[..., None]
    return _mean(sums, counts).movedim(-1, 1)
