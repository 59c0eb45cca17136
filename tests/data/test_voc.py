"""VOCDetection on the two real VOC images, plus difficult flags, image sets and class errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from data_testing import VOC_SAMPLE
from detkit.data import VOC_CLASSES, DatasetError, VOCDetection


def test_real_voc2007_image_dog_and_person() -> None:
    dataset = VOCDetection(VOC_SAMPLE / "VOC2007", split=None)  # no ImageSets: every xml
    assert len(dataset) == 1 and dataset.image_ids == ["000001"] and dataset.class_names == list(VOC_CLASSES)
    image, target = dataset[0]
    assert image.shape == (3, 500, 353) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.05
    # xml (1-based inclusive): dog 48 240 195 371, person 8 12 352 498 -> x1 - 1, y1 - 1, x2, y2.
    torch.testing.assert_close(target["boxes"], torch.tensor([[47.0, 239.0, 195.0, 371.0], [7.0, 11.0, 352.0, 498.0]]))
    assert [dataset.class_names[label] for label in target["labels"]] == ["dog", "person"]
    assert target["difficult"].dtype == torch.bool and target["difficult"].tolist() == [False, False]
    assert target["orig_size"] == (500, 353)


def test_real_voc2012_image_train() -> None:
    dataset = VOCDetection(VOC_SAMPLE / "VOC2012", split=None)
    image, target = dataset[0]
    assert image.shape == (3, 500, 335)
    torch.testing.assert_close(target["boxes"], torch.tensor([[138.0, 199.0, 207.0, 301.0]]))
    assert [dataset.class_names[label] for label in target["labels"]] == ["train"]


def test_image_decode_is_rgb() -> None:
    import cv2

    image, _ = VOCDetection(VOC_SAMPLE / "VOC2007", split=None)[0]
    bgr = cv2.imread(str(VOC_SAMPLE / "VOC2007" / "JPEGImages" / "000001.jpg"))
    expected = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, expected)


def _copy_voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2007"
    shutil.copytree(VOC_SAMPLE / "VOC2007", root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def test_difficult_flag_kept_or_dropped(tmp_path: Path) -> None:
    root = _copy_voc(tmp_path)
    xml = root / "Annotations" / "000001.xml"
    text = xml.read_text()
    person = text.index("<name>person</name>")
    xml.write_text(text[:person] + text[person:].replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    target = VOCDetection(root, split=None).get_target(0)
    assert target["difficult"].tolist() == [False, True]
    kept = VOCDetection(root, split=None, keep_difficult=False).get_target(0)
    assert [VOC_CLASSES[label] for label in kept["labels"]] == ["dog"] and kept["difficult"].tolist() == [False]


def test_split_file_and_explicit_ids(tmp_path: Path) -> None:
    root = _copy_voc(tmp_path)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("000001\n")
    assert VOCDetection(root, "val").image_ids == ["000001"]
    assert VOCDetection(root, image_ids=["000001"]).image_ids == ["000001"]
    with pytest.raises(FileNotFoundError, match="train.txt"):
        VOCDetection(root, "train")


def test_unknown_class_names_the_file_and_class(tmp_path: Path) -> None:
    root = _copy_voc(tmp_path)
    with pytest.raises(DatasetError, match=r"000001\.xml.*'person'"):
        VOCDetection(root, split=None, class_names=["dog", "cat"])
    dataset = VOCDetection(root, split=None, class_names=["person", "dog"])  # another order
    assert dataset.get_target(0)["labels"].tolist() == [1, 0]
