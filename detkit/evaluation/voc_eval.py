"""PASCAL VOC detection mAP, written in detkit (no devkit code copied).

Conventions pinned here (each one changes the number, so each is a parameter or documented):

* **Matching.** Per class, detections of all images are sorted by decreasing confidence with a
  *stable* sort, so ties keep their input order (the order of the images, then of the detections
  within an image). Greedily, each detection takes the ground truth of its image and class with
  the highest IoU (difficult ones included). If that IoU is ``>= iou_threshold`` (the official
  MATLAB devkit's ``ovmax >= minoverlap``; py-faster-rcnn's port uses ``>``):

  - the gt is *difficult*: the detection is ignored, neither TP nor FP;
  - the gt is not yet taken: TP, and the gt is taken;
  - the gt is already taken (a duplicate): FP.

  Otherwise the detection is a FP. Difficult gts do not count in the number of positives.
* **+1 pixel.** VOC annotations are 1-based inclusive pixel indices, so the devkit measures a box
  as ``x2 - x1 + 1`` wide, and an intersection as ``min(x2) - max(x1) + 1`` (empty unless both
  sides are ``> 0``). ``plus_one=True`` (the default for boxes in VOC's own format: the xml
  values, the Object-Detection-Metrics text files) uses that; ``False`` uses the continuous
  ``x2 - x1`` of the rest of detkit (and of COCO). detkit's VOC reader already maps the indices
  to continuous boxes (``x1 = xmin - 1, x2 = xmax``), and continuous IoU on those equals the +1
  IoU on the indices exactly, so evaluating detkit targets and predictions needs ``False``
  (:class:`~detkit.evaluation.voc_evaluator.VOCEvaluator`'s default); ``True`` there would add a
  second pixel.
* **Interpolation.** ``"voc07"``: the VOC2007 11-point AP, the mean over recall thresholds
  ``t in {0, 0.1, ..., 1}`` of the best precision at recall ``>= t`` (0 where none).
  ``"voc12"``: the all-point AP of VOC2010 onwards, the area under the precision envelope
  (precision made monotonically non-increasing from the right), summed where recall changes.
* **Classes with no ground truth.** The devkit divides by zero positives (recall NaN; its Python
  ports then report AP 0 or NaN depending on the version). detkit reports such a class as
  ``NaN`` and leaves it out of the mean; a class with ground truth but no detections scores 0.
  The mean over no classes at all is ``NaN``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .loop import check_finite_prediction

__all__ = [
    "VOC_METRICS",
    "VOC_TXT_LAYOUTS",
    "ClassPR",
    "VOCResult",
    "average_precision",
    "box_iou_voc",
    "format_voc_table",
    "match_detections",
    "read_txt_dirs",
    "voc_evaluate",
]

VOC_METRICS = ("voc07", "voc12")
"""The interpolations :func:`average_precision` knows: 11-point (VOC2007) and all-point (VOC2010+)."""


def box_iou_voc(boxes1: np.ndarray, boxes2: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """IoU between two sets of xyxy boxes, with or without the VOC +1 pixel convention.

    Args:
        boxes1: ``[N, 4]`` xyxy in absolute pixels.
        boxes2: ``[M, 4]`` xyxy in absolute pixels.
        plus_one: measure widths and heights as ``x2 - x1 + 1`` (VOC inclusive pixel indices).

    Returns:
        ``[N, M]`` float64 IoU; 0 where boxes do not overlap (a positive-width intersection on
        both axes is needed, as in the devkit).
    """
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    area1 = (b1[:, 2] - b1[:, 0] + one) * (b1[:, 3] - b1[:, 1] + one)
    area2 = (b2[:, 2] - b2[:, 0] + one) * (b2[:, 3] - b2[:, 1] + one)
    iw = np.minimum(b1[:, None, 2], b2[None, :, 2]) - np.maximum(b1[:, None, 0], b2[None, :, 0]) + one
    ih = np.minimum(b1[:, None, 3], b2[None, :, 3]) - np.maximum(b1[:, None, 1], b2[None, :, 1]) + one
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = area1[:, None] + area2[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def average_precision(recall: np.ndarray, precision: np.ndarray, metric: str = "voc12") -> float:
    """AP from a precision-recall curve, VOC style.

    Args:
        recall: ``[D]`` cumulative recall after each detection (non-decreasing).
        precision: ``[D]`` cumulative precision after each detection.
        metric: ``"voc07"`` for the 11-point interpolation (mean over recall thresholds
            0, 0.1, ..., 1 of the highest precision at a recall ``>=`` the threshold), ``"voc12"``
            for the all-point area under the monotone precision envelope.

    Returns:
        AP in [0, 1]; 0 for an empty curve.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if metric == "voc07":
        # 11 thresholds 0:0.1:1 computed as k * 0.1, like the common Python ports (py-faster-rcnn,
        # detectron2, Object-Detection-Metrics), so e.g. the "0.3" threshold is
        # 0.30000000000000004 and a recall of exactly 3/10 does not reach it. A threshold that no
        # recall reaches contributes 0.
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = recall >= t
            ap += (precision[reached].max() if reached.any() else 0.0) / 11.0
        return float(ap)
    if metric == "voc12":
        # Sentinels: recall runs from 0 to 1, precision ends at 0 so the envelope closes.
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        # Envelope: each precision becomes the highest precision at any larger recall.
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))
    raise ValueError(f"unknown VOC metric {metric!r}; expected one of {VOC_METRICS}")


