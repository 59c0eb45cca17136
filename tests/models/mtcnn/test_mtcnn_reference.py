"""detkit's MTCNN with facenet-pytorch's converted weights gives facenet-pytorch's faces.

The reference (tests/fixtures/mtcnn/facenet_pytorch_reference.json) is facenet-pytorch 2.6.0's MTCNN
with its defaults on the test images; the weights come from its wheel on PyPI (network, cached).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from detkit.models.convert.mtcnn_facenet import convert_mtcnn_facenet, mtcnn_facenet, mtcnn_facenet_weights
from detkit.models.detectors.mtcnn import MTCNN
from detkit.ops import box_iou

from mtcnn_testing import FACE_IMAGES, read_rgb, reference

IVAN_PUBLISHED_XYWH = (277.0, 90.0, 48.0, 63.0)  # ipazc/mtcnn README


@pytest.fixture(scope="module")
def model() -> MTCNN:
    return mtcnn_facenet()


@pytest.mark.network
@pytest.mark.parametrize("name", FACE_IMAGES)
def test_matches_facenet_pytorch(model: MTCNN, name: str):
    expected = reference()[name]
    image = read_rgb(name)
    assert list(image.shape[1:]) == expected["size"][::-1]  # the json gives (width, height)
    prediction = model([image])[0][0]
    assert prediction["boxes"].shape[0] == expected["n"]
    if expected["n"] == 0:
        return
    # facenet-pytorch orders faces by area (select_largest); match by box.
    boxes = torch.tensor([f["box_xyxy"] for f in expected["faces"]])
    order = box_iou(boxes, prediction["boxes"]).argmax(dim=1)
    torch.testing.assert_close(prediction["boxes"][order], boxes, atol=1.0, rtol=0)
    torch.testing.assert_close(prediction["scores"][order], torch.tensor([f["prob"] for f in expected["faces"]]),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(prediction["landmarks"][order], torch.tensor([f["landmarks"] for f in expected["faces"]]),
                               atol=1.0, rtol=0)
    assert prediction["labels"].tolist() == [0] * expected["n"]


@pytest.mark.network
def test_ivan_overlaps_published_box(model: MTCNN):
    prediction = model([read_rgb("ivan.jpg")])[0][0]
    x, y, w, h = IVAN_PUBLISHED_XYWH
    iou = box_iou(prediction["boxes"], torch.tensor([[x, y, x + w, y + h]]))
    assert prediction["boxes"].shape[0] == 1 and float(iou[0, 0]) >= 0.8


@pytest.mark.network
def test_checkpoint_is_cached_plain_and_fetched_by_the_command(capsys: pytest.CaptureFixture[str]):
    path = mtcnn_facenet_weights()
    assert mtcnn_facenet_weights() == path  # cached: no second download
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"model", "meta"}
    assert checkpoint["meta"]["source"] == "facenet-pytorch==2.6.0"
    MTCNN().load_state_dict(checkpoint["model"])

    tool = Path(__file__).resolve().parents[3] / "tools" / "fetch_weights.py"
    spec = importlib.util.spec_from_file_location("detkit_tool_fetch_weights_mtcnn", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["mtcnn"]) == 0
    assert capsys.readouterr().out.strip() == str(path)


def test_converter_takes_facenet_layer_names_and_rejects_others():
    model = MTCNN()
    state_dicts = {net: getattr(model, net).state_dict() for net in ("pnet", "rnet", "onet")}
    assert "conv4_1.weight" in state_dicts["pnet"] and "dense6_3.weight" in state_dicts["onet"]  # facenet's names
    converted = convert_mtcnn_facenet(state_dicts)["model"]
    assert converted.keys() == model.state_dict().keys()
    with pytest.raises(ValueError, match="missing"):
        convert_mtcnn_facenet({"pnet": state_dicts["pnet"]})
    wrong = dict(state_dicts, rnet={"dense4.weight": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="not facenet-pytorch MTCNN weights"):
        convert_mtcnn_facenet(wrong)
