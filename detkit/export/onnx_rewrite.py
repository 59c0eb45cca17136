"""Exact rewrites of an exported ONNX graph into ops that ONNX Runtime's CPU kernels run fastest.

ONNX Runtime runs convolutions and poolings in MLAS's blocked ``NCHWc`` layout (16 channels per
block on AVX-512), but only the ops its ``NchwcTransformer`` knows stay in that layout; any other
op between two convolutions costs a ``ReorderOutput`` / ``ReorderInput`` pair (a full copy of the
feature map each way) and runs in ONNX Runtime's generic element-wise kernels. Two such ops sit
between MTCNN's convolutions (profiled with ``SessionOptions.enable_profiling`` on facenet-pytorch's
weights: half of RNet's time went to ``PRelu`` alone):

* **PRelu** ``z = y if y >= 0 else a * y`` (per-channel slopes ``a``, MTCNN's activation) has no
  NCHWc form and a slow broadcast kernel. :func:`prelu_as_convolutions` writes it as::

      p = Relu(y)                      # max(y, 0)
      n = Conv_dw(p, -1) + y           # y - p = min(y, 0)
      z = Conv_dw(n, a) + p            # a * min(y, 0) + max(y, 0)

  with ``Conv_dw`` a 1x1 depthwise convolution without bias (ONNX Runtime fuses each ``Add`` into
  its convolution as the "sum" input, so these are three NCHWc ops). It is exact in float32, not
  only up to rounding: for ``y >= 0``, ``n = y - y = 0`` and ``z = a * 0 + y = y``; for ``y < 0``,
  ``p = 0``, ``n = y - 0 = y`` and ``z = a * y + 0``, the one product ``PRelu`` computes (a fused
  multiply-add of exact operands rounds the same). Only an infinite ``y`` would differ
  (``inf - inf``), which a finite input and finite weights never make.
* **MaxPool with** ``ceil_mode=1`` (MTCNN's poolings, Caffe's convention) is refused by the NCHWc
  pooling. :func:`maxpool_ceil_as_pads` writes it with ``ceil_mode=0`` and ``stride - 1`` pixels of
  padding at the end of each spatial axis: ``floor((H + s - 1 - k) / s) + 1 = ceil((H - k) / s) + 1``
  outputs (the same count) and ONNX's max pooling never takes a padded position, so each window is
  the maximum of the same input pixels. Applied only where it holds for every input size: no
  padding or dilation before, ``kernel >= stride`` (the last window then starts inside the input,
  as ``ceil_mode`` requires).

Neither changes a number: the rewritten graph gives the same outputs bit for bit on ONNX Runtime
(``tests/export/test_ort_speedups.py``), and it is standard ONNX that every runtime runs.
:func:`optimize_for_runtime` applies both and drops the initializers left unused.
"""

from __future__ import annotations

from typing import Any

__all__ = ["maxpool_ceil_as_pads", "optimize_for_runtime", "prelu_as_convolutions", "remove_unused_initializers"]


def _attribute(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _set_attribute(node: Any, name: str, value: Any) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def maxpool_ceil_as_pads(graph: Any) -> int:
    """``MaxPool(ceil_mode=1)`` as ``ceil_mode=0`` with ``stride - 1`` end padding (module docstring).

    Args:
        graph: an ``onnx.GraphProto``, changed in place.

    Returns:
        The number of poolings rewritten.
    """
    count = 0
    for node in graph.node:
        if node.op_type != "MaxPool" or _attribute(node, "ceil_mode", 0) != 1:
            continue
        kernel = list(_attribute(node, "kernel_shape"))
        strides = list(_attribute(node, "strides", [1] * len(kernel)))
        pads = list(_attribute(node, "pads", [0] * 2 * len(kernel)))
        dilations = list(_attribute(node, "dilations", [1] * len(kernel)))
        auto_pad = _attribute(node, "auto_pad", b"NOTSET")
        if (any(pads) or any(d != 1 for d in dilations) or auto_pad not in (b"NOTSET", "NOTSET")
                or any(k < s for k, s in zip(kernel, strides)) or len(node.output) != 1):  # fmt: skip
            continue  # (a second output, the indices, would count the padded positions)
        _set_attribute(node, "ceil_mode", 0)
        _set_attribute(node, "pads", [0] * len(kernel) + [s - 1 for s in strides])
        count += 1
    return count


def prelu_as_convolutions(graph: Any) -> int:
    """Each ``PRelu`` of a convolution's output with per-channel slopes ``[1, C, 1, 1]`` (an
    initializer) as ``Relu`` and two 1x1 depthwise convolutions (module docstring).

    Args:
        graph: an ``onnx.GraphProto``, changed in place (node order stays topological).

    Returns:
        The number of ``PRelu`` nodes rewritten.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    nodes, count = [], 0
    for node in graph.node:
        slope = initializers.get(node.input[1]) if node.op_type == "PRelu" else None
        producer = producers.get(node.input[0]) if slope is not None else None
        if (slope is None or producer is None or producer.op_type != "Conv" or len(slope.dims) != 4
                or list(slope.dims)[0] != 1 or list(slope.dims)[2:] != [1, 1]):  # fmt: skip
            nodes.append(node)
            continue
        values = numpy_helper.to_array(slope)
        if values.dtype != np.float32:
            nodes.append(node)
            continue
        channels = int(values.shape[1])
        y, z = node.input[0], node.output[0]
        minus_one = numpy_helper.from_array(np.full((channels, 1, 1, 1), -1.0, np.float32), f"{z}__minus_one")
        slopes = numpy_helper.from_array(values.reshape(channels, 1, 1, 1), f"{z}__slopes")
        graph.initializer.extend([minus_one, slopes])
        nodes += [
            helper.make_node("Relu", [y], [f"{z}__positive"]),
            helper.make_node("Conv", [f"{z}__positive", minus_one.name], [f"{z}__minus_positive"], group=channels),
            helper.make_node("Add", [f"{z}__minus_positive", y], [f"{z}__negative"]),
            helper.make_node("Conv", [f"{z}__negative", slopes.name], [f"{z}__scaled_negative"], group=channels),
            helper.make_node("Add", [f"{z}__scaled_negative", f"{z}__positive"], [z]),
        ]  # fmt: skip
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def remove_unused_initializers(graph: Any) -> int:
    """Drop the initializers that no node (or graph output) reads; returns how many."""
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    removed = len(graph.initializer) - len(kept)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return removed


def optimize_for_runtime(model_proto: Any) -> dict[str, int]:
    """Apply the exact rewrites of this module to ``model_proto`` (an ``onnx.ModelProto``, in place).

    Returns:
        ``{rewrite: count}`` (``"prelu"``, ``"maxpool_ceil"``, ``"unused_initializers"``).
    """
    graph = model_proto.graph
    return {
        "prelu": prelu_as_convolutions(graph),
        "maxpool_ceil": maxpool_ceil_as_pads(graph),
        "unused_initializers": remove_unused_initializers(graph),
    }
