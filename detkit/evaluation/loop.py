"""The evaluation loop: run a detector over a data loader and feed an evaluator.

An evaluator accumulates per-image targets and predictions and turns them into flat metrics::

    evaluator = CocoEvaluator.from_dataset(dataset)          # or VOCEvaluator.from_dataset(dataset)
    metrics = evaluate(model, data_loader, evaluator)        # {"bbox/AP": ..., "bbox/AP50": ...}

:func:`evaluate` is what the training engine calls. Metric names: ``"<iou type>/<stat>"`` for
COCO (``"bbox/AP"``, ``"bbox/AP50"``, ``"segm/AP"``, ``"bbox/AR100"``...; per class
``"bbox/AP-<class name>"``) and ``"<metric>/mAP@<iou>"`` for VOC (``"voc07/mAP@0.5"``,
``"voc12/mAP@0.5"``; per class ``"voc07/AP@0.5-<class name>"``). Values are fractions in [0, 1];
NaN marks a class without ground truth, -1 a COCO stat pycocotools cannot define.

Under ``torch.distributed`` each rank processes its own shard of the test set; an evaluator's
``evaluate()`` gathers every rank's images (:func:`detkit.utils.distributed.all_gather_object`,
in rank order, so contiguous shards keep the dataset order that VOC's tie-breaking follows; an
image id seen twice is counted once) and every rank returns the metrics of the whole set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from detkit.models.fuse import inference_copy
from detkit.utils.distributed import is_main_process

__all__ = [
    "Evaluator", "as_numpy", "check_finite_prediction", "evaluate", "evaluate_if_given", "format_metrics",
    "image_id_of",
]


@runtime_checkable
class Evaluator(Protocol):
    """What :func:`evaluate` needs: accumulate a dataset's worth of images, then score them."""

    def reset(self) -> None:
        """Forget everything processed so far."""

    def process(self, targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]) -> None:
        """Accumulate one batch: per-image target dicts and the model's prediction dicts."""

    def evaluate(self) -> dict[str, float]:
        """Score everything processed since the last :meth:`reset`; metric name -> value."""


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
    fuse: bool = True,
) -> dict[str, float]:
    """Run ``model`` over ``data_loader`` in eval mode and score it with ``evaluator``.

    By default the loop runs the fast path of :func:`detkit.models.fuse.inference_copy`: an
    eval-mode copy of the model with its batch norms folded into the convolutions (channels-last
    on the CPU); ``model`` itself is not touched, so a trainer can evaluate the model it trains.
    With ``fuse=False`` the model itself runs under ``torch.no_grad()`` in eval mode and its
    previous train/eval mode is restored afterwards (also on error). Predictions are moved to
    the CPU before the evaluator sees them; targets are passed as the loader gives them.

    Args:
        model: a detector: ``model(images) -> (predictions, losses)`` in eval mode (a bare list of
            predictions is accepted too).
        data_loader: yields ``(images, targets)``: a list of ``[3, H, W]`` tensors (or an
            ``ImageList``) and per-image target dicts.
        evaluator: reset at the start, fed each batch, asked for the metrics at the end.
        device: where to put the images; default the device of the model's first parameter.
        progress: show a tqdm bar (on rank 0 only when distributed).
        description: the bar's label.
        fuse: run the folded, channels-last copy (the default); False runs ``model`` as it is.

    Returns:
        ``evaluator.evaluate()``: metric name -> value.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    evaluator.reset()
    was_training = model.training
    runner = inference_copy(model, fuse=True, device=device) if fuse else model.eval()
    try:
        total = len(data_loader) if hasattr(data_loader, "__len__") else None  # type: ignore[arg-type]
        with torch.no_grad():
            bar = tqdm(data_loader, total=total, desc=description, dynamic_ncols=True,
                       disable=not (progress and is_main_process()))
            for batch in bar:
                images, targets = batch
                outputs = runner(_to_device(images, device))
                predictions = outputs[0] if isinstance(outputs, tuple) else outputs
                if len(predictions) != len(targets):
                    raise ValueError(f"the model returned {len(predictions)} predictions for {len(targets)} images")
                evaluator.process(targets, [_to_cpu(p) for p in predictions])
    finally:
        model.train(was_training)
    return evaluator.evaluate()


def image_id_of(target: Mapping[str, Any]) -> int | str | None:
    """A target's ``image_id`` as a Python int (or str: VOC ids such as ``"2008_000123"``)."""
    value = target.get("image_id")
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, str) else int(value)


def as_numpy(value: Any) -> np.ndarray:
    """A tensor (on any device) or array-like as a numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def check_finite_prediction(prediction: Mapping[str, Any], image_id: Any) -> None:
    """Refuse a prediction whose ``scores [N]`` or ``boxes [N, 4]`` hold NaN or inf.

    NaN scores sort anywhere, so they can be scored as a perfect ranking (AP 1.0 with every score
    NaN); a non-finite score or box is a numerical fault of the model, never a detection.

    Raises:
        ValueError: one line naming the image id, the first offending detection and its value.
    """
    for key, what in (("scores", "score"), ("boxes", "box")):
        if prediction.get(key) is None:
            continue
        values = as_numpy(prediction[key]).astype(np.float64)
        if values.size == 0:
            continue
        rows = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)
        bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
        if len(bad):
            value = rows[bad[0]].tolist()
            raise ValueError(
                f"image {image_id}: detection {int(bad[0])} has a non-finite {what} "
                f"{value[0] if key == 'scores' else value} ({len(bad)} of {len(rows)} detections non-finite); "
                "NaN or inf predictions cannot be scored (a numerical fault of the model)"
            )


def format_metrics(metrics: Mapping[str, float]) -> str:
    """Metrics as ``name  value`` lines (NaN shown as n/a)."""
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"{k:<{width}}  {'n/a' if math.isnan(v) else f'{v:.4f}'}" for k, v in metrics.items())


def evaluate_if_given(evaluator: Evaluator, model: nn.Module | None, data_loader: Iterable[Any] | None
                      ) -> dict[str, float] | None:
    """What an evaluator's ``evaluate(model=None, data_loader=None)`` does with its arguments.

    Returns:
        The metrics of the whole loop (``evaluate(model, data_loader, evaluator)``, the call the
        training engine makes) when both are given; None when neither is (score what was processed).

    Raises:
        TypeError: only one of the two is given.
    """
    if model is None and data_loader is None:
        return None
    if model is None or data_loader is None:
        raise TypeError(f"{type(evaluator).__name__}.evaluate() takes both model and data_loader, or neither")
    return evaluate(model, data_loader, evaluator)
