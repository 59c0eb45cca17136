"""RCNNPreprocess: the same normalisation, resizing, padding and mapping back as torchvision's
GeneralizedRCNNTransform."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from detkit.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, RCNNPreprocess, resize_boxes


def _pair(min_size=(80,), max_size=133):
    ours = RCNNPreprocess(min_size=min_size, max_size=max_size)
    theirs = GeneralizedRCNNTransform(min_size, max_size, list(IMAGENET_MEAN), list(IMAGENET_STD))
    return ours, theirs


def _batch(generator):
    sizes = [(61, 97), (120, 45), (77, 77)]  # odd sizes, portrait and landscape, one capped by max_size
    images = [torch.rand(3, h, w, generator=generator) for h, w in sizes]
    targets = []
    for h, w in sizes:
        boxes = torch.tensor([[1.5, 2.0, w * 0.6, h * 0.7], [w * 0.3, h * 0.2, w - 1.0, h - 0.5]])
        masks = (torch.rand(2, h, w, generator=generator) > 0.5).to(torch.uint8)
        targets.append({"boxes": boxes, "labels": torch.tensor([0, 1]), "masks": masks})
    return images, targets


@pytest.mark.parametrize("training", [False, True])
def test_same_batch_and_targets_as_torchvision(training):
    generator = torch.Generator().manual_seed(0)
    images, targets = _batch(generator)
    ours, theirs = _pair(min_size=(64, 80, 96))
    ours.train(training)
    theirs.train(training)
    torch.manual_seed(3)  # training draws the short side per image from the global RNG
    batch, our_targets = ours(images, targets)
    torch.manual_seed(3)
    their_batch, their_targets = theirs(images, [dict(t) for t in targets])
    assert batch.image_sizes == their_batch.image_sizes
    assert batch.tensor.shape[-1] % 32 == 0 and batch.tensor.shape[-2] % 32 == 0
    torch.testing.assert_close(batch.tensor, their_batch.tensors, rtol=0, atol=0)
    for our, their, original in zip(our_targets, their_targets, targets):
        torch.testing.assert_close(our["boxes"], their["boxes"], rtol=0, atol=0)
        torch.testing.assert_close(our["masks"], their["masks"], rtol=0, atol=0)
        assert our["boxes"] is not original["boxes"]  # the caller's targets are left alone
    assert targets[0]["boxes"][0, 2] == pytest.approx(97 * 0.6)


def test_scale_follows_min_and_max_size():
    ours = RCNNPreprocess(min_size=800, max_size=1333).eval()
    batch, _ = ours([torch.rand(3, 480, 640), torch.rand(3, 100, 1000)])
    assert batch.image_sizes == [(800, 1066), (133, 1333)]  # short side 800; long side capped at 1333


def test_postprocess_maps_boxes_and_masks_back():
    ours, theirs = _pair()
    ours.eval()
    theirs.eval()
    boxes = torch.tensor([[10.0, 12.0, 50.5, 70.0], [0.0, 0.0, 80.0, 100.0]])
    masks = torch.rand(2, 1, 28, 28)
    ours_out = ours.postprocess([{"boxes": boxes.clone(), "masks": masks.clone()}], [(100, 80)], [(61, 97)])
    theirs_out = theirs.postprocess([{"boxes": boxes.clone(), "masks": masks.clone()}], [(100, 80)], [(61, 97)])
    torch.testing.assert_close(ours_out[0]["boxes"], theirs_out[0]["boxes"], rtol=0, atol=0)
    assert ours_out[0]["masks"].shape == (2, 61, 97)
    torch.testing.assert_close(ours_out[0]["masks"], theirs_out[0]["masks"][:, 0], rtol=0, atol=1e-5)


def test_resize_boxes_round_trip():
    boxes = torch.tensor([[3.0, 4.0, 30.0, 40.0]])
    there = resize_boxes(boxes, (50, 60), (100, 90))
    torch.testing.assert_close(there, torch.tensor([[4.5, 8.0, 45.0, 80.0]]))
    torch.testing.assert_close(resize_boxes(there, (100, 90), (50, 60)), boxes)


def test_bad_images_are_clear_errors():
    ours = RCNNPreprocess(min_size=64, max_size=96)
    with pytest.raises(ValueError, match=r"image 1 must be \[3, H, W\]"):
        ours([torch.rand(3, 10, 10), torch.rand(1, 10, 10)])
    with pytest.raises(TypeError, match="image 0 must be floating point"):
        ours([torch.zeros(3, 10, 10, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="positive"):
        RCNNPreprocess(min_size=0)
