"""A zoo config retargeted at a described dataset: what ``detkit train MODEL --data DATASET`` does.

:func:`use_own_data` rewrites a loaded config in place:

* the **base dataset** of ``dataloader.train`` and of ``dataloader.test`` (the node that reads
  files, found under any wrapper that holds it as ``dataset=``: YOLO's
  :class:`~detkit.data.mosaic.MosaicDataset`, a mixup, ...) becomes
  ``L(described_dataset)(data=DATASET, split="train" | "val", transforms=<the old node's>)``; the
  wrappers, the loaders and the pipelines of the config are kept as they are, and so are the
  old node's ``with_masks`` and ``skip_empty``;
* ``model.num_classes`` and ``model.class_names`` become the data's
  (:func:`detkit.data.description.class_names_of`), which reach every head through ``Inherit``;
  the training and evaluation datasets are checked against them when the run starts;
* the evaluator follows the test dataset (``evaluator = {}``: :func:`detkit.evaluation.build_evaluator`
  picks COCO AP on a COCO json, VOC mAP for VOC xml, COCO AP from the targets for YOLO txt), and
  a ``train.best_metric`` of the COCO kind becomes ``voc07/mAP@0.5`` for VOC data;
* without a validation split (none given and ``val_fraction: 0``) there is no ``dataloader.test``
  and no evaluation (``train.best_metric`` and ``train.patience`` are cleared);
* ``train.output_dir`` gets the dataset's name appended (``runs/<config>-<dataset>``), so a run on
  your data never lands in the folder of the config's own run.

Overrides given on the command line apply after the rewrite, so they can reach the new nodes
(``dataloader.test.dataset.split=test`` evaluates on the test split).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detkit.config import ConfigDict, L, LazyCall
from detkit.data.description import (
    DatasetDescription,
    class_names_of,
    described_dataset,
    read_description,
)

logger = logging.getLogger(__name__)

__all__ = ["base_dataset_slot", "use_own_data"]

VOC_METRIC = "voc07/mAP@0.5"  # what VOCEvaluator reports (configs/common/datasets.py VOC_BEST_METRIC)
_CARRIED = ("transforms", "with_masks", "skip_empty")  # keys of the old base node kept on the new one


def base_dataset_slot(loader: Any, where: str) -> tuple[ConfigDict, str]:
    """``(node, key)`` such that ``node[key]`` is the base dataset of a loader node.

    The base dataset is found by following ``dataset=`` down from the loader for as long as the
    value is an ``L()`` node that itself holds a ``dataset=`` node (a wrapper): the innermost is
    the one that reads files.

    Raises:
        ValueError: the loader is not an ``L()`` node with a ``dataset`` node (``where`` named).
    """
    if not isinstance(loader, LazyCall) or not isinstance(loader.get("dataset"), LazyCall):
        raise ValueError(f"{where}: expected an L(...) loader node with dataset=L(...); cannot place --data there")
    node: ConfigDict = loader
    for _ in range(16):
        inner = node["dataset"]
        if not isinstance(inner.get("dataset"), LazyCall):
            return node, "dataset"
        node = inner
    raise ValueError(f"{where}: datasets nested more than 16 deep")


def _described_node(old: LazyCall, data: Any, split: str) -> LazyCall:
    carried = {key: old[key] for key in _CARRIED if key in old and (key == "transforms" or isinstance(old[key], bool))}
    return L(described_dataset)(data=data, split=split, **carried)


def _set_classes(model: Any, names: list[str], source: str) -> None:
    if not isinstance(model, LazyCall) or "num_classes" not in model._valid_keys():
        raise ValueError(f"{source}: model has no num_classes key, so --data cannot set its classes "
                         "(a detector config with model.num_classes is needed)")
    model["num_classes"] = len(names)
    if "class_names" in model._valid_keys():
        model["class_names"] = list(names)


def use_own_data(cfg: ConfigDict, data: str | Path | Mapping[str, Any]) -> DatasetDescription:
    """Retarget ``cfg`` (a loaded training config) at the dataset ``data``, in place (see the
    module docstring).

    Args:
        cfg: the config, before command-line overrides.
        data: a description file, an ultralytics data.yaml, a dataset folder, or a parsed
            description (plain data).

    Returns:
        The description read.

    Raises:
        DatasetError: the description (file, key and value named).
        ValueError: a config without ``dataloader.train`` or ``model.num_classes``.
    """
    source = getattr(cfg, "__dict__", {}).get("_cfg_file", "<in memory config>")
    description = read_description(data)
    names = class_names_of(description)
    stored = data if isinstance(data, Mapping) else str(Path(data).resolve())
    dataloader = cfg.get("dataloader")
    if not isinstance(dataloader, Mapping) or "train" not in dataloader:
        raise ValueError(f"{source}: no dataloader.train to put --data {data} in")
    node, key = base_dataset_slot(dataloader["train"], f"{source}: dataloader.train")
    node[key] = _described_node(node[key], stored, "train")
    train = cfg.get("train")
    if description.has_validation and "test" in dataloader:
        node, key = base_dataset_slot(dataloader["test"], f"{source}: dataloader.test")
        node[key] = _described_node(node[key], stored, "val")
        cfg["evaluator"] = ConfigDict()
        best = train.get("best_metric") if isinstance(train, Mapping) else None
        if description.format == "voc" and isinstance(best, str) and not best.startswith("voc"):
            train["best_metric"] = VOC_METRIC
    else:
        dataloader.pop("test", None)
        cfg["evaluator"] = None
        if isinstance(train, Mapping):
            train["best_metric"] = None
            train["patience"] = None
        logger.warning("--data %s has no validation split (val_fraction 0): training without evaluation", data)
    _set_classes(cfg.get("model"), names, source)
    if "class_names" in dataloader:
        dataloader["class_names"] = list(names)
    if isinstance(train, Mapping) and train.get("output_dir"):
        train["output_dir"] = f"{str(train['output_dir']).rstrip('/')}-{description.name}"
    logger.info("--data %s: %s format, splits %s, %d classes %s", data, description.format,
                ", ".join(description.splits), len(names), names)
    return description