@dataclass
class ClassPR:
    """The matched detections of one class, ordered by decreasing confidence.

    Attributes:
        num_gt: positives (non-difficult ground truths).
        scores: ``[D]`` confidences of the detections that count (ignored ones dropped).
        tp: ``[D]`` bool, true positive flags in that order (the rest are false positives).
        num_ignored: detections matched to a difficult ground truth (neither TP nor FP).
    """

    num_gt: int
    scores: np.ndarray
    tp: np.ndarray
    num_ignored: int = 0

    @property
    def recall(self) -> np.ndarray:
        """``[D]`` cumulative recall; NaN everywhere when the class has no ground truth."""
        cum_tp = np.cumsum(self.tp, dtype=np.float64)
        if self.num_gt == 0:
            return np.full_like(cum_tp, np.nan)
        return cum_tp / self.num_gt

    @property
    def precision(self) -> np.ndarray:
        """``[D]`` cumulative precision, TP / (TP + FP)."""
        cum_tp = np.cumsum(self.tp, dtype=np.float64)
        return cum_tp / np.arange(1, len(cum_tp) + 1, dtype=np.float64)

    def ap(self, metric: str = "voc12") -> float:
        """AP with the given interpolation; NaN when the class has no ground truth."""
        if self.num_gt == 0:
            return math.nan
        return average_precision(self.recall, self.precision, metric)


def match_detections(
    gt_boxes: Sequence[np.ndarray],
    gt_difficult: Sequence[np.ndarray],
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    plus_one: bool = True,
) -> ClassPR:
    """Greedy VOC matching of one class over a set of images (see the module docstring).

    Args:
        gt_boxes: per image, ``[G_i, 4]`` xyxy ground truths of this class.
        gt_difficult: per image, ``[G_i]`` bool difficult flags.
        det_boxes: per image, ``[D_i, 4]`` xyxy detections of this class.
        det_scores: per image, ``[D_i]`` confidences.
        iou_threshold: a detection matches when its best IoU is ``>=`` this.
        plus_one: use the VOC +1 pixel convention in the IoU.

    Returns:
        The TP flags of the counted detections in decreasing-confidence order.
    """
    num_images = len(gt_boxes)
    if not (len(gt_difficult) == len(det_boxes) == len(det_scores) == num_images):
        raise ValueError("match_detections needs the same number of images in every argument")
    difficult = [np.asarray(d, dtype=bool).reshape(-1) for d in gt_difficult]
    num_gt = int(sum(int((~d).sum()) for d in difficult))

    # Flatten detections of all images, keeping (image, box) input order for stable ties.
    counts = [len(np.asarray(s).reshape(-1)) for s in det_scores]
    if sum(counts) == 0:
        return ClassPR(num_gt, np.zeros(0), np.zeros(0, dtype=bool))
    scores = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in det_scores])
    image_of = np.repeat(np.arange(num_images), counts)
    order = np.argsort(-scores, kind="stable")

    # IoU of each detection with every gt of its image, and the best one (vectorised per image).
    best_iou = np.zeros(len(scores))
    best_gt = np.full(len(scores), -1)
    start = 0
    for i, c in enumerate(counts):
        gts = np.asarray(gt_boxes[i], dtype=np.float64).reshape(-1, 4)
        if c and len(gts):
            iou = box_iou_voc(np.asarray(det_boxes[i]).reshape(-1, 4), gts, plus_one)
            best_gt[start:start + c] = iou.argmax(axis=1)  # first gt on ties, like max() in the devkit
            best_iou[start:start + c] = iou.max(axis=1)
        start += c

    # The greedy pass is sequential by nature: whether a gt is taken depends on earlier detections.
    taken = [np.zeros(len(d), dtype=bool) for d in difficult]
    tp = np.zeros(len(scores), dtype=bool)
    keep = np.ones(len(scores), dtype=bool)
    for d in order:
        g = best_gt[d]
        if g < 0 or best_iou[d] < iou_threshold:
            continue  # FP: no gt overlaps enough
        img = image_of[d]
        if difficult[img][g]:
            keep[d] = False  # matched a difficult gt: neither TP nor FP
        elif not taken[img][g]:
            tp[d] = True
            taken[img][g] = True
        # else: a duplicate detection of a taken gt: FP
    order = order[keep[order]]
    return ClassPR(num_gt, scores[order], tp[order], num_ignored=int((~keep).sum()))


