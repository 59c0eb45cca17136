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


def _detkit_step(reference, arch, images, targets, channels_last):
    """detkit's twin of ``reference`` in training mode: its loss terms, its weight gradients and the
    memory format of the batch its stem convolution saw."""
    model = detkit_twin(reference, arch)
    model.preprocess.input_size = (SIZE, SIZE)  # images at the input size: the letterbox is the identity
    if channels_last is not None:
        model.channels_last = channels_last
    model.train()
    batch, _ = model.preprocess(list(images))
    assert torch.equal(batch.tensor, images)
    seen = []
    hook = model.backbone.stem.conv.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    _, losses = model(list(images), targets)
    hook.remove()
    assert set(losses) == {"loss_box", "loss_cls", "loss_dfl"}
    sum(losses.values()).backward()
    return losses, dict(model.named_parameters()), seen == [True]


def _reference_step(arch, num_classes, images, targets):
    cfg = import_ultralytics("cfg")
    reference = ultralytics_model(arch, num_classes=num_classes)
    reference.args = cfg.get_cfg()  # the hyper-parameters v8DetectionLoss reads: box 7.5, cls 0.5, dfl 1.5
    reference.train()
    total, items = reference.loss(_ultralytics_batch(images, targets))
    # Gradients: ultralytics back-propagates batch_size x the sum of its terms.
    total.sum().backward()
    # ultralytics' gradients under detkit's names: the converter renames them like the weights.
    grads = {key: torch.zeros_like(value) for key, value in reference.state_dict().items()}
    grads.update({key: p.grad for key, p in reference.named_parameters() if p.grad is not None})
    reference.zero_grad(set_to_none=True)
    return reference, items, convert_ultralytics(grads, arch)["model"]


def _assert_terms_equal(losses, items):
    for name, key in (("loss_box", "box_loss"), ("loss_cls", "cls_loss"), ("loss_dfl", "dfl_loss")):
        torch.testing.assert_close(losses[name].detach(), items[key], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("arch", ["yolov8n", "yolo11n"])
def test_loss_terms_and_weight_gradients_equal_ultralytics(arch):
    """The default training path (a channels-last batch on the CPU) and the NCHW one ("off")
    against ultralytics' NCHW step on the same weights, batch and targets.

    NCHW: every gradient element within rtol 1e-3, atol 1e-4 (the same layout, so only the
    reduction orders of the loss differ). Channels-last: the same values summed in another order.
    A convolution's weight gradient is a sum over every pixel of the batch (3 x 256 x 256 for the
    stem) of products, and the gradient reaching it has been through every layer's reordered
    sums, so an element whose terms cancel can differ by many times its own size; the bound is
    per tensor, against its largest gradient: ``max |diff| <= 1e-3 * max |grad| + 1e-6`` (NCHW's
    rtol, taken of the tensor's largest gradient; a wrong layout or a dropped term gives
    differences of the gradients' own size). Measured (seed 0): at most 6.5e-5 of the largest
    gradient on the weights of the stem (2.1e-5 in NCHW), 2.4e-4 on a YOLO11 head weight whose
    gradients are below 4e-4 (|diff| 9e-8, within the 1e-6 floor), 2.2e-4 on a YOLO11 stage-5
    batch-norm weight in a clean CI run (above the 2e-4 first chosen: oneDNN's reduction order
    is not the same in every environment), and |diff| <= 3e-8 on the batch-norm
    biases of YOLO11's attention whose gradients are themselves ~1e-8 (cancelling sums: the 1e-6
    floor, 100x under NCHW's atol).
    """
    num_classes = 5
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, SIZE, SIZE, generator=generator)
    targets = _targets((4, 0, 9), num_classes, generator)
    reference, items, expected = _reference_step(arch, num_classes, images, targets)

    losses, params, nhwc = _detkit_step(reference, arch, images, targets, "off")
    assert not nhwc
    _assert_terms_equal(losses, items)
    for name, param in params.items():
        torch.testing.assert_close(param.grad * len(images), expected[name], rtol=1e-3, atol=1e-4, msg=name)
    assert len(params) > 100

    losses, params, nhwc = _detkit_step(reference, arch, images, targets, None)  # the default
    assert nhwc, "the default training path runs a channels-last batch on the CPU"
    _assert_terms_equal(losses, items)
    for name, param in params.items():
        diff = float((param.grad * len(images) - expected[name]).abs().max())
        bound = 1e-3 * float(expected[name].abs().max()) + 1e-6
        assert diff <= bound, f"{name}: max |diff| {diff:.3g} > {bound:.3g}"


def test_channels_last_setting():
    reference = ultralytics_model("yolov8n", num_classes=5)
    model = detkit_twin(reference, "yolov8n")
    assert model.channels_last == "train"
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model.train()
    model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]), "labels": torch.tensor([1])}])
    # The weights keep their layout: state dicts and checkpoints are as before.
    assert all(value.is_contiguous() for value in model.state_dict().values())
    assert model.state_dict().keys() == before.keys()
    with pytest.raises(ValueError, match="channels_last"):
        model.channels_last = "always"
