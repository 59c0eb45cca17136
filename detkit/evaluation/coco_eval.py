"""COCO evaluation through pycocotools: results json, the 12-number table, per-class AP.

detkit predictions are per-image dicts (``boxes`` xyxy absolute pixels, ``labels`` 0-based,
``scores``, optional ``masks [N, H, W]`` float probabilities). The COCO results format is one
dict per detection: ``{"image_id", "category_id", "score", "bbox": [x, y, w, h]}`` and for masks
``"segmentation": {"size": [H, W], "counts": str}`` (compressed RLE). This module converts at that
edge and leaves the evaluation itself to pycocotools (``COCOeval``), whose conventions are:

* IoU thresholds 0.50:0.05:0.95; AP is the mean over them of the 101-point interpolated precision
  (recall thresholds 0:0.01:1); AP50 / AP75 take one threshold.
* ``maxDets`` (1, 10, 100): only the highest-scoring detections of each image, up to that many,
  count. AP uses 100; AR is reported at 1, 10 and 100 detections per image.
* Areas small < 32^2 <= medium < 96^2 <= large, measured by the gt annotation's ``area`` field
  (the segment area in COCO files, not the box area).
* Crowd ground truths (``iscrowd=1``) are "ignore" regions: a detection matched to one is neither
  TP nor FP; IoU against a crowd region divides by the detection's area only.
* Boxes have continuous widths ``x2 - x1`` (no +1 pixel, unlike VOC).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detkit.data.coco import group_annotations_by_image

from .loop import check_finite_prediction

__all__ = [
    "COCO_BACKENDS",
    "COCO_STAT_NAMES",
    "IOU_TYPES",
    "CocoEvalResult",
    "check_finite_results",
    "check_results",
    "coco_from_records",
    "coco_from_targets",
    "coco_pr_curves",
    "encode_masks",
    "evaluate_coco",
    "format_per_class_table",
    "load_coco",
    "load_results",
    "per_class_ap",
    "predictions_to_coco_results",
    "read_results_json",
    "target_to_coco",
    "write_results_json",
]

IOU_TYPES = ("bbox", "segm", "keypoints")

COCO_BACKENDS = ("pycocotools", "faster_coco_eval")
"""What runs ``COCOeval``: pycocotools (the default and the reference) or faster-coco-eval (opt-in,
the ``fast-eval`` extra: a C++ evaluation that equals pycocotools on cocoapi's published table to
1e-12, tests/evaluation/test_coco_eval_backends.py)."""

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# ``COCOeval.stats`` of the "keypoints" iou type (OKS): no small-object range.
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
"""Names of ``COCOeval.stats`` in order: AP@[.5:.95], AP@.5, AP@.75, AP small/medium/large
(maxDets 100), AR at maxDets 1/10/100, AR small/medium/large (maxDets 100)."""


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Silence pycocotools' progress prints unless ``verbose``."""
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def load_coco(annotation_file: str | os.PathLike[str], verbose: bool = False) -> COCO:
    """Load a COCO annotation file into a pycocotools ``COCO`` object.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        DatasetError: two images share an id, or annotations name image ids no image has
            (pycocotools would merge the first and keep the second out of every image).
    """
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    with _quiet(verbose):
        coco = COCO(str(path))
    group_annotations_by_image(coco.dataset.get("images", []), coco.dataset.get("annotations", []), str(path))
    return coco


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """Binary masks ``[N, H, W]`` to COCO compressed RLEs with ``counts`` as ``str`` (json-ready).

    pycocotools' encoder reads column-major memory, hence the Fortran-ordered uint8 copy.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {list(masks.shape)}")
    if len(masks) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")  # bytes are not json-serialisable
    return rles


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def predictions_to_coco_results(
    predictions: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int],
    label_to_category_id: Mapping[int, int] | None = None,
    iou_types: Sequence[str] = ("bbox",),
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Convert per-image predictions to the COCO results format.

    Args:
        predictions: per image, ``boxes [N, 4]`` xyxy absolute pixels, ``labels [N]`` 0-based,
            ``scores [N]``, and ``masks [N, H, W]`` (probabilities, or ``[N, 1, H, W]``) when
            ``"segm"`` is asked for, ``keypoints [N, K, 3]`` for ``"keypoints"``.
        image_ids: the COCO image id of each prediction.
        label_to_category_id: 0-based label -> COCO category id; ``None`` maps a label to itself.
        iou_types: ``"bbox"``, ``"segm"`` and/or ``"keypoints"``; the fields each result carries.
        mask_threshold: a mask pixel is foreground where its probability is ``> mask_threshold``.

    Returns:
        One dict per detection with ``image_id``, ``category_id``, ``score``, ``bbox`` (xywh)
        and, for ``"segm"``, ``segmentation`` (RLE, counts as str). Plain Python numbers only.

    Raises:
        ValueError: a NaN or inf score or box (names the image id), mismatched lengths.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions but {len(image_ids)} image ids")
    for t in iou_types:
        if t not in IOU_TYPES:
            raise ValueError(f"unknown iou type {t!r}; expected one of {IOU_TYPES}")
    results: list[dict[str, Any]] = []
    for pred, image_id in zip(predictions, image_ids):
        boxes = _numpy(pred["boxes"]).astype(np.float64).reshape(-1, 4)
        labels = _numpy(pred["labels"]).astype(np.int64).reshape(-1)
        scores = _numpy(pred["scores"]).astype(np.float64).reshape(-1)
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
        check_finite_prediction({"boxes": boxes, "scores": scores}, image_id)
        xywh = boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]  # xyxy -> top-left + size, continuous widths
        rles: list[dict[str, Any]] | None = None
        if "segm" in iou_types:
            if pred.get("masks") is None:
                raise ValueError(f"image {image_id}: 'segm' evaluation needs 'masks' in the predictions")
            masks = _numpy(pred["masks"])
            if masks.ndim == 4:  # [N, 1, H, W] from a mask head
                masks = masks[:, 0]
            masks = masks.reshape((len(boxes),) + masks.shape[-2:])
            binary = masks > mask_threshold if masks.dtype != np.uint8 and masks.dtype != bool else masks
            rles = encode_masks(binary)
        keypoints = None
        if "keypoints" in iou_types:
            if pred.get("keypoints") is None:
                raise ValueError(f"image {image_id}: 'keypoints' evaluation needs 'keypoints' in the predictions")
            keypoints = _numpy(pred["keypoints"]).astype(np.float64).reshape(len(boxes), -1, 3)
        for k in range(len(boxes)):
            label = int(labels[k])
            if label_to_category_id is None:
                category_id = label
            elif label in label_to_category_id:
                category_id = int(label_to_category_id[label])
            else:
                raise KeyError(f"image {image_id}: label {label} has no COCO category id in label_to_category_id")
            res: dict[str, Any] = {
                "image_id": int(image_id),
                "category_id": category_id,
                "bbox": [float(v) for v in xywh[k]],
                "score": float(scores[k]),
            }
            if rles is not None:
                res["segmentation"] = rles[k]
            if keypoints is not None:  # COCO's flat [x, y, v] * K; the score is the box's
                res["keypoints"] = [float(v) for v in keypoints[k].reshape(-1)]
            results.append(res)
    return results


def write_results_json(results: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write COCO results to ``path`` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(list(results), f)
    return path


def read_results_json(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a COCO results json (a list of detection dicts).

    Raises:
        FileNotFoundError: naming the path.
        ValueError: the file does not hold a json list, or a result's score or box is not a
            finite number (:func:`check_finite_results`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO results file not found: {path}")
    with open(path) as f:
        results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(f"{path}: a COCO results file must hold a json list of detections")
    check_finite_results(results, str(path))
    return results


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_finite_results(results: Sequence[Mapping[str, Any]], source: str = "results") -> None:
    """Refuse results whose ``score`` or ``bbox`` is not a finite number.

    pycocotools scores NaN without complaint (all-NaN scores sort as a perfect ranking: AP 1.0),
    so a NaN, an inf, a string or a missing score is an error here, not a detection.

    Args:
        results: COCO result dicts.
        source: names them in the message (the results file).

    Raises:
        ValueError: one line naming ``source``, the first offending result (its index, image and
            category id) and the value, and how many results are bad.
    """
    bad = []
    for index, result in enumerate(results):
        score, bbox = result.get("score"), result.get("bbox")
        if not _is_finite_number(score):
            bad.append((index, f"score {score!r}"))
        elif bbox is not None and not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                                       and all(_is_finite_number(v) for v in bbox)):
            bad.append((index, f"bbox {bbox!r}"))
    if bad:
        index, what = bad[0]
        result = results[index]
        raise ValueError(
            f"{source}: result {index} (image_id {result.get('image_id')}, category_id "
            f"{result.get('category_id')}) has {what}; scores and boxes must be finite numbers "
            f"({len(bad)} of {len(results)} results are not)"
        )


def check_results(coco_gt: COCO, results: Sequence[Mapping[str, Any]]) -> None:
    """Check that results reference only image and category ids that the ground truth has.

    Raises:
        ValueError: naming the unknown image ids and/or category ids (up to 20 of each).
    """
    image_ids = {r["image_id"] for r in results}
    category_ids = {r["category_id"] for r in results}
    bad_images = sorted(image_ids - set(coco_gt.getImgIds()))
    bad_categories = sorted(category_ids - set(coco_gt.getCatIds()))
    problems = []
    if bad_images:
        more = f" (and {len(bad_images) - 20} more)" if len(bad_images) > 20 else ""
        problems.append(f"unknown image ids {bad_images[:20]}{more}")
    if bad_categories:
        more = f" (and {len(bad_categories) - 20} more)" if len(bad_categories) > 20 else ""
        problems.append(f"unknown category ids {bad_categories[:20]}{more}")
    if problems:
        raise ValueError("results do not match the ground truth: " + "; ".join(problems))


def load_results(
    coco_gt: COCO, results: str | os.PathLike[str] | Sequence[Mapping[str, Any]], verbose: bool = False
) -> COCO:
    """Load results (a json path or a list of dicts) against ``coco_gt``, checking their ids.

    Unlike ``COCO.loadRes``, an empty result list is allowed (every AP is then 0 where there is
    ground truth).

    Raises:
        FileNotFoundError: a results path that does not exist (named).
        ValueError: results referencing image or category ids absent from the ground truth, or
            with a score or box that is not a finite number.
    """
    if isinstance(results, (str, os.PathLike)):
        results = read_results_json(results)
    results = [dict(r) for r in results]
    check_finite_results(results)
    check_results(coco_gt, results)
    if not results:
        coco_dt = COCO()
        coco_dt.dataset = {"images": copy.deepcopy(coco_gt.dataset.get("images", [])),
                           "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
                           "annotations": []}
        with _quiet(verbose):
            coco_dt.createIndex()
        return coco_dt
    with _quiet(verbose):
        return coco_gt.loadRes(results)


def target_to_coco(
    target: Mapping[str, Any],
    image_id: int,
    label_to_category_id: Mapping[int, int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One target dict as a COCO image record and its annotations (without annotation ids).

    Args:
        target: ``boxes [G, 4]`` xyxy pixels, ``labels [G]`` 0-based, optionally
            ``area [G]`` (the annotation file's areas, NaN where unknown), ``masks [G, H, W]``
            {0, 1}, ``keypoints [G, K, 3]`` ``(x, y, visibility)``, ``iscrowd [G]`` and
            ``orig_size (H, W)``.
        image_id: the COCO image id.
        label_to_category_id: label -> category id; ``None`` maps a label to itself.
        image_size: ``(H, W)``; when ``None`` it is taken from ``masks``, else ``orig_size``, else
            the extent of the boxes (enough for bbox evaluation, which ignores image size).

    Returns:
        ``(image, annotations)``. An annotation's ``area`` (what the small / medium / large
        ranges measure) is, in this order: the target's ``area`` where finite (a COCO reader's
        copy of the file's field, the segment area, so the stats equal the file's exactly), its
        mask area where masks are given, else its box area. Masks are stored as compressed RLE.
    """
    boxes = _numpy(target["boxes"]).astype(np.float64).reshape(-1, 4)
    labels = _numpy(target["labels"]).astype(np.int64).reshape(-1)
    crowd = _numpy(target["iscrowd"]).reshape(-1) if target.get("iscrowd") is not None else np.zeros(len(boxes))
    masks = _numpy(target["masks"]) if target.get("masks") is not None else None
    areas = (_numpy(target["area"]).astype(np.float64).reshape(-1) if target.get("area") is not None
             else np.full(len(boxes), np.nan))
    if len(areas) != len(boxes):
        raise ValueError(f"image {image_id}: {len(areas)} areas for {len(boxes)} boxes")
    size = image_size
    if size is None and masks is not None:
        size = tuple(masks.shape[-2:])
    if size is None and target.get("orig_size") is not None:
        size = tuple(int(v) for v in _numpy(target["orig_size"]).reshape(-1)[:2])
    if size is None:
        size = (int(math.ceil(boxes[:, 3].max())) if len(boxes) else 1,
                int(math.ceil(boxes[:, 2].max())) if len(boxes) else 1)
    image = {"id": int(image_id), "height": int(size[0]), "width": int(size[1])}
    rles = encode_masks(masks.reshape((-1,) + masks.shape[-2:]) != 0) if masks is not None else None
    keypoints = (_numpy(target["keypoints"]).astype(np.float64).reshape(len(boxes), -1, 3)
                 if target.get("keypoints") is not None else None)
    annotations = []
    for k in range(len(boxes)):
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        label = int(labels[k])
        if label_to_category_id is not None and label not in label_to_category_id:
            raise KeyError(f"image {image_id}: target label {label} has no COCO category id")
        ann: dict[str, Any] = {
            "image_id": int(image_id),
            "category_id": label if label_to_category_id is None else int(label_to_category_id[label]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "iscrowd": int(crowd[k]),
        }
        if rles is not None:
            ann["segmentation"] = rles[k]
        if keypoints is not None:
            ann["keypoints"] = [float(v) for v in keypoints[k].reshape(-1)]
            ann["num_keypoints"] = int((keypoints[k, :, 2] > 0).sum())
        if np.isfinite(areas[k]):
            ann["area"] = float(areas[k])
        elif rles is not None:
            ann["area"] = float(mask_util.area(rles[k]))
        else:
            ann["area"] = (x2 - x1) * (y2 - y1)
        annotations.append(ann)
    return image, annotations


def coco_from_records(
    images: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]],
    categories: Sequence[Mapping[str, Any]],
) -> COCO:
    """A ``COCO`` object from image, annotation and category records; annotation ids are set to
    1, 2, ... (``COCOeval`` treats id 0 as "unmatched", so ids must not start at 0)."""
    if len({im["id"] for im in images}) != len(images):
        raise ValueError("image ids must be unique")
    coco = COCO()
    coco.dataset = {
        "images": [dict(im) for im in images],
        "annotations": [dict(a, id=i + 1) for i, a in enumerate(annotations)],
        "categories": [dict(c) for c in categories],
    }
    with _quiet(False):
        coco.createIndex()
    return coco


