"""Reading darknet cfgs into detkit's YOLOv3 / YOLOv3-tiny, and clear errors for what detkit lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detkit.models.backbones.darknet import DarknetMaxPool
from detkit.models.convert.darknet import DarknetCfgError, build_yolov3_from_cfg, parse_darknet_cfg
from detkit.models.zoo import YOLO_DATA_DIR

TINY_CFG = YOLO_DATA_DIR / "yolov3-tiny.cfg"
FULL_CFG = YOLO_DATA_DIR / "yolov3.cfg"


def _edited_cfg(tmp_path: Path, source: Path, old: str, new: str, count: int = 1) -> Path:
    text = source.read_text()
    assert old in text
    path = tmp_path / source.name
    path.write_text(text.replace(old, new, count))
    return path


def test_parse_tiny_cfg_sections():
    sections = parse_darknet_cfg(TINY_CFG)
    assert sections[0].type == "net" and sections[0].options["width"] == "416"
    layers = sections[1:]
    assert len(layers) == 24
    assert [layer.type for layer in layers[:2]] == ["convolutional", "maxpool"]
    assert layers[20].type == "route" and layers[20].options["layers"] == "-1, 8"
    assert layers[16].type == "yolo" and layers[16].options["mask"] == "3,4,5"


def test_tiny_cfg_builds_yolov3_tiny_with_darknet_shapes():
    model = build_yolov3_from_cfg(TINY_CFG).eval()
    assert model.num_classes == 80 and model.input_size == (416, 416)
    assert len(model.darknet_convs()) == 13
    # The number of float32 values in pjreddie's yolov3-tiny.weights after its 20-byte header.
    floats = sum(t.numel() for conv, bn in model.darknet_convs() for t in [conv.weight, *(
        [bn.weight, bn.bias, bn.running_mean, bn.running_var] if bn is not None else [conv.bias])])
    assert floats == (35_434_956 - 20) // 4
    assert model.head.anchor_masks == ((0, 1, 2), (3, 4, 5))  # p4 (stride 16) first
    with torch.no_grad():
        raw = model.head(model.neck(model.backbone(torch.zeros(1, 3, 416, 416))))
    assert [tuple(r.shape) for r in raw] == [(1, 255, 26, 26), (1, 255, 13, 13)]


def test_full_cfg_builds_yolov3_darknet53():
    model = build_yolov3_from_cfg(FULL_CFG, input_size=(64, 64))
    assert len(model.darknet_convs()) == 75
    assert sum(p.numel() for p in model.parameters()) == 61_949_149  # darknet's YOLOv3: 62.0 M
    assert model.head.anchor_masks == ((0, 1, 2), (3, 4, 5), (6, 7, 8))


def test_other_class_count_and_input_size(tmp_path: Path):
    text = TINY_CFG.read_text().replace("classes=80", "classes=20").replace("filters=255", "filters=75")
    text = text.replace("width=416", "width=320").replace("height=416", "height=320")
    path = tmp_path / "tiny-voc.cfg"
    path.write_text(text)
    model = build_yolov3_from_cfg(path)
    assert model.num_classes == 20 and model.input_size == (320, 320)


def test_unsupported_layer_type_names_layer(tmp_path: Path):
    path = _edited_cfg(tmp_path, TINY_CFG, "[upsample]", "[reorg]")
    with pytest.raises(DarknetCfgError, match=r"layer 19 \[reorg\].*not supported"):
        build_yolov3_from_cfg(path)


def test_unsupported_option_names_layer_and_option(tmp_path: Path):
    path = _edited_cfg(tmp_path, TINY_CFG, "filters=32\n", "filters=32\ngroups=2\n")
    with pytest.raises(DarknetCfgError, match=r"layer 2 \[convolutional\].*unsupported option.*groups"):
        build_yolov3_from_cfg(path)
    path = _edited_cfg(tmp_path, TINY_CFG, "activation=leaky", "activation=mish")
    with pytest.raises(DarknetCfgError, match=r"layer 0 \[convolutional\].*activation=mish"):
        build_yolov3_from_cfg(path)


def test_cfg_of_another_shape_is_refused(tmp_path: Path):
    path = _edited_cfg(tmp_path, TINY_CFG, "filters=64", "filters=48")
    with pytest.raises(DarknetCfgError, match=r"layer 4 \[convolutional\].*filters=48 \(detkit: 64\)"):
        build_yolov3_from_cfg(path)
    path = _edited_cfg(tmp_path, TINY_CFG, "layers = -1, 8", "layers = -1, 99")
    with pytest.raises(DarknetCfgError, match=r"layer 20 \[route\]"):
        build_yolov3_from_cfg(path)


def test_darknet_maxpool_matches_window_max_over_valid_cells():
    # darknet's size=2 stride=1 pool of yolov3-tiny: window (y..y+1, x..x+1), cells outside skipped.
    x = torch.randn(2, 3, 5, 7)
    out = DarknetMaxPool(2, 1)(x)
    assert out.shape == x.shape
    expected = torch.empty_like(x)
    for y in range(5):
        for col in range(7):
            expected[..., y, col] = x[..., y : y + 2, col : col + 2].amax((-2, -1))
    torch.testing.assert_close(out, expected)
    # stride 2 on an odd size: ceil(7 / 2) = 4 columns, the last window holds one column.
    out = DarknetMaxPool(2, 2)(x)
    assert out.shape[-2:] == (3, 4)
    torch.testing.assert_close(out[..., -1, -1], x[..., 4, 6])