@dataclass
class VOCResult:
    """VOC evaluation of a set of classes.

    Attributes:
        class_names: one name per label.
        iou_threshold: the IoU a match needs.
        plus_one: whether the +1 pixel convention was used.
        curves: per label, the matched detections (``ClassPR``).
        ap: per metric (``"voc07"``, ``"voc12"``), per-class AP (NaN for classes without gt).
    """

    class_names: list[str]
    iou_threshold: float
    plus_one: bool
    curves: list[ClassPR]
    ap: dict[str, list[float]] = field(default_factory=dict)

    def mean_ap(self, metric: str) -> float:
        """Mean AP over classes that have ground truth; NaN when none has."""
        values = [a for a in self.ap[metric] if not math.isnan(a)]
        return float(np.mean(values)) if values else math.nan

    def metrics(self, per_class: bool = True) -> dict[str, float]:
        """Flat metrics: ``"voc07/mAP@0.5"``, ``"voc12/mAP@0.5"`` and ``"voc07/AP@0.5-<name>"``."""
        iou = f"{self.iou_threshold:g}"
        out: dict[str, float] = {}
        for metric, aps in self.ap.items():
            out[f"{metric}/mAP@{iou}"] = self.mean_ap(metric)
            if per_class:
                for name, a in zip(self.class_names, aps):
                    out[f"{metric}/AP@{iou}-{name}"] = a
        return out


