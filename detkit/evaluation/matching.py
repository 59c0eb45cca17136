"""Detections matched to ground truth at one IoU threshold: the common form of the analysis.

The analysis (confusion matrix, precision / recall / F1 against the score threshold, the per-class
table) starts from one form whatever evaluated the detections: a COCO ground truth (the dict of a
COCO annotation file, ``{"images", "annotations", "categories"}``, or a pycocotools ``COCO``) and
a COCO results list (``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``).
:func:`voc_to_coco` brings VOC targets and predictions to it.

:func:`match_results` matches each class the way pycocotools does at one IoU threshold and area
"all", so recall and precision at a score threshold are those ``COCOeval`` defines:

* per image and class, the ``max_dets`` highest-scoring detections count (stable sort: ties keep
  the order of the results list), the rest are dropped;
* detections in decreasing score order; each takes, among the ground truths of its class not yet
  taken, the one with the highest IoU ``>= iou_thresh`` (``COCOeval`` keeps the last of equal
  IoUs, and so does this); with none, an ignored ground truth with IoU ``>= iou_thresh`` makes it
  *ignored* (neither true nor false positive); otherwise it is a false positive;
* ignored ground truths are crowd regions (``iscrowd`` 1: IoU is the intersection over the
  detection's area, and any number of detections may fall in one) and VOC's ``difficult`` 1
  (plain IoU, any number of detections, as the VOC devkit ignores every detection of a difficult
  object); they are not counted as positives. An ``ignore`` field is not read (``COCOeval``
  overwrites it with ``iscrowd``);
* boxes have continuous widths (``x2 - x1``, no +1 pixel).

Because detections are taken in score order, the matches of the detections scoring ``>= t`` do
not depend on the lower ones: one pass at all scores gives the matching at every threshold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .coco_eval import predictions_to_coco_results, target_to_coco

__all__ = ["DetectionMatches", "ImageMatches", "box_iou_xywh", "ground_truth_dict", "match_results",
           "voc_to_coco"]


def box_iou_xywh(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of ``[D, 4]`` and ``[G, 4]`` ``[x, y, w, h]`` boxes, pycocotools' rule for crowd regions.

    Args:
        dets: ``[D, 4]`` detections, xywh in pixels.
        gts: ``[G, 4]`` ground truths, xywh in pixels.
        crowd: ``[G]`` bool; where set, the intersection is divided by the detection's area only.

    Returns:
        ``[D, G]`` float64, 0 where the boxes do not overlap.
    """
    d = np.asarray(dets, np.float64).reshape(-1, 4)
    g = np.asarray(gts, np.float64).reshape(-1, 4)
    crowd = np.zeros(len(g), bool) if crowd is None else np.asarray(crowd, bool).reshape(-1)
    d_lo, d_hi = d[:, None, :2], d[:, None, :2] + d[:, None, 2:]
    g_lo, g_hi = g[None, :, :2], g[None, :, :2] + g[None, :, 2:]
    side = np.minimum(d_hi, g_hi) - np.maximum(d_lo, g_lo)  # [D, G, 2] overlap along x and y
    iw, ih = side[..., 0], side[..., 1]
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_d = (d[:, 2] * d[:, 3])[:, None]
    union = np.where(crowd[None, :], area_d, area_d + (g[:, 2] * g[:, 3])[None, :] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class ImageMatches:
    """One image's part of :class:`DetectionMatches` (indices into its flat arrays).

    Attributes:
        image_id: the COCO image id.
        dets: ``[d]`` indices of the image's detections.
        gts: ``[g]`` indices of the image's ground truths.
        iou: ``[d, g]`` IoU of every detection with every ground truth (any class).
    """

    image_id: int
    dets: np.ndarray
    gts: np.ndarray
    iou: np.ndarray


@dataclass
class DetectionMatches:
    """Every counted detection and ground truth, and the same-class matching (see the module).

    Classes are indexed ``0 .. K-1`` in the order of ``category_ids``.

    Attributes:
        class_names: ``K`` names.
        category_ids: ``K`` COCO category ids.
        iou_thresh: the IoU a match needs (``>=``).
        max_dets: detections counted per image and class (``None``: all).
        gt_class: ``[G]`` class index of each ground truth.
        gt_ignored: ``[G]`` bool, crowd or difficult (not a positive).
        det_class: ``[D]`` class index of each detection.
        det_score: ``[D]`` its score.
        det_gt: ``[D]`` index of the ground truth it matched (same class), ``-1`` when none.
        det_ignored: ``[D]`` bool, matched an ignored ground truth (neither TP nor FP).
        images: per image, its detections, ground truths and their IoU.
    """

    class_names: list[str]
    category_ids: list[int]
    iou_thresh: float
    max_dets: int | None
    gt_class: np.ndarray
    gt_ignored: np.ndarray
    det_class: np.ndarray
    det_score: np.ndarray
    det_gt: np.ndarray
    det_ignored: np.ndarray
    images: list[ImageMatches]

    @property
    def num_classes(self) -> int:
        """``K``."""
        return len(self.class_names)

    @property
    def num_gt(self) -> np.ndarray:
        """``[K]`` positives (ground truths that are not ignored) per class."""
        return np.bincount(self.gt_class[~self.gt_ignored], minlength=self.num_classes)

    @property
    def det_tp(self) -> np.ndarray:
        """``[D]`` bool, true positives (matched, not ignored)."""
        return (self.det_gt >= 0) & ~self.det_ignored

    def num_det(self) -> np.ndarray:
        """``[K]`` counted detections per class (ignored ones excluded), at every score."""
        return np.bincount(self.det_class[~self.det_ignored], minlength=self.num_classes)


def ground_truth_dict(gt: Any) -> Mapping[str, Any]:
    """The dataset dict of a pycocotools ``COCO`` (its ``dataset``), or ``gt`` itself when a mapping.

    Raises:
        TypeError: ``gt`` is neither.
    """
    if isinstance(gt, Mapping):
        return gt
    if isinstance(getattr(gt, "dataset", None), Mapping):
        return gt.dataset
    raise TypeError(f"ground truth must be a COCO dataset dict or a pycocotools COCO, got {type(gt).__name__}")


def _greedy(iou: np.ndarray, order: np.ndarray, gt_order: np.ndarray, ignored: np.ndarray, multi: np.ndarray,
            thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """``COCOeval.evaluateImg``'s matching of one image and class at one IoU threshold.

    Args:
        iou: ``[d, g]`` IoU of the class's detections and ground truths.
        order: detections by decreasing score.
        gt_order: ground truths, those not ignored first (stable).
        ignored: ``[g]`` bool.
        multi: ``[g]`` bool, may be matched any number of times (crowd, difficult).
        thresh: the IoU a match needs.

    Returns:
        ``(matched [d] gt index or -1, det_ignored [d] bool)``.
    """
    matched = np.full(len(order), -1)
    det_ignored = np.zeros(len(order), bool)
    taken = np.zeros(iou.shape[1], bool)
    for d in order:
        best, m = min(thresh, 1 - 1e-10), -1
        for g in gt_order:
            if taken[g] and not multi[g]:
                continue
            if m > -1 and not ignored[m] and ignored[g]:
                break  # a real ground truth found: ignored ones (sorted last) do not compete
            if iou[d, g] < best:
                continue
            best, m = iou[d, g], g
        if m > -1:
            matched[d], det_ignored[d], taken[m] = m, ignored[m], True
    return matched, det_ignored


def match_results(
    gt: Any,
    results: Sequence[Mapping[str, Any]],
    *,
    iou_thresh: float = 0.5,
    category_ids: Sequence[int] | None = None,
    image_ids: Sequence[int] | None = None,
    class_names: Mapping[int, str] | None = None,
    max_dets: int | None = 100,
) -> DetectionMatches:
    """Match COCO results to a COCO ground truth, class by class (see the module docstring).

    Args:
        gt: COCO dataset dict or pycocotools ``COCO``. Annotations need ``image_id``,
            ``category_id``, ``bbox`` (xywh); ``iscrowd`` and ``difficult`` are read.
        results: COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``).
        iou_thresh: the IoU a match needs (``>=``), in (0, 1].
        category_ids: the classes analysed, in this order; default every category of ``gt``,
            sorted by id. Detections and ground truths of other categories are left out.
        image_ids: the images analysed; default every image of ``gt``.
        class_names: category id -> name; default the names in ``gt``.
        max_dets: detections counted per image and class, as ``COCOeval``'s largest ``maxDets``
            (``None``: all).

    Returns:
        The matches.

    Raises:
        ValueError: an IoU threshold outside (0, 1], results or requested ids naming images or
            categories the ground truth does not have.
    """
    if not 0.0 < iou_thresh <= 1.0:
        raise ValueError(f"iou_thresh must be in (0, 1], got {iou_thresh}")
    data = ground_truth_dict(gt)
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in data.get("categories", [])}
    names.update(class_names or {})
    all_images = [int(im["id"]) for im in data.get("images", [])]
    cats = sorted(int(c["id"]) for c in data.get("categories", [])) if category_ids is None else \
        [int(c) for c in category_ids]
    unknown = sorted(set(cats) - {int(c["id"]) for c in data.get("categories", [])})
    if unknown:
        raise ValueError(f"category ids {unknown[:20]} are not in the ground truth")
    images = all_images if image_ids is None else sorted({int(i) for i in image_ids})
    unknown = sorted(set(images) - set(all_images))
    if unknown:
        raise ValueError(f"image ids {unknown[:20]} are not in the ground truth")
    known_cats = set(names)
    bad_images = sorted({r["image_id"] for r in results} - set(all_images))
    bad_cats = sorted({r["category_id"] for r in results} - known_cats)
    if bad_images or bad_cats:
        raise ValueError(f"results do not match the ground truth: unknown image ids {bad_images[:20]}, "
                         f"unknown category ids {bad_cats[:20]}")
    class_of = {c: k for k, c in enumerate(cats)}
    wanted = set(images)
    anns_of: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for a in data.get("annotations", []):
        if a["image_id"] in wanted and a["category_id"] in class_of:
            anns_of[int(a["image_id"])].append(a)
    dets_of: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        if r["image_id"] in wanted and r["category_id"] in class_of:
            dets_of[int(r["image_id"])].append(r)

    gt_class, gt_ignored, det_class, det_score, det_gt, det_ignored = [], [], [], [], [], []
    per_image: list[ImageMatches] = []
    n_gt = n_det = 0
    for image_id in images:
        anns = anns_of.get(image_id, [])
        g_cls = np.array([class_of[a["category_id"]] for a in anns], np.int64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        difficult = np.array([bool(a.get("difficult", 0)) for a in anns], bool)
        g_ign = crowd | difficult
        g_box = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        # Per class, the max_dets best detections (stable: ties keep the results' order).
        kept: list[Mapping[str, Any]] = []
        by_class: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for r in dets_of.get(image_id, []):
            by_class[class_of[r["category_id"]]].append(r)
        for k in sorted(by_class):
            rs = by_class[k]
            order = np.argsort([-float(r["score"]) for r in rs], kind="stable")
            kept += [rs[i] for i in order[:max_dets]]
        d_cls = np.array([class_of[r["category_id"]] for r in kept], np.int64)
        d_score = np.array([float(r["score"]) for r in kept], np.float64)
        d_box = np.array([r["bbox"] for r in kept], np.float64).reshape(-1, 4)
        iou = box_iou_xywh(d_box, g_box, crowd)
        matched = np.full(len(kept), -1)
        d_ign = np.zeros(len(kept), bool)
        for k in np.unique(d_cls):
            di, gi = np.flatnonzero(d_cls == k), np.flatnonzero(g_cls == k)
            if not len(gi):
                continue
            m, ign = _greedy(iou[np.ix_(di, gi)], np.argsort(-d_score[di], kind="stable"),
                             np.argsort(g_ign[gi], kind="stable"), g_ign[gi], g_ign[gi], iou_thresh)
            matched[di] = np.where(m >= 0, gi[np.maximum(m, 0)] + n_gt, -1)
            d_ign[di] = ign
        per_image.append(ImageMatches(image_id, np.arange(n_det, n_det + len(kept)),
                                      np.arange(n_gt, n_gt + len(anns)), iou))
        gt_class.append(g_cls), gt_ignored.append(g_ign)
        det_class.append(d_cls), det_score.append(d_score), det_gt.append(matched), det_ignored.append(d_ign)
        n_gt, n_det = n_gt + len(anns), n_det + len(kept)

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return DetectionMatches(
        class_names=[names.get(c, str(c)) for c in cats], category_ids=cats, iou_thresh=float(iou_thresh),
        max_dets=max_dets, gt_class=cat(gt_class, np.int64), gt_ignored=cat(gt_ignored, bool),
        det_class=cat(det_class, np.int64), det_score=cat(det_score, np.float64),
        det_gt=cat(det_gt, np.int64), det_ignored=cat(det_ignored, bool), images=per_image)


def voc_to_coco(
    targets: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    plus_one: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """VOC-style targets and predictions in the common form (a COCO dict and COCO results).

    Images get ids ``1 .. N`` in order, categories the ids ``0 .. K-1`` of their labels; a
    ``difficult`` target becomes an annotation with ``difficult`` 1 (ignored, see the module).

    Args:
        targets: per image, ``boxes [G, 4]`` xyxy, ``labels [G]`` and optionally ``difficult [G]``.
        predictions: per image, ``boxes [D, 4]`` xyxy, ``labels [D]``, ``scores [D]``.
        class_names: ``K`` names.
        plus_one: the boxes are VOC's inclusive pixel indices: widths become ``x2 - x1 + 1``
            (the IoU then equals :func:`~detkit.evaluation.voc_eval.box_iou_voc`'s with
            ``plus_one=True``).

    Returns:
        ``(gt dict, results)``.
    """
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    one = 1.0 if plus_one else 0.0

    def widened(d: Mapping[str, Any]) -> dict[str, Any]:
        boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4).copy()
        boxes[:, 2:] += one
        return {**d, "boxes": boxes}

    images, annotations = [], []
    for i, target in enumerate(targets):
        t = widened({"boxes": target["boxes"], "labels": target["labels"]})
        image, anns = target_to_coco(t, i + 1, image_size=(1, 1))
        difficult = np.asarray(target.get("difficult", np.zeros(len(anns))), bool).reshape(-1)
        for ann, hard in zip(anns, difficult):
            ann["difficult"] = int(hard)
            ann["id"] = len(annotations) + 1
            annotations.append(ann)
        images.append(image)
    results = predictions_to_coco_results([widened(p) for p in predictions], list(range(1, len(targets) + 1)))
    categories = [{"id": k, "name": str(n)} for k, n in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}, results
