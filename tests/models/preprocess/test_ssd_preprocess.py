"""SSDPreprocess: normalise then stretch to the fixed size, targets forward and detections back."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detkit.models.preprocess import SSDPreprocess


def test_normalises_then_resizes_and_keeps_an_image_of_the_size_as_is():
    stage = SSDPreprocess((32, 48), pixel_mean=(0.5, 0.4, 0.3), pixel_std=(0.1, 0.2, 0.5), channels_last="off")
    small, exact = torch.rand(3, 20, 30), torch.rand(3, 32, 48)
    batch, targets = stage([small, exact])
    assert targets is None and batch.tensor.shape == (2, 3, 32, 48) and batch.image_sizes == [(32, 48)] * 2
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.1, 0.2, 0.5])[:, None, None]
    expected = F.interpolate(((small - mean) / std)[None], size=(32, 48), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(batch.tensor[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(batch.tensor[1], (exact - mean) / std, rtol=0, atol=0)


def test_targets_go_forward_and_detections_come_back_clipped():
    stage = SSDPreprocess((30, 30))
    image = torch.rand(3, 60, 90)
    target = {"boxes": torch.tensor([[9.0, 6.0, 45.0, 60.0]]), "labels": torch.tensor([1])}
    batch, (resized,) = stage([image], [target])
    torch.testing.assert_close(resized["boxes"], torch.tensor([[3.0, 3.0, 15.0, 30.0]]))
    assert resized["labels"] is target["labels"] and target["boxes"][0, 0] == 9.0  # the input is not modified
    back = stage.postprocess([{"boxes": torch.tensor([[3.0, 3.0, 15.0, 30.5]])}], batch.image_sizes, [(60, 90)])
    torch.testing.assert_close(back[0]["boxes"], torch.tensor([[9.0, 6.0, 45.0, 60.0]]))  # y2 clipped to 60


def test_channels_last_modes_and_bad_arguments():
    stage = SSDPreprocess((16, 16))  # "train": NHWC in training only
    images = [torch.rand(3, 16, 16)] * 2
    assert stage.eval()(images)[0].tensor.is_contiguous()
    assert stage.train()(images)[0].tensor.is_contiguous(memory_format=torch.channels_last)
    stage.channels_last = "always"
    assert stage.eval()(images)[0].tensor.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="channels_last"):
        stage.channels_last = "sometimes"
    with pytest.raises(ValueError, match="image_size"):
        SSDPreprocess((0, 16))
    with pytest.raises(ValueError, match="3 values"):
        SSDPreprocess((16, 16), pixel_mean=(0.5,))
