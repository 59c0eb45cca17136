"""WIDER FACE ground-truth reader: counts, the all-zero line of empty images, flags, xywh -> xyxy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detkit.data.validation import DatasetError
from detkit.data.wider_face import WiderFaceDetection, parse_wider_face_gt

from data_testing import IMAGES_DIR

GT_TEXT = """\
0--Parade/a.jpg
2
449 330 122 149 0 0 0 0 0 0 
10 20 30 40 2 1 1 1 2 1 
0--Parade/empty.jpg
0
0 0 0 0 0 0 0 0 0 0 
1--Handshaking/b.jpg
1
5 6 0 0 0 0 0 1 0 0 
"""


def test_parse_counts_flags_and_empty_images():
    entries = parse_wider_face_gt(GT_TEXT.splitlines())
    assert [e.file_name for e in entries] == ["0--Parade/a.jpg", "0--Parade/empty.jpg", "1--Handshaking/b.jpg"]
    np.testing.assert_array_equal(entries[0].boxes, [[449, 330, 571, 479], [10, 20, 40, 60]])
    assert entries[0].flags["blur"].tolist() == [0, 2] and entries[0].flags["pose"].tolist() == [0, 1]
    assert entries[0].flags["invalid"].tolist() == [0, 1] and entries[0].flags["occlusion"].tolist() == [0, 2]
    assert entries[1].boxes.shape == (0, 4) and entries[1].flags["invalid"].shape == (0,)
    assert entries[2].flags["invalid"].tolist() == [1] and entries[2].line == 8


@pytest.mark.parametrize("text,match", [
    ("a.jpg\nx\n", "face count"),
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", "file ends"),
    ("a.jpg\n1\n1 2 three 4 0 0 0 0 0 0\n", "10 numbers"),
])
def test_malformed_files_name_the_line(text, match):
    with pytest.raises(DatasetError, match=match):
        parse_wider_face_gt(text.splitlines())


def test_dataset_reads_images_and_carries_flags(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("ivan.jpg\n2\n277 90 48 63 0 0 0 0 0 0\n10 10 20 20 1 0 0 1 0 0\n"
                  "no-faces.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n")
    dataset = WiderFaceDetection(IMAGES_DIR, gt)
    assert len(dataset) == 2 and dataset.class_names == ["face"]
    image, target = dataset[0]
    assert image.shape == (3, 561, 561) and image.dtype == torch.float32
    torch.testing.assert_close(target["boxes"], torch.tensor([[277.0, 90.0, 325.0, 153.0], [10.0, 10.0, 30.0, 30.0]]))
    assert target["labels"].tolist() == [0, 0] and target["ignore"].tolist() == [False, True]
    assert target["blur"].tolist() == [0, 1]
    assert dataset[1][1]["boxes"].shape == (0, 4)
    valid_only = WiderFaceDetection(IMAGES_DIR, gt, keep_invalid=False)
    assert valid_only.get_target(0)["boxes"].shape == (1, 4)
