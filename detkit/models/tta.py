"""Test-time augmentation: run a detector on flipped and rescaled views, map back, merge.

:class:`TestTimeAugmentation` wraps any detector that follows docs/conventions.md
(``detector(images) -> (predictions, losses)`` in eval mode) and is itself such a detector, so
detkit's evaluation loop, :class:`detkit.apis.Predictor` and ``detkit infer`` / ``detkit test
--tta`` use it unchanged. For every ``scale`` and every ``flip`` it runs the detector once on the
whole batch, maps each view's predictions back to the original image, concatenates the views and
merges them per image:

* **Flip** ``"horizontal"``: the image is mirrored (``x -> W - x`` in continuous pixel
  coordinates, where the image spans ``[0, W]``); boxes come back as ``(W - x2, y1, W - x1, y2)``,
  masks are mirrored back, and keypoints (``keypoints [N, K, 3]`` or ``landmarks [N, K, 2]``)
  get ``x -> W - x`` and their left / right pairs swapped. The pairs come from the
  ``keypoint_flip_pairs`` argument or the detector's attribute of that name; a detector that
  predicts keypoints and declares no pairs is refused for a flip (the left eye would come back
  as the right one).
* **Scale** ``s``: the network sees the image at ``s`` times the size it normally would. A
  detector's own resize would undo a rescaled image (R-CNN resizes the short side to
  ``min_size``; SSD stretches to ``image_size``; YOLO resizes or letterboxes to ``input_size``), so
  for these the *network input size* is scaled for the call: R-CNN's ``min_size`` / ``max_size``,
  SSD's ``image_size`` (rounded to whole pixels), YOLO's ``input_size`` (rounded to a multiple of
  32, at least 32), and the detector maps its predictions back to the image itself. A detector
  with any other (or no) ``preprocess`` gets the image itself resized by ``s`` (bilinear,
  antialiased when shrinking), and its boxes, masks and keypoints are scaled back by the exact
  per-axis ratio of the sizes.
* **Merge** ``"nms"``: class-wise NMS (:func:`detkit.models.postprocess.select_detections`) at
  ``nms_thresh`` over the union of the views; masks and keypoints follow their box.
  ``"wbf"``: :func:`weighted_box_fusion` (boxes of a class that overlap become one box, their
  score-weighted mean). Both keep the ``detections_per_img`` best, by default the detector's cap.

In training mode the wrapper is transparent (the detector's own call, losses included).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.postprocess import select_detections
from detkit.models.preprocess import RCNNPreprocess, SSDPreprocess, YOLOPreprocess
from detkit.ops import batched_nms, box_iou

__all__ = ["FLIPS", "MERGES", "TTA_OPTIONS", "TestTimeAugmentation", "build_tta", "weighted_box_fusion"]

FLIPS = ("none", "horizontal")
MERGES = ("nms", "wbf")
KEYPOINT_KEYS = ("keypoints", "landmarks")
MERGED_KEYS = ("boxes", "scores", "labels", "masks", *KEYPOINT_KEYS, "keypoint_scores")
TTA_OPTIONS = ("flips", "scales", "merge", "nms_thresh", "detections_per_img", "keypoint_flip_pairs")
_YOLO_STRIDE = 32  # YOLOPreprocess input sizes are multiples of 32


def _part_setting(detector: nn.Module, name: str) -> Any:
    """A test-time setting of the detector's selecting part (R-CNN ``roi_heads``, SSD / YOLO
    ``head``), else of the detector itself; None when nobody has it."""
    for part in (getattr(detector, "roi_heads", None), getattr(detector, "head", None)):
        if part is not None and getattr(part, name, None) is not None:
            return getattr(part, name)
    if name in vars(type(detector)) or name in vars(detector):  # not a deprecated forwarder
        return getattr(detector, name, None)
    return None


def _check_pairs(pairs: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    checked = []
    for pair in pairs:
        if len(pair) != 2 or any(not isinstance(i, int) or i < 0 for i in pair):
            raise ValueError(f"TestTimeAugmentation: keypoint_flip_pairs must be (left, right) index pairs, "
                             f"got {pair!r}")
        checked.append((int(pair[0]), int(pair[1])))
    return checked


class TestTimeAugmentation(nn.Module):
    """A detector run on flipped and rescaled views, merged (see the module docstring).

    Args:
        detector: A detector following docs/conventions.md.
        flips: Views by flip: ``"none"`` (the image as it is) and / or ``"horizontal"``.
        scales: Network-input scales (1.0: the detector's own size); each scale runs every flip.
        merge: ``"nms"`` (class-wise NMS) or ``"wbf"`` (:func:`weighted_box_fusion`).
        nms_thresh: IoU above which boxes of a class are merged; default the detector's own
            ``nms_thresh`` (0.5 when it has none).
        detections_per_img: The cap after merging; default the detector's ``detections_per_img``
            (100 when it has none).
        keypoint_flip_pairs: ``(left, right)`` keypoint index pairs swapped by a flip; default the
            detector's ``keypoint_flip_pairs`` attribute.

    Raises:
        ValueError: An unknown flip or merge, an empty or non-positive scale list, a threshold
            outside (0, 1], a cap below 1 (the message names the argument).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, detector: nn.Module, flips: Sequence[str] = ("none", "horizontal"),
                 scales: Sequence[float] = (1.0,), merge: str = "nms", nms_thresh: float | None = None,
                 detections_per_img: int | None = None,
                 keypoint_flip_pairs: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__()
        name = "TestTimeAugmentation"
        flips = (flips,) if isinstance(flips, str) else tuple(flips)
        if not flips or any(flip not in FLIPS for flip in flips) or len(set(flips)) != len(flips):
            raise ValueError(f"{name}: flips must be distinct values of {FLIPS}, got {list(flips)}")
        scales = (scales,) if isinstance(scales, (int, float)) else tuple(scales)
        if (not scales or any(not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s)
                              or s <= 0 for s in scales) or len(set(scales)) != len(scales)):
            raise ValueError(f"{name}: scales must be distinct positive numbers, got {list(scales)}")
        if merge not in MERGES:
            raise ValueError(f"{name}: merge must be one of {MERGES}, got {merge!r}")
        nms_thresh = nms_thresh if nms_thresh is not None else _part_setting(detector, "nms_thresh")
        nms_thresh = 0.5 if nms_thresh is None else float(nms_thresh)
        if not 0.0 < nms_thresh <= 1.0:
            raise ValueError(f"{name}: nms_thresh must be in (0, 1], got {nms_thresh}")
        cap = detections_per_img if detections_per_img is not None else _part_setting(detector, "detections_per_img")
        cap = 100 if cap is None else cap
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"{name}: detections_per_img must be an integer >= 1, got {cap!r}")
        pairs = keypoint_flip_pairs if keypoint_flip_pairs is not None else getattr(
            detector, "keypoint_flip_pairs", None)
        self.detector = detector
        self.flips: tuple[str, ...] = flips
        self.scales: tuple[float, ...] = tuple(float(s) for s in scales)
        self.merge = merge
        self.nms_thresh = nms_thresh
        self.detections_per_img = int(cap)
        self.keypoint_flip_pairs = None if pairs is None else _check_pairs(pairs)

    # -------------------------------------------------- the detector interface, forwarded

    @property
    def num_classes(self) -> int | None:
        """The wrapped detector's ``num_classes``."""
        return getattr(self.detector, "num_classes", None)

    @property
    def class_names(self) -> list[str] | None:
        """The wrapped detector's ``class_names``."""
        return getattr(self.detector, "class_names", None)

    @property
    def label_to_category_id(self) -> Mapping[int, int] | None:
        """The wrapped detector's ``label_to_category_id`` (None when it has none)."""
        return getattr(self.detector, "label_to_category_id", None)

    @property
    def views(self) -> list[tuple[float, str]]:
        """``(scale, flip)`` of every view, in the order they run."""
        return [(scale, flip) for scale in self.scales for flip in self.flips]

    def describe(self) -> str:
        """One line for people: the views and the merge."""
        scales = ", ".join(f"{scale:g}" for scale in self.scales)
        return (f"test-time augmentation: {len(self.views)} views (flips {', '.join(self.flips)}; network-input "
                f"scales {scales}), merged by {self.merge} at IoU {self.nms_thresh:g}, at most "
                f"{self.detections_per_img} per image")

    def extra_repr(self) -> str:
        return (f"flips={self.flips}, scales={self.scales}, merge={self.merge!r}, nms_thresh={self.nms_thresh}, "
                f"detections_per_img={self.detections_per_img}")

    # -------------------------------------------------- the call

    def forward(self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detect on every view and merge.

        Args:
            images: ``[3, H_i, W_i]`` float RGB in [0, 1], as the detector takes them.
            targets: Passed to the detector in training mode only.

        Returns:
            Eval: per image ``boxes [K, 4]`` xyxy pixels of that image, ``scores [K]`` by
            decreasing score, ``labels [K]``, plus ``masks [K, H, W]`` and ``keypoints`` /
            ``landmarks`` when the detector gives them; and ``{}``. Training: the detector's call.

        Raises:
            ValueError: A flip view of a detector that predicts keypoints with no
                ``keypoint_flip_pairs``.
        """
        if self.training:
            return self.detector(images, targets)
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        per_image: list[list[dict[str, Tensor]]] = [[] for _ in images]
        for scale, flip in self.views:
            views = [image.flip(-1) if flip == "horizontal" else image for image in images]
            with self._network_scale(scale) as resize_images:
                if resize_images:
                    views = [_resize_image(view, scale) for view in views]
                output = self.detector(views)
            predictions = output[0] if isinstance(output, tuple) else output
            for index, (prediction, view, size) in enumerate(zip(predictions, views, sizes)):
                mapped = dict(prediction)
                if resize_images:
                    mapped = _resize_prediction(mapped, (int(view.shape[-2]), int(view.shape[-1])), size)
                if flip == "horizontal":
                    mapped = self._unflip(mapped, size[1])
                per_image[index].append(mapped)
        return [self._merge(views) for views in per_image], {}

    @contextmanager
    def _network_scale(self, scale: float) -> Iterator[bool]:
        """Set the detector's network input to ``scale`` times its size for the block; yields
        whether the images must be resized instead (a detector with no known input size)."""
        preprocess = getattr(self.detector, "preprocess", None)
        if scale == 1.0:
            yield False
            return
        if isinstance(preprocess, RCNNPreprocess):
            names = ("min_size", "max_size")
            values = (tuple(max(1, round(s * scale)) for s in preprocess.min_size),
                      max(1, round(preprocess.max_size * scale)))
        elif isinstance(preprocess, SSDPreprocess):
            names, values = ("image_size",), (tuple(max(1, round(s * scale)) for s in preprocess.image_size),)
        elif isinstance(preprocess, YOLOPreprocess):
            names = ("input_size",)
            values = (tuple(max(1, round(s * scale / _YOLO_STRIDE)) * _YOLO_STRIDE for s in preprocess.input_size),)
        else:
            yield True
            return
        saved = [getattr(preprocess, name) for name in names]
        try:
            for name, value in zip(names, values):
                setattr(preprocess, name, value)
            yield False
        finally:
            for name, value in zip(names, saved):
                setattr(preprocess, name, value)

    def _unflip(self, prediction: dict[str, Tensor], width: int) -> dict[str, Tensor]:
        """A prediction on the mirrored image, in the original image's pixels."""
        boxes = prediction["boxes"]
        prediction["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        if "masks" in prediction:
            prediction["masks"] = prediction["masks"].flip(-1)
        for key in KEYPOINT_KEYS:
            if key not in prediction:
                continue
            if self.keypoint_flip_pairs is None:
                raise ValueError(
                    f"TestTimeAugmentation: {type(self.detector).__name__} predicts {key!r} but declares no "
                    "keypoint_flip_pairs (a flip swaps left and right points); pass keypoint_flip_pairs=[(left, "
                    "right), ...] or flips=('none',)")
            points = prediction[key].clone()
            points[..., 0] = width - points[..., 0]
            order = list(range(points.shape[1]))
            for left, right in self.keypoint_flip_pairs:
                if max(left, right) >= len(order):
                    raise ValueError(f"TestTimeAugmentation: keypoint_flip_pairs ({left}, {right}) for "
                                     f"{len(order)} {key}")
                order[left], order[right] = right, left
            prediction[key] = points[:, order]
            if key == "keypoints" and "keypoint_scores" in prediction:  # Keypoint R-CNN's [N, K] scores
                prediction["keypoint_scores"] = prediction["keypoint_scores"][:, order]
        return prediction

    def _merge(self, views: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """One image's views -> its merged prediction (keys every view has, of :data:`MERGED_KEYS`)."""
        keys = [key for key in MERGED_KEYS if all(key in view for view in views)]
        joined = {key: torch.cat([torch.as_tensor(view[key]) for view in views]) for key in keys}
        if self.merge == "wbf":
            extras = {key: joined[key] for key in keys if key not in ("boxes", "scores", "labels")}
            return weighted_box_fusion(joined["boxes"], joined["scores"], joined["labels"], self.nms_thresh,
                                       num_views=len(views), extras=extras,
                                       detections_per_img=self.detections_per_img)
        kept = select_detections(joined["boxes"], joined["scores"], joined["labels"], score_thresh=0.0,
                                 thresh_inclusive=True, nms_thresh=self.nms_thresh,
                                 detections_per_img=self.detections_per_img)
        merged = kept.as_dict()
        for key in keys:
            if key not in merged:
                merged[key] = joined[key][kept.indices]
        return merged


def weighted_box_fusion(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thresh: float, *, num_views: int,
                        extras: Mapping[str, Tensor] | None = None,
                        detections_per_img: int | None = None) -> dict[str, Tensor]:
    """Fuse overlapping boxes of a class into their score-weighted mean (weighted box fusion).

    Clusters are formed as greedy class-wise NMS forms them: every box kept by
    :func:`detkit.ops.batched_nms` at ``iou_thresh`` starts a cluster, and every other box joins the
    highest-scoring kept box of its class it overlaps by more than ``iou_thresh`` (the box that
    suppressed it). This is the fusion of Solovyev et al. (2021, ensemble-boxes' ``weighted_boxes_fusion``)
    with clusters matched to their first box rather than to the running fused box, which makes it
    one vectorised pass. Per cluster:

    * box: ``sum(score_i * box_i) / sum(score_i)``; ``extras`` (masks, keypoints) likewise;
    * score: ``sum(score_i) / max(len(cluster), num_views)``, the cluster's mean score, lowered
      in proportion when fewer than ``num_views`` views found the object.

    Args:
        boxes: ``[N, 4]`` xyxy pixels.
        scores: ``[N]``.
        labels: ``[N]`` int64.
        iou_thresh: IoU above which two boxes of a class are one object.
        num_views: How many views (augmentations, models) the boxes come from.
        extras: ``[N, ...]`` float tensors fused like the boxes (``masks [N, H, W]``, ``keypoints``).
        detections_per_img: Keep this many fused boxes, best first; None: all.

    Returns:
        ``{"boxes" [K, 4], "scores" [K], "labels" [K]}`` plus each extra ``[K, ...]``, by
        decreasing score.
    """
    if num_views < 1:
        raise ValueError(f"weighted_box_fusion: num_views must be >= 1, got {num_views}")
    extras = dict(extras or {})
    keep = batched_nms(boxes, scores, labels, iou_thresh)
    count = keep.numel()
    cluster = torch.empty(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    if count:
        overlap = box_iou(boxes, boxes[keep]) * (labels[:, None] == labels[keep][None, :])
        matched = overlap > iou_thresh
        # argmax of a bool row is its first True: the highest-scoring kept box that overlaps
        first = torch.where(matched.any(1), matched.to(torch.uint8).argmax(1), overlap.argmax(1))
        cluster.copy_(first)
        cluster[keep] = torch.arange(count, device=boxes.device)
    weights = scores.to(boxes.dtype)
    total = weights.new_zeros(count).index_add_(0, cluster, weights)
    members = torch.bincount(cluster, minlength=count).to(weights.dtype)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))

    def fuse(values: Tensor) -> Tensor:
        flat = values.flatten(1).to(weights.dtype) if values.dim() > 1 else values[:, None].to(weights.dtype)
        summed = flat.new_zeros((count, flat.shape[1])).index_add_(0, cluster, flat * weights[:, None])
        # a cluster of zero-score boxes keeps its first box
        fused = torch.where((total > 0)[:, None], summed / safe_total[:, None], flat[keep])
        return fused.reshape(count, *values.shape[1:]).to(values.dtype)

    fused_scores = (total / torch.clamp(members, min=float(num_views))).to(scores.dtype)
    order = torch.argsort(fused_scores, descending=True, stable=True)
    if detections_per_img is not None:
        order = order[:detections_per_img]
    merged = {"boxes": fuse(boxes)[order], "scores": fused_scores[order], "labels": labels[keep][order]}
    for key, value in extras.items():
        merged[key] = fuse(value)[order]
    return merged


def _resize_image(image: Tensor, scale: float) -> Tensor:
    """``[3, H, W]`` -> ``[3, round(H s), round(W s)]``, bilinear (antialiased when shrinking)."""
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                            antialias=scale < 1.0)
    return resized[0].clamp(0.0, 1.0).to(image.dtype)


def _resize_prediction(prediction: dict[str, Tensor], view_size: tuple[int, int],
                       size: tuple[int, int]) -> dict[str, Tensor]:
    """A prediction on a resized view of ``view_size`` ``(h, w)`` in pixels of the image of ``size``."""
    ratio_y, ratio_x = size[0] / view_size[0], size[1] / view_size[1]
    boxes = prediction["boxes"]
    prediction["boxes"] = boxes * boxes.new_tensor([ratio_x, ratio_y, ratio_x, ratio_y])
    if "masks" in prediction:
        masks = prediction["masks"]
        resized = F.interpolate(masks[:, None].float(), size=size, mode="bilinear", align_corners=False)
        prediction["masks"] = resized[:, 0].to(masks.dtype)
    for key in KEYPOINT_KEYS:
        if key in prediction:
            points = prediction[key].clone()
            points[..., 0] *= ratio_x
            points[..., 1] *= ratio_y
            prediction[key] = points
    return prediction


def build_tta(detector: nn.Module, tta: bool | Mapping[str, Any] | None, owner: str = "tta") -> nn.Module:
    """``detector`` wrapped in :class:`TestTimeAugmentation` as an option asks, or as it is.

    Args:
        detector: The detector.
        tta: False / None: no augmentation; True: the defaults (flips none + horizontal, scale 1,
            NMS); a mapping: keyword arguments of :class:`TestTimeAugmentation` (:data:`TTA_OPTIONS`).
        owner: Names the option in errors (``"Predictor(tta=...)"``, ``"--tta"``).

    Raises:
        ValueError: ``tta`` of another type, an unknown key, or a bad value (one line, naming it).
    """
    if tta is None or tta is False:
        return detector
    if tta is True:
        tta = {}
    if not isinstance(tta, Mapping):
        raise ValueError(f"{owner}: expected False, True or a dict of {', '.join(TTA_OPTIONS)}, "
                         f"got {type(tta).__name__}")
    unknown = sorted(set(tta) - set(TTA_OPTIONS))
    if unknown:
        raise ValueError(f"{owner}: unknown option {', '.join(map(repr, unknown))}; the options are "
                         f"{', '.join(TTA_OPTIONS)}")
    try:
        return TestTimeAugmentation(detector, **tta)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None
