"""The exported graphs' speed-ups for ONNX Runtime change no number.

* :mod:`detkit.export.onnx_rewrite`: ``PRelu`` as ``Relu`` and two depthwise 1x1 convolutions,
  ``MaxPool(ceil_mode=1)`` as end padding, give bit-identical outputs in ONNX Runtime (a small
  graph with slopes of every sign, input sizes odd and even; MTCNN's three networks); the MTCNN
  export holds neither op any more.
* :meth:`detkit.export.rcnn.RCNNExport._pool` (level by level, then one row gather instead of a
  scatter into zeros; the box head's rows put back in RoI order after the head) gives the
  detector's own :class:`~detkit.ops.MultiScaleRoIAlign` exactly, and the R-CNN graph has no
  ``ScatterND`` over pooled features left.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from detkit.apis.onnx_backend import session_options  # noqa: E402
from detkit.export.onnx_rewrite import maxpool_ceil_as_pads, optimize_for_runtime, prelu_as_convolutions  # noqa: E402


def _session(model_proto):
    import onnxruntime as ort

    return ort.InferenceSession(model_proto.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])


def _small_graph():
    """Conv -> PRelu -> MaxPool(3, 2, ceil) -> Conv -> PRelu -> MaxPool(2, 2, ceil) -> Conv, dynamic size."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def array(name, *shape, scale=0.5):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    # slopes of every sign and size: negative, in [0, 1], above 1 (MTCNN's range is -1.3 .. 1.3)
    slopes_1 = numpy_helper.from_array(np.linspace(-1.3, 1.3, 10, dtype=np.float32).reshape(1, 10, 1, 1), "a1")
    slopes_2 = numpy_helper.from_array(np.linspace(1.2, -0.7, 16, dtype=np.float32).reshape(1, 16, 1, 1), "a2")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("PRelu", ["c1", "a1"], ["p1"]),
        helper.make_node("MaxPool", ["p1"], ["m1"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["m1", "w2", "b2"], ["c2"]),
        helper.make_node("PRelu", ["c2", "a2"], ["p2"]),
        helper.make_node("MaxPool", ["p2"], ["m2"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["m2", "w3", "b3"], ["y"]),
    ]
    initializers = [array("w1", 10, 3, 3, 3), array("b1", 10), slopes_1, array("w2", 16, 10, 3, 3, scale=0.2),
                    array("b2", 16), slopes_2, array("w3", 4, 16, 1, 1), array("b3", 4)]  # fmt: skip
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "h", "w"])], initializers,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_rewrites_give_the_same_bits():
    original = _small_graph()
    rewritten = _small_graph()
    assert prelu_as_convolutions(rewritten.graph) == 2
    assert maxpool_ceil_as_pads(rewritten.graph) == 2
    onnx.checker.check_model(rewritten)
    ops = [node.op_type for node in rewritten.graph.node]
    assert "PRelu" not in ops
    assert all(node.attribute and dict((a.name, a) for a in node.attribute)["ceil_mode"].i == 0
               for node in rewritten.graph.node if node.op_type == "MaxPool")  # fmt: skip
    before, after = _session(original), _session(rewritten)
    generator = np.random.default_rng(1)
    for height, width in [(12, 12), (13, 17), (24, 24), (31, 40), (57, 91)]:  # odd sizes: the ceil windows
        x = (generator.standard_normal((2, 3, height, width)) * 3).astype(np.float32)
        x[0, :, :2] = 0.0  # exact zeros through the activations
        expected, actual = before.run(None, {"x": x})[0], after.run(None, {"x": x})[0]
        assert expected.shape == actual.shape
        np.testing.assert_array_equal(actual, expected)


def test_maxpool_rewrite_leaves_what_it_cannot_prove():
    from onnx import helper

    model = _small_graph()
    pool = next(node for node in model.graph.node if node.op_type == "MaxPool")
    pool.attribute.append(helper.make_attribute("pads", [1, 1, 1, 1]))
    assert maxpool_ceil_as_pads(model.graph) == 1  # only the second pooling (no padding of its own)
    assert dict((a.name, a) for a in pool.attribute)["ceil_mode"].i == 1


