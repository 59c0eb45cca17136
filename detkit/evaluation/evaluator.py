"""Choosing the evaluator for a dataset (:func:`build_evaluator`), and the names this module had.

The loop is :mod:`detkit.evaluation.loop`, the evaluators :mod:`detkit.evaluation.coco_evaluator`
and :mod:`detkit.evaluation.voc_evaluator`; ``detkit.evaluation.evaluator.X`` keeps working for
every name it held (the same objects).
"""

from __future__ import annotations

from typing import Any

from .coco_evaluator import CocoEvaluator, annotation_file_of
from .loop import Evaluator, evaluate, format_metrics
from .voc_evaluator import VOCEvaluator

__all__ = ["CocoEvaluator", "Evaluator", "VOCEvaluator", "build_evaluator", "evaluate", "format_metrics"]


def build_evaluator(dataset: Any, **kwargs: Any) -> CocoEvaluator | VOCEvaluator:
    """The usual evaluator for a dataset.

    A dataset that names its COCO json (``annotation_file``, ``ann_file``, or a ``source`` ending
    in ``.json``) gets a :class:`CocoEvaluator` on that file; one whose class name contains ``"VOC"`` a :class:`VOCEvaluator`; any other a
    :class:`CocoEvaluator` with ground truth built from its targets.

    Args:
        dataset: the dataset being evaluated.
        **kwargs: passed to the evaluator's constructor.
    """
    if annotation_file_of(dataset) is not None:
        return CocoEvaluator.from_dataset(dataset, **kwargs)
    if "VOC" in type(dataset).__name__:
        return VOCEvaluator.from_dataset(dataset, **kwargs)
    return CocoEvaluator.from_dataset(dataset, **kwargs)
