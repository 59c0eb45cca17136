"""``detkit data convert``: converts the shapes data between COCO, VOC and YOLO, prints what the
target cannot hold, and refuses bad input in one line (exit status 2)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from detkit.cli import main as cli_main
from detkit.data import CocoDetection, YOLODetection
from detkit.data.shapes import ShapesDatasetPaths, generate_shapes_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> ShapesDatasetPaths:
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), 4, 2, (64, 96), seed=1)


def convert(*argv: str) -> int:
    return cli_main(["data", "convert", *argv])


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("detkit data convert: error: "), err
    return err


def test_coco_to_yolo_and_back_prints_the_report(shapes: ShapesDatasetPaths, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert convert("--from", "coco", "--to", "yolo", str(shapes.root), str(tmp_path / "yolo")) == 0
    out = capsys.readouterr().out
    assert "-> yolo" in out and "4 images" in out and "3 classes" in out
    assert "yolo cannot hold:" in out and "segmentations dropped" in out  # the shapes json has RLE masks
    names = list(shapes.class_names)
    assert (tmp_path / "yolo" / "classes.txt").read_text().split() == names
    assert convert("--from", "yolo", "--to", "coco", str(tmp_path / "yolo"), str(tmp_path / "coco")) == 0
    assert "nothing lost" in capsys.readouterr().out
    before = CocoDetection(shapes.image_dir, shapes.coco_json("train"))
    after = CocoDetection(tmp_path / "coco" / "train", tmp_path / "coco" / "annotations" / "instances_train.json")
    assert after.class_names == before.class_names == names
    for index in range(len(before)):
        np.testing.assert_array_equal(after.get_target(index)["boxes"], before.get_target(index)["boxes"])
        assert after.get_target(index)["labels"].tolist() == before.get_target(index)["labels"].tolist()


def test_voc_split_with_names_file_and_linked_images(shapes: ShapesDatasetPaths, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    names = tmp_path / "names.txt"
    names.write_text("triangle\nsquare\ncircle\n")  # another order: labels follow the file
    assert convert("--from", "voc", "--to", "yolo", str(shapes.root), str(tmp_path / "yolo"), "--split", "val",
                   "--names", str(names), "--link-images") == 0
    assert "(split val): 2 images" in capsys.readouterr().out
    assert all(path.is_symlink() for path in (tmp_path / "yolo" / "images" / "val").iterdir())
    dataset = YOLODetection(tmp_path / "yolo" / "images" / "val", ["triangle", "square", "circle"])
    coco = CocoDetection(shapes.image_dir, shapes.coco_json("val"))
    for index in range(len(coco)):
        relabel = {0: 2, 1: 1, 2: 0}  # circle, square, triangle -> the file's order
        expected = [relabel[int(label)] for label in coco.get_target(index)["labels"]]
        assert dataset.get_target(index)["labels"].tolist() == expected


def test_the_tools_wrapper_runs_the_same_command(shapes: ShapesDatasetPaths, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("data_convert_tool", REPO / "tools" / "data_convert.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--from", "coco", "--to", "voc", str(shapes.coco_json("val")), str(tmp_path / "voc")]) == 0
    assert "(split val)" in capsys.readouterr().out  # the split named by instances_val.json
    assert (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").read_text().split() == ["val_000000", "val_000001"]


def test_bad_input_is_one_line(shapes: ShapesDatasetPaths, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    src = str(shapes.root)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert convert("--from", "coco", "--to", "voc", src, str(blocker)) == 2
    assert "is a file, not a folder; choose another DST" in error_line(capsys)
    assert convert("--from", "coco", "--to", "voc", str(tmp_path / "nothing"), str(tmp_path / "out")) == 2
    assert "instances_train.json" in error_line(capsys)
    assert not (tmp_path / "out").exists()  # DST is checked, not left behind by a failed conversion
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({"images": [], "annotations": []})[:-3])
    assert convert("--from", "coco", "--to", "yolo", str(cut), str(tmp_path / "out")) == 2
    assert "cut.json: not valid json" in error_line(capsys)
    assert convert("--from", "yolo", "--to", "voc", src, str(tmp_path / "out")) == 2
    assert "has none of" in error_line(capsys)
    assert convert("--from", "voc", "--to", "coco", src, str(tmp_path / "out"), "--split", "test") == 2
    assert "ImageSets/Main/test.txt" in error_line(capsys)
    assert convert("--from", "voc", "--to", "coco", src, str(tmp_path / "out"), "--names",
                   str(tmp_path / "no_names.txt")) == 2
    assert "no_names.txt" in error_line(capsys)
    only_circles = tmp_path / "circle.txt"
    only_circles.write_text("circle\n")
    assert convert("--from", "voc", "--to", "coco", src, str(tmp_path / "out"), "--names", str(only_circles)) == 2
    assert "which is not in the class list ['circle']" in error_line(capsys)
    assert convert("--from", "coco", "--to", "voc", src, str(tmp_path / "twice")) == 0
    assert convert("--from", "coco", "--to", "voc", src, str(tmp_path / "twice")) == 2
    assert "already holds split 'train'" in error_line(capsys)
    assert convert("--from", "coco", "--to", "voc", src, str(tmp_path / "twice"), "--overwrite") == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--from", "coco", "--to", "xml", "a", "b"], "invalid choice: 'xml'"),
    (["--to", "voc", "a", "b"], "--from"),
    (["--from", "voc", "--to", "coco", "a", "b", "--image-dir", "x"], "--image-dir is for a COCO source"),
    (["--from", "voc", "--to", "coco", "a", "b", "--copy-images", "--link-images"], "not allowed with"),
])
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        convert(*argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_the_command_is_listed_under_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["data"])
    err = capsys.readouterr().err
    assert "data needs a subcommand:" in err and "convert" in err.split("data needs a subcommand:")[1]
