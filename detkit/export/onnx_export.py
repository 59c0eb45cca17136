"""ONNX export of an :class:`~detkit.export.module.ExportModule`: the graph, its checks, its metadata.

The graph is made by ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` then ONNX) with
detkit's ops translated to standard ONNX (:mod:`detkit.export.onnx_ops`); the file is checked with
``onnx.checker`` and refused if any node is outside the default ONNX domain. The model's facts go
into ``metadata_props`` (string keys, JSON values; :data:`METADATA_KEYS`), which
:class:`detkit.apis.onnx_backend.ONNXDetector` reads back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from detkit.export.module import ExportModule
from detkit.export.onnx_ops import translation_table

__all__ = ["DEFAULT_OPSET", "METADATA_KEYS", "export_onnx", "read_metadata", "write_metadata"]

DEFAULT_OPSET = 18  # RoiAlign's half_pixel mode needs 16+; 18 is onnxscript's default opset
METADATA_KEYS = (
    "detkit_version", "family", "input_normalized", "class_names", "input_size", "dynamic_size", "size_multiple", "dynamic_batch",
    "pixel_mean", "pixel_std", "resize_mode", "preprocess", "input_name", "output_names", "output_layout",
)  # fmt: skip
OUTPUT_LAYOUT = (
    "input images [B,3,H,W] float32 RGB in [0,1] resized as preprocess says, normalised inside "
    "(input_normalized=true: normalised then resized by the runtime, as preprocess says); "
    "boxes [B,K,4] float32 xyxy pixels of the input, scores [B,K] float32, labels [B,K] int64, "
    "num_detections [B] int64; K = detections_per_img; rows past num_detections are padding "
    "(boxes 0, scores 0, labels -1)"
)


def write_metadata(model_proto: Any, entries: Mapping[str, Any]) -> None:
    """Set ``metadata_props`` of an ``onnx.ModelProto``: each value JSON-encoded (replacing old keys)."""
    kept = [p for p in model_proto.metadata_props if p.key not in entries]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    for key, value in entries.items():
        prop = model_proto.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)


def read_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Decode ``metadata_props`` (a ``{key: JSON string}`` mapping) written by :func:`write_metadata`."""
    decoded: dict[str, Any] = {}
    for key, value in props.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


def check_standard_onnx(model_proto: Any, path: str | os.PathLike[str]) -> None:
    """``onnx.checker.check_model`` and no node outside the default domain (including functions).

    Raises:
        ValueError: a node of a custom domain (its op and domain named).
    """
    import onnx

    onnx.checker.check_model(model_proto)
    nodes = list(model_proto.graph.node) + [n for f in model_proto.functions for n in f.node]
    custom = sorted({f"{n.domain}::{n.op_type}" for n in nodes if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ValueError(f"detkit.export: {path} holds non-standard ONNX ops {custom}")


def export_onnx(
    module: ExportModule,
    path: str | os.PathLike[str],
    *,
    example: torch.Tensor,
    dynamic: bool,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``module`` to one ``.onnx`` file (weights inside) with metadata.

    Args:
        module: the export wrapper.
        path: the file to write.
        example: ``[B, 3, H, W]`` example input (float32 in [0, 1]).
        dynamic: dynamic batch, and dynamic height and width where ``module.dynamic_size``.
        opset: the ONNX opset (>= 16).
        metadata: more ``metadata_props`` entries (class names, version ...).

    Returns:
        The path written.

    Raises:
        ValueError: an opset below 16, or a graph with custom-domain ops.
    """
    import onnx

    if opset < 16:
        raise ValueError(f"detkit.export: opset must be >= 16 (RoiAlign's half_pixel mode), got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_shapes = None
    if dynamic:
        dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1024)}
        if module.dynamic_size:
            multiple = module.size_multiple
            dims[2] = multiple * torch.export.Dim("height_blocks", min=1, max=8192 // multiple)
            dims[3] = multiple * torch.export.Dim("width_blocks", min=1, max=8192 // multiple)
        dynamic_shapes = ({**dims},)
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(), (example,), None, dynamo=True, opset_version=opset, input_names=["images"],
            output_names=list(module.output_names), dynamic_shapes=dynamic_shapes,
            custom_translation_table=translation_table(), external_data=False, verbose=False,
        )  # fmt: skip
    proto = program.model_proto
    entries = {
        **module.metadata(),
        "dynamic_batch": bool(dynamic),
        "input_name": "images",
        "output_names": list(module.output_names),
        "output_layout": OUTPUT_LAYOUT,
        **(metadata or {}),
    }
    if not dynamic:
        entries["dynamic_size"] = False
    write_metadata(proto, entries)
    check_standard_onnx(proto, path)
    onnx.save_model(proto, str(path))
    return path
