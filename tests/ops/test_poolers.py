"""MultiScaleRoIAlign against torchvision.ops.MultiScaleRoIAlign on FPN-shaped maps."""

from __future__ import annotations

import pytest
import torch
import torchvision

from detkit.ops import MultiScaleRoIAlign
from detkit.ops.poolers import infer_scale, map_levels


def _fpn_features(image_size: tuple[int, int], channels: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    height, width = image_size
    return {f"p{level}": torch.randn(2, channels, -(-height // 2**level), -(-width // 2**level), generator=generator)
            for level in range(2, 6)}


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_equals_torchvision_on_fpn_maps(impl, sampling_ratio):
    generator = torch.Generator().manual_seed(sampling_ratio)
    image_sizes = [(800, 1088), (736, 1056)]  # a padded batch of two images of different sizes
    features = _fpn_features((800, 1088), 8, generator)
    boxes = []
    for height, width in image_sizes:
        corner = torch.rand(60, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
        # sides from 4 to 700 px, so that every level receives RoIs
        side = torch.exp(torch.rand(60, 2, generator=generator) * (torch.log(torch.tensor(700.0)) - 1.4) + 1.4)
        boxes.append(torch.cat([corner, corner + side], dim=1))
    expected = torchvision.ops.MultiScaleRoIAlign(list(features), 7, sampling_ratio)(features, boxes, image_sizes)
    pooler = MultiScaleRoIAlign(list(features), 7, sampling_ratio)
    pooled = pooler({k: v.to(impl.device) for k, v in features.items()}, [b.to(impl.device) for b in boxes], image_sizes)
    torch.testing.assert_close(pooled.cpu(), expected, rtol=1e-5, atol=1e-6)
    levels = map_levels(boxes, 2, 5)
    assert set(levels.tolist()) == {0, 1, 2, 3}, "the test should exercise every level"


def test_single_level_and_level_rule():
    generator = torch.Generator().manual_seed(0)
    feature = {"c4": torch.randn(1, 3, 50, 50, generator=generator)}
    boxes = [torch.tensor([[10.0, 10.0, 300.0, 200.0]])]
    pooled = MultiScaleRoIAlign(["c4"], (5, 5), 2)(feature, boxes, [(800, 800)])
    expected = torchvision.ops.MultiScaleRoIAlign(["c4"], (5, 5), 2)(feature, boxes, [(800, 800)])
    torch.testing.assert_close(pooled, expected)
    # A 224x224 box maps to the canonical level 4; 112 to level 3; 448 to 5 (levels 2..5 -> offsets 0..3).
    boxes = [torch.tensor([[0.0, 0.0, 224.0, 224.0], [0.0, 0.0, 112.0, 112.0], [0.0, 0.0, 448.0, 448.0]])]
    assert map_levels(boxes, 2, 5).tolist() == [2, 1, 3]
    assert infer_scale((200, 336), (800, 1344)) == 0.25


def test_missing_level_is_named():
    pooler = MultiScaleRoIAlign(["p2", "p3"], 7, 2)
    with pytest.raises(KeyError, match=r"\['p3'\] are missing; available: \['p2'\]"):
        pooler({"p2": torch.zeros(1, 1, 8, 8)}, [torch.zeros(1, 4)], [(32, 32)])
