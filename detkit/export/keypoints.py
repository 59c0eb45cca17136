"""Keypoint decoding as one exportable op: each box's heat maps resized bicubically, arg-max, cell centre.

Keypoint R-CNN decodes (:func:`~detkit.models.roi_heads.keypoint_head.heatmaps_to_keypoints`,
torchvision's ``heatmaps_to_keypoints``) each detection's ``[K, M, M]`` heat maps by resizing them
bicubically to the detection's own ``ceil(h) x ceil(w)`` and taking the arg-max: a size per box,
which no fixed-shape tensor program holds without materialising every box at the largest size
(``D * K * H * W`` floats: 7 GB for 100 detections on an 800 x 1333 image).

Here the decoding is one op, ``torch.ops.detkit_export.heatmaps_to_keypoints`` (:func:`decode_keypoints`):

* eager it runs the model's own
  :func:`~detkit.models.roi_heads.keypoint_head.heatmaps_to_keypoints`, so the export module's
  eager outputs are the detector's bit for bit (``torch.export`` sees an opaque op of output
  shapes ``[R, K, 3]`` and ``[R, K]``);
* in ONNX (:func:`heatmaps_to_keypoints_onnx`, an entry of
  :func:`detkit.export.onnx_ops.translation_table`) it is a ``Loop`` over the detections whose
  body decodes one box, so memory is one box's ``K x ceil(h) x ceil(w)`` map at a time. The
  body computes PyTorch's CPU bicubic kernel (``upsample_bicubic2d``, ``align_corners=False``)
  with elementwise operations rather than ONNX ``Resize``: source coordinate ``(dst + 0.5) *
  (in / out) - 0.5`` (not clamped), ``t = clamp(src - floor(src), 0, 1)``, Keys' cubic
  coefficients with ``A = -0.75`` and the accessed indices clamped to the map, the width
  interpolated first, then the height, four products summed in order. onnxruntime's ``Resize``
  (``mode="cubic"``, half-pixel) agrees too, but computes the scale as ``out / in`` and divides;
  this form stays closer to PyTorch (about 2e-5 at logits of magnitude 10, against 5e-5).

PyTorch's kernel is compiled (and may fuse multiply-adds), so the two agree to float rounding, not
bit for bit; an arg-max cell moves only where two cells of a map tie to ~1e-6.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from detkit.models.roi_heads.keypoint_head import heatmaps_to_keypoints

__all__ = ["decode_keypoints", "heatmaps_to_keypoints_onnx"]

CUBIC_A = -0.75  # PyTorch's (and torchvision's) bicubic coefficient


@torch.library.custom_op("detkit_export::heatmaps_to_keypoints", mutates_args=())
def _heatmaps_to_keypoints_op(maps: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
    keypoints, scores = heatmaps_to_keypoints(maps, rois)
    return keypoints.clone(), scores.clone()


@_heatmaps_to_keypoints_op.register_fake
def _(maps: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
    num_rois, num_keypoints = maps.shape[:2]
    return (maps.new_empty((num_rois, num_keypoints, 3), dtype=torch.float32),
            maps.new_empty((num_rois, num_keypoints), dtype=torch.float32))  # fmt: skip


def decode_keypoints(maps: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
    """Keypoints of detections from their heat maps, as one op that exports (see the module docstring).

    Args:
        maps: ``[R, K, M, M]`` float32 heat-map logits of the detections.
        rois: ``[R, 4]`` float32 xyxy boxes of the detections, in pixels of the image.

    Returns:
        ``(keypoints [R, K, 3], scores [R, K])`` float32: ``(x, y, 1)`` in pixels of the image and
        the resized map's value at the arg-max, as
        :func:`~detkit.models.roi_heads.keypoint_head.heatmaps_to_keypoints`.
    """
    return torch.ops.detkit_export.heatmaps_to_keypoints(maps, rois)


# ---------------------------------------------------------------------- ONNX


def _cubic_axis(op: Any, in_size: Any, out_size: Any) -> tuple[list[Any], list[Any]]:
    """Indices (four ``[out]`` int64) and weights (four ``[out]`` float32) of a bicubic resize of one
    axis from ``in_size`` to ``out_size`` (int64 scalars), as PyTorch computes them."""
    one_i = op.Constant(value_int=1)
    in_f, out_f = op.Cast(in_size, to=1), op.Cast(out_size, to=1)
    scale = op.Div(in_f, out_f)
    dst = op.Cast(op.Range(op.Constant(value_int=0), out_size, one_i), to=1)
    half = op.Constant(value_float=0.5)
    src = op.Sub(op.Mul(scale, op.Add(dst, half)), half)
    last = op.Sub(in_size, one_i)
    start = op.Min(op.Cast(op.Floor(src), to=7), last)
    t = op.Clip(op.Sub(src, op.Cast(start, to=1)), op.Constant(value_float=0.0), op.Constant(value_float=1.0))
    a = op.Constant(value_float=CUBIC_A)
    a2, a3 = op.Constant(value_float=CUBIC_A + 2.0), op.Constant(value_float=CUBIC_A + 3.0)
    five_a, eight_a, four_a = (op.Constant(value_float=k * CUBIC_A) for k in (5.0, 8.0, 4.0))
    one = op.Constant(value_float=1.0)

    def near(x: Any) -> Any:  # ((A + 2) x - (A + 3)) x x + 1, for |x| <= 1
        return op.Add(op.Mul(op.Mul(op.Sub(op.Mul(a2, x), a3), x), x), one)

    def far(x: Any) -> Any:  # ((A x - 5A) x + 8A) x - 4A, for 1 < |x| < 2
        return op.Sub(op.Mul(op.Add(op.Mul(op.Sub(op.Mul(a, x), five_a), x), eight_a), x), four_a)

    rest = op.Sub(one, t)
    weights = [far(op.Add(t, one)), near(t), near(rest), far(op.Add(rest, one))]
    zero_i = op.Constant(value_int=0)
    indices = [op.Clip(op.Add(start, op.Constant(value_int=k - 1)), zero_i, last) for k in range(4)]
    return indices, weights


def _weighted_sum(op: Any, values: Any, indices: list[Any], weights: list[Any], axis: int) -> Any:
    """``sum_k values.gather(indices[k], axis) * weights[k]``, the four terms added in order."""
    total = None
    for index, weight in zip(indices, weights):
        term = op.Mul(op.Gather(values, index, axis=axis), weight)
        total = term if total is None else op.Add(total, term)
    return total


def _decode_one_box(op: Any, maps: Any, rois: Any, index: Any) -> tuple[Any, Any]:
    """The body of the loop: detection ``index``'s ``[K, 3]`` keypoints and ``[K]`` scores."""
    axis0 = op.Constant(value_ints=[0])
    heat = op.Gather(maps, index, axis=0)  # [K, M, M]
    box = op.Gather(rois, index, axis=0)  # [4]
    x1, y1, x2, y2 = (op.Gather(box, op.Constant(value_int=k), axis=0) for k in range(4))
    one_f = op.Constant(value_float=1.0)
    width, height = op.Max(op.Sub(x2, x1), one_f), op.Max(op.Sub(y2, y1), one_f)
    out_w, out_h = op.Cast(op.Ceil(width), to=7), op.Cast(op.Ceil(height), to=7)
    shape = op.Shape(heat)
    in_h = op.Squeeze(op.Slice(shape, op.Constant(value_ints=[1]), op.Constant(value_ints=[2])), axis0)
    in_w = op.Squeeze(op.Slice(shape, op.Constant(value_ints=[2]), op.Constant(value_ints=[3])), axis0)
    x_indices, x_weights = _cubic_axis(op, in_w, out_w)
    y_indices, y_weights = _cubic_axis(op, in_h, out_h)
    rows = _weighted_sum(op, heat, x_indices, x_weights, axis=2)  # [K, M, w]: the width first
    column = op.Constant(value_ints=[1])
    resized = _weighted_sum(op, rows, y_indices, [op.Unsqueeze(w, column) for w in y_weights], axis=1)  # [K, h, w]
    num_keypoints = op.Slice(shape, axis0, column)
    flat = op.Reshape(resized, op.Concat(num_keypoints, op.Constant(value_ints=[-1]), axis=0))
    best = op.ArgMax(flat, axis=1, keepdims=1, select_last_index=0)  # [K, 1], the first maximum
    scores = op.Squeeze(op.GatherElements(flat, best, axis=1), column)
    best = op.Squeeze(best, column)
    cell_x = op.Mod(best, out_w)
    cell_y = op.Div(op.Sub(best, cell_x), out_w)
    half = op.Constant(value_float=0.5)
    xs = op.Add(op.Mul(op.Add(op.Cast(cell_x, to=1), half), op.Div(width, op.Cast(out_w, to=1))), x1)
    ys = op.Add(op.Mul(op.Add(op.Cast(cell_y, to=1), half), op.Div(height, op.Cast(out_h, to=1))), y1)
    visible = op.Expand(one_f, op.Shape(xs))
    keypoints = op.Concat(*(op.Unsqueeze(v, column) for v in (xs, ys, visible)), axis=1)
    return keypoints, scores


