"""The detection transform: an albumentations pipeline that keeps boxes, labels, masks and keypoints in step.

A pipeline is a :class:`DetectionTransform`: a callable
``(image [H, W, 3] uint8 RGB ndarray, target dict) -> (image [3, H', W'] float32 RGB in [0, 1], target)``
that datasets take as ``transforms=``. Inside, an ``albumentations.Compose`` moves the boxes in
``"pascal_voc"`` format, which is xyxy absolute pixels, detkit's own convention (no conversion).

Alignment: albumentations may drop boxes (cropped away, too small). Every box travels with its
index as a label field (``box_indices``); after the pipeline, every per-box field of the target
(``labels``, ``iscrowd``, ``difficult``, ``masks`` and any other ``[N, ...]`` tensor) is indexed
by the surviving indices (:func:`select_boxes`), so nothing falls out of step.

Keypoints (``keypoints [N, K, 3]`` ``(x, y, visibility)``, continuous pixels like the boxes) move
with the image as albumentations keypoints (which use pixel-index coordinates: they travel shifted
by half a pixel, so a flip maps ``x`` to ``W - x`` exactly as it maps boxes, and
:class:`~detkit.data.transforms.rcnn.ResizeShortestEdge` scales ``x`` by the boxes' factor;
albumentations' own resizes scale the shifted points, off by up to half a pixel). A pipeline that
mirrors the image (a flip) must also swap left and right keypoints: three reference points
travel with the keypoints, and when their orientation reverses the ``keypoint_flip_pairs`` are
swapped (an error without them). Points the pipeline moves off the image get visibility 0.

Crowd boxes: the training pipelines drop ``iscrowd == 1`` boxes before augmenting
(``drop_crowd=True``), the test pipelines keep them for evaluation (conventions.md).

Faults: every box is checked after every transform, before albumentations filters the boxes
(which would silently drop a NaN box and clip an infinite one to the border): a transform that
makes a box NaN or infinite raises a :class:`~detkit.data.validation.DatasetError` naming the
image file, the transform and the box. Boxes the pipeline drops as documented (cropped away, or
narrower or shorter than ``min_box_size``) are counted in :attr:`DetectionTransform.drop_report`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch import Tensor

from detkit.utils.image_io import image_to_tensor

from ..validation import DatasetError, DatasetReport, require_finite_boxes

__all__ = ["DetectionTransform", "select_boxes"]

logger = logging.getLogger("detkit.data")

_DROPPED = "boxes dropped by the pipeline (cropped away, or narrower or shorter than min_box_size)"


class _NonFiniteBox(Exception):
    """Raised inside the pipeline; :class:`DetectionTransform` adds the image file and re-raises."""

    def __init__(self, transform: str, box_index: int, box: list[float]) -> None:
        super().__init__(transform, box_index, box)
        self.transform, self.box_index, self.box = transform, box_index, box


class _CheckedCompose(A.Compose):
    """``A.Compose`` that checks the boxes after each transform, before albumentations' own
    per-transform filtering (which drops NaN boxes and clips infinite ones without a word).

    albumentations (2.x) calls ``_track_transform_params(transform, data)`` right after each
    transform, with its output in ``data`` (boxes normalised, extra columns the label fields:
    column 4 is the ``box_indices`` field). tests/data/test_transform_faults.py pins this.
    """

    def _track_transform_params(self, transform: Any, data: dict[str, Any]) -> None:
        super()._track_transform_params(transform, data)
        boxes = data.get("bboxes")
        if boxes is None or not len(boxes):
            return
        boxes = np.asarray(boxes, dtype=np.float64)
        finite = np.isfinite(boxes[:, :4]).all(axis=1)
        if finite.all():
            return
        row = int(np.flatnonzero(~finite)[0])
        height, width = data["image"].shape[:2]
        box = (boxes[row, :4] * np.array([width, height, width, height])).tolist()
        index = int(boxes[row, 4]) if boxes.shape[1] > 4 and np.isfinite(boxes[row, 4]) else row
        raise _NonFiniteBox(type(transform).__name__, index, box)


def select_boxes(target: dict[str, Any], keep: Tensor | np.ndarray) -> dict[str, Any]:
    """A copy of ``target`` with every per-box field (any tensor whose first dimension is the
    number of boxes: ``boxes``, ``labels``, ``iscrowd``, ``difficult``, ``masks`` ...) indexed by
    ``keep`` (a bool mask ``[N]`` or an index array)."""
    num_boxes = len(target["boxes"])
    keep = torch.as_tensor(np.asarray(keep))
    selected = dict(target)
    for key, value in target.items():
        if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == num_boxes:
            selected[key] = value[keep]
    return selected


class DetectionTransform:
    """Run an albumentations pipeline on a detection sample and convert the image to a tensor.

    The returned target is the input's with boxes and per-box fields transformed, plus
    ``image_size`` ``(H', W')``: the size of the returned image (``orig_size`` stays the size of
    the file, so predictions can be mapped back when a pipeline resized).

    Attributes:
        drop_report: counts of the boxes the pipeline dropped (cropped away or too small), with
            a few examples naming the image file (kept per process: each DataLoader worker
            counts its own).

    Args:
        transforms: albumentations transforms, applied in order (may be empty).
        drop_crowd: drop boxes with ``iscrowd == 1`` first (training).
        min_box_size: boxes narrower or shorter than this (pixels, after the pipeline) are dropped.
        recompute_boxes_from_masks: when the target has masks, replace each box by its mask's
            bounding box after the pipeline (exact after crops, which only clip boxes; as
            detectron2's ``recompute_boxes``); objects whose mask became empty are dropped.
        keypoint_flip_pairs: ``(left, right)`` keypoint indices to swap when the pipeline mirrors
            the image (needed for targets with keypoints and a flip).
        seed: a fixed seed for the pipeline's random stream (tests, demos). ``None`` (training):
            each call draws its seed from Python's global ``random``, which the DataLoader seeds
            per worker and detkit's engine per sample, so augmentation follows the global seeding
            (albumentations' own generators would otherwise ignore it).
    """

    def __init__(
        self,
        transforms: Sequence[A.BasicTransform] = (),
        *,
        drop_crowd: bool = False,
        min_box_size: float = 1.0,
        recompute_boxes_from_masks: bool = False,
        keypoint_flip_pairs: Sequence[Sequence[int]] | None = None,
        seed: int | None = None,
    ) -> None:
        self.drop_crowd = drop_crowd
        self.keypoint_flip_pairs = None if keypoint_flip_pairs is None else [
            (int(left), int(right)) for left, right in keypoint_flip_pairs]
        self.recompute_boxes_from_masks = recompute_boxes_from_masks
        # An empty Compose with bbox_params warns; no transforms means conversion only.
        self.compose: A.Compose | None = None
        if transforms:
            bbox_params = A.BboxParams(
                format="pascal_voc", label_fields=["box_indices"], min_width=min_box_size, min_height=min_box_size,
                clip=True,
            )  # fmt: skip
            keypoint_params = A.KeypointParams(format="xy", remove_invisible=False)
            self.compose = _CheckedCompose(list(transforms), bbox_params=bbox_params, keypoint_params=keypoint_params)
        self.drop_report = DatasetReport(type(self).__name__)
        self.seed = seed
        if seed is not None:
            self._seed_pipeline(seed)

    def _seed_pipeline(self, seed: int) -> None:
        # One generator pair shared by every transform (Compose(seed=...) gives each transform
        # its own generator with the same seed, so their draws would be correlated).
        if self.compose is not None:
            self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, image: np.ndarray, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Args: ``image`` ``[H, W, 3]`` uint8 RGB; ``target`` with ``boxes [N, 4]`` xyxy pixels.
        Returns: ``(image [3, H', W'] float32 in [0, 1], target)`` with every per-box field aligned.

        Raises:
            DatasetError: a box is NaN or infinite before the pipeline, or a transform made one
                so (the image file, the transform and the box named)."""
        source = str(target.get("file_name", "<image>"))
        require_finite_boxes(target["boxes"], source, "before the pipeline")
        if self.seed is None:
            self._seed_pipeline(random.getrandbits(63))
        if self.drop_crowd and "iscrowd" in target:
            target = select_boxes(target, target["iscrowd"] == 0)
        num_boxes = len(target["boxes"])
        data: dict[str, Any] = {
            "image": image,
            "bboxes": target["boxes"].numpy().reshape(-1, 4).astype(np.float32),
            "box_indices": np.arange(num_boxes),
        }
        has_masks = "masks" in target
        if has_masks and num_boxes:
            data["masks"] = target["masks"].numpy()
        has_keypoints = "keypoints" in target and self.compose is not None
        if has_keypoints:
            points = target["keypoints"].numpy().reshape(-1, 3)[:, :2].astype(np.float64) - 0.5
            data["keypoints"] = np.concatenate([points, _ORIENTATION_POINTS])
        try:
            out = self.compose(**data) if self.compose is not None else dict(data, masks=list(data.get("masks", [])))
        except _NonFiniteBox as fault:
            original = data["bboxes"][fault.box_index].tolist() if fault.box_index < num_boxes else "?"
            raise DatasetError(
                f"{source}: transform {fault.transform} made box {fault.box_index} non-finite: "
                f"{[round(v, 3) for v in fault.box]} (was {original})"
            ) from None

        kept = np.asarray(out["box_indices"], dtype=np.int64).reshape(-1)
        if len(kept) < num_boxes:
            dropped = sorted(set(range(num_boxes)) - set(kept.tolist()))
            self.drop_report.add(_DROPPED, f"{source}: boxes {dropped}", len(dropped))
            logger.debug("%s: the pipeline dropped boxes %s", source, dropped)
        new_image = out["image"]
        height, width = new_image.shape[:2]
        result = select_boxes({k: v for k, v in target.items() if k != "masks"}, kept)
        result["boxes"] = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)[:, :4])
        if has_keypoints:
            result["keypoints"] = self._moved_keypoints(target["keypoints"], out["keypoints"], kept,
                                                        (height, width), source)
        if has_masks:
            if num_boxes:
                masks = np.asarray(out["masks"], dtype=np.uint8)[kept]
            else:
                masks = np.zeros((0, height, width), dtype=np.uint8)
            result["masks"] = torch.from_numpy(np.ascontiguousarray(masks))
            if self.recompute_boxes_from_masks:
                result = _boxes_from_masks(result)
        result["image_size"] = (int(height), int(width))
        require_finite_boxes(result["boxes"], source, "after the pipeline")
        return image_to_tensor(new_image), result


    def _moved_keypoints(self, keypoints: Tensor, moved: Any, kept: np.ndarray, size: tuple[int, int],
                         source: str) -> Tensor:
        """The pipeline's keypoints back as ``[N', K, 3]``: half-pixel shift undone, left and right
        swapped when the image was mirrored, points off the image not labelled (v = 0)."""
        num_boxes, num_keypoints = keypoints.shape[:2]
        moved = np.asarray(moved, dtype=np.float64).reshape(-1, 2)
        reference = moved[-len(_ORIENTATION_POINTS):]
        points = moved[: num_boxes * num_keypoints].reshape(num_boxes, num_keypoints, 2) + 0.5
        result = np.concatenate([points, keypoints.numpy()[..., 2:].astype(np.float64)], axis=2)
        if _mirrored(reference) and num_boxes:
            if self.keypoint_flip_pairs is None:
                raise DatasetError(f"{source}: the pipeline mirrored the image but has no keypoint_flip_pairs to "
                                   "swap left and right keypoints (pass keypoint_flip_pairs=[(left, right), ...])")
            order = np.arange(num_keypoints)
            for left, right in self.keypoint_flip_pairs:
                order[left], order[right] = right, left
            result = result[:, order]
        height, width = size
        outside = (result[..., 0] < 0) | (result[..., 1] < 0) | (result[..., 0] > width) | (result[..., 1] > height)
        result[..., 2][outside] = 0
        return torch.from_numpy(result[kept].astype(np.float32)).reshape(-1, num_keypoints, 3)


