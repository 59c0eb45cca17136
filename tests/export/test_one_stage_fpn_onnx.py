"""RetinaNet and FCOS exported to ONNX (R-CNN resize, per-level top-k, decoding and per-class NMS
inside the graph) give the eager model's detections in onnxruntime (detkit.export.one_stage_fpn).

Seeded random weights (the head's convs He-normal so that scores spread), the score threshold just
above the best detection of the blank image; the sample photos and the blank image as one batch,
then a batch of one (the batch is dynamic; the image size is fixed, as Faster R-CNN's), and the
:class:`~detkit.apis.onnx_backend.ONNXDetector` on photos of their own size.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from export_models import one_stage_fpn_model
from export_testing import SAMPLE_PHOTOS, assert_standard_onnx, blank_image, load_rgb
from rcnn_export_testing import (
    assert_matching_detections,
    photo_at,
    unpad_outputs,
)

from detkit.apis.onnx_backend import ONNXDetector
from detkit.export import export
from detkit.export.one_stage_fpn import OneStageFPNExport
from detkit.export.onnx_export import export_onnx

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.detkit, "batched_nms"), reason="needs detkit._C")

# config and seed: with these seeded weights the photos give detections above the blank image's best
# (random weights may score a flat image highest: seed 0 puts every photo under it).
CONFIGS = {
    "retinanet": ("configs/retinanet/retinanet_r18_fpn_shapes.py", 2),
    "fcos": ("configs/fcos/fcos_r18_fpn_shapes.py", 3),
}
SIZE = (256, 320)  # the models resize to 256 x 320


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _model(family: str) -> torch.nn.Module:
    config_path, seed = CONFIGS[family]
    return one_stage_fpn_model(config_path, seed, SIZE)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory):
    model = _model(request.param)
    module = OneStageFPNExport(model, SIZE)
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.onnx"
    export_onnx(module, path, example=torch.stack([photo_at(0, SIZE), photo_at(1, SIZE)]), dynamic=True,
                metadata={"class_names": list(model.class_names)})  # fmt: skip
    return request.param, model, module, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), path


def _run(session, names, images):
    return unpad_outputs(tuple(session.run(None, {"images": torch.stack(images).numpy()})), names)


def test_graph_is_standard_onnx_with_nms_inside(exported):
    import onnx

    _, _, _, _, path = exported
    assert_standard_onnx(path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"NonMaxSuppression", "Resize", "TopK"} <= ops, sorted(ops)


def test_photos_and_blank_image_equal_eager(exported):
    _, model, module, session, _ = exported
    images = [photo_at(0, SIZE), photo_at(1, SIZE), photo_at(2, SIZE), blank_image(*SIZE)]
    with torch.no_grad():
        expected, _ = model(images)
    assert sum(len(d["labels"]) for d in expected[:3]) > 0 and len(expected[3]["labels"]) == 0
    for reference, detections in zip(expected, _run(session, module.output_names, images)):
        assert_matching_detections(reference, detections)
    for image, reference in zip(images[2:], expected[2:]):  # a batch of one
        assert_matching_detections(reference, _run(session, module.output_names, [image])[0])


def test_backend_feeds_the_image_at_the_export_size(exported, tmp_path):
    """ONNXDetector on photos of their own size: resized to the export size, boxes back in theirs."""
    family, model, _, _, _ = exported
    path = export(model, tmp_path / f"{family}.onnx", image_size=SIZE, dynamic=True)
    images = [load_rgb(p) for p in SAMPLE_PHOTOS[:2]]
    detector = ONNXDetector(path)
    assert detector.metadata["preprocess"]["resize_inside"] and detector.class_names == list(model.class_names)
    actual = detector(images)[0]
    assert all(len(a["labels"]) > 0 for a in actual)
    with torch.no_grad():
        expected = model([detector.preprocess.resize(image) for image in images])[0]
    for image, reference, detections in zip(images, expected, actual):
        scale = torch.tensor([image.shape[2] / SIZE[1], image.shape[1] / SIZE[0]] * 2)
        reference["boxes"] = reference["boxes"] * scale
        assert_matching_detections(reference, detections, box_atol=0.01 * max(scale.tolist()))


def test_export_writes_the_fused_graph(tmp_path):
    """detkit.export exports the fused model: the backbone's norms are folded into their
    convolutions (no Conv -> Mul and no BatchNormalization left), the model given keeps its norms,
    and the detections stay the eager ones."""
    import onnx

    model = _model("retinanet")
    path = export(model, tmp_path / "retinanet.onnx", image_size=SIZE)
    graph = onnx.load(str(path)).graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    scaled_convs = [n.name for n in graph.node if n.op_type == "Mul" and any(producers.get(i) == "Conv" for i in n.input)]
    assert not scaled_convs, scaled_convs[:5]
    assert not [n.name for n in graph.node if n.op_type == "BatchNormalization"]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    images = [photo_at(0, SIZE), blank_image(*SIZE)]
    with torch.no_grad():
        expected, _ = model(images)
    for reference, detections in zip(expected, ONNXDetector(path)(images)[0]):
        assert_matching_detections(reference, detections)
