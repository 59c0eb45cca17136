"""The detections on one image as numpy arrays (:class:`Result`), and their COCO results form.

What :class:`detkit.apis.Predictor` returns and :func:`detkit.utils.visualization.draw_predictions`
draws; it lives here, below both, so drawing does not depend on the inference API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

__all__ = ["Result", "label_name"]


def label_name(label: int, class_names: Sequence[str] | None) -> str:
    """The name of ``label`` in ``class_names``, or the label as text when there is none."""
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _points_per_detection(points: np.ndarray, count: int, width: int) -> np.ndarray:
    """``[count, K, width]`` points: as given when already so (``K`` kept for zero detections,
    where a reshape with ``-1`` has nothing to infer from), else reshaped from a flat layout."""
    if points.ndim == 3 and points.shape[0] == count and points.shape[2] == width:
        return points
    return points.reshape(count, -1, width) if count else points.reshape(0, 0, width)


def _to_numpy(value: Any, dtype: np.dtype | type | None) -> np.ndarray:
    """A tensor or array-like as a numpy array of ``dtype`` (its own dtype when None)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu").numpy()
    array = np.asarray(value)
    return array if dtype is None else array.astype(dtype, copy=False)


@dataclass
class Result:
    """Detections on one image, in the pixel coordinates of that image.

    Attributes:
        boxes: ``[N, 4]`` float32 xyxy, absolute pixels.
        scores: ``[N]`` float32, decreasing.
        labels: ``[N]`` int64 contiguous 0-based class ids.
        class_names: ``N`` names, one per detection (the label as text when the model has none).
        image_size: ``(height, width)`` of the image the detections are on.
        source: Where the image came from: a file path, ``"array[3]"`` (third input), a video
            frame ``"clip.mp4#12"``.
        masks: ``[N, H, W]`` bool instance masks (probabilities thresholded at 0.5), or None when
            the model has no masks.
        landmarks: ``[N, K, 2]`` float32 points (x, y) in pixels (``K = 5`` for faces), or None.
        keypoints: ``[N, K, 3]`` float32 ``(x, y, visibility)`` in pixels (Keypoint R-CNN: 17
            person keypoints, visibility 1), or None.
        keypoint_scores: ``[N, K]`` float32 score of each keypoint (Keypoint R-CNN's heat-map
            logits), or None.
        skeleton: ``(i, j)`` keypoint index pairs drawn as lines, or None.
        track_ids: ``[N]`` int64 identity of each detection across video frames (set by
            :class:`detkit.apis.tracking.ByteTracker`), or None when the result is not tracked.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    source: str = ""
    masks: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoint_scores: np.ndarray | None = None
    skeleton: list[tuple[int, int]] | None = None

    @classmethod
    def from_prediction(cls, prediction: Mapping[str, Any], image_size: tuple[int, int],
                        class_names: Sequence[str] | None = None, source: str = "",
                        skeleton: Sequence[Sequence[int]] | None = None) -> Result:
        """Build from a model's prediction dict (tensors or arrays; see docs/conventions.md).

        Args:
            prediction: ``boxes [N, 4]``, ``scores [N]``, ``labels [N]``, optional ``masks
                [N, H, W]`` probabilities (or ``[N, 1, H, W]``), ``landmarks [N, K, 2]``,
                ``keypoints [N, K, 3]`` and ``keypoint_scores [N, K]``.
            image_size: ``(height, width)`` of the image.
            class_names: Name of each class id, or None.
            source: Where the image came from.
            skeleton: keypoint index pairs to draw as lines.
        """
        boxes = _to_numpy(prediction["boxes"], np.float32).reshape(-1, 4)
        count = len(boxes)
        scores = _to_numpy(prediction.get("scores", np.ones(count)), np.float32).reshape(count)
        labels = _to_numpy(prediction.get("labels", np.zeros(count)), np.int64).reshape(count)
        masks = prediction.get("masks")
        if masks is not None:
            masks = _to_numpy(masks, None)
            masks = masks.reshape(count, *masks.shape[-2:])
            masks = masks if masks.dtype == bool else masks >= 0.5
        landmarks = prediction.get("landmarks")
        if landmarks is not None:
            landmarks = _to_numpy(landmarks, np.float32)
            landmarks = _points_per_detection(landmarks, count, 2)  # also flat [N, 2K] points
        keypoints = prediction.get("keypoints")
        if keypoints is not None:
            keypoints = _points_per_detection(_to_numpy(keypoints, np.float32), count, 3)
        keypoint_scores = prediction.get("keypoint_scores")
        if keypoint_scores is not None:
            keypoint_scores = _to_numpy(keypoint_scores, np.float32)
            if keypoint_scores.ndim != 2 or len(keypoint_scores) != count:
                keypoint_scores = keypoint_scores.reshape(count, -1 if count else 0)
        names = [label_name(int(label), class_names) for label in labels]
        return cls(boxes=boxes, scores=scores, labels=labels, class_names=names,
                   image_size=(int(image_size[0]), int(image_size[1])), source=source,
                   masks=masks, landmarks=landmarks, keypoints=keypoints, keypoint_scores=keypoint_scores,
                   skeleton=None if skeleton is None else [(int(a), int(b)) for a, b in skeleton])

    def __len__(self) -> int:
        return len(self.boxes)

    def __repr__(self) -> str:
        extras = "".join(f", {name}={list(value.shape)}" for name, value in
                         (("masks", self.masks), ("landmarks", self.landmarks),
                          ("keypoints", self.keypoints), ("track_ids", self.track_ids)) if value is not None)
        detections = ", ".join(f"{name} {score:.2f}"
                               for name, score in zip(self.class_names[:5], self.scores[:5]))
        more = f", ... {len(self) - 5} more" if len(self) > 5 else ""
        return (f"Result(source={self.source!r}, image_size={self.image_size}, {len(self)} "
                f"detections [{detections}{more}]{extras})")

    def select(self, keep: np.ndarray | Sequence[int] | slice) -> Result:
        """A new result with the detections ``keep`` (a bool mask, indices or a slice)."""
        if not isinstance(keep, slice):
            keep = np.asarray(keep)
            if keep.dtype != bool:
                keep = keep.astype(np.int64).reshape(-1)
        picked = np.arange(len(self))[keep]
        return replace(
            self, boxes=self.boxes[keep], scores=self.scores[keep], labels=self.labels[keep],
            class_names=[self.class_names[i] for i in picked],
            masks=None if self.masks is None else self.masks[keep],
            landmarks=None if self.landmarks is None else self.landmarks[keep],
            keypoints=None if self.keypoints is None else self.keypoints[keep],
            keypoint_scores=None if self.keypoint_scores is None else self.keypoint_scores[keep],
            track_ids=None if self.track_ids is None else self.track_ids[keep])

    def to_coco(self, image_id: int | str,
                label_to_category_id: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
        """The detections as COCO results entries (the list ``COCO.loadRes`` reads).

        Each entry has ``image_id``, ``category_id`` (the label, or
        ``label_to_category_id[label]``), ``bbox`` ``[x, y, width, height]`` in pixels and
        ``score``; with masks also ``segmentation`` (compressed RLE, counts as text); with
        landmarks also ``landmarks`` (``[[x, y], ...]``); with track ids also ``track_id``.

        Raises:
            KeyError: A label missing from ``label_to_category_id``.
        """
        segmentations = _encode_masks(self.masks) if self.masks is not None else None
        entries = []
        for i, (box, score, label) in enumerate(zip(self.boxes, self.scores, self.labels)):
            x1, y1, x2, y2 = (float(v) for v in box)
            label = int(label)
            if label_to_category_id is not None and label not in label_to_category_id:
                raise KeyError(f"label {label} ({self.class_names[i]}) has no entry in "
                               f"label_to_category_id (it has {sorted(label_to_category_id)})")
            entry: dict[str, Any] = {
                "image_id": image_id,
                "category_id": int(label_to_category_id[label]) if label_to_category_id else label,
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(float(score), 5),
            }
            if segmentations is not None:
                entry["segmentation"] = segmentations[i]
            if self.landmarks is not None:
                entry["landmarks"] = [[round(float(x), 2), round(float(y), 2)]
                                      for x, y in self.landmarks[i]]
            if self.keypoints is not None:  # COCO's flat [x, y, v] * K (keypoint results)
                entry["keypoints"] = [round(float(v), 2) for v in self.keypoints[i].reshape(-1)]
            if self.track_ids is not None:
                entry["track_id"] = int(self.track_ids[i])
            entries.append(entry)
        return entries


def _encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """Compressed COCO RLE of ``[N, H, W]`` bool masks, ``counts`` decoded to str for json."""
    from pycocotools import mask as mask_utils  # a requirement; imported late, it is slow

    if len(masks) == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
            for rle in encoded]
