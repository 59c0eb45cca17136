"""The reference resizes: OpenCV's 8-bit INTER_LINEAR bit for bit, darknet's resize_image
operation for operation (against a line-by-line transcription of darknet's image.c)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from detkit.ops.image_resize import (
    _opencv_can_run, resize_bilinear_darknet, resize_bilinear_opencv, resize_unit_image_opencv, to_uint8_levels,
)


def darknet_resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """darknet's ``resize_image(im, w, h)`` (pjreddie/darknet src/image.c), loop for loop in float32.

    ``im``: ``[C, H, W]`` float32. Where darknet divides by zero (an output of one row or column)
    the step is unused: the last (only) column is copied and the only row reads source row 0.
    """
    f = np.float32
    channels, in_h, in_w = im.shape
    part = np.zeros((channels, in_h, w), np.float32)
    out = np.zeros((channels, h, w), np.float32)
    w_scale = f(in_w - 1) / f(w - 1) if w > 1 else f(0)
    h_scale = f(in_h - 1) / f(h - 1) if h > 1 else f(0)
    for k in range(channels):
        for r in range(in_h):
            for c in range(w):
                if c == w - 1 or in_w == 1:
                    val = im[k, r, in_w - 1]
                else:
                    sx = f(c) * w_scale
                    ix = int(sx)
                    dx = f(sx - f(ix))
                    val = f(f(f(1) - dx) * im[k, r, ix]) + f(dx * im[k, r, ix + 1])
                part[k, r, c] = val
    for k in range(channels):
        for r in range(h):
            sy = f(r) * h_scale
            iy = int(sy)
            dy = f(sy - f(iy))
            out[k, r] = f(f(1) - dy) * part[k, iy]
            if r == h - 1 or in_h == 1:
                continue
            out[k, r] = out[k, r] + dy * part[k, iy + 1]
    return out


OPENCV_CASES = [
    (576, 768, 416, 416),  # dog.jpg to the YOLO input
    (1080, 1920, 416, 416),
    (832, 832, 416, 416),  # exactly half: OpenCV switches to INTER_AREA, which must agree
    (208, 208, 416, 416),  # exactly double
    (100, 123, 416, 416),  # upscale: edge rows read the same row twice
    (2, 3, 416, 416),
    (1, 1, 32, 32),
    (1, 7, 5, 3),
    (7, 1, 3, 5),
    (37, 55, 61, 97),
    (417, 333, 416, 416),
    (5, 7, 1, 1),
]


@pytest.mark.parametrize("in_h,in_w,out_h,out_w", OPENCV_CASES)
def test_opencv_resize_is_bit_exact(in_h: int, in_w: int, out_h: int, out_w: int):
    rng = np.random.default_rng(in_h * 1000 + in_w)
    image = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    expected = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, 3)
    levels = resize_bilinear_opencv(torch.from_numpy(image).permute(2, 0, 1), (out_h, out_w))
    assert levels.dtype == torch.int32 and levels.shape == (3, out_h, out_w)
    np.testing.assert_array_equal(levels.permute(1, 2, 0).numpy(), expected)


def test_opencv_resize_is_bit_exact_on_random_sizes():
    rng = np.random.default_rng(7)
    for _ in range(25):
        in_h, in_w, out_h, out_w = (int(v) for v in rng.integers(1, 500, 4))
        image = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
        expected = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, 3)
        levels = resize_bilinear_opencv(torch.from_numpy(image).permute(2, 0, 1), (out_h, out_w))
        np.testing.assert_array_equal(levels.permute(1, 2, 0).numpy(), expected, err_msg=str((in_h, in_w, out_h, out_w)))


def test_uint8_levels_come_back_from_a_float_image():
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    back = to_uint8_levels(levels.float() / 255)
    assert back.dtype == torch.uint8 and torch.equal(back, levels)
    assert to_uint8_levels(torch.tensor([[[-0.2, 1.3, 0.5 / 255]]])).tolist() == [[[0, 255, 0]]]  # clamped, half to even


@pytest.mark.parametrize("in_h,in_w,out_h,out_w", [
    (7, 9, 13, 5), (20, 31, 16, 16), (33, 57, 41, 23), (1, 5, 4, 3), (6, 1, 3, 8), (9, 9, 1, 4), (4, 6, 4, 6),
])  # fmt: skip
def test_darknet_resize_equals_darknet_loops(in_h: int, in_w: int, out_h: int, out_w: int):
    rng = np.random.default_rng(in_h * 100 + in_w)
    image = rng.integers(0, 256, (3, in_h, in_w)).astype(np.float32) / np.float32(255)
    expected = darknet_resize_image(image, out_w, out_h)
    out = resize_bilinear_darknet(torch.from_numpy(image), (out_h, out_w))
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("resize", [resize_bilinear_opencv, resize_bilinear_darknet])
def test_bad_shapes_are_refused(resize):
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        resize(torch.zeros(1, 3, 4, 4, dtype=torch.int32), (2, 2))
    with pytest.raises(ValueError, match="cannot resize an image of shape"):
        resize(torch.zeros(3, 0, 4, dtype=torch.int32), (2, 2))
    with pytest.raises(ValueError, match="cannot resize"):
        resize(torch.zeros(3, 4, 4, dtype=torch.int32), (0, 2))


def _torch_path(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What YOLOPreprocess ran before the cv2 fast path: the PyTorch kernel on the 8-bit levels."""
    levels = image if image.dtype == torch.uint8 else to_uint8_levels(image)
    dtype = image.dtype if image.is_floating_point() else torch.float32
    return resize_bilinear_opencv(levels, size).to(dtype) / 255


