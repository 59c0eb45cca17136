"""Train a detector from a config (a file or a model-zoo name).

    detkit train CONFIG [key.path=value ...] [--resume PATH|auto] [--output-dir DIR] [--overwrite]
                 [--data DATASET] [--weights CHECKPOINT]
    torchrun --nproc_per_node 8 -m detkit.cli train CONFIG ...     # several GPUs (or CPU/gloo)
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port PORT \\
        --nproc_per_node 8 -m detkit.cli train CONFIG ...          # several machines

Overrides are Python literals (``train.max_iter=1000 optimizer.lr=0.01``). The resolved config is
written to ``OUTPUT_DIR/config.py``, the log to ``OUTPUT_DIR/log.txt``, the metrics to
``OUTPUT_DIR/metrics.jsonl`` (plot them with ``detkit plot``). ``--resume auto`` continues from
the newest checkpoint in the output folder (or starts fresh when there is none). A fresh run into
a folder that holds another run's checkpoints or metrics stops before any work, unless
``--overwrite`` (``train.overwrite=True``) is given, which deletes them first.

Your own data: ``--data DATASET`` (a description .yaml / .json, an ultralytics data.yaml, or a
folder in a COCO, VOC or YOLO layout; :mod:`detkit.data.description`) replaces the config's
training and validation datasets, keeping its pipelines and wrappers, and sets ``model.num_classes``
and ``model.class_names`` from the data (:func:`detkit.engine.own_data.use_own_data`); the run goes
to ``<train.output_dir>-<dataset name>`` unless ``--output-dir`` says otherwise. ``--weights
CHECKPOINT`` starts from a detkit checkpoint (``train.init_checkpoint``), or from the weights of a
pretrained zoo config (``--weights yolov3_tiny_coco_pretrained``: the official COCO YOLOv3-tiny,
written once as a checkpoint under ``$DETKIT_CACHE/zoo_weights``): every tensor whose name and
shape match is loaded, and ``init_report.json`` in the run folder (and the log) lists what was
loaded, the layers resized for the new class count, what was left new and what was unused.
Overrides apply after ``--data``, so they reach the new dataset nodes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detkit.cli import parse_command_args, run_command
from detkit.cli.common import split_overrides

HELP = "train a detector from a config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit train``."""
    parser.add_argument("config", help="config file (Python, detkit.config) or model-zoo name")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides")
    parser.add_argument("--resume", default=None, metavar="PATH|auto",
                        help="checkpoint to resume from, or 'auto' for the newest in the output dir")
    parser.add_argument("--output-dir", default=None, help="overrides train.output_dir")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="start over in an output dir that holds another run (deletes its "
                             "checkpoints and metrics; train.overwrite=True)")
    parser.add_argument("--data", default=None, metavar="DATASET",
                        help="train on your own data: a description .yaml/.json, an ultralytics data.yaml, or a "
                             "COCO / VOC / YOLO folder (classes and num_classes come from it)")
    parser.add_argument("--weights", default=None, metavar="CHECKPOINT",
                        help="start from this detkit checkpoint or pretrained zoo config (train.init_checkpoint): "
                             "tensors that match by name and shape are loaded, the rest reported in init_report.json")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Overrides may come before the config too."""
    split_overrides(parser, args, ["config"])


def load_train_config(config: str, overrides: Sequence[str], data: str | None = None,
                      weights: str | None = None) -> Any:
    """The config to train: loaded, retargeted at ``data`` (:func:`detkit.engine.own_data.use_own_data`),
    started from ``weights`` (``train.init_checkpoint``), then the overrides applied.

    Raises:
        CommandError: ``weights`` is neither a file nor a pretrained zoo config.
    """
    from detkit.cli.common import load_config_arg

    if data is None and weights is None:
        return load_config_arg(config, overrides)
    from detkit.config import apply_overrides
    from detkit.engine.own_data import use_own_data

    if weights is not None and not Path(weights).is_file():
        weights = _zoo_weights(weights)
    cfg = load_config_arg(config, [])
    if data is not None:
        use_own_data(cfg, data)
    if weights is not None:
        cfg["train"]["init_checkpoint"] = str(weights)
    return apply_overrides(cfg, list(overrides)) if overrides else cfg


def _zoo_weights(name: str) -> str:
    """The cached checkpoint of a pretrained zoo model, for ``--weights NAME``."""
    from detkit.cli.common import CommandError
    from detkit.model_zoo import list_configs, pretrained_weights_file

    if name not in list_configs():
        raise CommandError(f"--weights {name}: no such checkpoint file (nor a pretrained zoo config: "
                           "e.g. yolov3_tiny_coco_pretrained)")
    try:
        return str(pretrained_weights_file(name))
    except ValueError as error:
        raise CommandError(f"--weights {name}: {error}") from None


def run(args: argparse.Namespace) -> int:
    """Load the config with its overrides (and --data, --weights) and train."""
    from detkit.engine.runner import run_training

    cfg = load_train_config(args.config, args.overrides, args.data, args.weights)
    run_training(cfg, output_dir=args.output_dir, resume=args.resume, overwrite=args.overwrite)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit train``."""
    return parse_command_args("train", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit train``; returns the exit status."""
    return run_command("train", argv)
