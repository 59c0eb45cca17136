"""Images with no pixels and non-finite pixel arrays: one line naming the file or the argument."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import detkit.utils.image_io as image_io
from detkit.utils.image_io import ImageReadError, image_to_tensor, read_image, read_image_rgb, read_image_size


def test_a_file_that_decodes_to_no_pixels_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "empty.png"
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    monkeypatch.setattr(image_io.cv2, "imdecode", lambda data, flags: np.zeros((0, 0, 3), np.uint8))
    for reader in (read_image, read_image_rgb):
        with pytest.raises(ImageReadError, match=r"empty\.png decodes to an empty image \(0x0 WxH\)"):
            reader(path)


def test_a_header_of_zero_size_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "zero.png"
    Image.new("RGB", (3, 2)).save(path)

    class ZeroSized:
        size = (0, 2)

        def __enter__(self) -> "ZeroSized":
            return self

        def __exit__(self, *args: object) -> None:
            return None

    monkeypatch.setattr(Image, "open", lambda p: ZeroSized())
    with pytest.raises(ImageReadError, match=r"zero\.png is empty: its header says 0x2 \(WxH\)"):
        read_image_size(path)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 5, 3), (5, 0, 3)])
def test_image_to_tensor_refuses_an_empty_array(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match=r"^image_to_tensor: image is empty"):
        image_to_tensor(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_image_to_tensor_refuses_non_finite_floats(bad: float) -> None:
    array = np.full((4, 5, 3), 0.5, np.float32)
    array[1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"^image_to_tensor: image has 1 NaN or infinite values \(of 60\)"):
        image_to_tensor(array)
    array[1, 2, 0] = 0.25
    assert image_to_tensor(array).shape == (3, 4, 5)
