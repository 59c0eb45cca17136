"""Evaluation: the loop (loop.py), COCO (coco_evaluator.py over pycocotools, coco_eval.py) and
PASCAL VOC mAP (voc_evaluator.py, voc_eval.py), precision-recall curves, face AP, and the analysis
of an evaluation (analysis_report.py: matching.py, score_curves.py, confusion.py, class_table.py,
drawn by charts.py); mot_metrics.py scores a tracked video (MOTA, identity switches, IDF1);
infer_predictions.py reads ``detkit infer``'s predictions.json as COCO results.

The training engine calls :func:`evaluate`::

    from detkit.evaluation import CocoEvaluator, VOCEvaluator, evaluate

    metrics = evaluate(model, data_loader, CocoEvaluator.from_dataset(dataset))
    metrics["bbox/AP"], metrics["bbox/AP50"]

    metrics = evaluate(model, data_loader, VOCEvaluator.from_dataset(dataset))
    metrics["voc07/mAP@0.5"], metrics["voc12/mAP@0.5"]
"""

from .analysis_report import (
    ANALYSIS_FILES,
    DetectionAnalysis,
    analyze_coco_result,
    analyze_evaluator,
    analyze_results,
    analyze_voc_result,
)
from .charts import Series, draw_line_chart, draw_matrix
from .class_table import ClassRow, class_table, format_class_table
from .coco_eval import (
    COCO_STAT_NAMES,
    CocoEvalResult,
    coco_from_targets,
    coco_pr_curves,
    evaluate_coco,
    format_per_class_table,
    load_coco,
    load_results,
    per_class_ap,
    predictions_to_coco_results,
    read_results_json,
    write_results_json,
)
from .coco_evaluator import CocoEvaluator
from .confusion import BACKGROUND, ConfusionMatrix, confusion_matrix
from .evaluator import build_evaluator
from .infer_predictions import infer_records_to_results, is_infer_predictions
from .loop import Evaluator, evaluate, format_metrics
from .matching import DetectionMatches, match_results, voc_to_coco
from .pr_curves import draw_pr_curves, save_pr_curves
from .score_curves import ALL_CLASSES, BestF1, ScoreCurve, save_score_curves, score_curves
from .voc_eval import (
    VOC_METRICS,
    VOC_TXT_LAYOUTS,
    ClassPR,
    VOCResult,
    average_precision,
    box_iou_voc,
    format_voc_table,
    match_detections,
    read_txt_dirs,
    voc_evaluate,
)
from .voc_evaluator import VOCEvaluator
from .mot_metrics import MOTAccumulator, MOTResult, evaluate_mot

from .face_ap import SIZE_SUBSETS, face_ap, face_subset_mask

__all__ = [
    "ALL_CLASSES",
    "ANALYSIS_FILES",
    "BACKGROUND",
    "BestF1",
    "COCO_STAT_NAMES",
    "ClassPR",
    "ClassRow",
    "CocoEvalResult",
    "CocoEvaluator",
    "ConfusionMatrix",
    "DetectionAnalysis",
    "DetectionMatches",
    "Evaluator",
    "SIZE_SUBSETS",
    "ScoreCurve",
    "Series",
    "VOCEvaluator",
    "VOCResult",
    "MOTAccumulator",
    "MOTResult",
    "VOC_METRICS",
    "VOC_TXT_LAYOUTS",
    "analyze_coco_result",
    "analyze_evaluator",
    "analyze_results",
    "analyze_voc_result",
    "average_precision",
    "box_iou_voc",
    "build_evaluator",
    "class_table",
    "coco_from_targets",
    "coco_pr_curves",
    "confusion_matrix",
    "draw_line_chart",
    "draw_matrix",
    "draw_pr_curves",
    "evaluate",
    "evaluate_mot",
    "evaluate_coco",
    "face_ap",
    "face_subset_mask",
    "format_class_table",
    "format_metrics",
    "format_per_class_table",
    "format_voc_table",
    "infer_records_to_results",
    "is_infer_predictions",
    "load_coco",
    "load_results",
    "match_detections",
    "match_results",
    "per_class_ap",
    "predictions_to_coco_results",
    "read_results_json",
    "read_txt_dirs",
    "save_pr_curves",
    "save_score_curves",
    "score_curves",
    "voc_evaluate",
    "voc_to_coco",
    "write_results_json",
]