# Three reference points whose orientation (the sign of their cross product) reverses when a
# transform mirrors the image.
_ORIENTATION_POINTS = np.array([[0.0, 0.0], [16.0, 0.0], [0.0, 16.0]])


def _mirrored(points: np.ndarray) -> bool:
    (x0, y0), (x1, y1), (x2, y2) = points
    return (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) < 0


def _boxes_from_masks(target: dict[str, Any]) -> dict[str, Any]:
    """Replace ``boxes`` by the masks' bounding boxes (continuous: ``x2 = last column + 1``);
    drop objects with an empty mask."""
    masks = target["masks"].bool()
    nonempty = masks.flatten(1).any(dim=1) if len(masks) else torch.zeros(0, dtype=torch.bool)
    target = select_boxes(target, nonempty)
    masks = target["masks"].bool()
    if len(masks) == 0:
        return target
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    height, width = masks.shape[1:]
    y = torch.arange(height).expand_as(rows)
    x = torch.arange(width).expand_as(cols)
    boxes = torch.stack(
        [
            torch.where(cols, x, width).min(dim=1).values,
            torch.where(rows, y, height).min(dim=1).values,
            torch.where(cols, x, -1).max(dim=1).values + 1,
            torch.where(rows, y, -1).max(dim=1).values + 1,
        ],
        dim=1,
    )
    target["boxes"] = boxes.float()
    return target
