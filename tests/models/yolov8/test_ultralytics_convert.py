"""convert_ultralytics and ``detkit convert --from ultralytics``: weights of another architecture
refused in one line; a converted checkpoint rebuilt by detkit.load detects as ultralytics."""

from __future__ import annotations

import pytest
import torch

import detkit
from detkit.cli.convert import main as convert_main
from detkit.models.convert import ULTRALYTICS_ARCHS, convert_ultralytics
from detkit.models.convert.ultralytics import ultralytics_key_map
from yolov8_testing import ultralytics_model


def test_archs_and_the_layer_map_follow_the_yamls():
    assert {"yolov8n", "yolov8s", "yolov8m", "yolo11n", "yolo11s", "yolo11m"} <= set(ULTRALYTICS_ARCHS)
    v8, detect_v8 = ultralytics_key_map("yolov8")
    v11, detect_11 = ultralytics_key_map("yolo11")
    assert (detect_v8, detect_11) == (22, 23)
    assert v8[12] == "neck.top_down_p4" and v8[21] == "neck.bottom_up_p5" and 10 not in v8
    assert v11[10] == "backbone.stage5.3" and v11[13] == "neck.top_down_p4" and v11[22] == "neck.bottom_up_p5"


@pytest.fixture(scope="module")
def yolov8n_state_dict():
    return ultralytics_model("yolov8n", num_classes=5).state_dict()


def test_num_classes_is_read_from_the_state_dict(yolov8n_state_dict):
    checkpoint = convert_ultralytics(yolov8n_state_dict, "yolov8n")
    assert checkpoint["meta"]["num_classes"] == 5 and checkpoint["meta"]["source"] == "ultralytics"
    assert not any("dfl" in key for key in checkpoint["model"])


@pytest.mark.parametrize(("arch", "message"), [
    ("yolov8s", r"not an ultralytics yolov8s state dict: model.0.conv.weight \(detkit backbone.stem.conv.weight\) has "
                r"shape \[16, 3, 3, 3\], yolov8s needs \[32, 3, 3, 3\] \(another scale\?\)"),
    ("yolo11n", r"this is not an ultralytics yolo11n DetectionModel state dict: it has no 'model.23.cv3.0.2.bias'"),
    ("yolov9t", r"unknown ultralytics architecture 'yolov9t'; supported: yolov8n"),
])  # fmt: skip
def test_weights_of_another_architecture_are_refused_in_one_line(yolov8n_state_dict, arch: str, message: str):
    with pytest.raises(ValueError, match=message) as error:
        convert_ultralytics(yolov8n_state_dict, arch)
    assert "\n" not in str(error.value)


def test_a_state_dict_of_another_library_is_refused_in_one_line():
    with pytest.raises(ValueError, match="not an ultralytics yolov8n DetectionModel state dict") as error:
        convert_ultralytics({"backbone.body.conv1.weight": torch.zeros(1)}, "yolov8n")
    assert "\n" not in str(error.value)
    state = dict(ultralytics_model("yolov8n", num_classes=3).state_dict())
    state["model.30.conv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"'model.30.conv.weight': layer 30 has no weights in this architecture"):
        convert_ultralytics(state, "yolov8n")


def test_cli_converts_a_state_dict_that_detkit_load_rebuilds_and_that_detects_as_ultralytics(tmp_path, capsys):
    reference = ultralytics_model("yolo11n")
    source, target = tmp_path / "yolo11n_state.pth", tmp_path / "yolo11n_coco.pth"
    torch.save(reference.state_dict(), source)
    assert convert_main(["--from", "ultralytics", "--arch", "yolo11n", str(source), str(target)]) == 0
    assert "num_classes=80" in capsys.readouterr().out
    model = detkit.load(str(target)).eval()
    assert model.num_classes == 80 and model.class_names[0] == "person"
    images = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        decoded, _ = reference(images)
        _, scores = model.head.decode(model.head(model.neck(model.backbone(images))))
    torch.testing.assert_close(scores, decoded[:, 4:].transpose(1, 2), rtol=0, atol=1e-5)


def test_cli_names_the_file_of_weights_of_another_scale(tmp_path, capsys, yolov8n_state_dict):
    source = tmp_path / "n.pth"
    torch.save(yolov8n_state_dict, source)
    assert convert_main(["--from", "ultralytics", "--arch", "yolov8m", str(source), str(tmp_path / "out.pth")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(source) in err[0] and "not an ultralytics yolov8m state dict" in err[0]
    assert not (tmp_path / "out.pth").exists()
