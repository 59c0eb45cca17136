"""Turn what users hand to a predictor (files, OpenCV arrays, tensors) into model images.

The model side of the edge is fixed by docs/conventions.md: ``[3, H, W]`` float32 RGB in [0, 1].
The user side is what OpenCV gives (HxWx3 uint8 **BGR**, HxW grayscale), RGB arrays from other
libraries (``rgb=True``), tensors already in the model format (or uint8), and image files (read
by :func:`detkit.utils.image_io.read_image`: BGR, EXIF orientation applied, as ``cv2.imread``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import cv2
import numpy as np
import torch

from detkit.utils.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "ImageReadError", "as_float_image", "describe_input",
           "read_image", "to_bgr_uint8", "to_chw_tensor", "to_model_image"]

ImageInput = Union[str, Path, np.ndarray, torch.Tensor]


def _array_to_rgb(array: np.ndarray, rgb: bool) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 array -> contiguous HxWx3 RGB of the same dtype."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape "
                         f"{tuple(array.shape)}")
    if array.dtype in (np.uint8, np.uint16, np.float32):  # OpenCV's fast path (no GIL held)
        if array.shape[2] == 4:
            return cv2.cvtColor(array, cv2.COLOR_RGBA2RGB if rgb else cv2.COLOR_BGRA2RGB)
        return np.ascontiguousarray(array) if rgb else cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    array = array[:, :, :3]  # drop alpha
    return np.ascontiguousarray(array if rgb else array[:, :, ::-1])


def to_chw_tensor(image: ImageInput, rgb: bool = False) -> torch.Tensor:
    """One input as a ``[3, H, W]`` RGB tensor: uint8 when given uint8, else float in [0, 1].

    uint8 stays uint8 so that it moves to a GPU 4x lighter (:func:`as_float_image` finishes the
    job there). Takes the inputs of :func:`to_model_image`.
    """
    if isinstance(image, (str, Path)):
        image = read_image(image)
        rgb = False
    if isinstance(image, np.ndarray):
        tensor = torch.from_numpy(_array_to_rgb(image, rgb)).permute(2, 0, 1).contiguous()
    elif isinstance(image, torch.Tensor):
        tensor = image.detach()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
            raise ValueError(f"an image tensor must be [3, H, W], [1, H, W] or [H, W] (RGB, "
                             f"channels first), got shape {tuple(tensor.shape)}")
        tensor = tensor.expand(3, -1, -1)
    else:
        raise ValueError(f"unsupported image input of type {type(image).__name__}: give a path, "
                         "a numpy array or a torch tensor")
    if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
        raise ValueError(f"image of dtype {tensor.dtype}: give uint8 in [0, 255] or float in [0, 1]")
    return tensor


def as_float_image(tensor: torch.Tensor) -> torch.Tensor:
    """A uint8 ``[3, H, W]`` tensor scaled to float32 [0, 1]; a float one as contiguous float32."""
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    return tensor.float().contiguous()


def to_model_image(image: ImageInput, rgb: bool = False) -> torch.Tensor:
    """One input as a ``[3, H, W]`` float32 RGB tensor in [0, 1] (on the CPU unless it was not).

    Args:
        image: A file path; a numpy array HxWx3 (BGR as OpenCV gives it, RGB with ``rgb=True``),
            HxWx4 (alpha dropped) or HxW grayscale, uint8 in [0, 255] or float in [0, 1]; a tensor
            ``[3, H, W]`` RGB (float in [0, 1] or uint8), ``[1, H, W]`` or ``[H, W]`` grayscale.
        rgb: Numpy arrays are RGB rather than BGR (tensors are always RGB).

    Raises:
        ImageReadError: A path that cannot be read.
        ValueError: An array or tensor of an unsupported shape or dtype.
    """
    return as_float_image(to_chw_tensor(image, rgb))


def to_bgr_uint8(image: ImageInput, rgb: bool = False) -> np.ndarray:
    """One input as an HxWx3 uint8 BGR array, for drawing on with OpenCV.

    Accepts the same inputs as :func:`to_model_image`.
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and not rgb and image.ndim == 3 \
            and image.shape[2] == 3:
        return image
    tensor = to_model_image(image, rgb=rgb)
    array = (tensor.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(array[:, :, ::-1])


def describe_input(image: ImageInput, index: int) -> str:
    """A short name for an input: the path for files, ``"array[i]"`` / ``"tensor[i]"`` otherwise."""
    if isinstance(image, (str, Path)):
        return str(image)
    return f"{'tensor' if isinstance(image, torch.Tensor) else 'array'}[{index}]"

