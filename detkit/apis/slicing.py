"""Sliced inference: small objects in large images, for any detector.

A detector that resizes its input (YOLO to 320 or 416 pixels, R-CNN to 800) shrinks the objects
of a large image with it, and objects of a few pixels vanish. Sliced inference (SAHI, Akyon et
al. 2022) runs the detector on overlapping tiles of the image at their own resolution, plus,
optionally, on the whole image (for the large objects that no tile holds), shifts the tiles'
detections back to image pixels and merges the duplicates that overlaps produce
(:mod:`detkit.apis.slicing_merge`: class-wise NMS, or a merge of overlapping boxes of a class)::

    from detkit.apis.slicing import SliceSettings, sliced_predict

    settings = SliceSettings(size=256, overlap=0.2, full_image=True, merge="merge")
    prediction = sliced_predict(model, image, settings, batch_size=8)  # image [3, H, W]

or ``Predictor(model, slice_size=256)`` / ``detkit infer ... --slice 256 --overlap 0.2``.

The tiles (:func:`slice_windows`): along each axis, tiles of ``size`` pixels start every
``size - floor(size * overlap)`` pixels from 0, and the last one is moved back to end at the
image's border (so it overlaps its neighbour more; no tile reaches past the image and no padding
is added). A side no longer than ``size`` is one tile of the whole side. The tiles cover every
pixel, and neighbours share at least ``floor(size * overlap)`` pixels, so an object up to that
size lies whole in some tile.

The detector may be any module following docs/conventions.md (``detector(images) ->
(predictions, losses)`` in eval mode) or a function ``images -> predictions`` (such as
:meth:`detkit.apis.Predictor.run_model`); tiles are given to it ``batch_size`` at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from detkit.apis.slicing_merge import (
    MATCH_METRICS, MERGE_METHODS, Window, merge_tile_predictions,
)

__all__ = ["MATCH_METRICS", "MERGE_METHODS", "SliceSettings", "slice_windows", "sliced_predict",
           "tile_predictions"]

Detect = Callable[[list[Tensor]], list[dict[str, Tensor]]]


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    """``size`` (an int, or ``(height, width)``) as a pair of positive ints."""
    values = (size, size) if isinstance(size, (int, float)) else tuple(size)
    if (len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v)
                                or v <= 0 for v in values)):
        raise ValueError(f"{name} must be a positive number of pixels (or HEIGHT, WIDTH), got {size!r}")
    return int(values[0]), int(values[1])


@dataclass(frozen=True)
class SliceSettings:
    """How an image is sliced and its tiles' detections merged.

    Args:
        size: tile size in pixels, one int (square) or ``(height, width)``; > 0.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
        full_image: also run the detector on the whole image (large objects).
        merge: ``"nms"`` (class-wise NMS) or ``"merge"`` (greedy merging of overlapping boxes of
            a class into their union); see :mod:`detkit.apis.slicing_merge`.
        match_metric: overlap measure of the merge, ``"ios"`` (intersection over the smaller
            box, the default: a box cut by a tile border lies inside the whole one) or ``"iou"``.
        match_thresh: detections overlapping a kept one by more than this are dropped or
            merged, in [0, 1].

    Raises:
        ValueError: one line naming the setting (as the Predictor's ``slice_*`` keyword).
    """

    size: int | tuple[int, int]
    overlap: float = 0.2
    full_image: bool = True
    merge: str = "nms"
    match_metric: str = "ios"
    match_thresh: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _pair(self.size, "slice_size"))
        if (isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float))
                or not 0.0 <= self.overlap < 1.0):
            raise ValueError(f"slice_overlap must be a fraction in [0, 1), got {self.overlap!r}")
        if self.merge not in MERGE_METHODS:
            raise ValueError(f"slice_merge must be one of {list(MERGE_METHODS)}, got {self.merge!r}")
        if self.match_metric not in MATCH_METRICS:
            raise ValueError(f"match_metric must be one of {list(MATCH_METRICS)}, got {self.match_metric!r}")
        if not isinstance(self.match_thresh, (int, float)) or not 0.0 <= self.match_thresh <= 1.0:
            raise ValueError(f"match_thresh must be in [0, 1], got {self.match_thresh!r}")


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile starts along one axis of ``length`` pixels (see the module docstring)."""
    if length <= tile:
        return [0]
    step = tile - math.floor(tile * overlap)  # >= 1 since overlap < 1
    count = math.ceil((length - tile) / step) + 1
    return [min(index * step, length - tile) for index in range(count)]


def slice_windows(image_size: tuple[int, int], size: int | tuple[int, int],
                  overlap: float = 0.2) -> list[Window]:
    """The tiles of an image, row by row.

    Args:
        image_size: ``(H, W)`` of the image.
        size: tile size, one int or ``(height, width)``.
        overlap: fraction of a tile shared with the next one, in [0, 1).

    Returns:
        ``(x1, y1, x2, y2)`` int pixel windows (``x2`` exclusive), each of ``size`` or, along a
        side no longer than ``size``, of that side; together they cover the image.
    """
    settings = SliceSettings(size, overlap)  # checks both
    tile_h, tile_w = settings.size
    height, width = int(image_size[0]), int(image_size[1])
    return [(x, y, min(x + tile_w, width), min(y + tile_h, height))
            for y in _starts(height, tile_h, overlap) for x in _starts(width, tile_w, overlap)]


def _as_detect(detector: nn.Module | Detect) -> Detect:
    """A function ``images -> per-image prediction dicts`` for a detector module or function."""
    if not isinstance(detector, nn.Module):
        return detector

    def detect(images: list[Tensor]) -> list[dict[str, Tensor]]:
        with torch.inference_mode():
            output = detector(images)
        return output[0] if isinstance(output, tuple) else output

    return detect


def tile_predictions(detector: nn.Module | Detect, image: Tensor, settings: SliceSettings, *,
                     batch_size: int = 8) -> tuple[list[Window], list[dict[str, Tensor]]]:
    """Run the detector on each tile of one image (and the whole image), nothing merged yet.

    Args:
        detector, image, settings, batch_size: as for :func:`sliced_predict`.

    Returns:
        ``(windows, predictions)``: the :func:`slice_windows` of the image, then ``(0, 0, W, H)``
        with ``settings.full_image`` (unless one tile is the whole image already), and the
        detector's prediction for each, in its tile's pixels.

    Raises:
        ValueError: an image that is not ``[3, H, W]``, ``batch_size`` below 1, or a detector
            that returns the wrong number of predictions.
    """
    if image.dim() != 3:
        raise ValueError(f"sliced inference takes one [3, H, W] image, got shape {list(image.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    height, width = int(image.shape[-2]), int(image.shape[-1])
    windows = slice_windows((height, width), settings.size, settings.overlap)
    if settings.full_image and windows != [(0, 0, width, height)]:
        windows.append((0, 0, width, height))
    detect = _as_detect(detector)
    predictions: list[dict[str, Tensor]] = []
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        tiles = [image[:, y1:y2, x1:x2] for x1, y1, x2, y2 in chunk]
        outputs = detect(tiles)
        if not isinstance(outputs, list) or len(outputs) != len(tiles):
            raise ValueError(f"the detector returned {type(outputs).__name__} for {len(tiles)} tiles; "
                             "a detector returns one prediction dict per image")
        predictions += outputs
    return windows, predictions


def sliced_predict(detector: nn.Module | Detect, image: Tensor, settings: SliceSettings, *,
                   batch_size: int = 8, score_thresh: float | None = None,
                   detections_per_img: int | None = None) -> dict[str, Tensor]:
    """Detect objects in one image tile by tile (and whole), merged into one prediction.

    Args:
        detector: a detector module in eval mode (called under ``torch.inference_mode``) or a
            function ``list of [3, h, w] images -> list of prediction dicts``.
        image: ``[3, H, W]`` RGB, float in [0, 1] (or uint8 when ``detector`` takes it); the
            tiles are views of it, on its device.
        settings: the tiles and the merge.
        batch_size: tiles per detector call (the full image is the last item).
        score_thresh: drop detections below this before merging; None keeps all. Greedy
            merging wants one (0.3, say): low-scored boxes around an object would grow its union.
        detections_per_img: keep at most this many after merging (before masks are pasted).

    Returns:
        The image's prediction dict in image pixels, sorted by decreasing score (see
        :func:`detkit.apis.slicing_merge.merge_tile_predictions`).

    Raises:
        ValueError: as :func:`tile_predictions` and
            :func:`~detkit.apis.slicing_merge.merge_tile_predictions`.
    """
    windows, predictions = tile_predictions(detector, image, settings, batch_size=batch_size)
    return merge_tile_predictions(predictions, windows, (int(image.shape[-2]), int(image.shape[-1])),
                                  method=settings.merge, match_metric=settings.match_metric,
                                  match_thresh=settings.match_thresh, score_thresh=score_thresh,
                                  detections_per_img=detections_per_img)
