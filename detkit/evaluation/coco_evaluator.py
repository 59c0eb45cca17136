"""COCO bbox / segm / keypoint mAP of a detector's predictions, through pycocotools (:class:`CocoEvaluator`).

The evaluator feeds :func:`~detkit.evaluation.loop.evaluate`; the COCO conversions and the
pycocotools calls are in :mod:`detkit.evaluation.coco_eval`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from detkit.utils.distributed import all_gather_object, get_rank

from .coco_eval import (
    COCO_BACKENDS,
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
from .loop import as_numpy, check_finite_prediction, evaluate_if_given, image_id_of
from .pr_curves import save_pr_curves

__all__ = ["CocoEvaluator", "annotation_file_of"]


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
        iou_types: ``("bbox",)``, ``("bbox", "segm")``, ``("bbox", "keypoints")``...; ``None``
            decides at the first batch: ``"bbox"``, plus ``"segm"`` when the predictions carry
            masks and ``"keypoints"`` (OKS) when they carry keypoints.
        per_class: add ``"<type>/AP-<name>"`` metrics.
        mask_threshold: a predicted mask pixel is foreground where its probability is above this.
        plot_dir: when set, write precision-recall curves (IoU 0.5) there on :meth:`evaluate`.
        verbose: let pycocotools print its progress and table.
        backend: what runs ``COCOeval``: ``"pycocotools"`` (default, the reference) or
            ``"faster_coco_eval"`` (opt-in, the same numbers faster; the ``fast-eval`` extra), see
            :func:`~detkit.evaluation.coco_eval.evaluate_coco`.
        keypoint_sigmas: OKS sigma per keypoint for ``"keypoints"``; default the annotation
            file's ``categories[].keypoint_sigmas``, else pycocotools' COCO-person sigmas.
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
        backend: str = "pycocotools",
        keypoint_sigmas: Sequence[float] | None = None,
    ) -> None:
        if backend not in COCO_BACKENDS:
            raise ValueError(f"unknown COCO evaluation backend {backend!r}; expected one of {COCO_BACKENDS}")
        self.backend = backend
        self.keypoint_sigmas = None if keypoint_sigmas is None else [float(v) for v in keypoint_sigmas]
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
            annotation_file = annotation_file_of(dataset)
        kwargs.setdefault("class_names", getattr(dataset, "class_names", None))
        kwargs.setdefault("label_to_category_id", getattr(dataset, "label_to_category_id", None))
        kwargs.setdefault("keypoint_sigmas", getattr(dataset, "keypoint_sigmas", None))
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
        """Convert one batch of predictions to COCO results (and targets to gt records).

        Raises:
            ValueError: a prediction with a NaN or inf score or box (names the image id), an
                image id absent from the annotation file.
        """
        if len(targets) != len(predictions):
            raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
        if self.iou_types is None:
            has_masks = any(p.get("masks") is not None for p in predictions)
            self.iou_types = ("bbox", "segm") if has_masks else ("bbox",)
            if any(p.get("keypoints") is not None for p in predictions):
                self.iou_types += ("keypoints",)
        ids = []
        for target in targets:
            image_id = image_id_of(target)
            if self.coco_gt is not None and not isinstance(image_id, int):
                raise KeyError("CocoEvaluator with an annotation file needs an int 'image_id' in every "
                               f"target, got {target.get('image_id')!r}")
            if not isinstance(image_id, int):
                # Absent or not an int (a VOC file id): ids 1, 2, ... in processing order, offset
                # by rank so that ranks never collide.
                image_id = get_rank() * 1_000_000_000 + len(self.image_ids) + len(ids) + 1
            ids.append(image_id)
        for prediction, image_id in zip(predictions, ids):
            check_finite_prediction(prediction, image_id)
        if self.coco_gt is not None:
            unknown = sorted(set(ids) - set(self.coco_gt.getImgIds()))
            if unknown:
                raise ValueError(f"image ids {unknown[:20]} are not in {self.annotation_file}")
        for d in (*targets, *predictions) if self.coco_gt is None else predictions:
            self._labels_seen.update(int(v) for v in as_numpy(d["labels"]).reshape(-1))
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
        parts = all_gather_object(state)
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
        metrics = evaluate_if_given(self, model, data_loader)
        if metrics is not None:
            return metrics
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
                                   class_names=names, verbose=self.verbose, category_ids=category_ids,
                                   backend=self.backend, keypoint_sigmas=self.keypoint_sigmas)
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


def annotation_file_of(dataset: Any) -> str | None:
    """The COCO json a dataset was read from, when it tells (see CocoEvaluator.from_dataset)."""
    for name in ("annotation_file", "ann_file"):
        if getattr(dataset, name, None):
            return str(getattr(dataset, name))
    source = getattr(dataset, "source", None)
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".json") and Path(source).is_file():
        return str(source)
    return None
