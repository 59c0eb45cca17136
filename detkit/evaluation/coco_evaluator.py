"""The evaluation loop and the evaluators it feeds.

An evaluator accumulates per-image targets and predictions and turns them into flat metrics::

    evaluator = CocoEvaluator.from_dataset(dataset)          # or VOCEvaluator.from_dataset(dataset)
    metrics = evaluate(model, data_loader, evaluator)        # {"bbox/AP": ..., "bbox/AP50": ...}

:func:`evaluate` is what the training engine calls. Metric names: ``"<iou type>/<stat>"`` for
COCO (``"bbox/AP"``, ``"bbox/AP50"``, ``"segm/AP"``, ``"bbox/AR100"``...; per class
``"bbox/AP-<class name>"``) and ``"<metric>/mAP@<iou>"`` for VOC (``"voc07/mAP@0.5"``,
``"voc12/mAP@0.5"``; per class ``"voc07/AP@0.5-<class name>"``). Values are fractions in [0, 1];
NaN marks a class without ground truth, -1 a COCO stat pycocotools cannot define.

The evaluators also answer ``evaluator.evaluate(model, data_loader)`` (the same as
``evaluate(model, data_loader, evaluator)``), so an ``L(CocoEvaluator)(...)`` config node can be
handed to the training engine as it is. Under ``torch.distributed`` each rank processes its own
shard of the test set; ``evaluate()`` gathers every rank's images (``all_gather_object``, in rank
order, so contiguous shards keep the dataset order that VOC's tie-breaking follows; an image id
seen twice is counted once) and every rank returns the metrics of the whole set.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .coco_eval import (
    IOU_TYPES,
    CocoEvalResult,
    coco_from_records,
    coco_pr_curves,
    evaluate_coco,
    format_per_class_table,
    load_coco,
    per_class_ap,
    predictions_to_coco_results,
    target_to_coco,
    write_results_json,
)
from .pr_curves import save_pr_curves
from .voc_eval import VOC_METRICS, VOCResult, format_voc_table, voc_evaluate

__all__ = ["CocoEvaluator", "Evaluator", "VOCEvaluator", "build_evaluator", "evaluate", "format_metrics"]


@runtime_checkable
class Evaluator(Protocol):
    """What :func:`evaluate` needs: accumulate a dataset's worth of images, then score them."""

    def reset(self) -> None:
        """Forget everything processed so far."""

    def process(self, targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]) -> None:
        """Accumulate one batch: per-image target dicts and the model's prediction dicts."""

    def evaluate(self) -> dict[str, float]:
        """Score everything processed since the last :meth:`reset`; metric name -> value."""


def _all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a one-element list when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _to_device(images: Any, device: torch.device) -> Any:
    if isinstance(images, torch.Tensor) or hasattr(images, "to"):
        return images.to(device)
    if isinstance(images, (list, tuple)):
        return type(images)(_to_device(im, device) for im in images)
    return images


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


def evaluate(
    model: nn.Module,
    data_loader: Iterable[tuple[Any, Sequence[Mapping[str, Any]]]],
    evaluator: Evaluator,
    device: torch.device | str | None = None,
    progress: bool = True,
    description: str = "evaluate",
) -> dict[str, float]:
    """Run ``model`` over ``data_loader`` in eval mode and score it with ``evaluator``.

    The model runs under ``torch.no_grad()`` in eval mode; its previous train/eval mode is
    restored afterwards (also on error). Predictions are moved to the CPU before the evaluator
    sees them; targets are passed as the loader gives them.

    Args:
        model: a detector: ``model(images) -> (predictions, losses)`` in eval mode (a bare list of
            predictions is accepted too).
        data_loader: yields ``(images, targets)``: a list of ``[3, H, W]`` tensors (or an
            ``ImageList``) and per-image target dicts.
        evaluator: reset at the start, fed each batch, asked for the metrics at the end.
        device: where to put the images; default the device of the model's first parameter.
        progress: show a tqdm bar (on rank 0 only when distributed).
        description: the bar's label.

    Returns:
        ``evaluator.evaluate()``: metric name -> value.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    evaluator.reset()
    was_training = model.training
    model.eval()
    try:
        total = len(data_loader) if hasattr(data_loader, "__len__") else None  # type: ignore[arg-type]
        with torch.no_grad():
            bar = tqdm(data_loader, total=total, desc=description, dynamic_ncols=True,
                       disable=not (progress and _is_main_process()))
            for batch in bar:
                images, targets = batch
                outputs = model(_to_device(images, device))
                predictions = outputs[0] if isinstance(outputs, tuple) else outputs
                if len(predictions) != len(targets):
                    raise ValueError(f"the model returned {len(predictions)} predictions for {len(targets)} images")
                evaluator.process(targets, [_to_cpu(p) for p in predictions])
    finally:
        model.train(was_training)
    return evaluator.evaluate()


def _image_id(target: Mapping[str, Any]) -> int | str | None:
    """A target's ``image_id`` as a Python int (or str: VOC ids such as ``"2008_000123"``)."""
    value = target.get("image_id")
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, str) else int(value)


