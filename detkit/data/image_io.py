"""Reading images from disk into detkit's image format, with errors that name the file.

OpenCV decodes to BGR ``uint8``; detkit images are RGB (conventions.md), so the one conversion
happens here, at the edge. ``cv2.imread`` returns ``None`` (no exception) for a missing, truncated
or non-image file; :func:`read_image_rgb` turns that into an :class:`ImageReadError` naming the path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["ImageReadError", "read_image_rgb", "read_image_size", "image_to_tensor", "write_image_rgb"]


class ImageReadError(OSError):
    """An image file is missing, unreadable or cannot be decoded; the message names the file."""


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an RGB array.

    Args:
        path: image file (any format OpenCV reads: JPEG, PNG, BMP, ...). Grayscale and
            4-channel images are converted to 3-channel RGB.

    Returns:
        ``[H, W, 3]`` ``uint8`` RGB array (C-contiguous).

    Raises:
        ImageReadError: the file does not exist or cannot be decoded (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    # imdecode on the raw bytes (rather than imread) also reads paths OpenCV cannot encode.
    data = np.fromfile(str(path), dtype=np.uint8)
    # IGNORE_ORIENTATION: pixels in stored order, the order annotations and header sizes
    # (read_image_size) refer to; OpenCV would otherwise rotate JPEGs by their EXIF tag.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise ImageReadError(f"cannot decode image file {path} ({data.size} bytes): corrupt or not an image")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def read_image_size(path: str | Path) -> tuple[int, int]:
    """Read an image's ``(height, width)`` from its header only (cheap: no pixel decoding).

    Uses Pillow's lazy ``Image.open``, which parses the header and stops. Used for load-time
    checks (``verify_images=True``) and for formats whose annotations do not record sizes (YOLO).

    Raises:
        ImageReadError: the file does not exist or its header is not an image's.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageReadError(f"cannot read the header of image file {path}: {error}") from error
    return int(height), int(width)


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``[H, W, 3]`` ``uint8`` RGB array -> ``[3, H, W]`` ``float32`` tensor in ``[0, 1]``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {image.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if image.dtype == np.uint8:
        return tensor.float().div_(255.0)
    return tensor.float()


def write_image_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an ``[H, W, 3]`` ``uint8`` RGB array (format from the suffix; PNG is lossless and
    byte-deterministic). Raises :class:`ImageReadError` naming the file when OpenCV cannot write it."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageReadError(f"cannot encode image for {path}")
    encoded.tofile(str(path))
