"""The module that is exported: a batch tensor in, fixed-name padded detections out.

An :class:`ExportModule` wraps a detector for deployment. Its contract (the graph's, written into
the file's metadata as ``output_layout``):

* **Input** ``images``: ``[B, 3, H, W]`` float32 RGB in [0, 1], the *network input*: already
  resized (or letterboxed) to the model's input size as the metadata's ``preprocess`` says
  (``resize_mode``). Normalisation (``pixel_mean`` / ``pixel_std``) is inside the graph, except
  for families that normalise *before* resizing (SSD, torchvision's order): their input is the
  normalised, resized batch (metadata ``input_normalized: true``), so that the graph gets the
  eager model's very numbers (resizing first differs by float rounding, which a deep network with
  random weights amplifies past 0.01 px). A resize
  stays outside because detkit's resizes are bit-exact replicas (OpenCV's 8-bit bilinear,
  darknet's) that an ONNX ``Resize`` does not reproduce, and because letterboxing needs the
  image's own size; :class:`detkit.apis.onnx_backend.ONNXDetector` does both ends.
* **Outputs**, ``K = detections_per_img``: ``boxes [B, K, 4]`` float32 xyxy in pixels of the
  input tensor, ``scores [B, K]`` float32, ``labels [B, K]`` int64 (0-based), ``num_detections
  [B]`` int64. Image ``b``'s detections are its first ``num_detections[b]`` rows by decreasing
  score; the other rows are padding (boxes 0, scores 0, labels -1). Zero detections is
  ``num_detections == 0``, never an empty tensor.

A family registers how its detector is wrapped with :func:`register_export_module` (YOLOv3 and
SSD here, :mod:`detkit.export.families`; R-CNN in its own file). :func:`export_module_for` finds
the wrapper of a detector.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

__all__ = ["OUTPUT_NAMES", "ExportModule", "export_module_for", "register_export_module", "runtime_preprocess"]

# Where a Preprocess class named in a file's metadata may come from (nothing else is imported).
_PREPROCESS_PACKAGE = "detkit.models.preprocess."

OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")

_REGISTRY: list[tuple[type, Callable[..., ExportModule]]] = []


class ExportModule(nn.Module):
    """Base of the export wrappers (see the module docstring).

    Class attributes a family sets:
        family: short family name written into the metadata (``"yolo"``, ``"ssd"`` ...).
        input_normalized: the graph's input is already normalised (the runtime does it).
        dynamic_size: whether the architecture takes other input sizes than its own.
        size_multiple: input sides must be multiples of this when the size is dynamic.

    Attributes:
        detector: the wrapped detector (eval mode).
        input_size: ``(H, W)`` the model was built for (the example input of the export).
        output_names: names of the graph's outputs.
    """

    family: ClassVar[str] = ""
    input_normalized: ClassVar[bool] = False
    dynamic_size: ClassVar[bool] = False
    size_multiple: ClassVar[int] = 1
    output_names: tuple[str, ...] = OUTPUT_NAMES

    def __init__(self, detector: nn.Module, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.detector = detector.eval()
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``images [B, 3, H, W]`` float RGB [0, 1] -> ``(boxes, scores, labels, num_detections)``."""
        raise NotImplementedError

    def preprocess_spec(self) -> dict[str, Any]:
        """What the runtime does before the graph: ``{"target": "module:qualname" of the detector's
        Preprocess class, "kwargs": its resize arguments (mean 0 / std 1: the graph normalises)}``."""
        raise NotImplementedError

    def runtime_preprocess(self) -> nn.Module:
        """What runs before the graph: :func:`runtime_preprocess` of :meth:`preprocess_spec`."""
        return runtime_preprocess(self.preprocess_spec())

    def metadata(self) -> dict[str, Any]:
        """The family's entries of the file's metadata (JSON-able values)."""
        preprocess = self.detector.preprocess
        return {
            "family": self.family,
            "input_normalized": self.input_normalized,
            "input_size": list(self.input_size),
            "dynamic_size": self.dynamic_size,
            "size_multiple": self.size_multiple,
            "pixel_mean": [float(v) for v in preprocess.pixel_mean.tolist()],
            "pixel_std": [float(v) for v in preprocess.pixel_std.tolist()],
            "preprocess": self.preprocess_spec(),
        }


def runtime_preprocess(spec: Mapping[str, Any], input_size: Sequence[int] | None = None, source: str = "") -> nn.Module:
    """The detector's Preprocess class as the runtime runs it before the graph: its call resizes
    (or letterboxes) images into the graph's input, its ``postprocess`` maps the graph's boxes
    back to each image. Mean 0 and std 1 (the graph normalises) unless the spec's kwargs give
    ``pixel_mean`` / ``pixel_std`` (a family whose graph takes normalised input, see SSD).

    Args:
        spec: ``{"target": "module:qualname", "kwargs": {...}}`` (:meth:`ExportModule.preprocess_spec`,
            the metadata's ``preprocess``); only classes of ``detkit.models.preprocess`` are built.
        input_size: ``(H, W)`` replacing the spec's input size (a graph with a dynamic size).
        source: the file the spec comes from, for the message.

    Raises:
        ValueError: a target outside ``detkit.models.preprocess``.
    """
    target = str(spec.get("target", ""))
    module_name, _, qualname = target.partition(":")
    if not module_name.startswith(_PREPROCESS_PACKAGE) or not qualname:
        raise ValueError(f"{source or 'preprocess spec'}: 'preprocess' names {target!r}, not a detkit.models.preprocess "
                         "class")
    kwargs = dict(spec.get("kwargs", {}))
    for key in ("input_size", "image_size"):
        if key in kwargs and input_size is not None:
            kwargs[key] = [int(v) for v in input_size]
    kwargs.setdefault("pixel_mean", (0.0, 0.0, 0.0))
    kwargs.setdefault("pixel_std", (1.0, 1.0, 1.0))
    cls = getattr(importlib.import_module(module_name), qualname)
    return cls(**kwargs).eval()


def register_export_module(detector_type: type, build: Callable[..., ExportModule]) -> None:
    """Say how detectors of ``detector_type`` (and subclasses) are wrapped for export.

    Args:
        detector_type: a :class:`~detkit.models.detectors.base.Detector` subclass.
        build: ``build(detector, input_size=None | (H, W)) -> ExportModule``.
    """
    _REGISTRY.insert(0, (detector_type, build))


def export_module_for(detector: nn.Module, input_size: tuple[int, int] | None = None) -> ExportModule:
    """The export wrapper of ``detector``.

    Args:
        detector: a detkit detector.
        input_size: ``(H, W)`` of the example input; None: the model's own input size.

    Raises:
        UnsupportedModelError: no family registered for the detector's type.
    """
    from detkit.export import families, one_stage_fpn, rcnn, yolov8  # noqa: F401  (registers the built-in families)

    for detector_type, build in _REGISTRY:
        if isinstance(detector, detector_type):
            return build(detector, input_size=input_size)
    known = sorted({t.__name__ for t, _ in _REGISTRY})
    raise UnsupportedModelError(f"detkit.export: no exporter for {type(detector).__name__} (exportable: {known})")


class UnsupportedModelError(ValueError):
    """A model that detkit cannot export (one-line message)."""
