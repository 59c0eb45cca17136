"""Box utilities against torchvision.ops."""

from __future__ import annotations

import pytest
import torch
import torchvision

from detkit.ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes_to_image,
    generalized_box_iou,
    remove_small_boxes,
)

from ops_testing import random_boxes


def test_area_iou_giou_equal_torchvision():
    generator = torch.Generator().manual_seed(0)
    a = random_boxes(30, generator=generator, canvas=100.0, max_size=50.0)
    b = random_boxes(20, generator=generator, canvas=100.0, max_size=50.0)
    torch.testing.assert_close(box_area(a), torchvision.ops.box_area(a), rtol=0, atol=0)
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b), rtol=0, atol=0)
    torch.testing.assert_close(generalized_box_iou(a, b), torchvision.ops.generalized_box_iou(a, b))


def test_hand_worked_iou():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert box_iou(a, b).tolist() == [[pytest.approx(50 / 150), 0.0]]
    # GIoU of disjoint boxes: 0 - (enclosing 900 - union 200) / 900
    assert generalized_box_iou(a, b[1:]).item() == pytest.approx(-700 / 900)


def test_conversions_round_trip_and_match_torchvision():
    boxes = random_boxes(10, generator=torch.Generator().manual_seed(1))
    for fmt, to_fmt, from_fmt in (("xywh", box_xyxy_to_xywh, box_xywh_to_xyxy),
                                  ("cxcywh", box_xyxy_to_cxcywh, box_cxcywh_to_xyxy)):
        converted = to_fmt(boxes)
        torch.testing.assert_close(converted, torchvision.ops.box_convert(boxes, "xyxy", fmt))
        torch.testing.assert_close(from_fmt(converted), boxes)


def test_clip_and_remove_small_equal_torchvision():
    boxes = torch.tensor([[-5.0, -5.0, 20.0, 30.0], [5.0, 5.0, 6.0, 5.5], [0.0, 0.0, 50.0, 50.0]])
    torch.testing.assert_close(clip_boxes_to_image(boxes, (25, 40)), torchvision.ops.clip_boxes_to_image(boxes, (25, 40)))
    assert torch.equal(remove_small_boxes(boxes, 1.0), torchvision.ops.remove_small_boxes(boxes, 1.0))


def test_bad_box_shapes_are_named():
    with pytest.raises(ValueError, match=r"boxes1 must have shape \[N, 4\]"):
        box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="floating-point"):
        box_area(torch.zeros(3, 4, dtype=torch.int64))
