"""MTCNN export: its three networks as ONNX graphs; the cascade between them stays in Python.

What ONNX holds, per network (``images`` are 0-255 RGB values, as the cascade feeds them; the
networks' ``(v - 127.5) / 128`` is inside, folded into the first convolution as in eager mode):

* ``pnet.onnx``: ``images [N, 3, H, W]`` (dynamic ``N``, ``H``, ``W`` >= 12) -> ``logits
  [N, 2, h, w]`` (non-face, face) of each 12x12 window (stride 2) and ``box_deltas [N, 4, h, w]``.
* ``rnet.onnx``: ``images [N, 3, 24, 24]`` (dynamic ``N``) -> ``logits [N, 2]``, ``box_deltas [N, 4]``.
* ``onet.onnx``: ``images [N, 3, 48, 48]`` -> ``logits [N, 2]``, ``box_deltas [N, 4]``,
  ``landmarks [N, 10]`` (five x then five y, fractions of the box).

The face probability is ``softmax(logits)[:, 1]``; the outputs are the networks' own, so the
cascade run on them (below) computes what the eager cascade does.

What stays in Python (:class:`~detkit.models.detectors.mtcnn.cascade.MTCNN` with the networks run
by ONNX Runtime, :func:`detkit.apis.onnx_backend.mtcnn_onnx`): the image pyramid (its number of
levels depends on the image size; area resizing from integral images), the window selection
(``prob >= threshold``, a data-dependent set per level), the crops of RNet and ONet (integral-image
area resampling of data-dependent boxes), the calibrations, and the NMS, whose last one is "Min"
NMS (intersection over the smaller box), which ONNX's ``NonMaxSuppression`` does not have.

Each graph goes through :func:`~detkit.export.onnx_rewrite.optimize_for_runtime` (exact rewrites:
``PRelu`` as ``Relu`` and two depthwise 1x1 convolutions, ``MaxPool(ceil_mode=1)`` as end padding),
so ONNX Runtime keeps the networks in its blocked NCHWc layout; the outputs do not change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detkit import __version__
from detkit.export.onnx_export import DEFAULT_OPSET, check_standard_onnx, write_metadata
from detkit.export.onnx_rewrite import optimize_for_runtime
from detkit.models.detectors.mtcnn.cascade import MTCNN
from detkit.models.detectors.mtcnn.networks import input_affine

__all__ = ["MTCNN_NETWORKS", "MTCNNNetworkExport", "export_mtcnn"]

# network -> (crop side or None for the fully convolutional PNet, output names)
MTCNN_NETWORKS: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "pnet": (None, ("logits", "box_deltas")),
    "rnet": (24, ("logits", "box_deltas")),
    "onet": (48, ("logits", "box_deltas", "landmarks")),
}


class MTCNNNetworkExport(nn.Module):
    """One MTCNN network on 0-255 inputs (the input affine map of the cascade inside).

    Args:
        network: the cascade's ``pnet``, ``rnet`` or ``onet``.
        name: ``"pnet"``, ``"rnet"`` or ``"onet"``.
    """

    def __init__(self, network: nn.Module, name: str) -> None:
        super().__init__()
        self.network = network.eval()
        self.name = name
        self.input_scale, self.input_shift = input_affine(1.0)  # what the cascade passes

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``images [N, 3, H, W]`` 0-255 -> ``(logits, box_deltas[, landmarks])`` (module docstring)."""
        return tuple(self.network(images, self.input_scale, self.input_shift))


def export_mtcnn(
    model: MTCNN, folder: str | os.PathLike[str], *, dynamic: bool = True, opset: int = DEFAULT_OPSET
) -> dict[str, Path]:
    """Write ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` into ``folder``.

    Args:
        model: an :class:`~detkit.models.detectors.mtcnn.cascade.MTCNN`.
        folder: where the three files go (created).
        dynamic: dynamic batch (and PNet's height and width); False fixes them at the example's.
        opset: the ONNX opset.

    Returns:
        ``{network: path}``.
    """
    import onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "min_face_size": model.min_face_size, "scale_factor": model.scale_factor,
        "thresholds": list(model.thresholds), "nms_thresholds": list(model.nms_thresholds),
        "pixel_scale": model.pixel_scale, "clip_boxes": model.clip_boxes,
    }  # fmt: skip
    paths = {}
    for name, (side, outputs) in MTCNN_NETWORKS.items():
        module = MTCNNNetworkExport(getattr(model, name), name).eval()
        example = torch.rand((2, 3, side or 64, side or 80), generator=torch.Generator().manual_seed(0)) * 255
        dims: dict[int, Any] | None = None
        if dynamic:
            dims = {0: torch.export.Dim("batch", min=1, max=1 << 16)}
            if side is None:
                dims.update({2: torch.export.Dim("height", min=12, max=16384),
                             3: torch.export.Dim("width", min=12, max=16384)})  # fmt: skip
        with torch.no_grad():
            program = torch.onnx.export(
                module, (example,), None, dynamo=True, opset_version=opset, input_names=["images"],
                output_names=list(outputs), dynamic_shapes=None if dims is None else (dims,),
                external_data=False, verbose=False,
            )  # fmt: skip
        proto = program.model_proto
        optimize_for_runtime(proto)  # exact: PRelu and ceil-mode MaxPool as ops ONNX Runtime keeps in NCHWc
        write_metadata(proto, {
            "family": "mtcnn", "network": name, "crop_size": side, "input_range": "0-255 RGB",
            "input_scale": module.input_scale, "input_shift": module.input_shift,
            "output_names": list(outputs), "dynamic_batch": dynamic, "cascade": settings,
            "class_names": ["face"], "detkit_version": __version__,
        })  # fmt: skip
        path = folder / f"{name}.onnx"
        check_standard_onnx(proto, path)
        onnx.save_model(proto, str(path))
        paths[name] = path
    return paths
