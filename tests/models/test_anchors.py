"""AnchorGenerator against torchvision's: same anchors in the same order."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.image_list import ImageList as TorchvisionImageList

from detkit.models.anchors import AnchorGenerator, cell_anchors
from detkit.structures import ImageList


def _batch_and_features(strides: list[int]) -> tuple[ImageList, list[torch.Tensor]]:
    images = ImageList.from_tensors([torch.zeros(3, 100, 130), torch.zeros(3, 70, 64)], size_divisibility=32)
    height, width = images.tensor.shape[-2:]
    features = [torch.zeros(2, 1, -(-height // s), -(-width // s)) for s in strides]
    return images, features


def _torchvision_anchors(sizes, ratios, images: ImageList, features) -> list[torch.Tensor]:
    generator = TorchvisionAnchorGenerator(sizes, ratios)
    return generator(TorchvisionImageList(images.tensor, images.image_sizes), features)


@pytest.mark.parametrize(
    ("sizes", "ratios", "strides"),
    [
        (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, [4, 8, 16, 32, 64]),
        (((128, 256, 512),), ((0.5, 1.0, 2.0),), [16]),
        (((20, 45),), ((0.25, 1.0, 3.0, 0.7),), [7]),  # stride that does not divide the image
    ],
)
def test_matches_torchvision(sizes, ratios, strides) -> None:
    images, features = _batch_and_features(strides)
    ours = AnchorGenerator(sizes, ratios)
    expected = _torchvision_anchors(sizes, ratios, images, features)
    for _ in range(2):  # second call is served from the cache
        anchors = ours(images, features)
        assert len(anchors) == 2
        for got, want in zip(anchors, expected):
            assert got.dtype == want.dtype
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert ours.num_anchors_per_location() == [len(s) * len(r) for s, r in zip(sizes, ratios)]
    assert sum(a * f.shape[-2] * f.shape[-1] for a, f in zip(ours.num_anchors_per_location(), features)) == len(
        anchors[0]
    )


def test_accepts_padded_tensor_and_follows_feature_dtype() -> None:
    images, features = _batch_and_features([16])
    features = [f.double() for f in features]
    generator = AnchorGenerator(((32, 64),), ((1.0,),))
    anchors = generator(images.tensor, features)
    assert anchors[0].dtype == torch.float64
    torch.testing.assert_close(anchors[0], generator(images, features)[0])
    anchors[0].add_(1)  # images get independent tensors
    assert not torch.equal(anchors[0], anchors[1])
    assert not torch.equal(anchors[0], generator(images, features)[0])


def test_cell_anchors_and_order_hand_worked() -> None:
    # ratio-major, then size: ratio 1 (size 2, size 4), ratio 4 -> h = 2s, w = s/2.
    torch.testing.assert_close(
        cell_anchors([2, 4], [1.0, 4.0]),
        torch.tensor([[-1.0, -1, 1, 1], [-2, -2, 2, 2], [-0.0, -2, 0, 2], [-1, -4, 1, 4]]),
    )
    generator = AnchorGenerator(((2,),), ((1.0,),))
    anchors = generator(torch.zeros(1, 3, 8, 12), [torch.zeros(1, 1, 2, 3)])[0]
    # stride (4, 4); cells row-major: (x, y) = (0,0), (4,0), (8,0), (0,4), ...
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    torch.testing.assert_close(centres, torch.tensor([[0.0, 0], [4, 0], [8, 0], [0, 4], [4, 4], [8, 4]]))


def test_rejects_mismatched_levels() -> None:
    with pytest.raises(ValueError, match="levels"):
        AnchorGenerator(((32,), (64,)), ((1.0,),))
    generator = AnchorGenerator(((32,), (64,)), ((1.0,),) * 2)
    with pytest.raises(ValueError, match="1 feature maps but the generator has 2 levels"):
        generator(torch.zeros(1, 3, 32, 32), [torch.zeros(1, 1, 4, 4)])
