"""PASCAL VOC mAP of a detector's predictions (:class:`VOCEvaluator`).

The evaluator feeds :func:`~detkit.evaluation.loop.evaluate`; the matching and the AP computation
are detkit's own, in :mod:`detkit.evaluation.voc_eval`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from detkit.utils.distributed import all_gather_object

from .loop import as_numpy, check_finite_prediction, evaluate_if_given, image_id_of
from .pr_curves import save_pr_curves
from .voc_eval import VOC_METRICS, VOCResult, format_voc_table, voc_evaluate

__all__ = ["VOCEvaluator"]


class VOCEvaluator:
    """PASCAL VOC mAP (detkit's own implementation, see :mod:`detkit.evaluation.voc_eval`).

    Targets may carry ``difficult [G]`` bool (VOC's flag): such objects are neither required nor
    penalised.

    The +1 pixel convention is *off* by default here, because targets and predictions are detkit
    boxes: continuous xyxy, into which detkit's VOC reader has already turned VOC's 1-based
    inclusive pixel indices (``x1 = xmin - 1, x2 = xmax``). Continuous IoU on those boxes equals
    the devkit's +1 IoU on the original indices exactly, so the default reproduces the official
    numbers. ``plus_one=True`` is for boxes still in VOC's inclusive indices (as the text files of
    ``tools/eval_results.py --voc``, where it is the default).

    Args:
        class_names: one name per 0-based label.
        iou_threshold: IoU a match needs (``>=``), 0.5 in VOC.
        plus_one: measure widths as ``x2 - x1 + 1`` (boxes in VOC's inclusive pixel indices).
        metrics: ``"voc07"`` (11-point) and/or ``"voc12"`` (all-point).
        per_class: add ``"<metric>/AP@<iou>-<name>"`` metrics.
        plot_dir: when set, write precision-recall curves there on :meth:`evaluate`.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        iou_threshold: float = 0.5,
        plus_one: bool = False,
        metrics: Sequence[str] = VOC_METRICS,
        per_class: bool = True,
        plot_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        for m in metrics:
            if m not in VOC_METRICS:
                raise ValueError(f"unknown VOC metric {m!r}; expected one of {VOC_METRICS}")
        self.class_names = list(class_names)
        self.iou_threshold = iou_threshold
        self.plus_one = plus_one
        self.metrics = tuple(metrics)
        self.per_class = per_class
        self.plot_dir = plot_dir
        self.last_result: VOCResult | None = None
        self.reset()

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> VOCEvaluator:
        """An evaluator for the dataset's ``class_names``."""
        names = getattr(dataset, "class_names", None)
        if names is None:
            raise ValueError(f"{type(dataset).__name__} has no class_names; pass class_names to VOCEvaluator")
        return cls(names, **kwargs)

    def reset(self) -> None:
        """Forget processed images."""
        self.targets: list[dict[str, np.ndarray]] = []
        self.predictions: list[dict[str, np.ndarray]] = []
        self.image_ids: list[int | str | None] = []

    def process(self, targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]) -> None:
        """Keep numpy copies of boxes, labels, difficult flags and scores.

        Raises:
            ValueError: a prediction with a NaN or inf score or box (names the image id).
        """
        if len(targets) != len(predictions):
            raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
        for target, pred in zip(targets, predictions):
            check_finite_prediction(pred, image_id_of(target))
            t = {k: as_numpy(target[k]) for k in ("boxes", "labels")}
            if target.get("difficult") is not None:
                t["difficult"] = as_numpy(target["difficult"]).astype(bool)
            self.targets.append(t)
            self.predictions.append({k: as_numpy(pred[k]) for k in ("boxes", "labels", "scores")})
            self.image_ids.append(image_id_of(target))  # None when unknown: never merged away

    def _synchronize(self) -> None:
        """Merge every rank's processed images (no-op in a single process)."""
        parts = all_gather_object((self.image_ids, self.targets, self.predictions))
        if len(parts) == 1:
            return
        self.reset()
        seen: set[Any] = set()
        for image_ids, targets, predictions in parts:
            for image_id, target, pred in zip(image_ids, targets, predictions):
                if image_id is not None:
                    if image_id in seen:  # a padded sampler may repeat images
                        continue
                    seen.add(image_id)
                self.image_ids.append(image_id)
                self.targets.append(target)
                self.predictions.append(pred)

    def evaluate(self, model: nn.Module | None = None, data_loader: Iterable[Any] | None = None) -> dict[str, float]:
        """mAP per metric (and per-class AP); the full result is kept in :attr:`last_result`.

        Args:
            model: with ``data_loader``, run the whole loop first (``evaluate(model, data_loader,
                self)``, the call the training engine makes); without, score what was processed.
            data_loader: the test loader, with ``model``.
        """
        metrics = evaluate_if_given(self, model, data_loader)
        if metrics is not None:
            return metrics
        self._synchronize()
        result = voc_evaluate(self.targets, self.predictions, self.class_names, self.iou_threshold,
                              self.plus_one, self.metrics)
        self.last_result = result
        if self.plot_dir is not None:
            curves = {n: (c.recall, c.precision) for n, c in zip(result.class_names, result.curves) if c.num_gt}
            metric = self.metrics[-1]
            ap = dict(zip(result.class_names, result.ap[metric]))
            save_pr_curves(curves, self.plot_dir, ap, f"{metric} @{self.iou_threshold:g}")
        return result.metrics(self.per_class)

    def summary(self) -> str:
        """The per-class table of the last :meth:`evaluate`."""
        return format_voc_table(self.last_result) if self.last_result is not None else ""

    def write_results(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write the detections (``voc_detections.json``: image id, class, score, xyxy box)."""
        rows = []
        for index, (image_id, pred) in enumerate(zip(self.image_ids, self.predictions)):
            image_id = index if image_id is None else image_id
            for box, label, score in zip(pred["boxes"].reshape(-1, 4), pred["labels"].reshape(-1),
                                         pred["scores"].reshape(-1)):
                rows.append({"image_id": image_id, "label": int(label), "class": self.class_names[int(label)],
                             "score": float(score), "bbox_xyxy": [float(v) for v in box]})
        path = Path(out_dir) / "voc_detections.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows))
        return [path]