class _BodyBuilder:
    """``op.X(*inputs, **attributes)`` recording ONNX IR nodes on a tape (the loop body's nodes):
    the inputs may be values of the enclosing graph, which the body then reads from its scope."""

    def __init__(self) -> None:
        import onnx_ir as ir

        self.tape = ir.tape.Tape()

    def __getattr__(self, op_type: str) -> Any:
        def make(*inputs: Any, **attributes: Any) -> Any:
            return self.tape.op(op_type, list(inputs), attributes or None)

        return make


def _fix_loop_inputs(output: Any, initial: Any) -> None:
    """Make the ``Loop`` node producing ``output`` read ``(M, cond, initial)``: torch's ONNX recorder
    (torch 2.9-2.14) puts *every* positional argument into the variadic ``v_initial`` as well, giving
    ``(M, cond, M, cond, initial)``; a recorder without that bug leaves three inputs, kept as is."""
    node = output.producer()
    if len(node.inputs) == 5 and node.inputs[4] is initial:
        node.replace_input_with(2, initial)
        node.resize_inputs(3)
    if len(node.inputs) != 3 or node.inputs[2] is not initial:
        raise RuntimeError(f"detkit.export: the keypoint Loop has inputs {list(node.inputs)}, expected (M, cond, initial)")


def heatmaps_to_keypoints_onnx(maps: Any, rois: Any) -> tuple[Any, Any]:
    """``detkit_export::heatmaps_to_keypoints`` as ONNX: a ``Loop`` over the detections.

    ``R`` iterations; the body (:func:`_decode_one_box`) reads ``maps`` and ``rois`` from the
    enclosing graph and writes box ``i``'s ``[K, 4]`` (``x, y, 1, score``) into row ``i`` of the
    carried ``[R, K, 4]`` result (zeros at first: ``R == 0`` runs no iteration and gives the empty
    result). One loop-carried value and no scan output, because torch's recorder gives a
    ``Loop`` node a single output.

    Returns:
        ``(keypoints [R, K, 3], scores [R, K])`` float32.
    """
    import onnx_ir as ir
    from onnxscript import opset18 as op

    axis0 = op.Constant(value_ints=[0])
    maps, rois = op.Cast(maps, to=1), op.Cast(rois, to=1)
    trips = op.Squeeze(op.Shape(rois, start=0, end=1), axis0)

    iteration = ir.Value(name="box_index", type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([]))
    condition = ir.Value(name="box_cond", type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([]))
    decoded_in = ir.Value(name="box_decoded", type=ir.TensorType(ir.DataType.FLOAT))
    body = _BodyBuilder()
    keypoints, scores = _decode_one_box(body, maps, rois, iteration)
    packed = body.Concat(keypoints, body.Unsqueeze(scores, body.Constant(value_ints=[1])), axis=1)  # [K, 4]
    at = body.Reshape(iteration, body.Constant(value_ints=[1, 1]))
    decoded_out = body.ScatterND(decoded_in, at, body.Unsqueeze(packed, body.Constant(value_ints=[0])))
    graph = ir.Graph([iteration, condition, decoded_in], [body.Identity(condition), decoded_out],
                     nodes=body.tape.nodes, name="decode_one_box", opset_imports={"": 18})  # fmt: skip
    buffer_shape = op.Concat(op.Shape(maps, start=0, end=2), op.Constant(value_ints=[4]), axis=0)
    initial = op.Expand(op.Constant(value_float=0.0), buffer_shape)
    decoded = op.Loop(trips, op.Constant(value=ir.tensor(True)), initial, body=graph)  # [R, K, 4]
    _fix_loop_inputs(decoded, initial)
    keypoints = op.Slice(decoded, op.Constant(value_ints=[0]), op.Constant(value_ints=[3]), op.Constant(value_ints=[2]))
    scores = op.Squeeze(op.Slice(decoded, op.Constant(value_ints=[3]), op.Constant(value_ints=[4]),
                                 op.Constant(value_ints=[2])), op.Constant(value_ints=[2]))  # fmt: skip
    return keypoints, scores
