"""YOLOPreprocess: resize (OpenCV's blobFromImage) or letterbox (darknet's letterbox_image) then
normalise, targets forward, detections back, and the multi-scale training sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detkit.models.preprocess import YOLOPreprocess
from detkit.ops.image_resize import resize_bilinear_darknet


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


@pytest.mark.parametrize("image_size,input_size,fit", [
    ((576, 768), (416, 416), (312, 416, 0, 52)),  # dog.jpg: 576 * 416 // 768 = 312, 52 rows above
    ((50, 97), (64, 64), (32, 64, 0, 16)),  # 50 * 64 / 97 = 32.99: darknet truncates, never rounds
    ((97, 50), (64, 64), (64, 32, 16, 0)),
    ((60, 60), (64, 96), (64, 64, 16, 0)),  # a non-square input: the height limits
    ((3, 2000), (64, 64), (1, 64, 0, 31)),  # darknet would make a 0-row image; one row is kept
])  # fmt: skip
def test_letterbox_geometry_is_darknets(image_size, input_size, fit):
    assert YOLOPreprocess(input_size, "letterbox")._fit(*image_size, input_size) == fit


def test_letterbox_is_darknets_letterbox_image():
    # darknet: resized = resize_image(im, new_w, new_h); boxed = 0.5 everywhere; embed at the offset.
    stage = YOLOPreprocess((64, 64), "letterbox")
    image = torch.randint(0, 256, (3, 50, 97)).float() / 255
    prepared, transform = stage.prepare(image, (64, 64))
    expected = torch.full((3, 64, 64), 0.5)
    expected[:, 16:48] = resize_bilinear_darknet(image, (32, 64))
    assert torch.equal(prepared, expected)
    torch.testing.assert_close(transform, torch.tensor([64 / 97, 32 / 50, 0.0, 16.0]), rtol=0, atol=0)


def test_resize_is_opencv_blob_from_image():
    # cv2.dnn.blobFromImage(bgr, 1 / 255, (W, H), swapRB=True, crop=False): OpenCV's 8-bit
    # INTER_LINEAR resize, then / 255. The float image detkit gets is the file's bytes / 255.
    rgb = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    blob = cv2.dnn.blobFromImage(rgb[:, :, ::-1].copy(), 1 / 255.0, (96, 64), swapRB=True, crop=False)[0]
    prepared, _ = YOLOPreprocess((64, 96)).prepare(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255, (64, 96))
    torch.testing.assert_close(prepared, torch.from_numpy(blob), rtol=0, atol=1e-7)  # 1/255 vs * (1/255): 1 ulp


@pytest.mark.parametrize("resize_mode", ["resize", "letterbox"])
@pytest.mark.parametrize("shape", [(45, 70), (64, 64)])  # resized, and already the input size
def test_uint8_images_are_their_8_bit_levels(resize_mode, shape):
    """A uint8 image ``k`` is the float image ``k / 255``: the same batch, bit for bit."""
    levels = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, *shape), dtype=np.uint8))
    stage = YOLOPreprocess((64, 64), resize_mode).eval()
    from_float, _ = stage([levels.float().div(255)])
    from_uint8, _ = stage([levels])
    assert from_uint8.tensor.dtype == torch.float32
    assert torch.equal(from_uint8.tensor, from_float.tensor)
