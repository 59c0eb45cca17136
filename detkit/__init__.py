"""detkit: object detection in PyTorch.

The public API, loaded lazily (``import detkit`` imports neither torch nor any submodule; the first
use of a name imports what it needs)::

    import detkit

    model = detkit.build_model("faster_rcnn_r50_fpn_1x_coco")         # a zoo name, a file or a config
    model = detkit.load("runs/faster_rcnn_r18_fpn_1x_shapes/model_final.pth")
    predictor = detkit.Predictor(model)
    detkit.train("faster_rcnn_r18_fpn_1x_shapes", ["train.max_iter=100"], output_dir="runs/x")
    metrics = detkit.evaluate("faster_rcnn_r18_fpn_1x_shapes", "runs/x/model_final.pth")
    detkit.model_zoo.list_configs()
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from detkit import model_zoo
    from detkit import export
    from detkit.apis import Predictor
    from detkit.model_zoo import build_model, load

# public name -> (module, attribute; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "build_model": ("detkit.model_zoo", "build_model"),
    "load": ("detkit.model_zoo", "load"),
    "model_zoo": ("detkit.model_zoo", None),
    "Predictor": ("detkit.apis", "Predictor"),
    "export": ("detkit.export", None),  # the package, callable as detkit.export(model, path, ...)
}

__all__ = ["Predictor", "__version__", "build_model", "evaluate", "export", "load", "model_zoo", "train"]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'detkit' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


ConfigLike = str | os.PathLike[str] | Mapping[str, Any]


def train(config: ConfigLike, overrides: Sequence[str] | None = None,
          output_dir: str | os.PathLike[str] | None = None, resume: str | None = None,
          overwrite: bool | None = None) -> Any:
    """Train a detector; what ``detkit train`` runs.

    Args:
        config: A config file, a model-zoo config name, or a loaded config (left unchanged:
            overrides apply to a copy).
        overrides: ``"key.path=value"`` overrides (values are Python literals).
        output_dir: Where checkpoints, ``config.py``, ``log.txt`` and ``metrics.jsonl`` go
            (default: the config's ``train.output_dir``).
        resume: ``None`` to start fresh, ``"auto"`` for the newest checkpoint in ``output_dir``
            (fresh when there is none), or a checkpoint path.
        overwrite: Start over in an ``output_dir`` that holds an earlier run (its checkpoints and
            metrics are deleted); default ``train.overwrite`` (False: such a folder is an error).

    Returns:
        The finished :class:`detkit.engine.trainer.Trainer`; its ``model_final.pth`` reloads with
        :func:`detkit.load`.

    Raises:
        detkit.config.ConfigError: A bad config or override (an unknown zoo name too).
        FileNotFoundError: ``resume`` names a file that does not exist.
    """
    from detkit.engine.runner import run_training
    from detkit.model_zoo import load_config_like

    return run_training(load_config_like(config, overrides), output_dir=output_dir, resume=resume,
                        overwrite=overwrite)


def evaluate(config: ConfigLike, checkpoint: str | os.PathLike[str] | None = None,
             overrides: Sequence[str] | None = None, output_dir: str | os.PathLike[str] | None = None,
             device: str | None = None, plot: bool = False, progress: bool = True) -> dict[str, float]:
    """Evaluate a checkpoint on the test set of its config; what ``detkit test`` runs.

    Args:
        config: A config file, a model-zoo config name, or a loaded config, with ``model`` and
            ``dataloader.test``; the evaluator is the config's ``evaluator`` when it has one, else
            the one the test dataset calls for.
        checkpoint: Weights for the config's model (``None``: the model as it builds, e.g. with
            its own pretrained weights).
        overrides: ``"key.path=value"`` config overrides.
        output_dir: Where the detections and ``metrics.json`` are written (default: nothing is).
        device: ``"cpu"``, ``"cuda"``, ... (default: cuda when available).
        plot: Also write precision-recall curves under ``output_dir/pr_curves``.
        progress: Show a progress bar.

    Returns:
        Metric name -> value (e.g. ``bbox/AP``, ``voc07/mAP@0.5``), a
        :class:`detkit.engine.evaluation.EvaluationReport` (also ``.summary``, ``.written``).
    """
    from detkit.engine.evaluation import evaluate_config
    from detkit.model_zoo import load_config_like

    return evaluate_config(load_config_like(config, overrides), checkpoint, device=device,
                           output_dir=output_dir, plot=plot, progress=progress)
