"""``detkit data stats``: the report, stats.json and the charts on a VOC dataset built with each
problem (counts and files named), and nothing flagged on the clean shapes data in COCO and VOC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detkit.cli import main
from detkit.cli.data_stats import CHARTS
from detkit.data.shapes import ShapesDatasetPaths, generate_shapes_dataset

CLASSES = ["cat", "dog", "unused"]


def _xml(name: str, objects: list[tuple[str, tuple[int, int, int, int], int]], size=(60, 80)) -> str:
    body = "".join(f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for c, b, d in objects)
    return (f"<annotation><filename>{name}.png</filename><size><width>{size[1]}</width>"
            f"<height>{size[0]}</height><depth>3</depth></size>{body}</annotation>")


def build_faulty_voc(root: Path) -> Path:
    """A VOC folder (60x80 PNGs) with: a tiny box and a box past the right border in a; a degenerate
    box (xmax < xmin) in b; c a byte copy of a; d with no objects; e listed twice in the image
    set; a difficult dog in e; the class "unused" (from --names) with no objects."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem in ("a", "b", "d", "e"):
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.png"), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    shutil.copyfile(root / "JPEGImages" / "a.png", root / "JPEGImages" / "c.png")
    objects = {
        "a": [("cat", (11, 11, 40, 40), 0), ("cat", (5, 5, 7, 30), 0), ("dog", (61, 11, 95, 30), 0)],
        "b": [("dog", (11, 11, 40, 40), 0), ("cat", (50, 10, 40, 30), 0)],
        "c": [("cat", (11, 11, 40, 40), 0)],
        "d": [],
        "e": [("dog", (21, 21, 60, 50), 1)],
    }
    for stem, items in objects.items():
        (root / "Annotations" / f"{stem}.xml").write_text(_xml(stem, items))
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\nc\nd\ne\ne\n")
    (root / "names.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, dict]:
    out = Path(argv[argv.index("--out") + 1])
    assert main(["data", "stats", *argv]) == 0
    printed = capsys.readouterr().out
    return printed, json.loads((out / "stats.json").read_text())


def test_stats_flags_each_built_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_faulty_voc(tmp_path / "voc")
    out = tmp_path / "stats"
    printed, stats = _run(["--format", "voc", str(root), "--split", "train", "--names", str(root / "names.txt"),
                           "--out", str(out)], capsys)
    problems = {p["kind"]: p for p in stats["problems"]}
    expected = {"empty_classes": 1, "tiny_boxes": 1, "boxes_outside_image": 1, "degenerate_boxes": 1,
                "duplicate_images": 1, "same_file_listed_twice": 1, "images_without_objects": 1}
    assert {kind: problems[kind]["count"] for kind in expected} == expected
    assert problems["empty_classes"]["examples"] == ["2: unused"]
    assert problems["tiny_boxes"]["examples"][0].startswith("a.png: box 1 cat")
    assert "a.xml" in problems["boxes_outside_image"]["examples"][0]
    assert "b.xml" in problems["degenerate_boxes"]["examples"][0]
    assert problems["duplicate_images"]["examples"] == ["a.png = c.png"]
    assert problems["same_file_listed_twice"]["examples"] == ["e.png listed 2 times (images 4, 5)"]
    assert problems["images_without_objects"]["examples"] == ["d.png"]
    # numbers: 7 objects kept (the degenerate one dropped; e, listed twice, counts its dog twice)
    assert stats["num_images"] == 6 and stats["num_objects"] == 7 and stats["difficult_objects"] == 2
    assert [c["objects"] for c in stats["classes"]] == [3, 4, 0]
    assert [c["images"] for c in stats["classes"]] == [2, 4, 0]  # cat: a, c; dog: a, b, e, e
    assert stats["boxes_per_image"]["histogram"]["counts"] == [1, 4, 0, 1]  # d; b, c, e, e; -; a
    # printed: one WARNING line per problem kind, its files, and what to do
    assert printed.count("WARNING:") == 6 and "-> keep one copy" in printed and "a.png = c.png" in printed
    assert "problems: 6 kinds" in printed
    for chart in CHARTS:
        image = cv2.imread(str(out / chart))
        assert image is not None and image.shape[0] >= 480 and image.shape[1] >= 640
    # a smaller tiny-box size finds no tiny box (the tiny one is 3 px wide: xmin 5 .. xmax 7)
    _, loose = _run(["--format", "voc", str(root), "--split", "train", "--names", str(root / "names.txt"),
                     "--out", str(tmp_path / "stats2"), "--tiny-box", "3", "--no-hash"], capsys)
    loose_problems = {p["kind"]: p["count"] for p in loose["problems"]}
    assert loose_problems["tiny_boxes"] == 0 and loose_problems["duplicate_images"] == 0  # not hashed


@pytest.mark.parametrize("form", ["coco", "voc"])
def test_clean_shapes_data_flags_no_problem(form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shapes: ShapesDatasetPaths = generate_shapes_dataset(tmp_path / "shapes", 12, 2, (96, 128), seed=1)
    printed, stats = _run(["--format", form, str(shapes.root), "--split", "train", "--out",
                           str(tmp_path / "out")], capsys)
    warnings = [p for p in stats["problems"] if p["severity"] == "warning" and p["count"]]
    assert warnings == [] and "problems: none found" in printed and "WARNING" not in printed
    document = json.loads(shapes.coco_json("train").read_text())
    assert stats["num_objects"] == len(document["annotations"]) and stats["num_images"] == 12
    sizes = sorted(np.sqrt(a["bbox"][2] * a["bbox"][3]) for a in document["annotations"])
    assert stats["box_size_px"]["quantiles"]["max"] == pytest.approx(sizes[-1], abs=1e-3)
    assert sum(stats["box_size_px"]["coco_size_classes"].values()) == len(sizes)


def test_stats_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_faulty_voc(tmp_path / "voc")
    (root / "names.txt").write_text("cat\n")  # dog is not in the class list
    assert main(["data", "stats", "--format", "voc", str(root), "--names", str(root / "names.txt"),
                 "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("detkit data stats: error: ") and "'dog'" in lines[0]
