"""DefaultBoxGenerator: torchvision's boxes and order, a hand-worked case, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator as TorchvisionDefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from detkit.models.default_boxes import DefaultBoxGenerator

CASES = {
    "ssd300": (
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        {"scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], "steps": [8, 16, 32, 64, 100, 300]},
        [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)],
        (300, 300),
    ),
    "ssd512": (
        [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        {"scales": [0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06], "steps": [8, 16, 32, 64, 128, 256, 512]},
        [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)],
        (512, 512),
    ),
    "ssdlite320": ([[2, 3]] * 6, {"min_ratio": 0.2, "max_ratio": 0.95}, [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], (320, 320)),
    "rectangular_unclipped": ([[2, 3], [3]], {"min_ratio": 0.3, "max_ratio": 0.9, "clip": False}, [(7, 9), (4, 5)], (100, 130)),
    "single_level": ([[2]], {"min_ratio": 0.3, "max_ratio": 0.8}, [(3, 4)], (60, 80)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_torchvision(name):
    aspect_ratios, kwargs, grid_sizes, image_size = CASES[name]
    reference = TorchvisionDefaultBoxGenerator(aspect_ratios, **kwargs)
    features = [torch.zeros(1, 1, *size) for size in grid_sizes]
    expected = reference(ImageList(torch.zeros(1, 3, *image_size), [image_size]), features)[0]
    generator = DefaultBoxGenerator(aspect_ratios, **kwargs)
    actual = generator(image_size, grid_sizes)
    assert generator.num_anchors_per_location() == reference.num_anchors_per_location()
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_hand_worked_order_and_values():
    # One 2x2 map on a 100x100 image: centres at 25 and 75 px; scales 0.5 and s' = sqrt(0.5 * 1).
    generator = DefaultBoxGenerator([[2]], scales=[0.5, 1.0])
    boxes = generator((100, 100), [(2, 2)])
    assert boxes.shape == (2 * 2 * 4, 4)
    half_prime = 50 * math.sqrt(0.5)
    wide_w, wide_h = 50 * math.sqrt(2), 50 / math.sqrt(2)
    first_cell = torch.tensor([
        [0.0, 0.0, 50.0, 50.0],  # s x s
        [25 - half_prime, 25 - half_prime, 25 + half_prime, 25 + half_prime],  # s' x s'
        [25 - wide_w / 2, 25 - wide_h / 2, 25 + wide_w / 2, 25 + wide_h / 2],  # ratio 2
        [25 - wide_h / 2, 25 - wide_w / 2, 25 + wide_h / 2, 25 + wide_w / 2],  # ratio 1/2
    ])  # fmt: skip
    torch.testing.assert_close(boxes[:4], first_cell)
    # Cells row by row: the second cell is x = 75, y = 25.
    torch.testing.assert_close(boxes[4], torch.tensor([50.0, 0.0, 100.0, 50.0]))
    torch.testing.assert_close(boxes[8], torch.tensor([0.0, 50.0, 50.0, 100.0]))


def test_cached_per_size_dtype_and_device():
    generator = DefaultBoxGenerator([[2]], scales=[0.5, 1.0])
    first = generator((100, 100), [(2, 2)])
    assert generator((100, 100), [(2, 2)]) is first
    assert generator((100, 100), [(2, 2)], dtype=torch.float64).dtype == torch.float64
    assert generator((100, 120), [(2, 3)]).shape == (24, 4)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([[2], [2]],), {"steps": [8]}, "steps"),
        (([[2], [2]],), {"scales": [0.1, 0.2]}, "scales"),
        (([[0]],), {}, "aspect ratios"),
        (([],), {}, "at least one"),
    ],
)
def test_bad_arguments_raise(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DefaultBoxGenerator(*args, **kwargs)


def test_wrong_number_of_feature_maps_raises():
    with pytest.raises(ValueError, match="2 feature maps"):
        DefaultBoxGenerator([[2], [2]])((100, 100), [(2, 2)])
