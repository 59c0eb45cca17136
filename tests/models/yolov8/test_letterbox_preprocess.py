"""LetterboxPreprocess against ultralytics' LetterBox (cv2) and scale_boxes, and its own rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detkit.models.preprocess.letterbox import LetterboxPreprocess, letterbox_params, resize_opencv
from detkit.ops.image_resize import to_uint8_levels
from yolov8_testing import SAMPLES, import_ultralytics


def _rgb01(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255


def _ultralytics_input(bgr: np.ndarray, size: tuple[int, int], auto: bool, scaleup: bool = True) -> torch.Tensor:
    augment = import_ultralytics("data.augment")
    boxed = augment.LetterBox(size, auto=auto, stride=32, scaleup=scaleup)(image=bgr)
    return torch.from_numpy(boxed).permute(2, 0, 1).flip(0).float() / 255


@pytest.mark.parametrize("shape", [(427, 640), (480, 360), (100, 1000), (640, 640), (1280, 960), (33, 47), (7, 3)])
@pytest.mark.parametrize("target", [(640, 640), (320, 320), (384, 512)])
@pytest.mark.parametrize("rect", [False, True])
def test_letterbox_equals_ultralytics_bit_for_bit(shape: tuple[int, int], target: tuple[int, int], rect: bool):
    generator = np.random.default_rng(sum(shape) + sum(target))
    bgr = generator.integers(0, 256, (*shape, 3), dtype=np.uint8)
    preprocess = LetterboxPreprocess(target, rect=rect).eval()
    batch, _ = preprocess([_rgb01(bgr)])
    expected = _ultralytics_input(bgr, target, auto=rect)
    assert batch.image_sizes == [tuple(expected.shape[-2:])]
    assert torch.equal(batch.tensor[0], expected)


def test_letterbox_without_scaleup_keeps_small_images_at_their_size():
    bgr = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    batch, _ = LetterboxPreprocess((320, 320), rect=False, scaleup=False).eval()([_rgb01(bgr)])
    assert torch.equal(batch.tensor[0], _ultralytics_input(bgr, (320, 320), auto=False, scaleup=False))


def test_an_exact_half_is_opencvs_area_average():
    # cv2.resize switches INTER_LINEAR to INTER_AREA for an exact 2x reduction of both sides.
    bgr = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    expected = cv2.resize(bgr, (48, 32), interpolation=cv2.INTER_LINEAR)
    levels = to_uint8_levels(_rgb01(bgr))
    got = resize_opencv(levels, (32, 48)).permute(1, 2, 0).numpy()[:, :, ::-1].astype(np.uint8)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
@pytest.mark.parametrize("rect", [False, True])
def test_boxes_map_back_as_ultralytics_scale_boxes(path, rect: bool):
    ops = import_ultralytics("utils.ops")
    bgr = cv2.imread(str(path))
    preprocess = LetterboxPreprocess((480, 480), rect=rect).eval()
    batch, _ = preprocess([_rgb01(bgr)])
    height, width = batch.tensor.shape[-2:]
    corners = torch.rand(50, 2, 2, generator=torch.Generator().manual_seed(3)) * torch.tensor([width, height]) * 1.1 - 10
    boxes = torch.cat([corners.amin(1), corners.amax(1)], 1)  # some outside the image: clipped
    (mapped,) = preprocess.postprocess([{"boxes": boxes.clone()}], batch.image_sizes, [bgr.shape[:2]])
    expected = ops.scale_boxes(tuple(batch.tensor.shape[-2:]), boxes.clone(), bgr.shape)
    torch.testing.assert_close(mapped["boxes"], expected, rtol=0, atol=1e-4)


def test_targets_go_into_the_square_training_input_as_ultralytics_instances():
    # Training letterboxes to the square input (no rect); a box moves by x * r + (left, top).
    preprocess = LetterboxPreprocess((320, 320), rect=True).train()
    image = torch.rand(3, 200, 100)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 180.0]]), "labels": torch.tensor([1])}]
    batch, mapped = preprocess([image], targets)
    params = letterbox_params((200, 100), (320, 320))
    assert batch.tensor.shape == (1, 3, 320, 320) and (params.left, params.top) == (80, 0)
    torch.testing.assert_close(mapped[0]["boxes"], torch.tensor([[10 * 1.6 + 80, 32.0, 60 * 1.6 + 80, 288.0]]))
    assert torch.equal(mapped[0]["labels"], targets[0]["labels"])


def test_a_batch_of_different_shapes_is_letterboxed_to_the_full_input():
    preprocess = LetterboxPreprocess((320, 320), rect=True).eval()
    batch, _ = preprocess([torch.rand(3, 200, 100), torch.rand(3, 100, 300)])
    assert batch.tensor.shape == (2, 3, 320, 320) and batch.image_sizes == [(320, 320), (320, 320)]
    batch, _ = preprocess([torch.rand(3, 200, 100), torch.rand(3, 200, 100)])
    assert batch.tensor.shape == (2, 3, 320, 160)


def test_bad_input_size_is_one_line():
    with pytest.raises(ValueError, match="LetterboxPreprocess: input_size .* multiples of stride 32"):
        LetterboxPreprocess((640, 600))


@pytest.mark.parametrize("shape", [(427, 640), (640, 640), (33, 47), (1280, 960)])
def test_the_cpu_resize_is_cv2_itself_and_the_pytorch_kernels_give_the_same_bits(shape, monkeypatch):
    import detkit.ops.image_resize as image_resize

    bgr = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    preprocess = LetterboxPreprocess((320, 320), rect=True).eval()
    calls = []
    resize = cv2.resize
    monkeypatch.setattr(image_resize.cv2, "resize", lambda *a, **k: calls.append(1) or resize(*a, **k))
    on_cpu, _ = preprocess([_rgb01(bgr)])
    # one plane at a time through OpenCV (the fast path on the CPU); an exact 2x reduction is the
    # PyTorch area average everywhere
    assert len(calls) == (0 if shape == (640, 640) else 3)
    monkeypatch.setattr(image_resize, "cv2", None)  # elsewhere (GPU, tracing): the PyTorch kernels
    portable, _ = preprocess([_rgb01(bgr)])
    assert torch.equal(on_cpu.tensor, portable.tensor)
    assert torch.equal(on_cpu.tensor[0], _ultralytics_input(bgr, (320, 320), auto=True))
