"""ONNX export of Faster R-CNN (R50-FPN, MobileNetV3-FPN) and Mask R-CNN (R50-FPN): the whole
post-processing in the graph, run in onnxruntime on the sample photos and a blank image, against
the eager model (detkit.export.rcnn)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from export_testing import assert_standard_onnx, blank_image  # noqa: E402
from rcnn_export_testing import (  # noqa: E402
    DELTA_SCALES,
    FAMILIES,
    INPUT_SIZE,
    assert_matching_detections,
    build_model,
    export_rcnn,
    photo_at,
    run_unpadded,
    unpad_outputs,
)

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.detkit, "batched_nms"), reason="needs detkit._C")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(request, tmp_path_factory):
    model = build_model(request.param)
    path = tmp_path_factory.mktemp("rcnn_onnx") / f"{request.param}.onnx"
    module, session = export_rcnn(model, path, INPUT_SIZE)
    return request.param, model, module, session, path


def _tolerance(family):
    return FAMILIES[family][3]


def test_graph_is_standard_onnx_with_nms_and_roialign_inside(exported):
    import onnx

    family, _, module, _, path = exported
    assert_standard_onnx(path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"NonMaxSuppression", "RoiAlign", "Resize", "TopK"} <= ops, sorted(ops)
    assert module.output_names[-1] == ("masks" if family.startswith("mask") else "num_detections")


def test_photos_and_blank_image_equal_eager(exported):
    family, model, module, session, _ = exported
    images = [photo_at(0), photo_at(1), blank_image(*INPUT_SIZE)]
    with torch.no_grad():
        expected, _ = model(images)
    actual = run_unpadded(session, module.output_names, images)
    assert [len(d["labels"]) > 0 for d in expected] == [True, True, False]  # the blank image: none
    for reference, detections in zip(expected, actual):
        assert_matching_detections(reference, detections, _tolerance(family))
    if family.startswith("mask"):
        assert actual[0]["masks"].shape[1:] == INPUT_SIZE


def test_other_batch_sizes(exported):
    """The batch is dynamic: one image, and a blank image alone (zero detections, padded rows)."""
    family, model, module, session, _ = exported
    for images in ([photo_at(2)], [blank_image(*INPUT_SIZE)]):
        with torch.no_grad():
            expected, _ = model(images)
        outputs = session.run(None, {"images": torch.stack(images).numpy()})
        assert outputs[0].shape == (1, model.roi_heads.detections_per_img, 4)
        actual = unpad_outputs(tuple(outputs), module.output_names)[0]
        assert_matching_detections(expected[0], actual, _tolerance(family))


def test_second_input_size(tmp_path):
    """The size is fixed at export (the model's resize is inside): a portrait size exports too."""
    model = build_model("faster_rcnn_mobilenetv3_fpn")
    size = (400, 304)
    module, session = export_rcnn(model, tmp_path / "portrait.onnx", size, batch_size=1)
    images = [photo_at(1, size), photo_at(0, size)]
    with torch.no_grad():
        expected, _ = model(images)
    assert all(len(d["labels"]) for d in expected)
    for reference, detections in zip(expected, run_unpadded(session, module.output_names, images)):
        assert_matching_detections(reference, detections, _tolerance("faster_rcnn_mobilenetv3_fpn"))


@pytest.mark.xfail(strict=True, reason="onnxruntime's mask of one detection differs (IoU 0.30; boxes, scores, labels "
                   "equal; RCNNExport run in PyTorch gives the model's mask): open, found in session 7")
def test_masks_with_scaled_deltas_equal_eager(tmp_path):
    """Mask R-CNN R50-FPN with its box deltas scaled as tools/benchmark_export.py scales them
    (DELTA_SCALES): photo 2's detection 51 (label 16, box [44.6, 34.9, 62.0, 97.6]) gets a mask of
    IoU 0.30 with the eager one from onnxruntime, while the export module run in PyTorch gives the
    eager mask exactly: an onnxruntime-side difference of the mask branch, not yet explained."""
    family = "mask_rcnn_r50_fpn"
    model = build_model(family, delta_scale=DELTA_SCALES[family])
    module, session = export_rcnn(model, tmp_path / "mask_rcnn.onnx", INPUT_SIZE)
    images = [photo_at(2)]
    with torch.no_grad():
        expected, _ = model(images)
    actual = run_unpadded(session, module.output_names, images)[0]
    assert_matching_detections(expected[0], actual)
