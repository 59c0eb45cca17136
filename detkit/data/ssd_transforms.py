"""SSD's photometric distortion: moved to :mod:`detkit.data.transforms.ssd` with the rest of the
SSD pipeline. The names here are the same objects."""

from .transforms.ssd import SSD_BRIGHTNESS, SSD_CONTRAST, SSD_HUE, SSD_SATURATION, SSDPhotometricDistort

__all__ = ["SSDPhotometricDistort", "SSD_BRIGHTNESS", "SSD_CONTRAST", "SSD_HUE", "SSD_SATURATION"]
