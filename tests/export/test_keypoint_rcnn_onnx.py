"""ONNX export of Keypoint R-CNN (R50-FPN, seeded weights): detections, keypoints and keypoint
scores from the graph (its keypoint decoding an ONNX Loop over the detections) in onnxruntime on
the sample photos and a blank image, against the eager model; and through
``Predictor(backend="onnxruntime")`` at a second input size (detkit.export.rcnn, detkit.export.keypoints)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from export_testing import SAMPLE_PHOTOS, SCORE_ATOL, assert_standard_onnx, blank_image
from rcnn_export_testing import (
    INPUT_SIZE,
    assert_matching_detections,
    build_model,
    export_rcnn,
    photo_at,
    run_unpadded,
    unpad_outputs,
)

from detkit.apis import Predictor
from detkit.export import export

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.detkit, "batched_nms"), reason="needs detkit._C")

FAMILY = "keypoint_rcnn_r50_fpn"


@pytest.fixture(scope="module")
def model():
    return build_model(FAMILY)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("keypoint_rcnn_onnx") / f"{FAMILY}.onnx"
    module, session = export_rcnn(model, path, INPUT_SIZE)
    return module, session, path


def test_graph_is_standard_onnx_with_the_keypoint_loop_inside(model, exported):
    import onnx

    module, _, path = exported
    assert_standard_onnx(path)
    graph = onnx.load(str(path)).graph
    assert {"NonMaxSuppression", "RoiAlign", "Loop"} <= {node.op_type for node in graph.node}
    assert module.output_names[-2:] == ("keypoints", "keypoint_scores")
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["has_keypoints"] == "true" and "skeleton" in metadata


def test_photos_and_blank_image_equal_eager(model, exported):
    module, session, _ = exported
    images = [photo_at(0), photo_at(1), photo_at(2), blank_image(*INPUT_SIZE)]
    with torch.no_grad():
        expected, _ = model(images)
    actual = run_unpadded(session, module.output_names, images)
    assert [len(d["labels"]) > 0 for d in expected] == [True, True, True, False]  # the blank image: none
    for reference, detections in zip(expected, actual):
        assert detections["keypoints"].shape[1:] == (model.num_keypoints, 3)
        assert_matching_detections(reference, detections)


def test_other_batch_sizes(model, exported):
    """The batch is dynamic: one photo, and a blank image alone (zero detections, padded rows)."""
    module, session, _ = exported
    cap = model.roi_heads.detections_per_img
    for images in ([photo_at(2)], [blank_image(*INPUT_SIZE)]):
        with torch.no_grad():
            expected, _ = model(images)
        outputs = session.run(None, {"images": torch.stack(images).numpy()})
        assert outputs[-2].shape == (1, cap, model.num_keypoints, 3) and outputs[-1].shape == (1, cap, model.num_keypoints)
        actual = unpad_outputs(tuple(outputs), module.output_names)[0]
        assert_matching_detections(expected[0], actual)
        count = len(expected[0]["labels"])
        assert not outputs[-2][0, count:].any() and not outputs[-1][0, count:].any()  # zero padding rows


def test_predictor_onnxruntime_returns_the_keypoints_at_a_second_size(model, tmp_path):
    """``detkit.export`` at a photo's own (portrait) size; ``Predictor(backend="onnxruntime")`` gives
    the torch Predictor's boxes, keypoints and keypoint scores, and the model's skeleton."""
    photo = next(p for p in SAMPLE_PHOTOS if p.name == "person.jpg")
    torch_results = Predictor(model, device="cpu", fuse=False)([str(photo)])
    height, width = torch_results[0].image_size
    path = export(model, tmp_path / "keypoint_rcnn.onnx", image_size=(height, width), dynamic=True)
    onnx_results = Predictor(path, backend="onnxruntime")([str(photo)])
    want, got = torch_results[0], onnx_results[0]
    assert len(want.labels) > 0 and np.asarray(got.labels).tolist() == np.asarray(want.labels).tolist()
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=SCORE_ATOL)
    np.testing.assert_allclose(got.boxes, want.boxes, rtol=0, atol=0.01)
    assert got.keypoints is not None and got.keypoints.shape == want.keypoints.shape
    np.testing.assert_allclose(got.keypoints, want.keypoints, rtol=0, atol=0.01)
    np.testing.assert_allclose(got.keypoint_scores, want.keypoint_scores, rtol=0, atol=SCORE_ATOL)
    assert got.skeleton == want.skeleton and want.skeleton
