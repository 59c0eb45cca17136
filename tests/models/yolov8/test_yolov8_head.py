"""YOLOv8Head and the YOLOv8 detector on their own: points, the loss wiring, settings, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detkit.models.dense_heads.yolov8_head import YOLOv8Head, anchor_points
from detkit.models.detectors.yolov8 import YOLOv8, yolov8_parts
from detkit.models.yolov8_loss import YOLOv8Loss
from detkit.structures import ShapeSpec

SHAPES = {"p3": ShapeSpec(64, 8), "p4": ShapeSpec(128, 16), "p5": ShapeSpec(256, 32)}


def test_anchor_points_are_cell_centres_level_by_level():
    points, strides = anchor_points([(2, 3), (1, 2)], (8, 16), torch.float32, torch.device("cpu"))
    assert points.tolist() == [[0.5, 1.5, 2.5, 0.5, 1.5, 2.5, 0.5, 1.5], [0.5, 0.5, 0.5, 1.5, 1.5, 1.5, 0.5, 0.5]]
    assert strides.tolist() == [[8.0] * 6 + [16.0] * 2]


def test_raw_layout_decoding_and_biases():
    head = YOLOv8Head(SHAPES, num_classes=3)
    assert head.criterion.strides == (8, 16, 32) and isinstance(head.criterion, YOLOv8Loss)
    assert float(head.box_branches[0][-1].bias[0].detach()) == 2.0
    assert float(head.cls_branches[0][-1].bias[0].detach()) == pytest.approx(torch.log(torch.tensor(5 / 3 / 80**2)).item())
    features = {name: torch.randn(2, spec.channels, 64 // spec.stride, 96 // spec.stride) for name, spec in SHAPES.items()}
    raw = head(features)
    assert [tuple(level.shape) for level in raw] == [(2, 67, 8, 12), (2, 67, 4, 6), (2, 67, 2, 3)]
    # All the mass on bin k of every side: a box of k cells around each centre.
    flat = [torch.full_like(level, -1e4) for level in raw]
    for level in flat:
        level[:, 3:64:16] = 1e4  # bin 3 of l, t, r, b
    boxes, scores = head.decode(flat)
    assert boxes.shape == (2, 96 + 24 + 6, 4) and scores.shape == (2, 126, 3)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([4.0 - 24, 4.0 - 24, 4.0 + 24, 4.0 + 24]))
    torch.testing.assert_close(boxes[0, -1], torch.tensor([80.0 - 96, 48.0 - 96, 80.0 + 96, 48.0 + 96]))


def test_the_detector_trains_with_the_three_loss_terms_and_detects_in_image_pixels():
    torch.manual_seed(0)
    model = YOLOv8(**yolov8_parts("yolo11", "n", 4), input_size=(96, 96))
    images = [torch.rand(3, 80, 120), torch.rand(3, 100, 60)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    _, losses = model.train()(images, targets)
    assert sorted(losses) == ["loss_box", "loss_cls", "loss_dfl"]
    sum(losses.values()).backward()
    model.eval().head.configure(score_thresh=0.0, detections_per_img=7)
    with torch.no_grad():
        predictions, _ = model(images)
    for prediction, image in zip(predictions, images):
        assert prediction["boxes"].shape == (7, 4) and prediction["labels"].dtype == torch.int64
        assert float(prediction["boxes"][:, 0::2].max()) <= image.shape[-1]
        assert float(prediction["boxes"][:, 1::2].max()) <= image.shape[-2]
        assert bool((prediction["scores"][:-1] >= prediction["scores"][1:]).all())


def test_settings_and_errors_are_one_line():
    with pytest.raises(ValueError, match="YOLOv8Head: variant must be 'yolov8' or 'yolo11', got 'v5'"):
        YOLOv8Head(SHAPES, variant="v5")
    with pytest.raises(ValueError, match=r"YOLOv8Head: its loss has strides=\(8, 16\) but the head strides=\(8, 16, 32\)"):
        YOLOv8Head(SHAPES, num_classes=3, loss=YOLOv8Loss(3, strides=(8, 16)))
    with pytest.raises(ValueError, match="its loss has num_classes=5 but the head num_classes=3"):
        YOLOv8Head(SHAPES, num_classes=3, loss=YOLOv8Loss(5))
    with pytest.raises(ValueError, match="YOLOv8: num_classes=3 but its head has 80 classes"):
        YOLOv8(**yolov8_parts("yolov8", "n", 80), num_classes=3)
    with pytest.raises(ValueError, match="scale must be one of"):
        yolov8_parts("yolov8", "q")
    head = YOLOv8Head(SHAPES, loss=nn.Identity())
    head.configure(score_thresh=0.25, multi_label=False)
    assert (head.score_thresh, head.multi_label, head.nms_thresh) == (0.25, False, 0.7)


@pytest.mark.parametrize(("arch", "parameters"), [
    ("yolov8l", 43691520), ("yolov8x", 68229648), ("yolo11l", 25372160), ("yolo11x", 56966176),
])  # fmt: skip
def test_the_l_and_x_scales_have_the_parameters_of_ultralytics_yaml_summaries(arch: str, parameters: int):
    # The counts ultralytics' yolov8.yaml / yolo11.yaml state, less the 16 fixed DFL bins (a buffer here).
    with torch.device("meta"):
        model = YOLOv8(**yolov8_parts(arch[:-1], arch[-1], 80, loss=nn.Identity()))
    assert sum(p.numel() for p in model.parameters()) == parameters - 16