def coco_from_targets(
    targets: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int],
    categories: Sequence[Mapping[str, Any]],
    label_to_category_id: Mapping[int, int] | None = None,
    image_sizes: Sequence[tuple[int, int] | None] | None = None,
) -> COCO:
    """Build a COCO ground truth in memory from per-image target dicts.

    Args:
        targets: per image, see :func:`target_to_coco`.
        image_ids: COCO image id of each target (unique).
        categories: COCO category dicts (``id``, ``name``).
        label_to_category_id: label -> category id; ``None`` maps a label to itself.
        image_sizes: ``(H, W)`` of each image, or ``None`` (see :func:`target_to_coco`).

    Returns:
        A ``COCO`` object.
    """
    if len(targets) != len(image_ids):
        raise ValueError(f"{len(targets)} targets but {len(image_ids)} image ids")
    images, annotations = [], []
    for i, (target, image_id) in enumerate(zip(targets, image_ids)):
        size = image_sizes[i] if image_sizes is not None else None
        image, anns = target_to_coco(target, image_id, label_to_category_id, size)
        images.append(image)
        annotations.extend(anns)
    return coco_from_records(images, annotations, categories)


def per_class_ap(coco_eval: COCOeval, iou: float | None = None) -> dict[int, float]:
    """Per-category AP from an accumulated ``COCOeval`` (area "all", the largest maxDets).

    Args:
        coco_eval: after ``evaluate()`` and ``accumulate()``.
        iou: one IoU threshold (e.g. 0.5), or ``None`` for the mean over 0.50:0.95.

    Returns:
        category id -> AP; NaN for a category with no ground truth in the evaluated images
        (pycocotools marks its precision -1).
    """
    precision = coco_eval.eval["precision"]  # [T IoUs, R recalls, K categories, A areas, M maxDets]
    if iou is not None:
        t = np.flatnonzero(np.isclose(coco_eval.params.iouThrs, iou))
        if not len(t):
            raise ValueError(f"IoU {iou} is not among the evaluated thresholds {coco_eval.params.iouThrs}")
        precision = precision[t]
    out = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[int(cat_id)] = float(np.mean(p)) if p.size else math.nan
    return out