class CocoEvaluator:
    """COCO bbox / segm mAP through pycocotools.

    Ground truth comes either from a COCO annotation file (targets then only supply
    ``image_id``) or, with no file, from the targets themselves (boxes, labels, ``iscrowd``,
    ``masks``), which works for any dataset. Only the processed images are evaluated, so a
    partial pass over a dataset gives that subset's numbers.

    Args:
        annotation_file: COCO annotation json, or ``None`` to build the ground truth from targets.
        class_names: name per 0-based label (per-class table keys); default the file's category
            names in label order, or ``"0"``, ``"1"``... from targets.
        label_to_category_id: 0-based label -> COCO category id; default the file's category ids
            in sorted order (label ``i`` is the i-th smallest id), or ``label + 1`` from targets.
        iou_types: ``("bbox",)``, ``("bbox", "segm")``...; ``None`` decides at the first batch:
            ``"bbox"``, plus ``"segm"`` when the predictions carry masks.
        per_class: add ``"<type>/AP-<name>"`` metrics.
        mask_threshold: a predicted mask pixel is foreground where its probability is above this.
        plot_dir: when set, write precision-recall curves (IoU 0.5) there on :meth:`evaluate`.
        verbose: let pycocotools print its progress and table.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike[str] | None = None,
        *,
        class_names: Sequence[str] | None = None,
        label_to_category_id: Mapping[int, int] | None = None,
        iou_types: Sequence[str] | None = None,
        per_class: bool = True,
        mask_threshold: float = 0.5,
        plot_dir: str | os.PathLike[str] | None = None,
        verbose: bool = False,
    ) -> None:
        for t in iou_types or ():
            if t not in IOU_TYPES:
                raise ValueError(f"unknown iou type {t!r}; expected one of {IOU_TYPES}")
        self.coco_gt = load_coco(annotation_file) if annotation_file is not None else None
        self.annotation_file = annotation_file
        if self.coco_gt is not None:
            cat_ids = sorted(self.coco_gt.getCatIds())
            if label_to_category_id is None:
                label_to_category_id = dict(enumerate(cat_ids))
            if class_names is None:
                id_to_name = {c["id"]: c["name"] for c in self.coco_gt.loadCats(cat_ids)}
                class_names = [id_to_name[label_to_category_id[i]] for i in range(len(label_to_category_id))]
            unknown = sorted(set(label_to_category_id.values()) - set(cat_ids))
            if unknown:
                raise ValueError(f"label_to_category_id maps to category ids {unknown} absent from {annotation_file}")
        self.class_names = list(class_names) if class_names is not None else None
        self.label_to_category_id = dict(label_to_category_id) if label_to_category_id is not None else None
        self._requested_iou_types = tuple(iou_types) if iou_types is not None else None
        self.per_class = per_class
        self.mask_threshold = mask_threshold
        self.plot_dir = plot_dir
        self.verbose = verbose
        self.last_results: dict[str, CocoEvalResult] = {}
        self.reset()

    @classmethod
    def from_dataset(cls, dataset: Any, annotation_file: str | os.PathLike[str] | None = None,
                     **kwargs: Any) -> CocoEvaluator:
        """An evaluator using the dataset's ``class_names`` and ``label_to_category_id``.

        ``annotation_file`` defaults to the dataset's ``annotation_file`` or ``ann_file``
        attribute, else its ``source`` when that is an existing ``.json`` file (detkit's
        ``CocoDetection`` records its annotation file there); without one the ground truth is
        built from the targets.
        """
        if annotation_file is None:
            annotation_file = _annotation_file_of(dataset)
        kwargs.setdefault("class_names", getattr(dataset, "class_names", None))
        kwargs.setdefault("label_to_category_id", getattr(dataset, "label_to_category_id", None))
        return cls(annotation_file, **kwargs)

    def reset(self) -> None:
        """Forget processed images and results (and an iou type choice made from predictions)."""
        self.iou_types: tuple[str, ...] | None = self._requested_iou_types
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []
        self._gt_images: list[dict[str, Any]] = []
        self._gt_annotations: list[dict[str, Any]] = []
        self._labels_seen: set[int] = set()
        self._has_gt_masks = True

    def _label_map(self) -> dict[int, int]:
        if self.label_to_category_id is not None:
            return self.label_to_category_id
        # From targets with no mapping: category id = label + 1 (COCO ids start at 1), for every
        # label seen so far (process() records them before converting).
        return {label: label + 1 for label in self._labels_seen}

    def process(self, targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]) -> None:
        """Convert one batch of predictions to COCO results (and targets to gt records)."""
        if len(targets) != len(predictions):
            raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
        if self.iou_types is None:
            has_masks = any(p.get("masks") is not None for p in predictions)
            self.iou_types = ("bbox", "segm") if has_masks else ("bbox",)
        ids = []
        for target in targets:
            image_id = _image_id(target)
            if self.coco_gt is not None and not isinstance(image_id, int):
                raise KeyError("CocoEvaluator with an annotation file needs an int 'image_id' in every "
                               f"target, got {target.get('image_id')!r}")
            if not isinstance(image_id, int):
                # Absent or not an int (a VOC file id): ids 1, 2, ... in processing order, offset
                # by rank so that ranks never collide.
                rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
                image_id = rank * 1_000_000_000 + len(self.image_ids) + len(ids) + 1
            ids.append(image_id)
        if self.coco_gt is not None:
            unknown = sorted(set(ids) - set(self.coco_gt.getImgIds()))
            if unknown:
                raise ValueError(f"image ids {unknown[:20]} are not in {self.annotation_file}")
        for d in (*targets, *predictions) if self.coco_gt is None else predictions:
            self._labels_seen.update(int(v) for v in _cpu_numpy(d["labels"]).reshape(-1))
        if self.coco_gt is None:
            for target, image_id in zip(targets, ids):
                image, anns = target_to_coco(target, image_id, self._label_map())
                self._gt_images.append(image)
                self._gt_annotations.extend(anns)
                self._has_gt_masks &= target.get("masks") is not None
        self.results.extend(predictions_to_coco_results(
            predictions, ids, self._label_map(), self.iou_types, self.mask_threshold))
        self.image_ids.extend(ids)

    def _ground_truth(self) -> Any:
        if self.coco_gt is not None:
            return self.coco_gt
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError("CocoEvaluator: the same image_id was processed twice")
        if self.class_names is not None:
            self._labels_seen.update(range(len(self.class_names)))
            labels = list(range(len(self.class_names)))
        else:
            labels = sorted(self._labels_seen)
        label_map = self._label_map()
        names = self.class_names or [str(i) for i in range(max(labels, default=-1) + 1)]
        categories = [{"id": label_map[i], "name": names[i]} for i in labels]
        return coco_from_records(self._gt_images, self._gt_annotations, categories)

    def _synchronize(self) -> None:
        """Merge every rank's processed images (no-op in a single process)."""
        state = (self.image_ids, self.results, self._gt_images, self._gt_annotations,
                 self._labels_seen, self._has_gt_masks, self.iou_types)
        parts = _all_gather(state)
        if len(parts) == 1:
            return
        self.reset()
        seen: set[int] = set()
        for image_ids, results, gt_images, gt_annotations, labels, has_masks, iou_types in parts:
            fresh = {i for i in image_ids if i not in seen}  # a padded sampler may repeat images
            seen |= fresh
            self.image_ids += [i for i in image_ids if i in fresh]
            self.results += [r for r in results if r["image_id"] in fresh]
            self._gt_images += [im for im in gt_images if im["id"] in fresh]
            self._gt_annotations += [a for a in gt_annotations if a["image_id"] in fresh]
            self._labels_seen |= labels
            self._has_gt_masks &= has_masks
            self.iou_types = self.iou_types or iou_types

    def evaluate(self, model: nn.Module | None = None, data_loader: Iterable[Any] | None = None) -> dict[str, float]:
        """COCO stats per iou type (and per-class AP); also kept in :attr:`last_results`.

        Args:
            model: with ``data_loader``, run the whole loop first (``evaluate(model, data_loader,
                self)``, the call the training engine makes); without, score what was processed.
            data_loader: the test loader, with ``model``.
        """
        if model is not None or data_loader is not None:
            if model is None or data_loader is None:
                raise TypeError("CocoEvaluator.evaluate() takes both model and data_loader, or neither")
            return evaluate(model, data_loader, self)
        self._synchronize()
        if not self.image_ids:
            raise RuntimeError("CocoEvaluator.evaluate() called before any image was processed")
        coco_gt = self._ground_truth()
        if "segm" in self.iou_types and self.coco_gt is None and not self._has_gt_masks:
            raise ValueError("'segm' evaluation from targets needs 'masks' in every target")
        label_map = self._label_map()
        names = {label_map[i]: n for i, n in enumerate(self.class_names or [])}
        metrics: dict[str, float] = {}
        self.last_results = {}
        for iou_type in self.iou_types:
            # With a file, only the categories the labels map to (a model trained on a subset
            # of the file's classes is not charged for the others).
            category_ids = sorted(label_map.values()) if self.coco_gt is not None else None
            result = evaluate_coco(coco_gt, self.results, iou_type, image_ids=self.image_ids,
                                   class_names=names, verbose=self.verbose, category_ids=category_ids)
            self.last_results[iou_type] = result
            metrics.update(result.metrics(self.per_class))
            if self.plot_dir is not None:
                curves = coco_pr_curves(result.coco_eval, 0.5, result.names)
                ap50 = {result.names.get(c, str(c)): v for c, v in
                        per_class_ap(result.coco_eval, 0.5).items()}
                save_pr_curves(curves, Path(self.plot_dir) / iou_type, ap50, f"COCO {iou_type} @0.5")
        return metrics

    def summary(self) -> str:
        """The pycocotools table and the per-class AP table of the last :meth:`evaluate`."""
        parts = []
        for iou_type, result in self.last_results.items():
            parts.append(f"COCO {iou_type}:\n{result.table}")
            if self.per_class:
                parts.append(format_per_class_table(result.per_class, title=f"{iou_type} AP"))
        return "\n\n".join(parts)

    def write_results(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write the COCO results (``coco_results.json``) into ``out_dir``."""
        return [write_results_json(self.results, Path(out_dir) / "coco_results.json")]


def _annotation_file_of(dataset: Any) -> str | None:
    """The COCO json a dataset was read from, when it tells (see CocoEvaluator.from_dataset)."""
    for name in ("annotation_file", "ann_file"):
        if getattr(dataset, name, None):
            return str(getattr(dataset, name))
    source = getattr(dataset, "source", None)
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".json") and Path(source).is_file():
        return str(source)
    return None


def _cpu_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


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
        """Keep numpy copies of boxes, labels, difficult flags and scores."""
        if len(targets) != len(predictions):
            raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
        for target, pred in zip(targets, predictions):
            t = {k: _cpu_numpy(target[k]) for k in ("boxes", "labels")}
            if target.get("difficult") is not None:
                t["difficult"] = _cpu_numpy(target["difficult"]).astype(bool)
            self.targets.append(t)
            self.predictions.append({k: _cpu_numpy(pred[k]) for k in ("boxes", "labels", "scores")})
            self.image_ids.append(_image_id(target))  # None when unknown: never merged away

    def _synchronize(self) -> None:
        """Merge every rank's processed images (no-op in a single process)."""
        parts = _all_gather((self.image_ids, self.targets, self.predictions))
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
        if model is not None or data_loader is not None:
            if model is None or data_loader is None:
                raise TypeError("VOCEvaluator.evaluate() takes both model and data_loader, or neither")
            return evaluate(model, data_loader, self)
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


def build_evaluator(dataset: Any, **kwargs: Any) -> CocoEvaluator | VOCEvaluator:
    """The usual evaluator for a dataset.

    A dataset that names its COCO json (``annotation_file``, ``ann_file``, or a ``source`` ending
    in ``.json``) gets a :class:`CocoEvaluator` on that file; one whose class name contains ``"VOC"`` a :class:`VOCEvaluator`; any other a
    :class:`CocoEvaluator` with ground truth built from its targets.

    Args:
        dataset: the dataset being evaluated.
        **kwargs: passed to the evaluator's constructor.
    """
    if _annotation_file_of(dataset) is not None:
        return CocoEvaluator.from_dataset(dataset, **kwargs)
    if "VOC" in type(dataset).__name__:
        return VOCEvaluator.from_dataset(dataset, **kwargs)
    return CocoEvaluator.from_dataset(dataset, **kwargs)


def format_metrics(metrics: Mapping[str, float]) -> str:
    """Metrics as ``name  value`` lines (NaN shown as n/a)."""
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"{k:<{width}}  {'n/a' if math.isnan(v) else f'{v:.4f}'}" for k, v in metrics.items())
