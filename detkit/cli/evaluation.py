"""Evaluate a checkpoint on the test set of its config: ``detkit.evaluate`` and ``detkit test``.

The config (a detkit lazy config, see detkit.config) must define

* ``model``: the detector as an ``L()`` tree;
* ``dataloader.test``: the test data loader as an ``L()`` tree, yielding ``(images, targets)``;
* optionally ``dataloader.evaluator`` (or a top-level ``evaluator``): an ``L()`` tree of an
  evaluator (detkit.evaluation.CocoEvaluator / VOCEvaluator); without it the evaluator is chosen
  from the test dataset (``detkit.evaluation.build_evaluator``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from detkit.apis.predictor import load_model_weights
from detkit.cli.common import CommandError, load_config_arg
from detkit.config import instantiate
from detkit.evaluation.evaluator import build_evaluator, evaluate, format_metrics


@dataclass
class Evaluation:
    """What an evaluation gave: the metrics, the printed table, the files written."""

    metrics: dict[str, float]
    summary: str
    written: list[Path] = field(default_factory=list)


def lookup(cfg: Any, dotted: str, source: str) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``, or a :class:`CommandError` naming the missing key."""
    node = cfg
    for i, key in enumerate(dotted.split(".")):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(dotted.split(".")[:i]) or "the top level"
            have = ", ".join(sorted(map(str, node))) if isinstance(node, dict) else type(node).__name__
            raise CommandError(f"{source}: the config has no '{dotted}' (no '{key}' at {where}; "
                               f"it has: {have or 'nothing'}). Evaluation needs 'model' and "
                               f"'dataloader.test' as L() trees.")
        node = node[key]
    return node


def build_test_evaluator(cfg: Any, data_loader: Any, plot_dir: Path | None) -> Any:
    """The config's evaluator (``dataloader.evaluator`` or ``evaluator``), else the dataset's."""
    node = None
    if isinstance(cfg.get("dataloader"), dict) and "evaluator" in cfg["dataloader"]:
        node = cfg["dataloader"]["evaluator"]
    elif "evaluator" in cfg:
        node = cfg["evaluator"]
    if node is not None:
        evaluator = instantiate(node)
        if plot_dir is not None and hasattr(evaluator, "plot_dir"):
            evaluator.plot_dir = plot_dir
        return evaluator
    dataset = getattr(data_loader, "dataset", None)
    if dataset is None:
        raise CommandError("the test data loader has no .dataset to choose an evaluator from; "
                           "set dataloader.evaluator in the config")
    return build_evaluator(dataset, plot_dir=plot_dir)


def _source(config: Any) -> str:
    if isinstance(config, (str, os.PathLike)):
        return str(config)
    return str(getattr(config, "__dict__", {}).get("_cfg_file", "<in-memory config>"))


def evaluate_checkpoint(config: Any, checkpoint: str | os.PathLike[str] | None, *,
                        overrides: Sequence[str] | None = None,
                        output_dir: str | os.PathLike[str] | None = None, device: str | None = None,
                        plot: bool = False, progress: bool = True) -> Evaluation:
    """Build the config's model, load the checkpoint, run the test set, score and write it.

    Args:
        config: A config file, a model-zoo name or a loaded config.
        checkpoint: A checkpoint with a ``"model"`` state dict, or None for the model as built.
        overrides: ``"key.path=value"`` config overrides.
        output_dir: Where the detections (``coco_results.json`` or ``voc_detections.json``) and
            ``metrics.json`` go; default ``<checkpoint dir>/eval`` (nothing written without a
            checkpoint or an output folder).
        device: The device to run on (default cuda when available).
        plot: Write precision-recall curves into ``output_dir/pr_curves``.
        progress: Show a progress bar.

    Raises:
        CommandError: The config lacks ``model`` or ``dataloader.test``.
        detkit.config.ConfigError: A bad config or override.
        detkit.apis.CheckpointError: A missing, unreadable or unfitting checkpoint.
    """
    cfg = load_config_arg(config, overrides)
    model_cfg = lookup(cfg, "model", _source(config))
    loader_cfg = lookup(cfg, "dataloader.test", _source(config))
    model = instantiate(model_cfg)
    if checkpoint is not None:
        load_model_weights(model, checkpoint)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(target)
    data_loader = instantiate(loader_cfg)
    out = (Path(output_dir) if output_dir is not None
           else Path(checkpoint).resolve().parent / "eval" if checkpoint is not None else None)
    evaluator = build_test_evaluator(cfg, data_loader, out / "pr_curves" if plot and out else None)

    metrics = evaluate(model, data_loader, evaluator, device=target, progress=progress)
    summary = (evaluator.summary() if hasattr(evaluator, "summary") else "") or format_metrics(metrics)
    result = Evaluation(dict(metrics), summary)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if hasattr(evaluator, "write_results"):
            result.written += list(evaluator.write_results(out))
        metrics_path = out / "metrics.json"
        # json has no NaN: classes without ground truth are written as null.
        metrics_path.write_text(json.dumps({k: None if math.isnan(v) else v for k, v in metrics.items()},
                                           indent=1))
        result.written.append(metrics_path)
    return result