@pytest.fixture(scope="module")
def mtcnn(tmp_path_factory):
    from detkit.models.detectors.mtcnn.cascade import MTCNN
    from detkit.export import export

    torch.manual_seed(0)
    model = MTCNN().eval()
    return model, export(model, tmp_path_factory.mktemp("mtcnn") / "mtcnn.onnx")


@pytest.mark.parametrize("name, shape", [("pnet", (2, 3, 57, 91)), ("rnet", (17, 3, 24, 24)), ("onet", (5, 3, 48, 48))])
def test_mtcnn_networks_rewritten_exactly(mtcnn, name, shape):
    """Each exported network has neither PRelu nor ceil-mode pooling, and gives the bits of the
    same network exported without the rewrites."""
    from detkit.export.mtcnn import MTCNNNetworkExport

    model, folder = mtcnn
    exported = onnx.load(str(folder / f"{name}.onnx"))
    assert not [n for n in exported.graph.node if n.op_type == "PRelu" and len(n.input) == 2
                and n.input[1] in {i.name for i in exported.graph.initializer}
                and len(next(i for i in exported.graph.initializer if i.name == n.input[1]).dims) == 4]  # fmt: skip
    assert not [n for n in exported.graph.node if n.op_type == "MaxPool"
                and any(a.name == "ceil_mode" and a.i == 1 for a in n.attribute)]  # fmt: skip
    module = MTCNNNetworkExport(getattr(model, name), name).eval()
    example = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        plain = torch.onnx.export(module, (example,), None, dynamo=True, input_names=["images"],
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},),
                                  external_data=False, verbose=False).model_proto  # fmt: skip
    rewritten = onnx.load(str(folder / f"{name}.onnx"))
    plain_counts = optimize_for_runtime(onnx.load_from_string(plain.SerializeToString()))
    assert plain_counts["prelu"] >= 3 and plain_counts["maxpool_ceil"] >= 1
    x = example.numpy()
    expected = _session(plain).run(None, {"images": x})
    actual = _session(rewritten).run(None, {"images": x})
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


def test_rcnn_pool_equals_the_detectors_pooler():
    from rcnn_export_testing import build_model, photo_at

    from detkit.export.rcnn import RCNNExport

    model = build_model("faster_rcnn_r50_fpn")
    module = RCNNExport(model, (336, 448))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        features = module._features(module._batch(torch.stack([photo_at(0), photo_at(1)])))
        height, width = module.resized_size
        corners = torch.rand((300, 2), generator=generator) * torch.tensor([width, height])
        sizes = torch.rand((300, 2), generator=generator) ** 3 * torch.tensor([width, height])  # every level
        boxes = torch.cat([corners, corners + sizes], dim=1)
        image = torch.arange(300) % 2
        pooler = model.roi_heads.box_pooler
        actual = module._pool(pooler, features, boxes, image)
        expected = pooler(features, [boxes[image == 0], boxes[image == 1]], [module.resized_size] * 2)
        head = model.roi_heads.box_head  # run on the rows in level order, then put back in RoI order
        actual_head, expected_head = module._pool(pooler, features, boxes, image, head), head(actual)
    order = torch.cat([torch.nonzero(image == 0)[:, 0], torch.nonzero(image == 1)[:, 0]])
    assert torch.equal(actual[order], expected)
    # the same rows (a GEMM's rows in another order: equal up to its blocking's rounding)
    torch.testing.assert_close(actual_head, expected_head, rtol=1e-5, atol=1e-6)


def test_rcnn_graph_scatters_no_pooled_features(tmp_path):
    from rcnn_export_testing import build_model, export_rcnn

    model = build_model("faster_rcnn_mobilenetv3_fpn")
    export_rcnn(model, tmp_path / "model.onnx", (336, 448))
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in graph.value_info}
    scatters = [n for n in graph.node if n.op_type == "ScatterND"]
    assert scatters, "the padded outputs are still scattered"  # the check below must see the graph's ScatterNDs
    assert not [n.input[0] for n in scatters if ranks.get(n.input[0], 0) >= 4]
