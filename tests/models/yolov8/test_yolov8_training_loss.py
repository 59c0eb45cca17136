"""The training loss of the whole YOLOv8 / YOLO11 detector against ultralytics' DetectionModel.loss
on the same weights, batch and targets: each term, and the gradients of the weights."""

from __future__ import annotations

import pytest
import torch

from detkit.models.convert.ultralytics import convert_ultralytics
from yolov8_testing import detkit_twin, import_ultralytics, ultralytics_model

SIZE = 256


def _targets(counts, num_classes, generator):
    targets = []
    for count in counts:
        size = torch.rand(count, 2, generator=generator) * SIZE * 0.6 + 6
        corner = torch.rand(count, 2, generator=generator) * (SIZE - size)
        targets.append({
            "boxes": torch.cat([corner, corner + size], 1),
            "labels": torch.randint(num_classes, (count,), generator=generator),
        })  # fmt: skip
    return targets


def _ultralytics_batch(images, targets):
    boxes = torch.cat([t["boxes"] for t in targets])
    centre_size = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1) / SIZE
    return {
        "img": images,
        "batch_idx": torch.cat([torch.full((len(t["labels"]),), float(i)) for i, t in enumerate(targets)]),
        "cls": torch.cat([t["labels"] for t in targets]).float()[:, None],
        "bboxes": centre_size,
    }


@pytest.mark.parametrize("arch", ["yolov8n", "yolo11n"])
def test_loss_terms_and_weight_gradients_equal_ultralytics(arch):
    cfg = import_ultralytics("cfg")
    num_classes = 5
    reference = ultralytics_model(arch, num_classes=num_classes)
    reference.args = cfg.get_cfg()  # the hyper-parameters v8DetectionLoss reads: box 7.5, cls 0.5, dfl 1.5
    model = detkit_twin(reference, arch)
    model.preprocess.input_size = (SIZE, SIZE)  # images at the input size: the letterbox is the identity
    reference.train()
    model.train()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, SIZE, SIZE, generator=generator)
    targets = _targets((4, 0, 9), num_classes, generator)

    batch, _ = model.preprocess(list(images))
    assert torch.equal(batch.tensor, images)
    _, losses = model(list(images), targets)
    assert set(losses) == {"loss_box", "loss_cls", "loss_dfl"}
    total, items = reference.loss(_ultralytics_batch(images, targets))
    for name, key in (("loss_box", "box_loss"), ("loss_cls", "cls_loss"), ("loss_dfl", "dfl_loss")):
        torch.testing.assert_close(losses[name].detach(), items[key], rtol=1e-5, atol=1e-5, msg=name)

    # Gradients: ultralytics back-propagates batch_size x the sum of its terms.
    sum(losses.values()).backward()
    total.sum().backward()
    # ultralytics' gradients under detkit's names: the converter renames them like the weights.
    grads = {key: torch.zeros_like(value) for key, value in reference.state_dict().items()}
    grads.update({key: p.grad for key, p in reference.named_parameters() if p.grad is not None})
    expected = convert_ultralytics(grads, arch)["model"]
    compared = 0
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad * len(images), expected[name], rtol=1e-3, atol=1e-4, msg=name)
        compared += 1
    assert compared > 100