@pytest.mark.parametrize("channels", [1, 3, 4, 5])
def test_the_cv2_fast_path_equals_the_torch_kernel_bit_for_bit(channels: int):
    generator = torch.Generator().manual_seed(channels)
    for _ in range(12):
        in_h, in_w, out_h, out_w = (int(v) for v in torch.randint(1, 90, (4,), generator=generator))
        levels = torch.randint(0, 256, (channels, in_h, in_w), generator=generator, dtype=torch.uint8)
        image = levels.float() / 255
        strided = image.transpose(1, 2).contiguous().transpose(1, 2)  # not contiguous
        for source in (image, levels, image.double(), strided):
            assert _opencv_can_run(source)
            fast = resize_unit_image_opencv(source, (out_h, out_w))
            assert fast.dtype == (torch.float32 if source.dtype == torch.uint8 else source.dtype)
            assert torch.equal(fast, _torch_path(source, (out_h, out_w))), (in_h, in_w, out_h, out_w)
        # and it is OpenCV's own resize, as blobFromImage calls it
        hwc = levels.permute(1, 2, 0).contiguous().numpy()
        expected = cv2.resize(hwc, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, -1)
        np.testing.assert_array_equal((fast * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), expected)


def test_the_fast_path_rounds_off_grid_and_out_of_range_values_as_the_torch_kernel():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 37, 53, generator=generator)  # not k / 255: the rounding to levels matters
    ties = (torch.arange(256, dtype=torch.float32) + 0.5) / 255  # near the half levels
    image[0, 0, :53] = ties[:53]
    assert torch.equal(resize_unit_image_opencv(image, (20, 70)), _torch_path(image, (20, 70)))
    wild = image * 1.4 - 0.2  # negative and above 1: clamped
    assert torch.equal(resize_unit_image_opencv(wild, (41, 29)), _torch_path(wild, (41, 29)))


def test_the_torch_kernel_runs_where_cv2_cannot():
    image = torch.rand(3, 20, 30, requires_grad=True)
    assert not _opencv_can_run(image)
    assert torch.equal(resize_unit_image_opencv(image, (9, 11)), _torch_path(image.detach(), (9, 11)))
