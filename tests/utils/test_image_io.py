"""detkit.utils.image_io: the one image reader; errors name the file; channels and EXIF orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detkit.apis.images
import detkit.data.image_io
from detkit.utils.image_io import (
    ImageReadError,
    image_to_tensor,
    read_image,
    read_image_rgb,
    read_image_size,
    write_image_rgb,
)


def test_the_old_paths_hold_the_same_objects() -> None:
    assert detkit.data.image_io.ImageReadError is detkit.apis.images.ImageReadError is ImageReadError
    assert detkit.data.image_io.read_image_rgb is read_image_rgb
    assert detkit.apis.images.read_image is read_image
    assert detkit.data.ImageReadError is detkit.apis.ImageReadError is ImageReadError


def test_channels_round_trip(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    write_image_rgb(tmp_path / "red.png", rgb)
    np.testing.assert_array_equal(read_image_rgb(tmp_path / "red.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "red.png"), rgb[..., ::-1])  # BGR by default
    assert read_image_size(tmp_path / "red.png") == (4, 6)
    tensor = image_to_tensor(read_image_rgb(tmp_path / "red.png"))
    assert tuple(tensor.shape) == (3, 4, 6) and abs(float(tensor[0].max()) - 200 / 255) < 1e-6


def test_exif_orientation_is_applied_for_viewing_and_ignored_for_datasets(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), (10, 120, 30)).save(path, exif=exif.tobytes())
    assert read_image_rgb(path).shape == (20, 40, 3)  # stored order, as annotations refer to it
    assert read_image_size(path) == (20, 40)
    assert read_image(path).shape == (40, 20, 3)  # as a viewer (and cv2.imread) shows it
    assert read_image(path, channels="rgb", exif_orientation=False).shape == (20, 40, 3)


@pytest.mark.parametrize("reader", [read_image, read_image_rgb])
def test_errors_name_the_file(tmp_path: Path, reader) -> None:
    with pytest.raises(ImageReadError, match=r"image file not found: .*nope\.jpg"):
        reader(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="image path is not a file"):
        reader(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ImageReadError, match=r"cannot decode image file .*broken\.jpg \(\d+ bytes\)"):
        reader(tmp_path / "broken.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"cannot decode image file .*empty\.png \(0 bytes\)"):
        reader(tmp_path / "empty.png")


def test_header_errors_and_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match=r"cannot read the header of image file .*notes\.png"):
        read_image_size(tmp_path / "notes.png")
    with pytest.raises(ImageReadError, match=r"cannot encode image for .*out\.nosuchformat"):
        write_image_rgb(tmp_path / "out.nosuchformat", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="channels must be 'bgr' or 'rgb'"):
        read_image(tmp_path / "notes.png", channels="hsv")  # type: ignore[arg-type]
