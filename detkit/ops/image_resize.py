"""Image resizes that reproduce two references exactly: OpenCV's 8-bit bilinear and darknet's.

Detectors trained or checked against another library need that library's input to the bit: a
bilinear resize is not one function, and the differences (pixel centres, fixed point or float,
rounding) move scores by up to 1e-2. Both functions here are pure PyTorch (CPU or GPU, any batch of
channels) and are tested against their references in the same run:

- :func:`resize_bilinear_opencv`: ``cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)`` on
  an 8-bit image, as ``cv2.dnn.blobFromImage`` calls it, bit for bit. OpenCV samples at pixel
  centres (``src = (dst + 0.5) * in / out - 0.5``, in float32), weighs with 11-bit fixed-point
  coefficients, keeps the horizontal pass in int32 and rounds the vertical pass the way its SIMD
  kernel does: ``((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2 >> 2``. Columns outside the
  image are clamped with their weight moved to the edge pixel; rows outside it are clamped
  without (both weights read the edge row), which is why the edge rows round differently.
- :func:`resize_unit_image_opencv`: what ``blobFromImage`` does to a ``[0, 1]`` float image (its
  8-bit levels, OpenCV's ``INTER_LINEAR``, divided by 255). On the CPU it calls ``cv2.resize``
  itself (OpenCV is the reference, so this is exact by definition, and 8x faster than the PyTorch
  kernel); on other devices, under tracing or export, and without OpenCV it runs
  :func:`resize_bilinear_opencv`, which gives the same bits (tested against each other).
- :func:`resize_bilinear_darknet`: darknet's ``resize_image`` (image.c) on a float image: corners
  aligned (``src = dst * (in - 1) / (out - 1)``), horizontal pass then vertical pass, every product
  and sum in float32, the last column and row copied from the last source column and row.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

try:  # OpenCV is a dependency of detkit; the PyTorch kernels stand in where it is missing
    import cv2
except ImportError:  # pragma: no cover - exercised only without OpenCV
    cv2 = None

__all__ = ["resize_bilinear_darknet", "resize_bilinear_opencv", "resize_unit_image_opencv", "to_uint8_levels"]

_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
_COEF_SCALE = 1 << _COEF_BITS


def _check(image: Tensor, size: tuple[int, int], name: str) -> tuple[int, int]:
    if image.dim() != 3:
        raise ValueError(f"{name}: image must be [C, H, W], got shape {tuple(image.shape)}")
    out_h, out_w = (int(s) for s in size)
    if out_h <= 0 or out_w <= 0 or image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"{name}: cannot resize an image of shape {tuple(image.shape)} to {size}")
    return out_h, out_w


def to_uint8_levels(image: Tensor) -> Tensor:
    """The 8-bit levels of a ``[0, 1]`` float image: ``round(image * 255)`` clamped, as uint8.

    An image decoded from an 8-bit file and divided by 255 gives back its exact bytes.
    """
    return (image.float() * 255).clamp_(0, 255).round_().to(torch.uint8)


def _opencv_taps(in_size: int, out_size: int, clamp_weights: bool, device: torch.device) -> tuple[Tensor, ...]:
    """``(index0, index1, weight0, weight1)`` ``[out_size]`` of one axis, as OpenCV computes them."""
    scale = 1.0 / (out_size / in_size)  # OpenCV: scale = 1 / inv_scale, inv_scale = out / in (double)
    position = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    first = torch.floor(position)
    fraction = position - first
    first = first.to(torch.int64)
    if clamp_weights:  # columns: outside the image, all weight on the edge pixel
        outside = (first < 0) | (first >= in_size - 1)
        fraction[outside] = 0.0
        first = first.clamp(0, in_size - 1)
    weight0 = ((1.0 - fraction) * _COEF_SCALE).round().to(torch.int32)  # float32 product, cvRound
    index0 = first.clamp(0, in_size - 1)
    index1 = (first + 1).clamp(0, in_size - 1)
    return index0.to(device), index1.to(device), weight0.to(device), (_COEF_SCALE - weight0).to(device)


def resize_bilinear_opencv(levels: Tensor, size: tuple[int, int]) -> Tensor:
    """OpenCV's ``INTER_LINEAR`` resize of an 8-bit image, bit for bit.

    Args:
        levels: ``[C, h, w]`` integer tensor of 8-bit levels (0..255), e.g. from
            :func:`to_uint8_levels`.
        size: ``(H, W)`` output size.

    Returns:
        ``[C, H, W]`` int32 levels, equal to ``cv2.resize(img, (W, H), interpolation=INTER_LINEAR)``.
    """
    out_h, out_w = _check(levels, size, "resize_bilinear_opencv")
    in_h, in_w = levels.shape[-2:]
    x0, x1, a0, a1 = _opencv_taps(in_w, out_w, True, levels.device)
    y0, y1, b0, b1 = _opencv_taps(in_h, out_h, False, levels.device)
    # Horizontal pass in int32 (up to 255 * 2048), then OpenCV's SIMD vertical pass: each row
    # shifted right by 4, multiplied by its 16-bit weight keeping the high 16 bits, rounded by 2 bits.
    rows = levels[:, :, x0] * a0
    rows += levels[:, :, x1] * a1
    rows >>= 4
    out = rows[:, y0] * b0[:, None]
    out >>= 16
    bottom = rows[:, y1] * b1[:, None]
    bottom >>= 16
    out += bottom
    out += 2
    out >>= 2
    return out.clamp_(0, 255)


def _opencv_can_run(image: Tensor) -> bool:
    """Whether ``cv2.resize`` can take ``image`` ``[C, h, w]``: a plain CPU tensor outside tracing."""
    if cv2 is None or type(image) is not torch.Tensor or image.device.type != "cpu" or image.requires_grad:
        return False
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    return image.dtype in (torch.float32, torch.float64, torch.uint8)


def resize_unit_image_opencv(image: Tensor, size: tuple[int, int]) -> Tensor:
    """A ``[0, 1]`` image resized as ``cv2.dnn.blobFromImage`` resizes it, bit for bit.

    The image is taken to its 8-bit levels (:func:`to_uint8_levels`; uint8 images are the levels),
    resized with OpenCV's ``INTER_LINEAR`` and divided by 255: ``cv2.resize`` itself on the CPU,
    :func:`resize_bilinear_opencv` elsewhere (the same bits).

    Args:
        image: ``[C, h, w]`` float image in [0, 1], or uint8 levels.
        size: ``(H, W)`` output size.

    Returns:
        ``[C, H, W]`` in the dtype of a float ``image`` (float32 for a uint8 one), values ``k / 255``.
    """
    out_h, out_w = _check(image, size, "resize_unit_image_opencv")
    dtype = image.dtype if image.is_floating_point() else torch.float32
    if not _opencv_can_run(image):
        levels = image if image.dtype == torch.uint8 else to_uint8_levels(image)
        return resize_bilinear_opencv(levels, (out_h, out_w)).to(dtype) / 255
    levels = _levels_opencv(image).numpy()
    # One plane at a time: each is contiguous in [C, h, w], so nothing is transposed either way.
    resized = np.empty((levels.shape[0], out_h, out_w), dtype=np.uint8)
    for plane, out in zip(levels, resized):
        cv2.resize(plane, (out_w, out_h), dst=out, interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(resized).to(dtype).div_(255)


def _levels_opencv(image: Tensor) -> Tensor:
    """:func:`to_uint8_levels` of a CPU image in one pass (``cv2.convertScaleAbs``), contiguous.

    ``convertScaleAbs`` rounds ``|x * 255|`` in float32 half to even and saturates, which is
    ``round(clamp(x * 255, 0, 255))`` for ``x >= 0``; an image with negative values takes
    :func:`to_uint8_levels` (the absolute value would differ there).
    """
    if image.dtype == torch.uint8:
        return image.contiguous()
    image = image.to(torch.float32).contiguous()
    if image.numel() == 0 or float(image.amin()) < 0:
        return to_uint8_levels(image).contiguous()
    channels, height, width = image.shape
    flat = cv2.convertScaleAbs(image.numpy().reshape(channels * height, width), alpha=255.0)
    return torch.from_numpy(flat.reshape(channels, height, width))


def _darknet_taps(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(index, fraction, last)`` of one axis: ``src = i * float32((in - 1) / (out - 1))``."""
    index = torch.arange(out_size, dtype=torch.float32)
    if out_size > 1 and in_size > 1:
        step = torch.tensor(in_size - 1, dtype=torch.float32) / torch.tensor(out_size - 1, dtype=torch.float32)
        position = index * step
    else:
        position = torch.zeros(out_size, dtype=torch.float32)
    first = position.to(torch.int64)  # C's (int) truncation; positions are >= 0
    fraction = position - first.to(torch.float32)
    last = torch.zeros(out_size, dtype=torch.bool)
    last[-1] = True
    return first.clamp(0, in_size - 1).to(device), fraction.to(device), last.to(device)


