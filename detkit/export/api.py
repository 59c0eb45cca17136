"""``detkit.export(model, path, format=...)``: one call for ONNX and TorchScript.

* ``format="onnx"``: :func:`~detkit.export.onnx_export.export_onnx` (post-processing inside the
  graph, standard ONNX only, metadata in ``metadata_props``) of the fused model
  (:func:`~detkit.models.fuse.inference_copy` with NCHW weights: every batch norm, frozen ones
  included, folded into its convolution, so the graph holds one ``Conv`` where a ``Conv``,
  ``Mul`` and ``Add`` were; ONNX Runtime lays the weights out for the CPU itself).
* ``format="torchscript"``: ``torch.jit.trace`` of the same :class:`~detkit.export.module.
  ExportModule` (same inputs and outputs), saved with the metadata as the extra file
  ``detkit.json``. The file holds ATen ops, ``detkit::batched_nms`` and (Keypoint R-CNN)
  ``detkit_export::heatmaps_to_keypoints``: load it with :func:`load_torchscript`, or
  ``import detkit.export`` first (that registers both; ``import detkit.ops`` registers only
  detkit's compiled ops, enough for every family but Keypoint R-CNN), e.g. ``import detkit.export,
  torch; torch.jit.load(path)``. A traced graph keeps the batch size free but is made for the
  traced height and width.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detkit import __version__
from detkit.export.module import ExportModule, export_module_for
from detkit.export.onnx_export import DEFAULT_OPSET, export_onnx
from detkit.models.fuse import inference_copy

__all__ = ["EXPORT_FORMATS", "TORCHSCRIPT_METADATA_FILE", "export", "export_metadata", "load_torchscript"]

EXPORT_FORMATS = ("onnx", "torchscript")
TORCHSCRIPT_METADATA_FILE = "detkit.json"
_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}


def _image_size(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"detkit.export: image_size must be an int or (height, width) > 0, got {value!r}")
    return size  # type: ignore[return-value]


def export_metadata(module: ExportModule) -> dict[str, Any]:
    """The entries every exported file carries: the family's (:meth:`ExportModule.metadata`),
    ``class_names`` (``"0"``, ``"1"`` ... when the model has none) and ``detkit_version``."""
    detector = module.detector
    names = getattr(detector, "class_names", None) or [str(i) for i in range(detector.num_classes)]
    return {**module.metadata(), "class_names": list(names), "detkit_version": __version__}


def export(
    model: nn.Module,
    path: str | os.PathLike[str],
    format: str = "onnx",
    *,
    image_size: int | Sequence[int] | None = None,
    batch_size: int = 1,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export a detector for deployment (see :mod:`detkit.export.module` for the graph's layout).

    Args:
        model: a detkit detector (YOLOv3, SSD, ... see :func:`~detkit.export.module.export_module_for`).
        path: the file to write (a directory: ``<dir>/model.onnx`` or ``.torchscript``). MTCNN:
            a folder (a ``.onnx`` suffix is dropped) for ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``
            (:mod:`detkit.export.mtcnn`; always dynamic).
        format: ``"onnx"`` or ``"torchscript"``.
        image_size: ``(H, W)`` (or one side) of the example input; default the model's input size.
            SSD accepts only its own size.
        batch_size: batch of the example input (and the fixed batch when not ``dynamic``).
        dynamic: ONNX only: a dynamic batch, and dynamic height and width where the architecture
            allows it (YOLOv3: multiples of 32; SSD stays at its fixed size).
        opset: ONNX opset (>= 16).

    Returns:
        The path written (MTCNN: the folder).

    Raises:
        ValueError: an unknown format, a bad size, a model with no exporter (one line each).
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"detkit.export: format must be one of {EXPORT_FORMATS}, got {format!r}")
    if batch_size < 1:
        raise ValueError(f"detkit.export: batch_size must be >= 1, got {batch_size}")
    path = Path(path)
    model = model.eval()
    from detkit.models.detectors.mtcnn.cascade import MTCNN

    if isinstance(model, MTCNN):  # three networks, the cascade in Python (detkit.export.mtcnn)
        if format != "onnx":
            raise ValueError("detkit.export: MTCNN exports to ONNX only (its three networks)")
        from detkit.export.mtcnn import export_mtcnn

        folder = path.with_suffix("") if path.suffix == ".onnx" else path
        export_mtcnn(model, folder, dynamic=True, opset=opset)
        return folder
    if path.is_dir():
        path = path / f"model{_SUFFIXES[format]}"
    if format == "onnx":  # the graph of the fused model (the model given is left as it is)
        model = inference_copy(model, channels_last="off")
    module = export_module_for(model, _image_size(image_size))
    device = next(model.parameters()).device
    # A dynamic batch is traced at 2 at least: torch.export specialises dimensions of size 1.
    example_batch = max(batch_size, 2) if dynamic and format == "onnx" else batch_size
    example = torch.rand((example_batch, 3, *module.input_size), generator=torch.Generator().manual_seed(0))
    example = example.to(device)
    metadata = export_metadata(module)
    if format == "onnx":
        return export_onnx(module, path, example=example, dynamic=dynamic, opset=opset, metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(module, (example,), check_trace=False)
    metadata.update(dynamic_size=False, dynamic_batch=True, input_name="images", output_names=list(module.output_names))
    torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})
    return path


def load_torchscript(path: str | os.PathLike[str], map_location: str | torch.device | None = None
                     ) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript file of :func:`export` and its metadata, in any process.

    Importing this module has registered the ops such a file holds (``detkit::*``,
    ``detkit_export::heatmaps_to_keypoints``, see :mod:`detkit.export`).

    Args:
        path: the ``.torchscript`` file.
        map_location: as ``torch.jit.load``'s.

    Returns:
        ``(module, metadata)``: ``module(images [B, 3, H, W]) -> (boxes, scores, labels,
        num_detections, ...)`` (``metadata["output_names"]``), ``metadata`` the ``detkit.json``
        entries (class names, preprocessing ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detkit.export.load_torchscript: no such file: {path}")
    extra = {TORCHSCRIPT_METADATA_FILE: ""}
    module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    return module, json.loads(extra[TORCHSCRIPT_METADATA_FILE] or "{}")
