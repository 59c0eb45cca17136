"""YOLOPreprocess: resize or letterbox then normalise, targets forward, detections back, and the
multi-scale training sizes."""

from __future__ import annotations

import pytest
import torch

from detkit.models.preprocess import YOLOPreprocess


@pytest.mark.parametrize("resize_mode", ["resize", "letterbox"])
def test_boxes_go_forward_and_come_back(resize_mode):
    stage = YOLOPreprocess((64, 64), resize_mode)
    image = torch.rand(3, 40, 80)
    target = {"boxes": torch.tensor([[8.0, 4.0, 40.0, 36.0]]), "labels": torch.tensor([0])}
    batch, (mapped,) = stage([image], [target])
    assert batch.tensor.shape == (1, 3, 64, 64) and batch.image_sizes == [(64, 64)]
    expected = {"resize": [[6.4, 6.4, 32.0, 57.6]], "letterbox": [[6.4, 19.2, 32.0, 44.8]]}[resize_mode]
    torch.testing.assert_close(mapped["boxes"], torch.tensor(expected))  # letterbox: 0.8 scale, 16 rows above
    back = stage.postprocess([{"boxes": mapped["boxes"].clone()}], batch.image_sizes, [(40, 80)])
    torch.testing.assert_close(back[0]["boxes"], target["boxes"])


def test_normalisation_is_skipped_only_when_it_is_the_identity():
    image = torch.rand(3, 32, 32)
    plain = YOLOPreprocess((32, 32))
    assert not plain.normalizes and torch.equal(plain([image])[0].tensor[0], image)
    shifted = YOLOPreprocess((32, 32), pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.25, 0.25, 0.25))
    assert shifted.normalizes
    torch.testing.assert_close(shifted([image])[0].tensor[0], (image - 0.5) / 0.25, rtol=0, atol=0)


def test_training_draws_its_size_from_train_sizes_on_the_global_rng():
    stage = YOLOPreprocess((64, 64), train_sizes=(32, 96)).train()
    torch.manual_seed(0)
    drawn = {stage([torch.rand(3, 50, 50)])[0].tensor.shape[-1] for _ in range(12)}
    assert drawn == {32, 96}
    assert stage.eval()([torch.rand(3, 50, 50)])[0].image_sizes == [(64, 64)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiples of 32"):
        YOLOPreprocess((100, 100))
    with pytest.raises(ValueError, match="resize_mode"):
        YOLOPreprocess((64, 64), "crop")
