"""Export of detkit detectors: ONNX (post-processing inside the graph) and TorchScript.

* :func:`export` (also ``detkit.export``): ``export(model, path, format="onnx" | "torchscript",
  image_size=..., dynamic=..., opset=...)``.
* :mod:`detkit.export.module`: the exported module's contract (inputs, padded outputs) and the
  registry of family wrappers; :mod:`detkit.export.families`: YOLOv3 and SSD.
* :mod:`detkit.export.selection`: threshold, top-k, NMS and cap for a batch, in fixed shapes.
* :mod:`detkit.export.onnx_ops`: ONNX translations of detkit's compiled ops.
* :mod:`detkit.export.onnx_export`: the ONNX file, its checks and metadata.

onnx and onnxscript (``pip install detkit[export]``) are imported only when an ONNX file is made.
Importing this package registers every op a TorchScript file of :func:`export` holds (detkit's
compiled ops and :mod:`detkit.export.keypoints`' ``detkit_export::heatmaps_to_keypoints``), so
``import detkit.export`` (or :func:`load_torchscript`) is all a fresh process needs to load one.
"""

import sys as _sys
import types as _types
from typing import Any as _Any

import detkit.ops as _ops  # noqa: F401  (registers torch.ops.detkit.*: TorchScript files hold them)
import detkit.export.keypoints as _keypoints  # noqa: F401  (registers torch.ops.detkit_export.*)
from detkit.export.api import EXPORT_FORMATS, export, export_metadata, load_torchscript
from detkit.export.module import OUTPUT_NAMES, ExportModule, UnsupportedModelError, export_module_for, register_export_module
from detkit.export.onnx_export import DEFAULT_OPSET, read_metadata
from detkit.export.onnx_ops import UnsupportedExportError

__all__ = [
    "DEFAULT_OPSET", "EXPORT_FORMATS", "OUTPUT_NAMES", "ExportModule", "UnsupportedExportError",
    "UnsupportedModelError", "export", "export_metadata", "export_module_for", "load_torchscript", "read_metadata",
    "register_export_module",
]  # fmt: skip


class _CallableModule(_types.ModuleType):
    """``detkit.export`` is this package and also the function :func:`export`: importing a
    submodule (``detkit.export.onnx_ops``) binds the package to the name ``export`` of ``detkit``,
    so the package itself is callable."""

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        return export(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
