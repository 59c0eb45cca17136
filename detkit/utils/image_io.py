"""Reading and writing image files, with errors that name the file: the one image reader.

OpenCV decodes to BGR ``uint8``; detkit's model images are RGB (conventions.md). Two callers,
two needs, one decoder (:func:`read_image`):

* datasets read RGB pixels in stored order (:func:`read_image_rgb`): annotations and header
  sizes (:func:`read_image_size`) refer to the pixels as stored, so a JPEG's EXIF orientation tag
  is ignored;
* inference reads what a user sees (``read_image``'s defaults, as ``cv2.imread``): BGR for
  drawing with OpenCV, rotated by the EXIF orientation tag as an image viewer would.

``cv2.imread`` returns ``None`` (no exception) for a missing, truncated or non-image file; here
that is an :class:`ImageReadError` naming the path. Files are decoded from their bytes
(``cv2.imdecode``), so paths OpenCV cannot encode (non-ASCII on some platforms) work too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "image_to_tensor",
    "read_image",
    "read_image_rgb",
    "read_image_size",
    "write_image_rgb",
]

# What cv2.imread decodes on every build (lower case, with the dot).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2",
                              ".pbm", ".pgm", ".ppm", ".pnm", ".sr", ".ras"})


class ImageReadError(OSError):
    """An image file is missing, unreadable or cannot be decoded (or encoded); the message names
    the file."""


def read_image(path: str | Path, *, channels: Literal["bgr", "rgb"] = "bgr",
               exif_orientation: bool = True) -> np.ndarray:
    """Decode an image file to an ``[H, W, 3]`` ``uint8`` array.

    Args:
        path: Any format OpenCV reads (JPEG, PNG, BMP, ...). Grayscale and 4-channel images are
            converted to 3 channels.
        channels: ``"bgr"`` (OpenCV's order, for drawing) or ``"rgb"`` (detkit's model order).
        exif_orientation: Rotate by the EXIF orientation tag (as ``cv2.imread`` and image viewers
            do); False keeps the pixels in stored order, the order annotations refer to.

    Returns:
        ``[H, W, 3]`` ``uint8`` C-contiguous array.

    Raises:
        ImageReadError: the file does not exist, is not a file, cannot be read, cannot be
            decoded or decodes to an image with no pixels (the message names the file).
        ValueError: ``channels`` is neither ``"bgr"`` nor ``"rgb"``.
    """
    if channels not in ("bgr", "rgb"):
        raise ValueError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}" if not path.exists()
                             else f"image path is not a file: {path}")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageReadError(f"cannot read image file {path}: {error}") from error
    flags = cv2.IMREAD_COLOR if exif_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise ImageReadError(f"cannot decode image file {path} ({data.size} bytes): corrupt or not an image")
    if image.size == 0:
        raise ImageReadError(f"image file {path} decodes to an empty image ({image.shape[1]}x{image.shape[0]} WxH)")
    if channels == "rgb":
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return image


def read_image_rgb(path: str | Path) -> np.ndarray:
    """A dataset image: ``[H, W, 3]`` ``uint8`` RGB in stored pixel order (EXIF orientation
    ignored; see :func:`read_image`, which raises :class:`ImageReadError` naming the file)."""
    return read_image(path, channels="rgb", exif_orientation=False)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """Read an image's ``(height, width)`` from its header only (cheap: no pixel decoding).

    Uses Pillow's lazy ``Image.open``, which parses the header and stops. Used for load-time
    checks (``verify_images=True``) and for formats whose annotations do not record sizes (YOLO).

    Raises:
        ImageReadError: the file does not exist, its header is not an image's, or it records a
            width or height of 0.
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
    if width <= 0 or height <= 0:
        raise ImageReadError(f"image file {path} is empty: its header says {width}x{height} (WxH)")
    return int(height), int(width)


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``[H, W, 3]`` ``uint8`` RGB array -> ``[3, H, W]`` ``float32`` tensor in ``[0, 1]``.

    A floating-point array is taken as already in ``[0, 1]`` and only converted to float32.

    Raises:
        ValueError: ``image`` is not ``[H, W, 3]``, has no pixels (``H`` or ``W`` is 0), or is a
            floating-point array with NaN or infinite values (the message says which).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_to_tensor: image must be an [H, W, 3] RGB array, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image_to_tensor: image is empty ({image.shape[1]}x{image.shape[0]} WxH)")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise ValueError(f"image_to_tensor: image has {bad} NaN or infinite values (of {image.size})")
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if image.dtype == np.uint8:
        return tensor.float().div_(255.0)
    return tensor.float()


def write_image_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an ``[H, W, 3]`` ``uint8`` RGB array (format from the suffix; PNG is lossless and
    byte-deterministic). Raises :class:`ImageReadError` naming the file when OpenCV cannot encode it."""
    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except cv2.error as error:  # e.g. no encoder for the suffix
        raise ImageReadError(f"cannot encode image for {path}: {str(error).strip().splitlines()[-1]}") from error
    if not ok:
        raise ImageReadError(f"cannot encode image for {path}")
    encoded.tofile(str(path))
