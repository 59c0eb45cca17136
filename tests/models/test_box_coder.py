"""BoxCoder against torchvision's det_utils.BoxCoder."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from detkit.models.box_coder import BoxCoder


def _random_boxes(n: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    top_left = torch.rand(n, 2, generator=generator, dtype=dtype) * 500
    size = torch.rand(n, 2, generator=generator, dtype=dtype) * 200 + 10  # ratios < 62.5: no clamp
    return torch.cat([top_left, top_left + size], dim=1)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encode_decode_match_torchvision(weights, dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    boxes, anchors = _random_boxes(300, generator, dtype), _random_boxes(300, generator, dtype)
    ours, theirs = BoxCoder(weights), TorchvisionBoxCoder(weights)

    deltas = ours.encode(boxes, anchors)
    torch.testing.assert_close(deltas, theirs.encode_single(boxes, anchors), rtol=0, atol=0)

    per_class = torch.randn(300, 4 * 3, generator=generator, dtype=dtype) * 2
    decoded = ours.decode(per_class, anchors)
    assert decoded.shape == (300, 12)
    torch.testing.assert_close(decoded, theirs.decode_single(per_class, anchors), rtol=0, atol=0)

    torch.testing.assert_close(ours.decode(deltas, anchors), boxes, rtol=1e-5, atol=1e-3)


def test_decode_clamps_huge_size_deltas() -> None:
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    deltas = torch.tensor([[0.0, 0.0, 50.0, 1e4]])
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    decoded = coder.decode(deltas, anchors)
    torch.testing.assert_close(decoded, TorchvisionBoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas, anchors))
    # exp(log(1000/16)) = 62.5 times the anchor size, centred on the anchor centre.
    torch.testing.assert_close(decoded, torch.tensor([[5 - 312.5, 10 - 625.0, 5 + 312.5, 10 + 625.0]]))
    assert torch.isfinite(decoded).all()
    assert coder.bbox_xform_clip == pytest.approx(math.log(1000 / 16))


def test_hand_worked_encode_and_empty() -> None:
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    box = torch.tensor([[1.0, 2.0, 11.0, 22.0]])  # centre moved (1, 7), height doubled
    torch.testing.assert_close(coder.encode(box, anchor), torch.tensor([[1.0, 7.0, 0.0, 5 * math.log(2.0)]]))
    assert coder.encode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert coder.decode(torch.zeros(0, 8), torch.zeros(0, 4)).shape == (0, 8)
    with pytest.raises(ValueError, match=r"\[N, 4\*K\]"):
        coder.decode(torch.zeros(3, 5), torch.zeros(3, 4))