def resize_bilinear_darknet(image: Tensor, size: tuple[int, int]) -> Tensor:
    """darknet's ``resize_image``, float32 operation for operation.

    Args:
        image: ``[C, h, w]`` float image (darknet: RGB in [0, 1]).
        size: ``(H, W)`` output size.

    Returns:
        ``[C, H, W]`` float32.
    """
    out_h, out_w = _check(image, size, "resize_bilinear_darknet")
    in_h, in_w = image.shape[-2:]
    image = image.to(torch.float32)
    # Horizontal pass: val = (1 - dx) * im[ix] + dx * im[ix + 1]; the last column (or a one-column
    # image) copies the last source column.
    ix, dx, last_col = _darknet_taps(in_w, out_w, image.device)
    right = (ix + 1).clamp(max=in_w - 1)
    part = (1 - dx) * image[:, :, ix] + dx * image[:, :, right]
    copy = last_col | torch.tensor(in_w == 1, device=image.device)
    part = torch.where(copy, image[:, :, in_w - 1 : in_w], part)
    # Vertical pass: out = (1 - dy) * part[iy], then += dy * part[iy + 1] except on the last row (or
    # a one-row image), which keeps (1 - dy) * part[iy] alone, as darknet does.
    iy, dy, last_row = _darknet_taps(in_h, out_h, image.device)
    below = (iy + 1).clamp(max=in_h - 1)
    out = (1 - dy)[:, None] * part[:, iy]
    add = ~(last_row | torch.tensor(in_h == 1, device=image.device))
    return torch.where(add[:, None], out + dy[:, None] * part[:, below], out)
