"""Evaluate a trained detector: ``python tools/test.py CONFIG CHECKPOINT [key=value ...] [--out DIR]``.

The config (a detkit lazy config, see detkit.config) must define

* ``model``: the detector as an ``L()`` tree;
* ``dataloader.test``: the test data loader as an ``L()`` tree, yielding ``(images, targets)``;
* optionally ``dataloader.evaluator`` (or a top-level ``evaluator``): an ``L()`` tree of an
  evaluator (detkit.evaluation.CocoEvaluator / VOCEvaluator); without it the evaluator is chosen
  from the test dataset (``detkit.evaluation.build_evaluator``).

The checkpoint is read with ``torch.load(weights_only=True)``; its ``"model"`` entry is the state
dict. Prints the evaluation table and writes into ``--out`` (default ``<checkpoint dir>/eval``):
the detections (``coco_results.json`` or ``voc_detections.json``), ``metrics.json`` and, with
``--plot``, precision-recall curves under ``pr_curves/``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from detkit.config import ConfigError, instantiate, load_config  # noqa: E402
from detkit.evaluation.evaluator import build_evaluator, evaluate, format_metrics  # noqa: E402


class ToolError(Exception):
    """A problem with the command line, config or checkpoint, reported without a traceback."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Evaluate a detector checkpoint on the test set of its config.",
        epilog="Overrides are key.path=value (value parsed as a Python literal), e.g. dataloader.test.batch_size=4",
    )
    parser.add_argument("config", help="detkit config file (.py)")
    parser.add_argument("checkpoint", help="checkpoint file (torch.save dict with a 'model' state dict)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <checkpoint dir>/eval)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when available)")
    parser.add_argument("--plot", action="store_true", help="also write precision-recall curves")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must be key=value, got {' '.join(bad)}")
    return args


def _lookup(cfg: Any, dotted: str, config_path: str) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``, or a :class:`ToolError` naming the missing key."""
    node = cfg
    for i, key in enumerate(dotted.split(".")):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(dotted.split(".")[:i]) or "the top level"
            have = ", ".join(sorted(map(str, node))) if isinstance(node, dict) else type(node).__name__
            raise ToolError(f"{config_path}: the config has no '{dotted}' (no '{key}' at {where}; "
                            f"it has: {have or 'nothing'}). tools/test.py needs 'model' and "
                            f"'dataloader.test' as L() trees.")
        node = node[key]
    return node


def load_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Load ``checkpoint["model"]`` into ``model`` (strict), with clear errors."""
    file = Path(path)
    if not file.is_file():
        raise ToolError(f"checkpoint not found: {file}")
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        keys = ", ".join(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ToolError(f"{file}: no 'model' entry in the checkpoint (it has: {keys})")
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise ToolError(f"{file}: the weights do not fit the config's model: {exc}") from exc


def _evaluator(cfg: Any, data_loader: Any, plot_dir: Path | None) -> Any:
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
        raise ToolError("the test data loader has no .dataset to choose an evaluator from; "
                        "set dataloader.evaluator in the config")
    return build_evaluator(dataset, plot_dir=plot_dir)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (configuration problems are printed, not raised)."""
    args = parse_args(argv)
    try:
        config_path = Path(args.config)
        if not config_path.is_file():
            raise ToolError(f"config not found: {config_path}")
        cfg = load_config(config_path, args.overrides)
        model_cfg = _lookup(cfg, "model", args.config)
        loader_cfg = _lookup(cfg, "dataloader.test", args.config)
        model = instantiate(model_cfg)
        load_checkpoint(model, args.checkpoint)
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.to(device)
        data_loader = instantiate(loader_cfg)
        out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
        evaluator = _evaluator(cfg, data_loader, out / "pr_curves" if args.plot else None)
    except (ToolError, ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    metrics = evaluate(model, data_loader, evaluator, device=device, progress=not args.no_progress)
    summary = evaluator.summary() if hasattr(evaluator, "summary") else ""
    print(summary or format_metrics(metrics))

    out.mkdir(parents=True, exist_ok=True)
    written = list(evaluator.write_results(out)) if hasattr(evaluator, "write_results") else []
    metrics_path = out / "metrics.json"
    # json has no NaN: classes without ground truth are written as null.
    metrics_path.write_text(json.dumps({k: None if math.isnan(v) else v for k, v in metrics.items()}, indent=1))
    written.append(metrics_path)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
