"""The analysis of an evaluation, as ``detkit test`` and ``detkit eval`` write it.

:func:`analyze_results` takes the common form (a COCO ground truth and COCO results, see
:mod:`detkit.evaluation.matching`) and gives a :class:`DetectionAnalysis`: the same-class
matching at one IoU, precision / recall / F1 against the score threshold with the best-F1
threshold of each class and of all classes (:mod:`detkit.evaluation.score_curves`), the confusion
matrix with a background row and column (:mod:`detkit.evaluation.confusion`), and the per-class
table (:mod:`detkit.evaluation.class_table`). :func:`analyze_evaluator` builds it from a
:class:`~detkit.evaluation.CocoEvaluator` (its ``bbox`` evaluation) or a
:class:`~detkit.evaluation.VOCEvaluator` after ``evaluate()``.

:meth:`DetectionAnalysis.write` puts into a folder (``analysis/`` of the commands)::

    per_class.json  per_class.txt        the per-class table (fractions in [0, 1])
    confusion_matrix.png  confusion_matrix.json
    score_curves.json                    P, R, F1 at 101 thresholds, best F1 per class
    precision_vs_score.png  recall_vs_score.png  f1_vs_score.png

The confusion matrix is taken at the score threshold given, by default the best-F1 threshold of
all classes pooled (the operating point that balances misses and false positives over the
dataset); the threshold and how it was chosen are written in its json and its title.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .class_table import ClassRow, class_table, class_table_json, format_class_table
from .coco_eval import CocoEvalResult, per_class_ap
from .confusion import ConfusionMatrix, confusion_matrix
from .matching import DetectionMatches, match_results, voc_to_coco
from .score_curves import ALL_CLASSES, ScoreCurve, curves_to_json, save_score_curves, score_curves
from .voc_eval import VOCResult

__all__ = ["ANALYSIS_FILES", "DetectionAnalysis", "analyze_coco_result", "analyze_evaluator", "analyze_results",
           "analyze_voc_result"]

ANALYSIS_FILES = ("per_class.json", "per_class.txt", "confusion_matrix.png", "confusion_matrix.json",
                  "score_curves.json", "precision_vs_score.png", "recall_vs_score.png", "f1_vs_score.png")
"""What :meth:`DetectionAnalysis.write` writes, in order."""


@dataclass
class DetectionAnalysis:
    """The analysis of one evaluation (see the module docstring).

    Attributes:
        matches: the same-class matching.
        curves: class name -> score curve, then ``all classes``.
        confusion: the confusion matrix at :attr:`ConfusionMatrix.score_thresh`.
        rows: the per-class table.
        title: what was evaluated (e.g. ``"COCO bbox"``), in titles.
    """

    matches: DetectionMatches
    curves: dict[str, ScoreCurve]
    confusion: ConfusionMatrix
    rows: list[ClassRow]
    title: str = ""

    def format_table(self) -> str:
        """The per-class table as text, its settings and units in the header."""
        return format_class_table(self.rows, f"{self.title} per class @ IoU >= {self.matches.iou_thresh:g}".strip())

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write the files of :data:`ANALYSIS_FILES` into ``out_dir`` (created); returns them."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        settings = {"iou_thresh": self.matches.iou_thresh, "max_dets_per_image_and_class": self.matches.max_dets,
                    "matching": "pycocotools' same-class greedy matching by score, crowd/difficult ignored"}
        table = out / "per_class.json"
        table.write_text(json.dumps(class_table_json(self.rows, **settings), indent=1))
        text = out / "per_class.txt"
        text.write_text(self.format_table() + "\n")
        written = [table, text, *self.confusion.save(out)]
        curves = out / "score_curves.json"
        curves.write_text(json.dumps({**settings, **curves_to_json(self.curves)}))
        written.append(curves)
        written += save_score_curves(self.curves, out, self.title)
        return written


def analyze_results(
    gt: Any,
    results: Sequence[Mapping[str, Any]],
    *,
    iou_thresh: float = 0.5,
    score_thresh: float | None = None,
    category_ids: Sequence[int] | None = None,
    image_ids: Sequence[int] | None = None,
    class_names: Mapping[int, str] | None = None,
    max_dets: int | None = 100,
    ap_columns: Mapping[str, Sequence[float]] | None = None,
    mean_ap: Mapping[str, float] | None = None,
    title: str = "",
) -> DetectionAnalysis:
    """Analyse COCO results against a COCO ground truth.

    Args:
        gt: a COCO dataset dict or pycocotools ``COCO``.
        results: COCO results (bbox xywh).
        iou_thresh: the IoU a match needs (``>=``).
        score_thresh: the confusion matrix's threshold (``score >= score_thresh``); ``None``: the
            best-F1 threshold of all classes pooled (no detections: none kept).
        category_ids: the classes, in order (default every category of ``gt``, by id).
        image_ids: the images (default all of ``gt``).
        class_names: category id -> name (default ``gt``'s).
        max_dets: detections counted per image and class (pycocotools: 100).
        ap_columns: column name -> AP per class (in the order of ``category_ids``), in [0, 1].
        mean_ap: column name -> the evaluator's mean, for the ``all classes`` row.
        title: what was evaluated, for titles.

    Returns:
        The analysis.
    """
    matches = match_results(gt, results, iou_thresh=iou_thresh, category_ids=category_ids, image_ids=image_ids,
                            class_names=class_names, max_dets=max_dets)
    curves = score_curves(matches)
    if score_thresh is None:
        best = curves[ALL_CLASSES].best_f1()
        thresh, source = (best.score_thresh, "best F1 of all classes") if best else (math.inf, "no detections")
    else:
        thresh, source = float(score_thresh), "given"
    matrix = confusion_matrix(matches, thresh, source)
    return DetectionAnalysis(matches, curves, matrix, class_table(curves, ap_columns, mean_ap), title)


def analyze_coco_result(
    result: CocoEvalResult,
    results: Sequence[Mapping[str, Any]],
    *,
    iou_thresh: float = 0.5,
    score_thresh: float | None = None,
    category_ids: Sequence[int] | None = None,
) -> DetectionAnalysis:
    """The analysis of a ``bbox`` :func:`~detkit.evaluation.evaluate_coco` result.

    The ground truth, images, categories, names and ``maxDets`` are those ``COCOeval`` used; the
    AP columns are its per-class ``AP`` (IoU 0.50:0.95), ``AP50`` and ``AP75``.

    Args:
        result: the evaluation (``iou_type`` ``"bbox"``).
        results: the COCO results it evaluated.
        iou_thresh: the analysis IoU.
        score_thresh: see :func:`analyze_results`.
        category_ids: the classes in order (default the evaluated ones, by id).
    """
    if result.iou_type != "bbox":
        raise ValueError(f"the analysis matches boxes: it needs a 'bbox' evaluation, got {result.iou_type!r}")
    coco_eval = result.coco_eval
    cats = list(category_ids) if category_ids is not None else sorted(int(c) for c in coco_eval.params.catIds)
    columns = {}
    for name, iou in (("AP", None), ("AP50", 0.5), ("AP75", 0.75)):
        per_class = per_class_ap(coco_eval, iou)
        columns[name] = [per_class.get(c, math.nan) for c in cats]
    means = {n: result.stats[n] if result.stats[n] >= 0 else math.nan for n in ("AP", "AP50", "AP75")}
    return analyze_results(coco_eval.cocoGt, results, iou_thresh=iou_thresh, score_thresh=score_thresh,
                           category_ids=cats, image_ids=list(coco_eval.params.imgIds), class_names=result.names,
                           max_dets=int(coco_eval.params.maxDets[-1]), ap_columns=columns, mean_ap=means,
                           title=f"COCO {result.iou_type}")


def analyze_voc_result(
    result: VOCResult,
    targets: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    *,
    iou_thresh: float | None = None,
    score_thresh: float | None = None,
) -> DetectionAnalysis:
    """The analysis of a :func:`~detkit.evaluation.voc_evaluate` result (same targets and predictions).

    Boxes keep the evaluation's pixel convention (``result.plus_one``), difficult objects are
    ignored, every detection counts (no per-image cap); the AP columns are the evaluation's.

    Args:
        result: the evaluation.
        targets: per image, ``boxes``, ``labels``, optional ``difficult``.
        predictions: per image, ``boxes``, ``labels``, ``scores``.
        iou_thresh: the analysis IoU (default the evaluation's).
        score_thresh: see :func:`analyze_results`.
    """
    gt, results = voc_to_coco(targets, predictions, result.class_names, result.plus_one)
    iou = result.iou_threshold if iou_thresh is None else iou_thresh
    columns = {f"AP {m}@{result.iou_threshold:g}": list(aps) for m, aps in result.ap.items()}
    means = {f"AP {m}@{result.iou_threshold:g}": result.mean_ap(m) for m in result.ap}
    return analyze_results(gt, results, iou_thresh=iou, score_thresh=score_thresh,
                           category_ids=list(range(len(result.class_names))), max_dets=None,
                           ap_columns=columns, mean_ap=means, title="VOC")


def analyze_evaluator(
    evaluator: Any,
    *,
    iou_thresh: float | None = None,
    score_thresh: float | None = None,
) -> DetectionAnalysis | None:
    """The analysis of an evaluator after ``evaluate()``, or ``None`` when it is not one of detkit's.

    A :class:`~detkit.evaluation.CocoEvaluator` is analysed on its ``bbox`` evaluation (IoU 0.5 by
    default), its classes in label order; a :class:`~detkit.evaluation.VOCEvaluator` on its
    targets and predictions (default: its IoU).

    Args:
        evaluator: the evaluator.
        iou_thresh: the analysis IoU.
        score_thresh: see :func:`analyze_results`.
    """
    last_results = getattr(evaluator, "last_results", None)
    if isinstance(last_results, Mapping) and isinstance(last_results.get("bbox"), CocoEvalResult):
        label_map = getattr(evaluator, "label_to_category_id", None)
        result = last_results["bbox"]
        evaluated = {int(c) for c in result.coco_eval.params.catIds}
        cats = None
        if label_map:
            cats = [int(label_map[i]) for i in sorted(label_map) if int(label_map[i]) in evaluated]
            cats = cats if len(set(cats)) == len(evaluated) else None
        return analyze_coco_result(result, evaluator.results, iou_thresh=0.5 if iou_thresh is None else iou_thresh,
                                   score_thresh=score_thresh, category_ids=cats)
    last_result = getattr(evaluator, "last_result", None)
    if isinstance(last_result, VOCResult):
        return analyze_voc_result(last_result, evaluator.targets, evaluator.predictions, iou_thresh=iou_thresh,
                                  score_thresh=score_thresh)
    return None

