"""Datasets over image files that are empty, corrupt, truncated or decode to no pixels: the item
raises one line naming the image file (and ``verify_images`` finds them at load)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import detkit.utils.image_io as image_io
from detkit.data import CocoDetection, ImageReadError, YOLODetection
from detkit.data.image_io import write_image_rgb


def _png_bytes() -> bytes:
    ok, encoded = cv2.imencode(".png", np.full((40, 50, 3), 90, np.uint8))
    assert ok
    return encoded.tobytes()


def _jpeg_bytes() -> bytes:
    ok, encoded = cv2.imencode(".jpg", (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8))
    assert ok
    return encoded.tobytes()


CONTENTS = {
    "empty file": lambda: b"",
    "not an image": lambda: b"hello, I am a text file\n" * 4,
    "truncated png": lambda: _png_bytes()[: len(_png_bytes()) // 2],
    "truncated jpeg": lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2],
}


def _coco(tmp_path: Path, file_name: str) -> Path:
    document = {"images": [{"id": 1, "file_name": file_name, "height": 40, "width": 50}],
                "categories": [{"id": 1, "name": "thing"}],
                "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("case", sorted(CONTENTS))
def test_coco_item_names_a_bad_image_file(tmp_path: Path, case: str) -> None:
    suffix = ".jpg" if "jpeg" in case else ".png"
    (tmp_path / f"bad{suffix}").write_bytes(CONTENTS[case]())
    dataset = CocoDetection(tmp_path, _coco(tmp_path, f"bad{suffix}"))
    with pytest.raises(ImageReadError) as caught:
        dataset[0]
    assert f"bad{suffix}" in str(caught.value) and "\n" not in str(caught.value)


def test_an_image_that_decodes_to_no_pixels_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_rgb(tmp_path / "img.png", np.zeros((40, 50, 3), np.uint8))
    dataset = CocoDetection(tmp_path, _coco(tmp_path, "img.png"))
    monkeypatch.setattr(image_io.cv2, "imdecode", lambda data, flags: np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ImageReadError, match=r"img\.png decodes to an empty image \(0x0 WxH\)"):
        dataset[0]


@pytest.mark.parametrize("case", ["empty file", "not an image"])
def test_yolo_reads_headers_at_load_and_names_a_bad_file(tmp_path: Path, case: str) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "bad.png").write_bytes(CONTENTS[case]())
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        YOLODetection(tmp_path / "images", ["thing"])
