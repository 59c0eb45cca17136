"""Image files for datasets: moved to :mod:`detkit.utils.image_io` (the one image reader).

The names here are the same objects: :class:`ImageReadError`, :func:`read_image_rgb` (RGB, stored
pixel order), :func:`read_image_size`, :func:`image_to_tensor`, :func:`write_image_rgb`.
"""

from detkit.utils.image_io import ImageReadError, image_to_tensor, read_image_rgb, read_image_size, write_image_rgb

__all__ = ["ImageReadError", "read_image_rgb", "read_image_size", "image_to_tensor", "write_image_rgb"]
