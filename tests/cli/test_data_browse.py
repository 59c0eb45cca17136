"""``detkit data browse``: N pictures and a contact sheet of the right size, the same dataset opened
from each format, ground truth drawn through draw_predictions, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from detkit.cli import main
from detkit.cli.common import CommandError
from detkit.cli.data_browse import (choose_images, contact_sheet, draw_ground_truth, ground_truth_result,
                                    open_dataset)
from detkit.data.shapes import ShapesDatasetPaths, generate_shapes_dataset
from detkit.utils.visualization import class_color


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> ShapesDatasetPaths:
    """10 train + 2 val shapes images of 96x128 (H x W) in COCO and VOC, and YOLO txt written here."""
    paths = generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), 10, 2, (96, 128), seed=0)
    write_yolo(paths, paths.root / "yolo")
    return paths


def write_yolo(paths: ShapesDatasetPaths, root: Path) -> None:
    """The train split as ``root/images/train`` + ``root/labels/train`` and ``root/classes.txt``."""
    document = json.loads(paths.coco_json("train").read_text())
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(paths.class_names) + "\n")
    for image in document["images"]:
        (root / "images" / "train" / image["file_name"]).write_bytes((paths.image_dir / image["file_name"]).read_bytes())
        lines = []
        for a in document["annotations"]:
            if a["image_id"] == image["id"]:
                x, y, w, h = a["bbox"]
                lines.append(f"{a['category_id'] - 1} {(x + w / 2) / image['width']:.8f} "
                             f"{(y + h / 2) / image['height']:.8f} {w / image['width']:.8f} {h / image['height']:.8f}")
        (root / "labels" / "train" / f"{Path(image['file_name']).stem}.txt").write_text("\n".join(lines) + "\n")


def test_browse_writes_n_pictures_and_a_contact_sheet(shapes: ShapesDatasetPaths, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "browse"
    assert main(["data", "browse", "--format", "coco", str(shapes.coco_json("train")), "--out", str(out),
                 "-n", "5", "--seed", "3"]) == 0
    pictures = sorted(p.name for p in out.glob("*.jpg") if p.name != "contact_sheet.jpg")
    assert len(pictures) == 5
    expected = [f"train_{i:06d}.jpg" for i in sorted(np.random.default_rng(3).choice(10, 5, replace=False))]
    assert pictures == expected
    # 96x128 images are drawn enlarged by ceil(512 / 96) = 6, so that labels are legible
    assert cv2.imread(str(out / pictures[0])).shape == (576, 768, 3)
    # 5 thumbnails: 3 columns, 2 rows of (256 + 8) x (256 + 24 + 8) pixel cells, 8 pixels around
    assert cv2.imread(str(out / "contact_sheet.jpg")).shape == (2 * 288 + 8, 3 * 264 + 8, 3)
    assert "drew 5 images" in capsys.readouterr().out


def test_every_format_opens_the_same_boxes(shapes: ShapesDatasetPaths) -> None:
    coco = open_dataset("coco", shapes.root, "train")  # a folder: annotations/instances_train.json
    voc = open_dataset("voc", shapes.root, "train")  # class names read from the xml files
    yolo = open_dataset("yolo", shapes.root / "yolo", "train")  # classes.txt found beside images/
    assert coco.class_names == voc.class_names == yolo.class_names == list(shapes.class_names)
    assert len(coco) == len(voc) == len(yolo) == 10
    for index in range(10):
        boxes = [d.get_target(index)["boxes"].numpy() for d in (coco, voc, yolo)]
        labels = [d.get_target(index)["labels"].tolist() for d in (coco, voc, yolo)]
        np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-4)
        np.testing.assert_allclose(boxes[0], boxes[2], atol=1e-3)  # 8 decimals of normalised numbers
        assert labels[0] == labels[1] == labels[2]


def test_ground_truth_is_drawn_by_draw_predictions_with_flags_masks_and_points() -> None:
    target = {"boxes": np.array([[10, 10, 50, 40], [60, 20, 90, 70]], np.float32), "labels": np.array([0, 1]),
              "iscrowd": np.array([0, 1]), "orig_size": (80, 100),
              "masks": np.ones((2, 80, 100), np.uint8),
              "keypoints": np.array([[[20, 20, 2], [30, 30, 0]], [[70, 30, 1], [80, 40, 1]]], np.float32)}
    result = ground_truth_result(target, ["cat", "dog"], has_mask=[True, False])
    assert result.class_names == ["cat", "dog (crowd)"]
    assert result.masks[0].all() and not result.masks[1].any()  # dog has no segmentation: no mask
    assert result.landmarks[0, 1].tolist() == [-1e4, -1e4]  # an invisible keypoint is not drawn
    picture = draw_ground_truth(np.full((80, 100, 3), 128, np.uint8), result, min_side=160)
    assert picture.shape == (160, 200, 3)  # enlarged 2x, boxes with it
    # the dog's box outline, in its class colour, on the enlarged image's column x = 2 * 90
    column = picture[2 * 45:2 * 65, 2 * 90]
    assert (np.abs(column.astype(int) - class_color(1)).sum(axis=1) < 40).mean() > 0.8
    thumb = draw_ground_truth(np.full((80, 100, 3), 128, np.uint8), result, fit=50)
    assert thumb.shape == (40, 50, 3)


def test_contact_sheet_size_and_image_choice() -> None:
    images = [np.zeros((30, 60, 3), np.uint8)] * 7
    sheet = contact_sheet(images, [f"{i}.png" for i in range(7)], thumb_size=100)
    assert sheet.shape == (3 * (100 + 24 + 8) + 8, 3 * (100 + 8) + 8, 3)  # 7 -> 3 columns, 3 rows
    assert choose_images(4, 16, seed=0) == [0, 1, 2, 3]
    chosen = choose_images(100, 8, seed=1)
    assert chosen == sorted(chosen) and len(set(chosen)) == 8 and chosen == choose_images(100, 8, seed=1)
    assert chosen != choose_images(100, 8, seed=2)


def test_mistakes_are_one_line_errors(shapes: ShapesDatasetPaths, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def error(argv: list[str]) -> str:
        assert main(["data", "browse", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("detkit data browse: error: ")
        return lines[0]

    out = str(tmp_path / "out")
    assert "does not exist" in error(["--format", "coco", str(tmp_path / "nope.json"), "--out", out])
    assert not Path(out).exists()  # checked, not made, when the data does not open
    names_less = tmp_path / "y" / "images"
    names_less.mkdir(parents=True)
    assert "--names" in error(["--format", "yolo", str(names_less), "--out", out])
    assert "instances_test.json" in error(["--format", "coco", str(shapes.root), "--split", "test", "--out", out])
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert "is a file" in error(["--format", "coco", str(shapes.coco_json("train")), "--out", str(blocker)])
    with pytest.raises(SystemExit):
        main(["data", "browse", "--format", "coco", str(shapes.coco_json("train")), "--out", out, "-n", "0"])


def test_a_dataset_as_train_takes_it_needs_no_format(shapes: ShapesDatasetPaths, tmp_path: Path) -> None:
    # The same DATASET as `detkit train --data`: here the shapes folder, read through its layout.
    described = open_dataset(None, shapes.root, "val")
    named = open_dataset("coco", shapes.root, "val")
    assert described.class_names == named.class_names and len(described) == len(named) == 2
    for index in range(2):
        np.testing.assert_allclose(described.get_target(index)["boxes"].numpy(),
                                   named.get_target(index)["boxes"].numpy(), atol=1e-4)
    # A YOLO folder with a train split only: train is looked at whole (no validation carved out)
    assert len(open_dataset(None, shapes.root / "yolo", "train")) == 10
    out = tmp_path / "browse"
    assert main(["data", "browse", str(shapes.root), "--split", "val", "--out", str(out), "-n", "2"]) == 0
    assert (out / "contact_sheet.jpg").is_file()
    with pytest.raises(CommandError, match="--names and --images go with --format"):
        open_dataset(None, shapes.root, "val", names=tmp_path / "x.txt")
