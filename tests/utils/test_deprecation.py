"""Old names keep working for one release with a DeprecationWarning: renamed keywords and moved
attributes (docs/conventions.md, "Names")."""

from __future__ import annotations

import pytest
import torch

from detkit.models.anchors import AnchorGenerator
from detkit.models.backbones import SSDLiteMobileNetV3
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads import RPN, RPNHead, SSDLiteHead
from detkit.utils.deprecation import MovedAttribute, renamed_keyword
from detkit.models.detectors import SSD
from detkit.models.necks import FPN
from detkit.structures import ShapeSpec


def test_renamed_keyword():
    assert renamed_keyword("Owner", "old", None, "new", 5, 1) == 5
    with pytest.warns(DeprecationWarning, match="Owner: old= is deprecated, use new="):
        assert renamed_keyword("Owner", "old", 7, "new", 1, 1) == 7
    with pytest.raises(TypeError, match="got both old=7 and new=5"):
        renamed_keyword("Owner", "old", 7, "new", 5, 1)


def test_moved_attribute_reads_and_writes_the_new_place():
    class Part:
        value = 1

    class Owner:
        old = MovedAttribute("part.value")

        def __init__(self) -> None:
            self.part = Part()

    owner = Owner()
    with pytest.warns(DeprecationWarning, match=r"Owner.old is deprecated, use Owner.part.value"):
        assert owner.old == 1
    with pytest.warns(DeprecationWarning):
        owner.old = 3
    assert owner.part.value == 3


def test_rpn_top_n_names():
    with pytest.warns(DeprecationWarning, match="pre_nms_top_n_test= is deprecated, use pre_nms_topk_test="):
        rpn = RPN(RPNHead(8, 3), AnchorGenerator(((32,),), ((0.5, 1.0, 2.0),)), pre_nms_top_n_test=11)
    assert rpn.pre_nms_topk_test == 11 and rpn.post_nms_topk_test == 1000
    with pytest.warns(DeprecationWarning, match="RPN.post_nms_top_n_train is deprecated"):
        rpn.post_nms_top_n_train = 5
    assert rpn.post_nms_topk_train == 5


def test_fpn_input_shapes_name():
    shapes = {"c3": ShapeSpec(8, 8), "c4": ShapeSpec(16, 16)}
    with pytest.warns(DeprecationWarning, match="input_shapes= is deprecated, use in_shapes="):
        fpn = FPN(input_shapes=shapes, out_channels=4)
    assert fpn.in_shapes == shapes
    with pytest.warns(DeprecationWarning):
        assert fpn.input_shapes == shapes


def test_ssd_settings_moved_to_the_head():
    boxes = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    with pytest.warns(DeprecationWarning, match="topk_candidates= is deprecated, use pre_nms_topk="):
        head = SSDLiteHead(None, boxes.num_anchors_per_location(), 3, topk_candidates=50)
    assert head.pre_nms_topk == 50
    with pytest.warns(DeprecationWarning, match="settings of its SSDLiteHead now"):
        model = SSD(SSDLiteMobileNetV3(), head, boxes, 3, image_size=(64, 64), score_thresh=0.2, topk_candidates=20,
                    iou_thresh=0.4)
    assert (model.head.score_thresh, model.head.pre_nms_topk, model.head.matcher.high_threshold) == (0.2, 20, 0.4)
    with pytest.warns(DeprecationWarning, match="SSD.topk_candidates is deprecated, use SSD.head.pre_nms_topk"):
        assert model.topk_candidates == 20
    with pytest.warns(DeprecationWarning, match="SSD.image_size is deprecated"):
        assert model.image_size == (64, 64)
    with torch.no_grad():
        assert len(model.eval()([torch.rand(3, 40, 50)])[0]) == 1
