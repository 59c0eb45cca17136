"""Batched MTCNN inference: crops and pyramid equal facenet-pytorch's resampling; images of any
sizes in one call give what each gives alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detkit.models.convert.mtcnn_facenet import mtcnn_facenet
from detkit.models.detectors.mtcnn import (
    MTCNN, IntegralImages, area_crop_resize, area_resize, square_boxes, summed_area_table,
)

from mtcnn_testing import read_rgb


def test_area_crop_resize_equals_interpolate_area_per_box():
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 37, 51, generator=generator), torch.rand(3, 64, 29, generator=generator)]
    integral = IntegralImages([summed_area_table(im) for im in images])
    image_idx = torch.randint(0, 2, (40,), generator=generator)
    sizes = torch.tensor([[37, 51], [64, 29]])[image_idx]
    start = (torch.rand(40, 2, generator=generator) * (sizes - 1)).long()
    stop = start + 1 + (torch.rand(40, 2, generator=generator) * (sizes - start)).long().clamp(max=(sizes - start - 1))
    for size in (12, 24):
        crops = area_crop_resize(integral, image_idx, start[:, 1], start[:, 0], stop[:, 1], stop[:, 0], size)
        for k in range(40):
            (y0, x0), (y1, x1) = start[k].tolist(), stop[k].tolist()
            expected = F.interpolate(images[image_idx[k]][None, :, y0:y1, x0:x1], (size, size), mode="area")[0]
            torch.testing.assert_close(crops[k], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("size", [(13, 20), (40, 7), (64, 64)])
def test_area_resize_equals_interpolate_area(size):
    images = torch.rand(2, 3, 45, 61, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(area_resize(summed_area_table(images), size),
                               F.interpolate(images, size, mode="area"), atol=1e-6, rtol=1e-6)


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
