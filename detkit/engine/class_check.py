"""The model's classes checked against a dataset's before training or evaluating on it.

A dataset whose class list differs from the model's (another order, a subset, other names) would
train or score to the end with swapped labels: label ``i`` means the dataset's ``i``-th class, and
the model's ``i``-th output means its own. :func:`check_classes` stops that before any work, with
one line that names the dataset and shows the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from detkit.evaluation.evaluator import base_dataset

__all__ = ["ClassMismatchError", "check_classes", "class_names_diff"]

_SHOWN = 5  # differences listed before "... and N more"


class ClassMismatchError(ValueError):
    """The model's classes and a dataset's disagree (count, names or order)."""


def class_names_diff(model_names: Sequence[str], dataset_names: Sequence[str]) -> str:
    """A short description of how two class lists differ ("" when they are equal).

    Args:
        model_names: the model's class names, label order.
        dataset_names: the dataset's, label order.
    """
    if list(model_names) == list(dataset_names):
        return ""
    model_set, dataset_set = set(model_names), set(dataset_names)
    parts = []
    only_model = [name for name in model_names if name not in dataset_set]
    only_data = [name for name in dataset_names if name not in model_set]
    if only_model:
        parts.append(f"only the model has {_some(only_model)}")
    if only_data:
        parts.append(f"only the dataset has {_some(only_data)}")
    if not parts:  # the same names in another order
        moved = [f"label {i} is {m!r} for the model, {d!r} for the dataset"
                 for i, (m, d) in enumerate(zip(model_names, dataset_names)) if m != d]
        parts.append("the same names in another order: " + _some(moved, quote=False))
    return "; ".join(parts)


def _some(items: Sequence[str], quote: bool = True) -> str:
    shown = [repr(x) if quote else x for x in items[:_SHOWN]]
    more = f", ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(shown) + more


def check_classes(model: nn.Module, dataset: Any, where: str) -> None:
    """Check that ``model`` predicts the classes ``dataset`` labels, in the same order.

    Nothing is checked when the dataset has no ``class_names``; the names are checked when the
    model has ``class_names`` too, else only their number against ``model.num_classes``.

    Args:
        model: a detector (``num_classes``, ``class_names`` or None).
        dataset: the dataset (loader wrappers such as ``Subset`` or a mosaic are looked through).
        where: what the dataset is, for the message (``"dataloader.train"``...).

    Raises:
        ClassMismatchError: the counts, names or order differ (the message shows how).
    """
    dataset = base_dataset(dataset)
    dataset_names = getattr(dataset, "class_names", None)
    num_classes = getattr(model, "num_classes", None)
    if dataset_names is None or num_classes is None:
        return
    dataset_names = [str(n) for n in dataset_names]
    model_names = getattr(model, "class_names", None)
    kind = type(dataset).__name__
    if model_names is not None and [str(n) for n in model_names] != dataset_names:
        diff = class_names_diff([str(n) for n in model_names], dataset_names)
        raise ClassMismatchError(f"{where} ({kind}): its classes differ from the model's class_names: {diff}; "
                                 "labels would mean other classes (set model.class_names and model.num_classes "
                                 "to the dataset's, or the dataset's class_names to the model's)")
    if len(dataset_names) != int(num_classes):
        raise ClassMismatchError(f"{where} ({kind}): the dataset has {len(dataset_names)} classes "
                                 f"({_some(dataset_names)}) but the model has num_classes={num_classes}; "
                                 "set model.num_classes (and model.class_names) to the dataset's")
