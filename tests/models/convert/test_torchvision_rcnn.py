"""Converting torchvision Faster / Mask / Keypoint R-CNN state dicts: strict loads, class layouts, the CLI tool."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    keypointrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
)

from configs.common.rcnn import faster_rcnn, faster_rcnn_mobilenet_v3_fpn, keypoint_rcnn, mask_rcnn
from detkit.config import instantiate
from detkit.models.convert import convert_torchvision_rcnn
from detkit.models.convert.torchvision_rcnn import COCO_CATEGORY_IDS

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL = dict(weights=None, weights_backbone=None, num_classes=5)  # 4 object classes + background

CASES = {
    "fasterrcnn_resnet50_fpn": (fasterrcnn_resnet50_fpn, faster_rcnn),
    "maskrcnn_resnet50_fpn": (maskrcnn_resnet50_fpn, mask_rcnn),
    "keypointrcnn_resnet50_fpn": (keypointrcnn_resnet50_fpn, keypoint_rcnn),
    "fasterrcnn_mobilenet_v3_large_fpn": (fasterrcnn_mobilenet_v3_large_fpn, faster_rcnn_mobilenet_v3_fpn),
}


@pytest.mark.parametrize("arch", list(CASES))
def test_converted_state_dict_loads_strictly(arch):
    builder, config = CASES[arch]
    torch.manual_seed(0)
    source = builder(**SMALL).state_dict()
    checkpoint = convert_torchvision_rcnn(source, arch)
    assert checkpoint["meta"]["num_classes"] == 4 and checkpoint["meta"]["arch"] == arch
    model = instantiate(config(4))
    model.load_state_dict(checkpoint["model"], strict=True)
    converted = checkpoint["model"]
    assert not any(key.endswith("num_batches_tracked") for key in converted)
    torch.testing.assert_close(converted["rpn.head.cls_logits.weight"], source["rpn.head.cls_logits.weight"])
    if arch.startswith("mask"):
        # The unused background mask channel 0 is dropped: detkit channel k = torchvision's k + 1.
        torch.testing.assert_close(
            converted["roi_heads.mask_head.mask_logits.weight"],
            source["roi_heads.mask_predictor.mask_fcn_logits.weight"][1:],
        )
    if arch.startswith("keypoint"):  # Sequential(conv, ReLU, ...): conv 2i is detkit's conv i
        torch.testing.assert_close(converted["roi_heads.keypoint_head.convs.7.0.weight"],
                                   source["roi_heads.keypoint_head.14.weight"])
        torch.testing.assert_close(converted["roi_heads.keypoint_head.keypoint_logits.weight"],
                                   source["roi_heads.keypoint_predictor.kps_score_lowres.weight"])


def test_coco_contiguous_keeps_the_80_categories():
    torch.manual_seed(0)
    source = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()  # 91-way
    checkpoint = convert_torchvision_rcnn(source, "fasterrcnn_resnet50_fpn", coco_contiguous=True)
    assert checkpoint["meta"]["num_classes"] == 80 and len(COCO_CATEGORY_IDS) == 80
    scores = checkpoint["model"]["roi_heads.box_predictor.cls_score.weight"]
    deltas = checkpoint["model"]["roi_heads.box_predictor.bbox_pred.weight"]
    source_scores = source["roi_heads.box_predictor.cls_score.weight"]
    source_deltas = source["roi_heads.box_predictor.bbox_pred.weight"]
    torch.testing.assert_close(scores[0], source_scores[0])  # background stays first
    torch.testing.assert_close(scores[12], source_scores[13])  # label 11 ("stop sign") is COCO id 13
    torch.testing.assert_close(deltas[4 * 12 : 4 * 13], source_deltas[4 * 13 : 4 * 14])
    instantiate(faster_rcnn(80)).load_state_dict(checkpoint["model"], strict=True)
    with pytest.raises(ValueError, match="91-way"):
        convert_torchvision_rcnn(fasterrcnn_resnet50_fpn(**SMALL).state_dict(), "fasterrcnn_resnet50_fpn",
                                 coco_contiguous=True)


def test_bad_arch_and_wrong_state_dict_are_errors():
    with pytest.raises(ValueError, match="unknown torchvision architecture 'retinanet'"):
        convert_torchvision_rcnn({}, "retinanet")
    source = fasterrcnn_resnet50_fpn(**SMALL).state_dict()
    with pytest.raises(ValueError, match="not a torchvision maskrcnn_resnet50_fpn state dict"):
        convert_torchvision_rcnn(source, "maskrcnn_resnet50_fpn")
    with pytest.raises(ValueError, match="not a torchvision keypointrcnn_resnet50_fpn state dict"):
        convert_torchvision_rcnn(source, "keypointrcnn_resnet50_fpn")


def test_convert_command_writes_a_keypoint_rcnn(tmp_path, capsys):
    from detkit.cli.convert import main

    torch.manual_seed(0)
    source_path, output_path = tmp_path / "tv.pth", tmp_path / "detkit.pth"
    torch.save(keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), source_path)
    assert main(["--from", "torchvision", "--arch", "keypointrcnn_resnet50_fpn", str(source_path),
                 str(output_path)]) == 0
    assert "num_classes=1, model config of keypoint_rcnn_r50_fpn_1x_coco" in capsys.readouterr().out
    checkpoint = torch.load(output_path, map_location="cpu", weights_only=True)
    assert checkpoint["model_config"]["num_classes"] == 1
    instantiate(keypoint_rcnn(1)).load_state_dict(checkpoint["model"], strict=True)


def test_convert_weights_tool(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("convert_weights", REPO_ROOT / "tools" / "convert_weights.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    torch.manual_seed(0)
    source = fasterrcnn_mobilenet_v3_large_fpn(**SMALL)
    source_path, output_path = tmp_path / "tv.pth", tmp_path / "detkit.pth"
    torch.save(source.state_dict(), source_path)
    tool.main(["--from", "torchvision", "--arch", "fasterrcnn_mobilenet_v3_large_fpn", str(source_path),
               str(output_path)])
    assert "num_classes=4" in capsys.readouterr().out
    checkpoint = torch.load(output_path, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"model", "meta", "model_config", "class_names"}
    assert checkpoint["meta"]["source"] == "torchvision" and checkpoint["model_config"]["num_classes"] == 4
    instantiate(faster_rcnn_mobilenet_v3_fpn(4)).load_state_dict(checkpoint["model"], strict=True)
