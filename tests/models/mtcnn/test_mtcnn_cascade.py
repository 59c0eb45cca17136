"""The MTCNN cascade: square boxes, every stage on random weights, the input checks, and images of
any sizes in one call giving what each gives alone."""

from __future__ import annotations

import pytest
import torch

from detkit.models.convert.mtcnn_facenet import mtcnn_facenet
from detkit.models.detectors.mtcnn import MTCNN as MTCNNReexported
from detkit.models.detectors.mtcnn.cascade import MTCNN, square_boxes

from mtcnn_testing import read_rgb


def test_square_boxes_keeps_centre_and_takes_longer_side():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 4.0], [5.0, 5.0, 7.0, 11.0]])
    torch.testing.assert_close(square_boxes(boxes), torch.tensor([[0.0, -3.0, 10.0, 7.0], [3.0, 5.0, 9.0, 11.0]]))


def test_random_weights_run_on_images_of_different_sizes():
    torch.manual_seed(0)
    model = MTCNN(thresholds=(0.0, 0.0, 0.0)).eval()  # keep everything: exercises every stage
    images = [torch.rand(3, 60, 80), torch.rand(3, 90, 50), torch.rand(3, 60, 80)]
    predictions, losses = model(images)
    assert losses == {} and len(predictions) == 3
    for prediction, image in zip(predictions, images):
        n = prediction["boxes"].shape[0]
        assert n > 0
        assert prediction["scores"].shape == (n,) and prediction["labels"].tolist() == [0] * n
        assert prediction["landmarks"].shape == (n, 5, 2)
        assert (prediction["scores"][:-1] >= prediction["scores"][1:]).all()
        assert float(prediction["boxes"][:, 2].max()) <= image.shape[2]
    assert model([])[0] == []
    assert MTCNNReexported is MTCNN  # detkit.models.detectors.mtcnn still exports the cascade


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        MTCNN().eval()([torch.rand(1, 20, 20)])
    with pytest.raises(ValueError, match="targets"):
        MTCNN().train()([torch.rand(3, 20, 20)])
    with pytest.raises(ValueError, match="thresholds"):
        MTCNN(thresholds=(0.5, 0.5))


@pytest.mark.network
def test_batch_of_different_sizes_equals_one_by_one():
    model = mtcnn_facenet()
    astronaut = read_rgb("astronaut.png")
    images = [astronaut, read_rgb("ivan.jpg"), read_rgb("no-faces.jpg"), astronaut.flip(-1)[:, 40:, :]]
    batched = model(images)[0]
    for image, prediction in zip(images, batched):
        alone = model([image])[0][0]
        assert prediction.keys() == alone.keys()
        for key in alone:
            torch.testing.assert_close(prediction[key], alone[key], atol=1e-4, rtol=0)
    assert [p["boxes"].shape[0] for p in batched] == [1, 1, 0, 1]
