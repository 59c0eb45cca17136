"""Choosing the evaluator for a dataset (:func:`build_evaluator`), and the names this module had.

The loop is :mod:`detkit.evaluation.loop`, the evaluators :mod:`detkit.evaluation.coco_evaluator`
and :mod:`detkit.evaluation.voc_evaluator`; ``detkit.evaluation.evaluator.X`` keeps working for
every name it held (the same objects).
"""

from __future__ import annotations

from typing import Any

from detkit.data.concat import ConcatDetection
from detkit.data.voc import VOCDetection

from .coco_evaluator import CocoEvaluator, annotation_file_of
from .loop import Evaluator, evaluate, format_metrics
from .voc_evaluator import VOCEvaluator

__all__ = [
    "CocoEvaluator", "Evaluator", "VOCEvaluator", "base_dataset", "build_evaluator", "evaluate", "format_metrics",
]


def base_dataset(dataset: Any) -> Any:
    """The dataset under loader wrappers (``Subset`` shards, seeded samples) that hide its attributes."""
    seen = 0
    while not hasattr(dataset, "class_names") and hasattr(dataset, "dataset") and seen < 8:
        dataset, seen = dataset.dataset, seen + 1
    return dataset


def _is_voc_boxes(dataset: Any) -> bool:
    if isinstance(dataset, ConcatDetection):
        return all(_is_voc_boxes(part) for part in dataset.datasets)
    return isinstance(dataset, VOCDetection)


def build_evaluator(dataset: Any, **kwargs: Any) -> CocoEvaluator | VOCEvaluator:
    """The evaluator a dataset calls for.

    Args:
        dataset: the test dataset (loader wrappers such as ``Subset`` are looked through).
        **kwargs: passed to the evaluator (``plot_dir``, ``per_class``, ``metrics`` for VOC...).

    Returns:
        :class:`CocoEvaluator` on the dataset's json when it has one (``bbox`` AP, plus ``segm``
        when the predictions carry masks); :class:`VOCEvaluator` (VOC07 11-point and VOC12
        all-point mAP at IoU 0.5) for PASCAL VOC boxes; otherwise a :class:`CocoEvaluator` with
        the ground truth built from the targets and the dataset's class names (VOC instance
        masks, shapes...).
    """
    dataset = base_dataset(dataset)
    if annotation_file_of(dataset) is None and _is_voc_boxes(dataset):
        return VOCEvaluator.from_dataset(dataset, **kwargs)
    return CocoEvaluator.from_dataset(dataset, **kwargs)
