"""The ONNX Runtime backend: an exported ``.onnx`` file behind the detector interface.

:class:`ONNXDetector` reads what :func:`detkit.export` wrote into the file's metadata (class
names, the preprocessing: input size, resize mode; the output layout) and behaves like a detkit
detector in eval mode: ``detector(images) -> (predictions, {})``, images ``[3, H, W]`` float RGB
in [0, 1] of any size, predictions per image in that image's pixels. So
``Predictor(path, backend="onnxruntime")``, ``detkit infer --backend onnxruntime`` and the video
pipeline (which runs a :class:`~detkit.apis.predictor.Predictor`) run it unchanged.

Its two ends are the detector's own :class:`~detkit.models.preprocess.Preprocess` class, rebuilt
from the metadata (:func:`~detkit.export.module.runtime_preprocess`; mean 0 and std 1 where the
graph normalises): the resize or letterbox before the graph, and the mapping of the boxes back to
each image (with the clipping) after it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.export.module import runtime_preprocess
from detkit.export.onnx_export import read_metadata
from detkit.structures import ImageList

__all__ = ["BACKENDS", "FixedSizeInput", "ONNXDetector", "ONNXNetwork", "as_backend_model", "mtcnn_onnx", "session_options"]

BACKENDS = ("torch", "onnxruntime")
class ONNXDetector(nn.Module):
    """An exported detector run by ONNX Runtime (see the module docstring).

    Args:
        path: a ``.onnx`` file written by :func:`detkit.export`.
        input_size: ``(H, W)`` to run a graph with a dynamic size at (multiples of its
            ``size_multiple``); default the size it was exported at.
        threads: ONNX Runtime's intra-op threads (0: its default); the other session options
            are :func:`session_options`.
        providers: ONNX Runtime execution providers (default ``["CPUExecutionProvider"]``).

    Attributes:
        class_names: from the metadata.
        metadata: every metadata entry, decoded.
        session: the ``onnxruntime.InferenceSession``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file without detkit's metadata, or a bad ``input_size``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        input_size: Sequence[int] | None = None,
        threads: int = 0,
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.session = _session(self.path, threads, providers)
        self.metadata: dict[str, Any] = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        missing = [key for key in ("class_names", "preprocess", "input_size") if key not in self.metadata]
        if missing:
            raise ValueError(f"{self.path}: not a detkit export (its metadata lacks {missing}); export with detkit.export")
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.input_size = self._input_size(input_size)
        # the resize (SSD: normalisation then resize) and the way back; the graph does the rest.
        if self.metadata["preprocess"].get("resize_inside", False):  # R-CNN-style: the graph resizes
            self.preprocess: nn.Module = FixedSizeInput(self.input_size)
        else:
            spec = dict(self.metadata["preprocess"])
            if not self.metadata.get("dynamic_size", False) and spec.get("kwargs", {}).get("rect"):
                # a fixed-size graph takes the full letterbox, never ultralytics' smaller rectangle
                spec["kwargs"] = {**spec["kwargs"], "rect": False}
            self.preprocess = runtime_preprocess(spec, self.input_size, str(self.path))
        self.input_name = self.metadata.get("input_name", "images")
        self.output_names = list(self.metadata.get("output_names", ["boxes", "scores", "labels", "num_detections"]))
        self.dynamic_batch = bool(self.metadata.get("dynamic_batch", False))
        skeleton = self.metadata.get("skeleton")  # Keypoint R-CNN: the pairs drawn, as the eager model's attribute
        self.skeleton = None if skeleton is None else [tuple(int(i) for i in pair) for pair in skeleton]

    def _input_size(self, input_size: Sequence[int] | None) -> tuple[int, int]:
        exported = tuple(int(v) for v in self.metadata["input_size"])
        if input_size is None:
            return exported  # type: ignore[return-value]
        size = tuple(int(v) for v in input_size)
        multiple = int(self.metadata.get("size_multiple", 1))
        if size != exported and not self.metadata.get("dynamic_size", False):
            raise ValueError(f"{self.path}: exported at the fixed size {exported}; input_size {size} needs a "
                             "dynamic export (detkit export --dynamic)")
        if len(size) != 2 or min(size) <= 0 or any(s % multiple for s in size):
            raise ValueError(f"{self.path}: input_size must be (H, W), multiples of {multiple}, got {input_size!r}")
        return size  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        """Object classes (the length of the metadata's class names)."""
        return len(self.class_names)

    def run_batch(self, batch: Tensor) -> dict[str, np.ndarray]:
        """The graph on a network-input batch ``[B, 3, H, W]`` float32 in [0, 1]: its outputs by
        name (``boxes [B, K, 4]``, ``scores [B, K]``, ``labels [B, K]``, ``num_detections [B]``);
        one image per call when the graph's batch is fixed at 1."""
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        if self.dynamic_batch or array.shape[0] == 1:
            outputs = self.session.run(self.output_names, {self.input_name: array})
        else:
            runs = [self.session.run(self.output_names, {self.input_name: array[i : i + 1]}) for i in range(len(array))]
            outputs = [np.concatenate(parts) for parts in zip(*runs)]
        return dict(zip(self.output_names, outputs))

    def forward(
        self, images: Sequence[Tensor], targets: Any = None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detect in ``images`` (``[3, H_i, W_i]`` float RGB in [0, 1]; sizes may differ).

        Returns:
            ``(predictions, {})``: per image ``boxes [K, 4]`` in its pixels, ``scores [K]`` by
            decreasing score, ``labels [K]`` int64.
        """
        if targets is not None:
            raise ValueError(f"{self.path}: an ONNX model detects only (no targets, no training)")
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        if not images:
            return [], {}
        batch, _ = self.preprocess([image.detach().cpu().float() for image in images])
        outputs = self.run_batch(batch.tensor)
        predictions = []
        for index in range(len(images)):
            count = int(outputs["num_detections"][index])
            prediction = {
                "boxes": torch.from_numpy(outputs["boxes"][index, :count].copy()),
                "scores": torch.from_numpy(outputs["scores"][index, :count].copy()),
                "labels": torch.from_numpy(outputs["labels"][index, :count].astype(np.int64)),
            }
            for name in ("masks", "keypoints", "keypoint_scores"):  # [B, K, ...] extras, as the eager model's
                if name in outputs:
                    extra = torch.from_numpy(outputs[name][index, :count].copy())
                    prediction[name] = extra[:, None] if name == "masks" else extra
            predictions.append(prediction)
        return self.preprocess.postprocess(predictions, batch.image_sizes, sizes), {}


class FixedSizeInput(nn.Module):
    """The runtime's two ends for a graph that resizes inside (metadata ``preprocess.resize_inside``:
    Faster / Mask / Keypoint R-CNN, RetinaNet, FCOS): each image is fed at the export size
    ``input_size`` (bilinear, only when its size differs: an image of that size goes in as it is,
    so the graph gives the eager model's detections), and the graph's boxes, masks and keypoints
    are mapped back to the image's pixels.

    Args:
        input_size: ``(H, W)`` of the graph's input.
    """

    def __init__(self, input_size: Sequence[int]) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def resize(self, image: Tensor) -> Tensor:
        """``[3, h, w]`` float RGB in [0, 1] -> ``[3, *input_size]`` (the image itself at that size)."""
        if tuple(image.shape[-2:]) == self.input_size:
            return image
        return F.interpolate(image[None], size=self.input_size, mode="bilinear", align_corners=False)[0]

    def forward(self, images: Sequence[Tensor], targets: Any = None) -> tuple[ImageList, None]:
        """``(ImageList [B, 3, *input_size], None)``."""
        batch = torch.stack([self.resize(image) for image in images])
        return ImageList(batch, [self.input_size] * len(images)), None

    def postprocess(
        self,
        predictions: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Boxes ``[K, 4]`` and keypoints ``[K, N, 3]`` scaled, masks ``[K, 1, H, W]`` resized to each image."""
        for prediction, (in_h, in_w), (height, width) in zip(predictions, image_sizes, original_sizes):
            if (in_h, in_w) == (height, width):
                continue
            scale = prediction["boxes"].new_tensor([width / in_w, height / in_h])
            prediction["boxes"] = prediction["boxes"] * scale.repeat(2)
            if "keypoints" in prediction:
                keypoints = prediction["keypoints"].clone()
                keypoints[..., :2] = keypoints[..., :2] * scale
                prediction["keypoints"] = keypoints
            if "masks" in prediction and prediction["masks"].shape[0]:
                prediction["masks"] = F.interpolate(prediction["masks"], size=(height, width), mode="bilinear",
                                                    align_corners=False)  # fmt: skip
            elif "masks" in prediction:
                prediction["masks"] = prediction["masks"].new_zeros((0, 1, height, width))
        return predictions


def session_options(threads: int = 0) -> Any:
    """The ``onnxruntime.SessionOptions`` of detkit's sessions (:class:`ONNXDetector`, :class:`ONNXNetwork`).

    * every graph optimisation (``ORT_ENABLE_ALL``: constant folding, Conv + BN / Mul / Add /
      activation fusions, the CPU's blocked NCHWc layout), nodes run one after another
      (``ORT_SEQUENTIAL``, one inter-op thread: a detector's graph is a chain);
    * ``threads`` intra-op threads (0: ONNX Runtime's default, one per physical core);
    * idle workers sleep instead of spinning (``session.intra_op.allow_spinning = 0``), as torch's
      OpenMP workers do with ``OMP_WAIT_POLICY=PASSIVE``: on a machine shared with other jobs a
      descheduled spinner stalls every parallel op (a 2-thread YOLOv8n run 1.7x slower on a
      loaded 2-core machine; the cost on an idle one is the wake-up, microseconds per op).

    Args:
        threads: intra-op threads (>= 0).
    """
    import onnxruntime

    if threads < 0:
        raise ValueError(f"ONNX Runtime threads must be >= 0, got {threads}")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = int(threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _session(path: Path, threads: int, providers: Sequence[str] | None) -> Any:
    import onnxruntime

    options = session_options(threads)
    return onnxruntime.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))


