"""MTCNN's three networks exported to ONNX (real facenet-pytorch weights) give the eager networks'
outputs, and the cascade run on them in ONNX Runtime finds the eager cascade's faces."""

from __future__ import annotations

import pytest
import torch
from export_testing import assert_same_detections, assert_standard_onnx, blank_image, load_rgb, SAMPLES_DIR

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from detkit.apis.onnx_backend import ONNXNetwork, mtcnn_onnx  # noqa: E402
from detkit.export import export  # noqa: E402
from detkit.models.detectors.mtcnn.networks import input_affine  # noqa: E402


@pytest.fixture(scope="module")
def model():
    from detkit.models.convert.mtcnn_facenet import mtcnn_facenet
    from detkit.utils.pypi_files import PyPIDownloadError

    try:
        return mtcnn_facenet()
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch facenet-pytorch's MTCNN weights (no network?): {error}")


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    return export(model, tmp_path_factory.mktemp("mtcnn") / "mtcnn.onnx")


def test_networks_are_standard_onnx_and_equal_eager(model, folder):
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
    generator = torch.Generator().manual_seed(0)
    for name, shapes in [("pnet", [(1, 3, 12, 12), (3, 3, 57, 91)]), ("rnet", [(1, 3, 24, 24), (17, 3, 24, 24)]),
                         ("onet", [(5, 3, 48, 48)])]:
        assert_standard_onnx(folder / f"{name}.onnx")
        network = ONNXNetwork(folder / f"{name}.onnx")
        for shape in shapes:
            x = torch.rand(shape, generator=generator) * 255
            with torch.no_grad():
                expected = getattr(model, name)(x, *input_affine(1.0))
            for got, want in zip(network(x, *input_affine(1.0)), expected, strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="input map"):
        network(x, 1.0, 0.0)


def test_cascade_on_onnx_networks_finds_the_eager_faces(model, folder):
    cascade = mtcnn_onnx(folder)
    assert cascade.thresholds == model.thresholds and cascade.min_face_size == model.min_face_size
    images = [load_rgb(SAMPLES_DIR / "astronaut.png"), load_rgb(SAMPLES_DIR / "ivan.jpg"), blank_image()]
    with torch.no_grad():
        expected = model(images)[0]
        got = cascade(images)[0]
    assert [len(e["boxes"]) for e in expected][:2] != [0, 0] and len(expected[2]["boxes"]) == 0
    assert_same_detections(expected, got)
    for want, have in zip(expected, got):
        torch.testing.assert_close(have["landmarks"], want["landmarks"], rtol=0, atol=0.01)