def coco_pr_curves(
    coco_eval: COCOeval, iou: float = 0.5, names: Mapping[int, str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-category precision-recall curves at one IoU (area "all", largest maxDets).

    Returns:
        name -> ``(recall [101], precision [101])``, pycocotools' interpolated precision at its
        recall thresholds 0:0.01:1; categories without ground truth are left out.
    """
    t = np.flatnonzero(np.isclose(coco_eval.params.iouThrs, iou))
    if not len(t):
        raise ValueError(f"IoU {iou} is not among the evaluated thresholds {coco_eval.params.iouThrs}")
    recall = np.asarray(coco_eval.params.recThrs, dtype=np.float64)
    curves = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = coco_eval.eval["precision"][t[0], :, k, 0, -1]
        if (p > -1).any():
            name = names.get(cat_id, str(cat_id)) if names else str(cat_id)
            curves[name] = (recall, np.where(p > -1, p, 0.0))
    return curves


class CocoEvalResult:
    """What :func:`evaluate_coco` returns.

    Attributes:
        iou_type: ``"bbox"`` or ``"segm"``.
        stats: the 12 ``COCOeval.stats`` by name (:data:`COCO_STAT_NAMES`), -1 where undefined.
        per_class: category name -> AP@[.5:.95] (NaN: no ground truth).
        table: pycocotools' printed summary (the standard 12-line table).
        coco_eval: the ``COCOeval`` object, for curves and details.
    """

    def __init__(self, iou_type: str, coco_eval: COCOeval, table: str, names: Mapping[int, str]) -> None:
        self.iou_type = iou_type
        self.coco_eval = coco_eval
        self.table = table
        stat_names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else COCO_STAT_NAMES
        self.stats = {n: float(v) for n, v in zip(stat_names, coco_eval.stats)}
        self.names = dict(names)
        self.per_class = {self.names.get(c, str(c)): ap for c, ap in per_class_ap(coco_eval).items()}

    def metrics(self, per_class: bool = True) -> dict[str, float]:
        """Flat metrics: ``"bbox/AP"``, ``"bbox/AP50"`` ... and ``"bbox/AP-<name>"`` per class."""
        out = {f"{self.iou_type}/{n}": v for n, v in self.stats.items()}
        if per_class:
            out.update({f"{self.iou_type}/AP-{n}": v for n, v in self.per_class.items()})
        return out


def evaluate_coco(
    coco_gt: COCO,
    results: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    iou_type: str = "bbox",
    image_ids: Sequence[int] | None = None,
    class_names: Mapping[int, str] | None = None,
    verbose: bool = False,
    category_ids: Sequence[int] | None = None,
    backend: str = "pycocotools",
    keypoint_sigmas: Sequence[float] | None = None,
) -> CocoEvalResult:
    """Run ``COCOeval`` on results against a ground truth.

    Args:
        coco_gt: the ground truth (see :func:`load_coco`, :func:`coco_from_targets`).
        results: COCO results, a list of dicts or a json path.
        iou_type: ``"bbox"``, ``"segm"`` or ``"keypoints"`` (OKS; ground truths with no labelled
            keypoint are ignored, as pycocotools does).
        image_ids: images to evaluate; ``None`` evaluates every image of the ground truth
            (images without detections count: their gts are misses).
        class_names: category id -> name for the per-class table; default the gt's names.
        verbose: let pycocotools print its progress.
        category_ids: categories to evaluate; ``None`` evaluates every category of the ground
            truth (a model trained on a subset of classes should name that subset, else the other
            categories' ground truths count as misses).
        backend: ``"pycocotools"`` (default, the reference) or ``"faster_coco_eval"`` (the same
            numbers, faster on large sets; needs the ``faster-coco-eval`` package). The results are
            loaded by pycocotools either way, so both evaluate the same detections.
        keypoint_sigmas: the OKS sigma of each keypoint (``"keypoints"``); ``None``: the gt
            categories' ``keypoint_sigmas`` when one has them, else pycocotools' 17 COCO-person
            sigmas.

    Returns:
        The stats, per-class AP and the printed table (pycocotools' 12 lines).

    Raises:
        ValueError: an unknown ``iou_type`` or ``backend``, or a backend that is not installed.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"unknown iou type {iou_type!r}; expected one of {IOU_TYPES}")
    if backend not in COCO_BACKENDS:
        raise ValueError(f"unknown COCO evaluation backend {backend!r}; expected one of {COCO_BACKENDS}")
    if isinstance(results, (str, os.PathLike)):
        results = read_results_json(results)
    if iou_type == "segm":
        missing = sum("segmentation" not in r for r in results)
        if missing:
            raise ValueError(f"'segm' evaluation needs 'segmentation' in every result; {missing} lack it")
        # Without "bbox", loadRes takes a result's area from its mask; with it, from the box, and
        # COCOeval uses that area to ignore unmatched detections outside an area range.
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    coco_dt = load_results(coco_gt, results, verbose=verbose)
    coco_eval = (COCOeval(coco_gt, coco_dt, iou_type) if backend == "pycocotools"
                 else _faster_coco_eval(coco_gt, coco_dt, iou_type, verbose))
    if iou_type == "keypoints":
        _set_keypoint_sigmas(coco_eval, coco_gt, results, keypoint_sigmas)
    if image_ids is not None:
        unknown = sorted(set(image_ids) - set(coco_gt.getImgIds()))
        if unknown:
            raise ValueError(f"image ids not in the ground truth: {unknown[:20]}")
        coco_eval.params.imgIds = sorted(set(int(i) for i in image_ids))
    if category_ids is not None:
        unknown = sorted(set(category_ids) - set(coco_gt.getCatIds()))
        if unknown:
            raise ValueError(f"category ids not in the ground truth: {unknown[:20]}")
        coco_eval.params.catIds = sorted(set(int(c) for c in category_ids))
    with _quiet(verbose):
        coco_eval.evaluate()
        coco_eval.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        coco_eval.summarize()
    if backend != "pycocotools":  # its 12 lines (faster-coco-eval adds AR@.5 and AR@.75)
        lines = [line for line in table.getvalue().splitlines() if line.startswith(" Average")]
        table = io.StringIO("\n".join(lines[:len(COCO_STAT_NAMES)]) + "\n")
    if verbose:
        print(table.getvalue(), end="")
    names = {c["id"]: c["name"] for c in coco_gt.loadCats(coco_gt.getCatIds())}
    names.update(class_names or {})
    return CocoEvalResult(iou_type, coco_eval, table.getvalue().rstrip("\n"), names)


def _faster_coco_eval(coco_gt: COCO, coco_dt: COCO, iou_type: str, verbose: bool) -> Any:
    """A faster-coco-eval ``COCOeval_faster`` on the very datasets pycocotools loaded (ground
    truth and results, areas and boxes included), with pycocotools' parameters."""
    try:
        import faster_coco_eval
    except ImportError:
        raise ValueError("COCO evaluation backend 'faster_coco_eval' needs the faster-coco-eval package "
                         "(pip install 'detkit[fast-eval]')") from None
    copies = []
    for source in (coco_gt, coco_dt):
        target = faster_coco_eval.COCO()
        target.dataset = source.dataset
        with _quiet(verbose):
            target.createIndex()
        copies.append(target)
    return faster_coco_eval.COCOeval_faster(copies[0], copies[1], iou_type, print_function=print)


def _set_keypoint_sigmas(coco_eval: Any, coco_gt: COCO, results: Sequence[Mapping[str, Any]],
                         keypoint_sigmas: Sequence[float] | None) -> None:
    """Set ``params.kpt_oks_sigmas`` (see :func:`evaluate_coco`) and check that they fit the data."""
    if keypoint_sigmas is None:
        keypoint_sigmas = next((c["keypoint_sigmas"] for c in coco_gt.dataset.get("categories", [])
                                if c.get("keypoint_sigmas") is not None), None)
    if keypoint_sigmas is not None:
        coco_eval.params.kpt_oks_sigmas = np.asarray(keypoint_sigmas, dtype=np.float64)
    count = len(coco_eval.params.kpt_oks_sigmas)
    for kind, records in (("ground truth", coco_gt.dataset.get("annotations", [])), ("result", results)):
        bad = next((r for r in records if "keypoints" in r and len(r["keypoints"]) != 3 * count), None)
        if bad is not None:
            raise ValueError(f"'keypoints' evaluation with {count} keypoint sigmas: a {kind} has "
                             f"{len(bad['keypoints']) // 3} keypoints (give keypoint_sigmas, one per keypoint)")
    missing = sum("keypoints" not in r for r in coco_gt.dataset.get("annotations", []))
    if missing:
        raise ValueError(f"'keypoints' evaluation needs 'keypoints' in every ground truth; {missing} lack them")


def format_per_class_table(per_class: Mapping[str, float], columns: int = 3, title: str = "AP") -> str:
    """Per-class AP as a text table, ``columns`` (name, AP) pairs per row; NaN shown as n/a.

    AP is printed as pycocotools prints it, a fraction in [0, 1] (3 decimals); the header says so.
    """
    title = f"{title} [0-1]"
    items = [(n, "n/a" if math.isnan(a) else f"{a:.3f}") for n, a in per_class.items()]
    if not items:
        return ""
    name_w = max(len("category"), *(len(n) for n, _ in items))
    val_w = max(len(title), *(len(v) for _, v in items))
    cell = f"{{:<{name_w}}} | {{:>{val_w}}}"
    cols = min(columns, len(items))
    header = " | ".join([cell.format("category", title)] * cols)
    lines = [header, "-" * len(header)]
    for start in range(0, len(items), cols):
        lines.append(" | ".join(cell.format(n, v) for n, v in items[start:start + cols]))
    return "\n".join(lines)