def voc_evaluate(
    targets: Sequence[Mapping[str, object]],
    predictions: Sequence[Mapping[str, object]],
    class_names: Sequence[str] | int,
    iou_threshold: float = 0.5,
    plus_one: bool = True,
    metrics: Sequence[str] = VOC_METRICS,
) -> VOCResult:
    """VOC mAP of per-image predictions against per-image targets.

    Args:
        targets: per image, ``boxes [G, 4]`` xyxy pixels, ``labels [G]`` 0-based and optionally
            ``difficult [G]`` bool (absent: none difficult). Tensors or arrays.
        predictions: per image (same order), ``boxes [D, 4]``, ``labels [D]``, ``scores [D]``.
        class_names: names of the classes, or their number (names are then ``"0"``, ``"1"``...).
        iou_threshold: IoU a match needs (``>=``); 0.5 in VOC.
        plus_one: VOC +1 pixel widths (default on: boxes in VOC's 1-based inclusive pixel
            indices; pass ``False`` for detkit's continuous boxes, see the module docstring).
        metrics: which interpolations to compute, from :data:`VOC_METRICS`.

    Returns:
        The per-class curves and APs.

    Raises:
        ValueError: a label outside the classes, a NaN or inf score or box (naming the image's
            index), mismatched lengths.
    """
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    for m in metrics:
        if m not in VOC_METRICS:
            raise ValueError(f"unknown VOC metric {m!r}; expected one of {VOC_METRICS}")
    names = [str(i) for i in range(class_names)] if isinstance(class_names, int) else list(class_names)

    def arr(d: Mapping[str, object], key: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        value = d.get(key)
        if value is None:
            return np.zeros(shape, dtype=dtype)
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()  # type: ignore[union-attr]
        return np.asarray(value, dtype=dtype).reshape((-1,) + shape[1:])

    gts = [(arr(t, "boxes", (0, 4), np.float64), arr(t, "labels", (0,), np.int64)) for t in targets]
    diff = [arr(t, "difficult", (0,), bool) if t.get("difficult") is not None
            else np.zeros(len(g[1]), dtype=bool) for t, g in zip(targets, gts)]
    dets = [(arr(p, "boxes", (0, 4), np.float64), arr(p, "labels", (0,), np.int64),
             arr(p, "scores", (0,), np.float64)) for p in predictions]
    for i, ((gb, gl), (db, dl, ds)) in enumerate(zip(gts, dets)):
        for what, labels in (("target", gl), ("prediction", dl)):
            bad = labels[(labels < 0) | (labels >= len(names))]
            if len(bad):
                raise ValueError(f"image {i}: {what} label {int(bad[0])} outside [0, {len(names)})")
        check_finite_prediction({"boxes": db, "scores": ds}, i)
        if not np.isfinite(gb).all():
            raise ValueError(f"image {i}: target box {int(np.flatnonzero(~np.isfinite(gb).all(axis=1))[0])} "
                             "is not finite")

    curves = []
    for c in range(len(names)):
        curves.append(match_detections(
            [b[l == c] for b, l in gts],
            [d[l == c] for d, (_, l) in zip(diff, gts)],
            [b[l == c] for b, l, _ in dets],
            [s[l == c] for _, l, s in dets],
            iou_threshold=iou_threshold,
            plus_one=plus_one,
        ))
    result = VOCResult(names, float(iou_threshold), plus_one, curves)
    for m in metrics:
        result.ap[m] = [curve.ap(m) for curve in curves]
    return result


_METRIC_TITLES = {"voc07": "VOC07 11-point", "voc12": "VOC12 all-point"}


def format_voc_table(result: VOCResult) -> str:
    """A text table: one row per class (gt count, detections, AP per metric), then the mean.

    AP is a fraction in [0, 1] (4 decimals), as everywhere in detkit's tables. The header names the
    IoU threshold and whether the +1 pixel convention was used.
    """
    metrics = list(result.ap)
    convention = ("+1 pixel widths (boxes as VOC's inclusive pixel indices)" if result.plus_one
                  else "continuous widths x2 - x1 (no +1)")
    lines = [f"VOC AP (a fraction in [0, 1]) @ IoU >= {result.iou_threshold:g}, {convention}"]
    width = max([len("class"), len("mean")] + [len(n) for n in result.class_names])
    header = f"{'class':<{width}}  {'#gt':>5}  {'#det':>5}" + "".join(
        f"  {_METRIC_TITLES[m]:>15}" for m in metrics)
    lines += [header, "-" * len(header)]
    for c, name in enumerate(result.class_names):
        curve = result.curves[c]
        row = f"{name:<{width}}  {curve.num_gt:>5}  {len(curve.tp) + curve.num_ignored:>5}"
        for m in metrics:
            a = result.ap[m][c]
            row += f"  {'n/a (no gt)' if math.isnan(a) else f'{a:.4f}':>15}"
        lines.append(row)
    lines.append("-" * len(header))
    row = f"{'mean':<{width}}  {'':>5}  {'':>5}"
    for m in metrics:
        mean = result.mean_ap(m)
        row += f"  {'n/a' if math.isnan(mean) else f'{mean:.4f}':>15}"
    lines.append(row)
    return "\n".join(lines)


VOC_TXT_LAYOUTS = {"xywh": "left top width height", "xyxy": "left top right bottom"}
"""Box columns of the text format :func:`read_txt_dirs` reads, after ``class`` (and ``confidence``
in detection files): Object-Detection-Metrics' ``xywh`` (its default) or ``xyxy`` (as the common
``class confidence left top right bottom`` files write)."""

_SUSPICION_MIN_BOXES = 10  # fewer boxes prove nothing about a layout


def _box(raw: Sequence[float], layout: str) -> list[float]:
    x, y, a, b = raw
    return [x, y, x + a, y + b] if layout == "xywh" else [x, y, a, b]


def _mean_best_iou(gt_rows: list, det_rows: list, gt_layout: str, det_layout: str) -> float:
    """Mean over detections of the best IoU with a same-class gt of their image (0 without one)."""
    total, count = 0.0, 0
    for gts, dets in zip(gt_rows, det_rows):
        for cls in {r[0] for r in dets}:
            d = np.array([_box(r[2], det_layout) for r in dets if r[0] == cls], dtype=np.float64)
            g = np.array([_box(r[2], gt_layout) for r in gts if r[0] == cls], dtype=np.float64).reshape(-1, 4)
            count += len(d)
            if len(g):
                total += float(box_iou_voc(d, g, plus_one=False).max(axis=1).sum())
    return total / count if count else 0.0


def _looks_xyxy(boxes: list[list[float]]) -> bool:
    """Every box has ``width > left`` and ``height > top``, as ``left top right bottom`` rows always
    do and ``left top width height`` rows of objects spread over an image rarely all do."""
    return len(boxes) >= _SUSPICION_MIN_BOXES and all(a > x and b > y for x, y, a, b in boxes)


def _check_layouts(gt_rows: list, det_rows: list, gt_dir: Path, det_dir: Path, layouts: tuple[str, str],
                   named: tuple[bool, bool]) -> None:
    """Evidence that the files are in another layout than the one read: an error when the layout
    was left to its default (name it to go on), a warning when it was named."""
    problems = []
    gt_layout, det_layout = layouts
    for which, (folder, rows, box_layout, what) in enumerate(
            ((gt_dir, gt_rows, gt_layout, "ground-truth"), (det_dir, det_rows, det_layout, "detection"))):
        boxes = [r[2] for file_rows in rows for r in file_rows]
        if box_layout == "xywh" and _looks_xyxy(boxes):
            problems.append((which, (f"{folder}: all {len(boxes)} {what} boxes have width > left and height > top, "
                                     "as 'left top right bottom' rows always do: is their layout xyxy?")))
    if sum(len(rows) for rows in det_rows) >= _SUSPICION_MIN_BOXES:
        other = "xyxy" if det_layout == "xywh" else "xywh"
        as_read = _mean_best_iou(gt_rows, det_rows, gt_layout, det_layout)
        as_other = _mean_best_iou(gt_rows, det_rows, gt_layout, other)
        if as_other >= 0.3 and as_read <= as_other / 2:
            problems.append((1, (f"{det_dir}: read as {det_layout} ({VOC_TXT_LAYOUTS[det_layout]}), the detections' "
                                 f"mean best IoU with the ground truth is {as_read:.2f}; read as {other} "
                                 f"({VOC_TXT_LAYOUTS[other]}), {as_other:.2f}: is their layout {other}?")))
    for which, message in problems:
        if not named[which]:
            raise ValueError(message + " Name the layout to go on (detkit eval --voc-layout / --voc-det-layout).")
        warnings.warn(message + " (evaluated as named)", UserWarning, stacklevel=3)


def read_txt_dirs(
    gt_dir: str | Path,
    det_dir: str | Path,
    layout: str | None = None,
    det_layout: str | None = None,
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], list[str], list[str]]:
    """Read the Object-Detection-Metrics text format (one ``.txt`` per image).

    Ground truth lines are ``class <box> [difficult]``, detection lines ``class confidence <box>``,
    with ``<box>`` four absolute pixel values in ``layout`` (:data:`VOC_TXT_LAYOUTS`): ``xywh``
    (top-left corner and size, becoming xyxy as ``(x, y, x + w, y + h)``, as that project does;
    its published APs come from this with the +1 pixel convention in the IoU) or ``xyxy``. Images
    are the gt file names, sorted; a detection file without a gt file is an error, a missing
    detection file means no detections.

    The layout is never guessed. A row the layout cannot describe (a negative width, or
    ``right < left``) is an error naming ``file:line``. Evidence of the other layout (every gt or
    every detection box, 10 or more, with ``width > left`` and ``height > top``; detections whose
    mean best IoU with the ground truth is at least 0.3 and twice as high when read in the other
    layout) is an error while the layout is left to its default, and a warning once it is named.

    Args:
        gt_dir: folder of ground-truth files.
        det_dir: folder of detection files (same file names).
        layout: the box columns of the ground truth (and of the detections unless ``det_layout``
            is given); ``None``: ``"xywh"``, not named (evidence against it is an error).
        det_layout: the box columns of the detections; ``None``: as ``layout``.

    Returns:
        ``(targets, predictions, class_names, image_names)``: per-image dicts of numpy arrays
        (``boxes``, ``labels``, ``difficult`` / ``boxes``, ``labels``, ``scores``), class names
        sorted, labels indexing them.

    Raises:
        ValueError: an unknown layout, a malformed or non-finite row, a row the layout cannot
            describe, evidence of another layout (see above), orphan detection files.
    """
    gt_layout = layout if layout is not None else "xywh"
    dt_layout = det_layout if det_layout is not None else gt_layout
    for name in (gt_layout, dt_layout):
        if name not in VOC_TXT_LAYOUTS:
            raise ValueError(f"unknown box layout {name!r}; expected one of {sorted(VOC_TXT_LAYOUTS)}")
    named = (layout is not None, det_layout is not None or layout is not None)
    gt_dir, det_dir = Path(gt_dir), Path(det_dir)
    for d in (gt_dir, det_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"not a directory: {d}")
    gt_files = sorted(gt_dir.glob("*.txt"))
    if not gt_files:
        raise FileNotFoundError(f"no ground-truth .txt files in {gt_dir}")
    names = [f.name for f in gt_files]
    orphans = sorted({f.name for f in det_dir.glob("*.txt")} - set(names))
    if orphans:
        raise ValueError(f"detection files without ground truth in {gt_dir}: {', '.join(orphans)}")

    def parse(path: Path, is_det: bool) -> list[tuple[str, float, list[float], bool]]:
        box_layout = dt_layout if is_det else gt_layout
        columns = VOC_TXT_LAYOUTS[box_layout]
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if is_det:
                    cls, conf, box, difficult = parts[0], float(parts[1]), parts[2:6], False
                else:
                    cls, conf, box = parts[0], 1.0, parts[1:5]
                    difficult = len(parts) > 5 and parts[5].lower() in ("1", "difficult", "true")
                x, y, a, b = (float(v) for v in box)
            except (ValueError, IndexError):
                fmt = f"class confidence {columns}" if is_det else f"class {columns} [difficult]"
                raise ValueError(f"{path}:{n}: expected '{fmt}', got {line!r}") from None
            if not math.isfinite(conf):
                raise ValueError(f"{path}:{n}: non-finite confidence {conf} in {line!r} (NaN or inf cannot be ranked)")
            if not all(math.isfinite(v) for v in (x, y, a, b)):
                raise ValueError(f"{path}:{n}: non-finite coordinate in {line!r}")
            if box_layout == "xywh" and (a < 0 or b < 0):
                raise ValueError(f"{path}:{n}: negative width or height in {line!r} read as '{columns}'; "
                                 "is the layout xyxy (left top right bottom)?")
            if box_layout == "xyxy" and (a < x or b < y):
                raise ValueError(f"{path}:{n}: right < left or bottom < top in {line!r} read as '{columns}'; "
                                 "is the layout xywh (left top width height)?")
            rows.append((cls, conf, [x, y, a, b], difficult))
        return rows

    gt_rows = [parse(f, False) for f in gt_files]
    det_rows = [parse(det_dir / n, True) if (det_dir / n).exists() else [] for n in names]
    _check_layouts(gt_rows, det_rows, gt_dir, det_dir, (gt_layout, dt_layout), named)
    class_names = sorted({r[0] for rows in gt_rows + det_rows for r in rows})
    index = {c: i for i, c in enumerate(class_names)}

    def boxes(rows: list, box_layout: str) -> np.ndarray:
        return np.array([_box(r[2], box_layout) for r in rows], dtype=np.float64).reshape(-1, 4)

    targets = [{"boxes": boxes(rows, gt_layout),
                "labels": np.array([index[r[0]] for r in rows], dtype=np.int64),
                "difficult": np.array([r[3] for r in rows], dtype=bool)} for rows in gt_rows]
    predictions = [{"boxes": boxes(rows, dt_layout),
                    "labels": np.array([index[r[0]] for r in rows], dtype=np.int64),
                    "scores": np.array([r[1] for r in rows], dtype=np.float64)} for rows in det_rows]
    return targets, predictions, class_names, [Path(n).stem for n in names]
