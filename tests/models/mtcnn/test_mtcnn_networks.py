"""MTCNN's three networks: output shapes, and the input normalisation folded into the first
convolution equals normalising the input first."""

from __future__ import annotations

import pytest
import torch

from detkit.models.detectors.mtcnn.networks import ONet, PNet, RNet, input_affine


@pytest.mark.parametrize(("network", "size"), [(PNet, 30), (RNet, 24), (ONet, 48)])
def test_folded_input_affine_equals_normalising_first(network, size):
    torch.manual_seed(0)
    net = network().eval()
    pixels = torch.randint(0, 256, (2, 3, size, size)).float()
    scale, shift = input_affine(1.0)  # 0-255 values -> (v - 127.5) / 128
    with torch.no_grad():
        folded = net(pixels, scale, shift)
        explicit = net(pixels * scale + shift)
    for a, b in zip(folded, explicit):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_output_shapes():
    logits, deltas = PNet()(torch.zeros(1, 3, 30, 40))
    # ceil((30 - 2) / 2) - 4 = 10, ceil((40 - 2) / 2) - 4 = 15
    assert logits.shape == (1, 2, 10, 15) and deltas.shape == (1, 4, 10, 15)
    assert [o.shape for o in RNet()(torch.zeros(5, 3, 24, 24))] == [(5, 2), (5, 4)]
    assert [o.shape for o in ONet()(torch.zeros(5, 3, 48, 48))] == [(5, 2), (5, 4), (5, 10)]


def test_input_affine_maps_unit_images_to_the_caffe_range():
    scale, shift = input_affine(255.0)
    assert 0.0 * scale + shift == pytest.approx(-127.5 / 128) and 1.0 * scale + shift == pytest.approx(127.5 / 128)
