"""MTCNN (Zhang et al. 2016), one concept per module: the three networks, area resampling, the
cascade detector and its training.

``detkit.models.detectors.mtcnn`` keeps exporting what the single module did, so configs,
converters and tools import ``MTCNN``, ``PNet``, ``RNet``, ``ONet`` and the resampling helpers
from here as before.
"""

from detkit.models.detectors.mtcnn.cascade import MTCNN, square_boxes
from detkit.models.detectors.mtcnn.networks import PIXEL_MEAN, PIXEL_SCALE, ONet, PNet, RNet, input_affine
from detkit.models.detectors.mtcnn.resampling import IntegralImages, area_crop_resize, area_resize, summed_area_table

__all__ = [
    "MTCNN", "ONet", "PIXEL_MEAN", "PIXEL_SCALE", "PNet", "RNet", "IntegralImages", "area_crop_resize", "area_resize",
    "input_affine", "square_boxes", "summed_area_table",
]  # fmt: skip
