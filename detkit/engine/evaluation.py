"""The evaluator of a config, built from its test dataset, and a config's model evaluated end to end.

- :func:`~detkit.evaluation.build_evaluator` (re-exported here) picks the evaluator a dataset calls for: COCO AP on the dataset's own
  json (a COCO split knows its annotation file), VOC mAP for PASCAL VOC boxes, COCO AP with the
  ground truth taken from the targets for anything else (VOC instance masks, shapes...).
- :func:`config_evaluator` is what the trainer and :func:`evaluate_config` use: an explicit
  ``evaluator`` section of the config wins (an ``L()`` node; a plain dict holds keyword arguments
  for the evaluator :func:`build_evaluator` picks; ``evaluator = None`` turns evaluation off),
  otherwise the evaluator comes from ``dataloader.test``'s dataset, so configs do not repeat the
  annotation file or the class list.
- :func:`evaluate_config` is ``tools/test.py`` as a function: a config's model (with a checkpoint's
  weights, or a model given) run over its test loader, the metrics returned and optionally the
  detections and ``metrics.json`` written; with ``analysis=True`` also the analysis of
  :mod:`detkit.evaluation.analysis_report` (per-class table, confusion matrix, precision / recall /
  F1 against the score threshold), printed in the summary and written into ``analysis/``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detkit.config import InstantiationError, LazyCall, instantiate
from detkit.engine.class_check import check_classes
from detkit.engine.run_folder import check_output_dir
from detkit.evaluation import evaluate, format_metrics
from detkit.evaluation.analysis_report import DetectionAnalysis, analyze_evaluator
from detkit.evaluation.evaluator import base_dataset, build_evaluator
from detkit.models.tta import TestTimeAugmentation, build_tta
from detkit.utils.checkpoint import load_weights

logger = logging.getLogger(__name__)

__all__ = ["EvaluationReport", "build_evaluator", "config_evaluator", "evaluate_config"]

NO_EVALUATOR = object()  # what config_evaluator returns for `evaluator = None`


def config_evaluator(cfg: Mapping[str, Any], dataset: Any, plot_dir: str | Path | None = None) -> Any:
    """The evaluator of a config for its test ``dataset`` (see the module docstring).

    Returns:
        The evaluator, or :data:`NO_EVALUATOR` when the config sets ``evaluator = None``.
    """
    dataloader = cfg.get("dataloader") or {}
    if "evaluator" in cfg:
        node, key = cfg["evaluator"], "evaluator"
    elif isinstance(dataloader, Mapping) and "evaluator" in dataloader:  # tools/test.py's older place
        node, key = dataloader["evaluator"], "dataloader.evaluator"
    else:
        node, key = {}, ""
    if node is None:
        return NO_EVALUATOR
    if isinstance(node, LazyCall):
        evaluator = instantiate(node, key)
        if plot_dir is not None and hasattr(evaluator, "plot_dir"):
            evaluator.plot_dir = plot_dir
        return evaluator
    if not isinstance(node, Mapping):
        raise TypeError(f"config key {key!r} must be an L(...) evaluator node, a dict of its keyword "
                        f"arguments or None, got {type(node).__name__}")
    kwargs = dict(instantiate(node, key))
    if plot_dir is not None:
        kwargs.setdefault("plot_dir", plot_dir)
    try:
        return build_evaluator(dataset, **kwargs)
    except (TypeError, ValueError) as exc:
        raise InstantiationError(f"while building the evaluator of {type(base_dataset(dataset)).__name__} "
                                 f"({key or 'from dataloader.test'}): {exc}") from exc


class EvaluationReport(dict):
    """The metrics (``name -> value``) of :func:`evaluate_config`, plus ``summary`` (the evaluator's
    table, or the metrics formatted, then the analysis's per-class table), ``written`` (the files
    written) and ``analysis`` (the :class:`~detkit.evaluation.DetectionAnalysis`, or None)."""

    def __init__(self, metrics: Mapping[str, float], summary: str, written: list[Path],
                 analysis: DetectionAnalysis | None = None) -> None:
        super().__init__(metrics)
        self.summary = summary
        self.written = written
        self.analysis = analysis


def evaluate_config(
    cfg: Mapping[str, Any],
    checkpoint: str | Path | None = None,
    *,
    model: nn.Module | None = None,
    device: str | torch.device | None = None,
    output_dir: str | Path | None = None,
    plot: bool = False,
    progress: bool = True,
    analysis: bool = False,
    analysis_iou: float | None = None,
    analysis_score_thresh: float | None = None,
    tta: bool | Mapping[str, Any] | None = None,
    fuse: bool = True,
) -> EvaluationReport:
    """Evaluate a config's model on its ``dataloader.test``.

    Args:
        cfg: a loaded config (overrides applied) with ``dataloader.test`` (and ``model`` unless
            ``model`` is given).
        checkpoint: weights to load into the config's model (strict); None keeps the model's own.
        model: a model to evaluate instead of building ``cfg.model``.
        device: where to run (default: CUDA when available, else the CPU).
        output_dir: when set, the detections (``coco_results.json`` or ``voc_detections.json``) and
            ``metrics.json`` are written there (``pr_curves/`` too with ``plot``).
        plot: write precision-recall curves (needs ``output_dir``).
        progress: show a progress bar.
        analysis: analyse the detections (a COCO evaluator's ``bbox`` evaluation, or a VOC
            evaluator's): the per-class table joins the summary and, with ``output_dir``, the
            files of :data:`~detkit.evaluation.ANALYSIS_FILES` are written into
            ``output_dir/analysis``. Another evaluator is left unanalysed (a warning).
        analysis_iou: the IoU a match needs in the analysis (default 0.5; VOC: its IoU).
        analysis_score_thresh: the confusion matrix counts detections with ``score >=`` this
            (default: the best-F1 threshold of all classes).
        tta: test-time augmentation (``detkit test --tta``): True for the defaults (the image and
            its horizontal flip, merged by class-wise NMS), or a dict of
            :class:`~detkit.models.tta.TestTimeAugmentation`'s options (``flips``, ``scales``,
            ``merge``...); the model, weights loaded, is wrapped in it. None / False: none.
        fuse: evaluate the fast path (an eval-mode copy with the batch norms folded into the
            convolutions, channels-last on the CPU: :func:`detkit.models.fuse.inference_copy`);
            False runs the model as it is.

    Returns:
        The metrics, as an :class:`EvaluationReport`.

    Raises:
        KeyError: the config has no ``dataloader.test`` (or no ``model`` when none is given).
        FileNotFoundError: a missing checkpoint.
        detkit.utils.checkpoint.CheckpointError: weights that do not fit (the path named).
        ConfigError: a config problem (the key is named).
        ClassMismatchError: the test dataset's classes are not the model's (the difference shown).
        OutputDirError: ``output_dir`` cannot be written (checked before the model is built).
        ValueError: a bad ``tta`` option (named).
    """
    source = getattr(cfg, "__dict__", {}).get("_cfg_file", "the config")
    dataloader = cfg.get("dataloader") or {}
    if not isinstance(dataloader, Mapping) or "test" not in dataloader:
        raise KeyError(f"{source} has no dataloader.test (an L(build_test_loader)(...) node) to evaluate on")
    if output_dir is not None:  # before any work: a folder that cannot be written loses nothing
        check_output_dir(output_dir, "--out (output_dir)", create=False)
    if model is None:
        if "model" not in cfg:
            raise KeyError(f"{source} defines no `model`")
        model = instantiate(cfg["model"], "model")
    if checkpoint is not None:
        load_weights(model, checkpoint, strict=True)
    model = build_tta(model, tta, "tta (--tta)")  # after the weights: they are the detector's
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    data_loader = instantiate(dataloader["test"], "dataloader.test")
    check_classes(model, data_loader.dataset, f"{source}: dataloader.test")
    out = Path(output_dir) if output_dir is not None else None
    plot_dir = out / "pr_curves" if (plot and out is not None) else None
    evaluator = config_evaluator(cfg, data_loader.dataset, plot_dir)
    if evaluator is NO_EVALUATOR:
        raise ValueError(f"{source} sets evaluator = None: there is nothing to evaluate with")
    metrics = evaluate(model, data_loader, evaluator, device=device, progress=progress, fuse=fuse)
    summary = (evaluator.summary() if hasattr(evaluator, "summary") else "") or format_metrics(metrics)
    if isinstance(model, TestTimeAugmentation):  # which views were merged
        summary = f"{model.describe()}\n{summary}"
    result_analysis = None
    if analysis:
        result_analysis = analyze_evaluator(evaluator, iou_thresh=analysis_iou, score_thresh=analysis_score_thresh)
        if result_analysis is None:
            logger.warning("no analysis: it needs a CocoEvaluator with a bbox evaluation or a VOCEvaluator, "
                           "got %s", type(evaluator).__name__)
        else:
            summary += "\n\n" + result_analysis.format_table()
    written: list[Path] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if hasattr(evaluator, "write_results"):
            written += list(evaluator.write_results(out))
        metrics_path = out / "metrics.json"
        # json has no NaN: classes without ground truth are written as null.
        metrics_path.write_text(json.dumps({k: None if math.isnan(v) else v for k, v in metrics.items()}, indent=1))
        written.append(metrics_path)
        if result_analysis is not None:
            written += result_analysis.write(out / "analysis")
    return EvaluationReport(metrics, summary, written, result_analysis)