class ONNXNetwork(nn.Module):
    """One exported MTCNN network (:mod:`detkit.export.mtcnn`) with the eager network's call:
    ``network(x, input_scale, input_shift) -> (logits, box_deltas[, landmarks])`` as tensors.

    Args:
        path: ``pnet.onnx``, ``rnet.onnx`` or ``onet.onnx``.
        threads, providers: as for :class:`ONNXDetector`.

    Raises:
        ValueError: (at a call) an input affine map other than the one inside the graph.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 0, providers: Sequence[str] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = _session(self.path, threads, providers)
        self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.output_names = list(self.metadata["output_names"])

    def forward(self, x: Tensor, input_scale: float = 1.0, input_shift: float = 0.0) -> tuple[Tensor, ...]:
        """Run the graph on ``x [N, 3, H, W]`` (0-255 values)."""
        inside = (self.metadata["input_scale"], self.metadata["input_shift"])
        if (input_scale, input_shift) != tuple(inside):
            raise ValueError(f"{self.path}: the graph holds the input map {inside}, called with "
                             f"{(input_scale, input_shift)}")
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if array.shape[0] == 0:  # no crops (the cascade's RNet / ONet): nothing to run
            widths = {"logits": 2, "box_deltas": 4, "landmarks": 10}
            return tuple(x.new_zeros((0, widths[name])) for name in self.output_names)
        return tuple(torch.from_numpy(o) for o in self.session.run(self.output_names, {"images": array}))


def mtcnn_onnx(folder: str | os.PathLike[str], *, threads: int = 0, providers: Sequence[str] | None = None) -> nn.Module:
    """The MTCNN cascade (Python: pyramid, crops, NMS) on its three networks run by ONNX Runtime.

    Args:
        folder: written by ``detkit.export(mtcnn, folder)`` (``pnet.onnx``, ``rnet.onnx``,
            ``onet.onnx``; the cascade's settings are in their metadata).
        threads, providers: as for :class:`ONNXDetector`.

    Returns:
        An :class:`~detkit.models.detectors.mtcnn.cascade.MTCNN` in eval mode.
    """
    from detkit.models.detectors.mtcnn.cascade import MTCNN

    folder = Path(folder)
    missing = [name for name in ("pnet", "rnet", "onet") if not (folder / f"{name}.onnx").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {', '.join(n + '.onnx' for n in missing)} (an MTCNN export folder)")
    networks = {name: ONNXNetwork(folder / f"{name}.onnx", threads=threads, providers=providers)
                for name in ("pnet", "rnet", "onet")}
    settings = networks["pnet"].metadata["cascade"]
    return MTCNN(**networks, **settings).eval()  # type: ignore[arg-type]


def as_backend_model(model: nn.Module | str | os.PathLike[str], backend: str, **options: Any) -> nn.Module:
    """The model a :class:`~detkit.apis.predictor.Predictor` runs for ``backend``.

    Args:
        model: a detector, or (``"onnxruntime"``) a ``.onnx`` file, an MTCNN export folder
            (:func:`mtcnn_onnx`) or an :class:`ONNXDetector`.
        backend: ``"torch"`` (the model as it is) or ``"onnxruntime"``: a file is opened; a torch
            detector is exported to a temporary ``.onnx`` first (:func:`detkit.export`).
        **options: passed to :class:`ONNXDetector`.

    Raises:
        ValueError: an unknown backend, or a file path with the torch backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Predictor: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        if isinstance(model, (str, os.PathLike)):
            raise ValueError(f"Predictor: {model} is a file; pass backend='onnxruntime' for an .onnx model")
        return model  # type: ignore[return-value]
    if isinstance(model, ONNXDetector):
        return model
    if isinstance(model, (str, os.PathLike)):
        if Path(model).is_dir():
            return mtcnn_onnx(model, **options)
        return ONNXDetector(model, **options)
    import tempfile

    from detkit.export import export

    folder = tempfile.mkdtemp(prefix="detkit-onnx-")
    path = export(model, Path(folder) / "model.onnx", "onnx", dynamic=True)
    return mtcnn_onnx(path, **options) if path.is_dir() else ONNXDetector(path, **options)
