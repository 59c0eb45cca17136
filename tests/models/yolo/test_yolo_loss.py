"""The YOLOv3 loss: anchor assignment across levels, ignore threshold, empty targets, training."""

from __future__ import annotations

import math

import torch

from detkit.models.backbones.base import ShapeSpec
from detkit.models.dense_heads.yolo_head import YOLOv3Head
from configs.common.yolo import yolov3_tiny_model
from detkit.config import instantiate
from detkit.models.zoo import build_yolov3


def _two_level_head() -> YOLOv3Head:
    # p4 (stride 16): anchors 10x20, 30x30; p5 (stride 32): 60x40, 80x100. Two classes.
    return YOLOv3Head(
        {"p4": ShapeSpec(8, 16), "p5": ShapeSpec(8, 32)}, 2,
        anchors=((10, 20), (30, 30), (60, 40), (80, 100)), anchor_masks=((0, 1), (2, 3)), mid_channels=(8, 8),
    )  # fmt: skip


def _raw(requires_grad: bool = True) -> list[torch.Tensor]:
    # Input 64x96: p4 grid 4x6, p5 grid 2x3; 2 anchors x (5 + 2) channels.
    return [
        torch.zeros(1, 14, 4, 6, requires_grad=requires_grad),
        torch.zeros(1, 14, 2, 3, requires_grad=requires_grad),
    ]


def _target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def test_empty_targets_give_objectness_loss_only():
    head = _two_level_head()
    raw = [r.detach().normal_().requires_grad_() for r in _raw()]
    losses = head.loss(raw, None, [_target([], [])], [(64, 96)])
    assert set(losses) == {"loss_xy", "loss_wh", "loss_obj", "loss_cls"}
    assert losses["loss_xy"] == 0 and losses["loss_wh"] == 0 and losses["loss_cls"] == 0
    assert losses["loss_obj"] > 0
    sum(losses.values()).backward()
    assert all(r.grad is not None and r.grad[:, 4].abs().sum() > 0 for r in raw)


def test_each_gt_goes_to_its_best_shaped_anchor_on_any_level():
    head = _two_level_head()
    raw = _raw()
    # Box A: 60x40 centred at (70, 40) -> anchor 2 (p5, local 0), cell row 1, col 2.
    # Box B: 28x32 centred at (20, 50) -> anchor 1 (p4, local 1), cell row 3, col 1.
    target = _target([[40, 20, 100, 60], [6, 34, 34, 66]], [1, 0])
    head.loss(raw, None, [target], [(64, 96)])["loss_cls"].backward()
    nonzero = [set(map(tuple, r.grad[0].abs().sum(0, keepdim=True).nonzero().tolist())) for r in raw]
    assert nonzero == [{(0, 3, 1)}, {(0, 1, 2)}]
    # The class channels of the responsible anchor: p4 anchor 1 -> channels 7 + 5, 7 + 6.
    assert raw[0].grad[0, 12, 3, 1] < 0 and raw[0].grad[0, 13, 3, 1] > 0  # label 0: class 0 pushed up
    assert raw[1].grad[0, 5, 1, 2] > 0 and raw[1].grad[0, 6, 1, 2] < 0  # label 1


def test_perfect_box_prediction_has_zero_box_loss():
    head = _two_level_head()
    raw = _raw(requires_grad=False)
    # Box A again: offsets in its cell (70 / 32 - 2, 40 / 32 - 1) = (0.1875, 0.25), size = anchor.
    raw[1][0, 0, 1, 2] = math.log(0.1875 / 0.8125)
    raw[1][0, 1, 1, 2] = math.log(0.25 / 0.75)
    losses = head.loss(raw, None, [_target([[40, 20, 100, 60]], [1])], [(64, 96)])
    assert float(losses["loss_xy"]) < 1e-10 and float(losses["loss_wh"]) < 1e-10
    raw[1][0, 2, 1, 2] = 0.5  # tw off by 0.5: (0.5 ** 2) * (2 - 60 * 40 / (64 * 96))
    losses = head.loss(raw, None, [_target([[40, 20, 100, 60]], [1])], [(64, 96)])
    assert math.isclose(float(losses["loss_wh"]), 0.25 * (2 - 2400 / 6144), rel_tol=1e-5)


def test_ignore_threshold_silences_overlapping_non_positives():
    def objectness_grad(ignore_thresh: float) -> torch.Tensor:
        head = YOLOv3Head({"p5": ShapeSpec(8, 32)}, 1, anchors=((20, 20), (22, 22), (100, 100)),
                          anchor_masks=((0, 1, 2),), mid_channels=(8,), ignore_thresh=ignore_thresh)
        raw = torch.zeros(1, 3 * 6, 2, 2, requires_grad=True)  # input 64x64, decoded boxes at (16 + 32k)
        # 20x20 at (16, 16): positive of anchor 0, cell (0, 0); anchor 1 there overlaps it at 400 / 484.
        head.loss([raw], None, [_target([[6, 6, 26, 26]], [0])], [(64, 64)])["loss_obj"].backward()
        return raw.grad[0, 4::6]  # [anchor, row, col]

    grad = objectness_grad(0.7)
    assert grad[0, 0, 0] < 0  # positive: objectness pushed up
    assert grad[1, 0, 0] == 0  # IoU 0.83 > 0.7: ignored
    assert grad[2, 0, 0] > 0 and grad[1, 1, 1] > 0  # negatives: pushed down
    assert objectness_grad(0.9)[1, 0, 0] > 0  # below the threshold: a negative again


def test_a_few_steps_on_a_fixed_batch_drive_the_loss_down():
    torch.manual_seed(0)
    config = yolov3_tiny_model(3, input_size=(64, 64), resize_mode="letterbox")
    config.backbone.frozen_stages = 7  # trains neck and head only: the same loss, a faster test
    model = instantiate(config).train()
    images = [torch.rand(3, 48, 64), torch.rand(3, 64, 48)]
    targets = [_target([[5, 5, 30, 25], [35, 15, 60, 45]], [0, 2]), _target([], [])]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for _ in range(10):
        _, losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({name: float(value.detach()) for name, value in losses.items()})
    totals = [sum(step.values()) for step in history]
    assert all(math.isfinite(v) for v in totals)
    assert totals[-1] < 0.5 * totals[0], totals
    assert history[-1]["loss_cls"] < history[0]["loss_cls"] and history[-1]["loss_xy"] < history[0]["loss_xy"]


def test_multi_scale_training_draws_sizes_from_the_list():
    torch.manual_seed(0)
    model = build_yolov3("tiny", 3, input_size=(64, 64), train_sizes=(64, 96, 128)).train()
    seen = []
    model.backbone.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        for _ in range(6):
            model([torch.rand(3, 50, 70)], [_target([[5, 5, 30, 40]], [1])])
        assert set(seen) <= {(64, 64), (96, 96), (128, 128)} and len(set(seen)) > 1
        model.eval()
        model([torch.rand(3, 50, 70)])
    assert seen[-1] == (64, 64)  # inference at input_size
