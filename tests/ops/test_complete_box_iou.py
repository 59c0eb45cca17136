"""Complete IoU (CIoU): pairwise against torchvision.ops, paired against ultralytics' bbox_iou."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torchvision

from detkit.ops import complete_box_iou, paired_complete_box_iou

from ops_testing import random_boxes


def test_pairwise_equals_torchvision_values_and_gradients():
    generator = torch.Generator().manual_seed(0)
    a = random_boxes(30, generator=generator, canvas=100.0, max_size=50.0, dtype=torch.float64).requires_grad_()
    b = random_boxes(20, generator=generator, canvas=100.0, max_size=50.0, dtype=torch.float64).requires_grad_()
    ours = complete_box_iou(a, b)
    theirs = torchvision.ops.complete_box_iou(a, b)
    torch.testing.assert_close(ours, theirs)
    weights = torch.rand(30, 20, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((ours * weights).sum(), (a, b))
    expected = torch.autograd.grad((theirs * weights).sum(), (a, b))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_hand_worked_values():
    # Same box: CIoU 1. Same size and shape, shifted by half a width: IoU 1/3, no aspect term.
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    got = complete_box_iou(a, b)[0]
    assert got[0].item() == pytest.approx(1.0, abs=1e-6)
    # centres 5 apart, enclosing box 15 x 10: d^2 / c^2 = 25 / 325
    assert got[1].item() == pytest.approx(1 / 3 - 25 / 325, abs=1e-6)
    # A 10 x 10 box against a 20 x 10 box at the same top-left corner: IoU 1/2,
    # centres 5 apart, diagonal^2 500, v = 4 / pi^2 (atan 2 - atan 1)^2.
    wide = torch.tensor([[0.0, 0.0, 20.0, 10.0]])
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    alpha = v / (1 - 0.5 + v)
    assert complete_box_iou(a, wide).item() == pytest.approx(0.5 - 25 / 500 - alpha * v, abs=1e-6)
    assert paired_complete_box_iou(a, wide).item() == pytest.approx(0.5 - 25 / 500 - alpha * v, abs=1e-6)


def test_pairwise_rejects_bad_shapes():
    with pytest.raises(ValueError, match="boxes1"):
        complete_box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="boxes1 and boxes2"):
        paired_complete_box_iou(torch.zeros(3, 5), torch.zeros(3, 4))


def test_paired_equals_ultralytics_bbox_iou():
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_config_"))
    metrics = pytest.importorskip("ultralytics.utils.metrics")
    generator = torch.Generator().manual_seed(1)
    a = random_boxes(200, generator=generator, canvas=50.0, max_size=30.0).requires_grad_()
    b = random_boxes(200, generator=generator, canvas=50.0, max_size=30.0).requires_grad_()
    b.data[:5, 3] = b.data[:5, 1]  # zero-height boxes stay finite in this form
    ours = paired_complete_box_iou(a, b)
    theirs = metrics.bbox_iou(a, b, xywh=False, CIoU=True).squeeze(-1)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    grads = torch.autograd.grad(ours.sum(), (a, b))
    expected = torch.autograd.grad(theirs.sum(), (a, b))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # Broadcasting: one box against many.
    torch.testing.assert_close(paired_complete_box_iou(a[:1], b), complete_box_iou(a[:1], b)[0], rtol=1e-5, atol=1e-5)
