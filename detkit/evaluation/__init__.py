"""Evaluation: the loop (loop.py), COCO (coco_evaluator.py over pycocotools, coco_eval.py) and
PASCAL VOC mAP (voc_evaluator.py, voc_eval.py), precision-recall curves, face AP.

The training engine calls :func:`evaluate`::

    from detkit.evaluation import CocoEvaluator, VOCEvaluator, evaluate

    metrics = evaluate(model, data_loader, CocoEvaluator.from_dataset(dataset))
    metrics["bbox/AP"], metrics["bbox/AP50"]

    metrics = evaluate(model, data_loader, VOCEvaluator.from_dataset(dataset))
    metrics["voc07/mAP@0.5"], metrics["voc12/mAP@0.5"]
"""

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
from .evaluator import build_evaluator
from .loop import Evaluator, evaluate, format_metrics
from .pr_curves import draw_pr_curves, save_pr_curves
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

from .face_ap import SIZE_SUBSETS, face_ap, face_subset_mask

__all__ = [
    "COCO_STAT_NAMES",
    "ClassPR",
    "CocoEvalResult",
    "CocoEvaluator",
    "Evaluator",
    "SIZE_SUBSETS",
    "VOCEvaluator",
    "VOCResult",
    "VOC_METRICS",
    "VOC_TXT_LAYOUTS",
    "average_precision",
    "box_iou_voc",
    "build_evaluator",
    "coco_from_targets",
    "coco_pr_curves",
    "draw_pr_curves",
    "evaluate",
    "evaluate_coco",
    "face_ap",
    "face_subset_mask",
    "format_metrics",
    "format_per_class_table",
    "format_voc_table",
    "load_coco",
    "load_results",
    "match_detections",
    "per_class_ap",
    "predictions_to_coco_results",
    "read_results_json",
    "read_txt_dirs",
    "save_pr_curves",
    "voc_evaluate",
    "write_results_json",
]
