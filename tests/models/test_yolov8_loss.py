"""YOLOv8Loss against ultralytics' v8DetectionLoss (8.4) on the same raw maps and targets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from detkit.models.yolov8_loss import YOLOv8Loss

from tal_testing import import_ultralytics_module, random_targets


class _LossHost(nn.Module):
    """What v8DetectionLoss reads from a model: ``args`` (the gains), ``model[-1]`` (stride, nc,
    reg_max) and a parameter for the device."""

    def __init__(self, num_classes: int, reg_max: int, strides: tuple[int, ...]) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.args = SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
        detect = nn.Module()
        detect.stride, detect.nc, detect.reg_max = torch.tensor(strides, dtype=torch.float32), num_classes, reg_max
        self.model = nn.ModuleList([detect])


def _ultralytics_loss(raw, targets, image_size, num_classes, reg_max, strides):
    loss_module = import_ultralytics_module("utils.loss")
    criterion = loss_module.v8DetectionLoss(_LossHost(num_classes, reg_max, strides), tal_topk=10)
    batch = raw[0].shape[0]
    preds = {
        "boxes": torch.cat([r[:, : 4 * reg_max].flatten(2) for r in raw], 2),
        "scores": torch.cat([r[:, 4 * reg_max :].flatten(2) for r in raw], 2),
        "feats": list(raw),
    }
    height, width = image_size
    boxes = torch.cat([t["boxes"] for t in targets]) if targets else torch.zeros(0, 4)
    centre_size = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
    normalised = centre_size / torch.tensor([width, height, width, height])
    labels = torch.cat([t["labels"] for t in targets]).float()
    image_index = torch.cat([torch.full((len(t["labels"]),), float(i)) for i, t in enumerate(targets)])
    total, items = criterion(preds, {"batch_idx": image_index, "cls": labels[:, None], "bboxes": normalised})
    assert total.shape == (3,) and batch > 0
    return total, items


def _raw_maps(batch, image_size, channels, strides, generator):
    return [
        (torch.randn(batch, channels, image_size[0] // s, image_size[1] // s, generator=generator) * 2).requires_grad_()
        for s in strides
    ]


CASES = [
    # image size, boxes per image, strides, reg_max, seed
    ((64, 96), (3, 0, 7), (8, 16, 32), 16, 0),
    ((128, 128), (12, 5), (8, 16, 32), 16, 1),
    ((96, 160), (1, 4, 0, 2), (8, 16, 32), 16, 2),
    ((64, 64), (0, 0), (8, 16, 32), 16, 3),  # no boxes in the batch at all
    ((96, 64), (6, 2), (8, 16, 32), 1, 4),  # reg_max 1: the L1 form
    ((64, 128), (5, 3), (16, 32), 8, 5),  # two levels, 8 bins
]


@pytest.mark.parametrize(("image_size", "counts", "strides", "reg_max", "seed"), CASES)
def test_terms_and_gradients_equal_ultralytics(image_size, counts, strides, reg_max, seed):
    num_classes = 4
    generator = torch.Generator().manual_seed(seed)
    raw = _raw_maps(len(counts), image_size, 4 * reg_max + num_classes, strides, generator)
    targets = random_targets(counts, image_size, num_classes, generator)

    ours = YOLOv8Loss(num_classes, reg_max=reg_max, strides=strides)(raw, targets, image_size)
    assert set(ours) == {"loss_box", "loss_cls", "loss_dfl"}
    grads = torch.autograd.grad(sum(ours.values()), raw)

    total, items = _ultralytics_loss(raw, targets, image_size, num_classes, reg_max, strides)
    expected = torch.autograd.grad(total.sum(), raw)
    for name, key in (("loss_box", "box_loss"), ("loss_cls", "cls_loss"), ("loss_dfl", "dfl_loss" if reg_max > 1 else "l1_loss")):
        torch.testing.assert_close(ours[name].detach(), items[key], rtol=1e-6, atol=1e-5, msg=name)
    # ultralytics back-propagates batch_size x the sum of its loss_items.
    torch.testing.assert_close(sum(ours.values()).detach() * len(counts), total.sum().detach(), rtol=1e-6, atol=1e-5)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got * len(counts), want, rtol=1e-4, atol=1e-6)
    if sum(counts):
        assert ours["loss_box"] > 0 and ours["loss_dfl"] > 0
    else:
        assert ours["loss_box"] == 0 and ours["loss_dfl"] == 0 and ours["loss_cls"] > 0


def test_bf16_maps_and_autocast_give_float32_losses():
    generator = torch.Generator().manual_seed(7)
    raw = _raw_maps(2, (64, 64), 64 + 3, (8, 16, 32), generator)
    targets = random_targets((3, 1), (64, 64), 3, generator)
    criterion = YOLOv8Loss(3)
    full = criterion(raw, targets, (64, 64))
    half = criterion([r.detach().bfloat16() for r in raw], targets, (64, 64))
    for name in full:
        assert half[name].dtype == torch.float32
        torch.testing.assert_close(half[name], full[name].detach(), rtol=0.05, atol=0.05)
    # Under autocast the loss still runs in float32: the same values as the bf16 maps outside it.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = criterion([r.detach().bfloat16() for r in raw], targets, (64, 64))
    for name in full:
        torch.testing.assert_close(autocast[name], half[name], rtol=0, atol=0)


def test_bad_inputs_name_the_argument():
    criterion = YOLOv8Loss(3)
    raw = [torch.zeros(1, 67, 8 // s * 8, 8 // s * 8) for s in (1, 2, 4)]
    good = [{"boxes": torch.tensor([[1.0, 1.0, 20.0, 20.0]]), "labels": torch.tensor([1])}]
    criterion(raw, good, (64, 64))
    with pytest.raises(ValueError, match=r"raw\[0\] must be \[1, 67, H, W\]"):
        criterion([torch.zeros(1, 66, 8, 8)] + raw[1:], good, (64, 64))
    with pytest.raises(ValueError, match="raw has 2 levels but strides name 3"):
        criterion(raw[:2], good, (64, 64))
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] must be in \[0, 3\)"):
        criterion(raw, [{"boxes": good[0]["boxes"], "labels": torch.tensor([3])}], (64, 64))
    with pytest.raises(ValueError, match=r"targets\[0\] needs boxes \[N, 4\]"):
        criterion(raw, [{"boxes": torch.zeros(2, 5), "labels": torch.zeros(2, dtype=torch.int64)}], (64, 64))
