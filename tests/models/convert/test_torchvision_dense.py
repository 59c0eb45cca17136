"""Converting torchvision RetinaNet (v1, v2) and FCOS state dicts: strict loads, COCO's 80 classes,
clear errors, and ``detkit convert`` writing a checkpoint that ``detkit.load`` rebuilds."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn, retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2

from configs.common.fcos import fcos
from configs.common.retinanet import retinanet
from detkit.config import instantiate
from detkit.models.convert import TORCHVISION_DENSE_ARCHS, convert_torchvision_dense
from detkit.models.convert.torchvision_dense import _tower_key
from detkit.models.convert.torchvision_rcnn import COCO_CATEGORY_IDS

SMALL = dict(weights=None, weights_backbone=None, num_classes=5)  # sigmoid heads: 5 object classes

CASES = {
    "retinanet_resnet50_fpn": (retinanet_resnet50_fpn, lambda n: retinanet(n, version=1)),
    "retinanet_resnet50_fpn_v2": (retinanet_resnet50_fpn_v2, lambda n: retinanet(n, version=2)),
    "fcos_resnet50_fpn": (fcos_resnet50_fpn, fcos),
}


@pytest.mark.parametrize("arch", list(CASES))
def test_converted_state_dict_loads_strictly(arch):
    builder, config = CASES[arch]
    torch.manual_seed(0)
    source = builder(**SMALL).state_dict()
    checkpoint = convert_torchvision_dense(source, arch)
    assert checkpoint["meta"]["num_classes"] == 5 and checkpoint["meta"]["arch"] == arch
    model = instantiate(config(5))
    model.load_state_dict(checkpoint["model"], strict=True)
    converted = checkpoint["model"]
    assert not any(key.endswith("num_batches_tracked") for key in converted)
    torch.testing.assert_close(converted["head.cls_subnet.cls_logits.bias"],
                               source["head.classification_head.cls_logits.bias"])
    tower = "head.box_subnet.conv.3.1.weight"  # last tower conv's GroupNorm (v2, FCOS)
    if arch == "fcos_resnet50_fpn":
        torch.testing.assert_close(converted[tower], source["head.regression_head.conv.10.weight"])
    elif arch.endswith("v2"):
        torch.testing.assert_close(converted[tower], source["head.regression_head.conv.3.1.weight"])


def test_legacy_retinanet_tower_keys_are_renamed():
    # torchvision's RetinaNet checkpoints of version 1 stored the tower flat: conv, ReLU, conv, ...
    assert _tower_key("conv.6.weight", fcos=False) == "conv.3.0.weight"
    assert _tower_key("conv.2.1.bias", fcos=False) == "conv.2.1.bias"
    assert _tower_key("conv.4.bias", fcos=True) == "conv.1.1.bias"
    assert _tower_key("cls_logits.weight", fcos=True) == "cls_logits.weight"


def test_coco_contiguous_keeps_the_80_categories_of_every_anchor():
    torch.manual_seed(0)
    source = retinanet_resnet50_fpn(weights=None, weights_backbone=None).state_dict()  # 91 logits x 9 anchors
    checkpoint = convert_torchvision_dense(source, "retinanet_resnet50_fpn", coco_contiguous=True)
    assert checkpoint["meta"]["num_classes"] == 80 == len(COCO_CATEGORY_IDS)
    logits = checkpoint["model"]["head.cls_subnet.cls_logits.weight"]
    source_logits = source["head.classification_head.cls_logits.weight"]
    assert logits.shape[0] == 9 * 80
    # anchor 2, label 11 ("stop sign", COCO id 13): detkit channel 2 * 80 + 11, torchvision's 2 * 91 + 13
    torch.testing.assert_close(logits[2 * 80 + 11], source_logits[2 * 91 + 13])
    instantiate(retinanet(80)).load_state_dict(checkpoint["model"], strict=True)
    with pytest.raises(ValueError, match="91 COCO logits per anchor, got 5"):
        convert_torchvision_dense(retinanet_resnet50_fpn(**SMALL).state_dict(), "retinanet_resnet50_fpn",
                                  coco_contiguous=True)


def test_bad_arch_and_wrong_state_dict_are_errors():
    assert TORCHVISION_DENSE_ARCHS == ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn")
    with pytest.raises(ValueError, match="unknown torchvision architecture 'retina'"):
        convert_torchvision_dense({}, "retina")
    fcos_source = fcos_resnet50_fpn(**SMALL).state_dict()
    with pytest.raises(ValueError, match="FCOS state dict, not retinanet_resnet50_fpn"):
        convert_torchvision_dense(fcos_source, "retinanet_resnet50_fpn")
    retinanet_source = retinanet_resnet50_fpn(**SMALL).state_dict()
    with pytest.raises(ValueError, match=r"not a torchvision fcos_resnet50_fpn state dict: missing \['head.regr"):
        convert_torchvision_dense(retinanet_source, "fcos_resnet50_fpn")
    with pytest.raises(ValueError, match="unexpected key 'anchor_generator.cell'"):
        convert_torchvision_dense({**retinanet_source, "anchor_generator.cell": torch.zeros(1)},
                                  "retinanet_resnet50_fpn")


def test_detkit_convert_writes_a_checkpoint_that_load_rebuilds(tmp_path, capsys):
    import detkit
    from detkit.cli import main

    torch.manual_seed(0)
    reference = fcos_resnet50_fpn(weights=None, weights_backbone=None, min_size=160, max_size=224)
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "detkit.pth"
    assert main(["convert", "--from", "torchvision", "--arch", "fcos_resnet50_fpn", str(tmp_path / "tv.pth"),
                 str(out)]) == 0
    assert "num_classes=91, model config of fcos_r50_fpn_1x_coco" in capsys.readouterr().out
    model = detkit.load(out)
    assert model.num_classes == 91 and type(model).__name__ == "FCOS"
    converted = torch.load(out, weights_only=True)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, converted[key], rtol=0, atol=0, msg=key)
    assert main(["convert", "--from", "torchvision", "--arch", "list"]) == 0
    assert "retinanet_resnet50_fpn_v2" in capsys.readouterr().out
