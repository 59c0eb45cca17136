"""Preparing a model for training: freezing by name prefix, starting from a checkpoint.

Fine-tuning (``train.init_checkpoint``, ``detkit train --weights``) loads every tensor whose name
and shape match; :func:`init_report_text` and :func:`init_report_data` say, in one block of the
log and in ``init_report.json`` of the run folder (:func:`write_init_report`), what was loaded,
which layers were resized (a shape that differs, e.g. a classifier for another number of classes:
those keep the model's fresh initialisation at the new size), what was left new (not in the
checkpoint) and what of the checkpoint went unused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from detkit.utils.checkpoint import CheckpointError, LoadReport, load_weights

logger = logging.getLogger(__name__)

__all__ = ["INIT_REPORT_FILE", "freeze_by_prefix", "init_report_data", "init_report_text", "load_init_checkpoint",
           "write_init_report"]

INIT_REPORT_FILE = "init_report.json"
_LISTED = 12  # keys listed per kind in the log block (all of them are in the json)


def _matches(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def freeze_by_prefix(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Module]:
    """Stop gradients of every parameter under the given module-name prefixes.

    ``"backbone.body.layer1"`` freezes that module and everything inside it. Calling it twice
    is harmless. The trainer keeps the returned modules in eval mode, so their BatchNorm
    statistics stay fixed too.

    Args:
        model: The (unwrapped) model.
        prefixes: Module-name prefixes (``train.freeze``).

    Returns:
        The frozen modules (the top-most module of each prefix).

    Raises:
        ValueError: a prefix matches no module; the message names ``train.freeze``.
    """
    frozen: list[nn.Module] = []
    names = dict(model.named_modules())
    for prefix in prefixes:
        matched = [(n, m) for n, m in names.items() if n and _matches(n, prefix)]
        if not matched:
            tops = sorted({n.split(".")[0] for n in names if n})
            raise ValueError(f"train.freeze: prefix {prefix!r} matches no module of "
                             f"{type(model).__name__}; top-level modules: {', '.join(tops)}")
        top = min(matched, key=lambda item: item[0].count("."))
        for _, module in matched:
            for param in module.parameters():
                param.requires_grad_(False)
        frozen.extend(m for n, m in matched if n.count(".") == top[0].count("."))
    count = sum(p.numel() for m in frozen for p in m.parameters())
    if prefixes:
        logger.info("froze %d parameters under %s", count, ", ".join(prefixes))
    return frozen


def load_init_checkpoint(model: nn.Module, path: str | Path) -> LoadReport:
    """Fine-tuning start: load the tensors of ``path`` that match ``model`` by name and shape.

    A detkit training checkpoint (weights under ``"model"``) or a plain state dict, read by
    :func:`detkit.utils.checkpoint.load_weights`. Missing, unexpected and shape-mismatched keys
    (e.g. a classifier for another number of classes) are listed by name in the returned report
    and the log. A file of which not one tensor fits (the weights of another model) is an error:
    training from it would silently start from scratch.

    Raises:
        CheckpointError: the file is missing, unreadable, or nothing in it fits ``model``; the
            message names ``train.init_checkpoint`` and the path.
    """
    try:
        report = load_weights(model, path)
    except CheckpointError as error:
        raise type(error)(f"train.init_checkpoint: {error}") from error
    if not report.loaded_keys and model.state_dict():
        raise CheckpointError(f"train.init_checkpoint: nothing in {path} fits the model "
                              f"({type(model).__name__}): " + "; ".join(report.problems()))
    return report


def _layer(key: str) -> str:
    """The module a state-dict key belongs to (``head.preds.0.weight`` -> ``head.preds.0``)."""
    return key.rsplit(".", 1)[0] if "." in key else key


def init_report_data(report: LoadReport) -> dict[str, Any]:
    """The report of a fine-tuning start as plain data (the content of ``init_report.json``).

    Returns:
        ``{"checkpoint", "loaded" (count), "loaded_keys", "resized_layers" (the modules whose
        tensors changed shape, in model order), "resized" (``{"key", "checkpoint_shape",
        "model_shape"}`` each), "new" (model keys the checkpoint lacks), "unused" (checkpoint
        keys the model has no place for)}``.
    """
    layers: list[str] = []
    for key, _, _ in report.shape_mismatches:
        if _layer(key) not in layers:
            layers.append(_layer(key))
    return {
        "checkpoint": str(report.path),
        "loaded": len(report.loaded_keys),
        "loaded_keys": list(report.loaded_keys),
        "resized_layers": layers,
        "resized": [{"key": key, "checkpoint_shape": list(have), "model_shape": list(want)}
                    for key, have, want in report.shape_mismatches],
        "new": list(report.missing_keys),
        "unused": list(report.unexpected_keys),
    }


def _some(keys: Sequence[str]) -> str:
    more = f", ... and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def init_report_text(report: LoadReport) -> str:
    """The report of a fine-tuning start as one readable block (a few lines)."""
    data = init_report_data(report)
    total = data["loaded"] + len(data["resized"]) + len(data["new"])
    lines = [f"init from {data['checkpoint']}: loaded {data['loaded']} of the model's {total} tensors"]
    if data["resized"]:
        shapes = [f"{item['key']} {item['checkpoint_shape']} -> {item['model_shape']}" for item in data["resized"]]
        lines.append(f"  resized, freshly initialised (shapes differ, e.g. another class count): layers "
                     f"{', '.join(data['resized_layers'])}: {_some(shapes)}")
    if data["new"]:
        lines.append(f"  left new (not in the checkpoint, {len(data['new'])}): {_some(data['new'])}")
    if data["unused"]:
        lines.append(f"  unused (checkpoint tensors the model has no place for, {len(data['unused'])}): "
                     f"{_some(data['unused'])}")
    if len(lines) == 1:
        lines.append("  every tensor matched")
    return "\n".join(lines)


def write_init_report(report: LoadReport, output_dir: str | Path | None) -> Path | None:
    """Log :func:`init_report_text` and, when ``output_dir`` is given, write
    ``output_dir/init_report.json`` (:func:`init_report_data`); returns the file written."""
    logger.info("%s", init_report_text(report))
    if output_dir is None:
        return None
    path = Path(output_dir) / INIT_REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(init_report_data(report), indent=1) + "\n")
    return path
