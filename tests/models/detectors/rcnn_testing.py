"""Helpers shared by the two-stage detector tests: torchvision twins, real images, comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor, nn

from detkit.config import instantiate
from detkit.models.convert import convert_torchvision_rcnn

IMAGES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "images"


def load_image(name: str) -> Tensor:
    """A test image as ``[3, H, W]`` float RGB in [0, 1]."""
    pixels = np.asarray(Image.open(IMAGES_DIR / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def freeze_and_perturb_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Replace torchvision's BatchNorm2d by FrozenBatchNorm2d with random, non-trivial statistics.

    torchvision builds its detection backbones with trainable BatchNorm2d when no pretrained
    weights are given, but with FrozenBatchNorm2d (detkit's ``frozen_bn``, same formula) otherwise;
    freezing them here compares the pretrained setting, in eval and in training mode alike.
    """
    generator = torch.Generator().manual_seed(seed)

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                frozen = torchvision.ops.FrozenBatchNorm2d(child.num_features, eps=child.eps)
                size = (child.num_features,)
                frozen.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                frozen.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                frozen.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                frozen.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                setattr(parent, name, frozen)
            else:
                replace(child)

    with torch.no_grad():
        replace(model)
    return model


def detkit_twin(torchvision_model: nn.Module, arch: str, config: object) -> nn.Module:
    """Instantiate ``config`` (a detkit model L() tree) and load the converted torchvision weights."""
    model = instantiate(config)
    checkpoint = convert_torchvision_rcnn(torchvision_model.state_dict(), arch)
    result = model.load_state_dict(checkpoint["model"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


def canonical_order(detections: dict[str, Tensor]) -> Tensor:
    """Indices sorting detections by decreasing score, ties by label then box.

    Random weights give exact score ties (e.g. full-width boxes whose pooled features coincide),
    and NMS implementations may list tied detections in any order.
    """
    boxes = detections["boxes"].numpy()
    keys = (boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], detections["labels"].numpy(),
            -detections["scores"].numpy())
    return torch.from_numpy(np.lexsort(keys))


def match_detections(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Assert equal detections: detkit label = torchvision label - 1, boxes within 1e-3 px,
    scores within 1e-5 (order of exact score ties ignored).

    Returns:
        ``(our_order, their_order)``: the indices that pair the detections up.
    """
    assert ours["boxes"].shape == theirs["boxes"].shape, (ours["boxes"].shape, theirs["boxes"].shape)
    theirs = {**theirs, "labels": theirs["labels"] - 1}
    our_order, their_order = canonical_order(ours), canonical_order(theirs)
    torch.testing.assert_close(ours["labels"][our_order], theirs["labels"][their_order], rtol=0, atol=0)
    torch.testing.assert_close(ours["scores"][our_order], theirs["scores"][their_order], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["boxes"][our_order], theirs["boxes"][their_order], rtol=0, atol=1e-3)
    return our_order, their_order


def _output_std(model: nn.Module, layer: nn.Module, images: list[Tensor]) -> float:
    """Standard deviation of ``layer``'s outputs (over all its calls) when ``model`` runs in eval."""
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, output: captured.append(output.flatten()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        handle.remove()
        model.train(was_training)
    return float(torch.cat(captured).std())


def spread_scores(model: nn.Module, images: list[Tensor], logit_std: float = 2.0) -> None:
    """Rescale a torchvision model's objectness and class-score layers so that scores spread out.

    With random weights the logits are either huge (sigmoid and softmax scores of exactly 1.0) or
    tiny (every class score about 1/91): both give exact ties, whose order NMS implementations do
    not define, which makes a detection-by-detection comparison (and the order of the proposals the
    RoI sampler draws from) meaningless. Both layers are scaled so their logits spread by about
    ``logit_std``, and their biases zeroed.
    """
    for layer in (model.rpn.head.cls_logits, model.roi_heads.box_predictor.cls_score):
        with torch.no_grad():
            layer.bias.zero_()
        scale = logit_std / _output_std(model, layer, images)
        with torch.no_grad():
            layer.weight.mul_(scale)


# Rough boxes of the objects in the test images (xyxy pixels), with arbitrary class ids.
IMAGE_OBJECTS = {
    "dog.jpg": (
        [[128.0, 222.0, 314.0, 542.0], [118.0, 122.0, 572.0, 424.0], [466.0, 74.0, 688.0, 172.0]], [17, 1, 7]
    ),
    "person.jpg": (
        [[188.0, 96.0, 276.0, 378.0], [402.0, 138.0, 598.0, 344.0], [60.0, 262.0, 202.0, 350.0]], [0, 18, 17]
    ),
}


def ellipse_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """``[N, H, W]`` uint8 masks: the ellipse inscribed in each box."""
    height, width = size
    ys = torch.arange(height, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, None, :] + 0.5
    cx, cy = ((boxes[:, 0] + boxes[:, 2]) / 2)[:, None, None], ((boxes[:, 1] + boxes[:, 3]) / 2)[:, None, None]
    rx, ry = ((boxes[:, 2] - boxes[:, 0]) / 2)[:, None, None], ((boxes[:, 3] - boxes[:, 1]) / 2)[:, None, None]
    return (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).to(torch.uint8)


def image_targets(names: list[str], images: list[Tensor], with_masks: bool = False) -> list[dict[str, Tensor]]:
    """detkit targets (0-based labels) for the test images."""
    targets = []
    for name, image in zip(names, images):
        boxes, labels = IMAGE_OBJECTS[name]
        target = {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels, dtype=torch.int64)}
        if with_masks:
            target["masks"] = ellipse_masks(target["boxes"], tuple(image.shape[-2:]))
        targets.append(target)
    return targets


def torchvision_targets(targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """The same targets with torchvision's labels (background at 0: detkit label + 1)."""
    return [{**target, "labels": target["labels"] + 1} for target in targets]


def paired_losses(
    ours: nn.Module, theirs: nn.Module, images: list[Tensor], targets: list[dict[str, Tensor]], seed: int = 0
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Training losses of both models, each run after ``torch.manual_seed(seed)`` so that their
    samplers (``torch.randperm`` on the global RNG) draw the same anchors and RoIs."""
    ours.train()
    theirs.train()
    torch.manual_seed(seed)
    _, our_losses = ours(images, targets)
    torch.manual_seed(seed)
    their_losses = theirs(images, torchvision_targets(targets))
    return our_losses, their_losses
