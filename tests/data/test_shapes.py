"""The synthetic shapes generator: determinism, exact masks and boxes, COCO and VOC agreement."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from data_testing import mask_boxes
from detkit.data import SHAPE_CLASSES, CocoDetection, VOCDetection, generate_shapes_dataset
from detkit.data.image_io import read_image_rgb
from detkit.data.shapes import ShapesDatasetPaths, render_shapes_image

# pycocotools' decoder (annToMask) trips NumPy 2's `copy=` deprecation; its results are correct.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path, shapes: ShapesDatasetPaths) -> None:
    again = generate_shapes_dataset(tmp_path / "again", 8, 4, (96, 128), seed=0)
    first, second = _files(shapes.root), _files(again.root)
    assert len(first) == 8 + 4 + 8 + 4 + 3 + 2  # images, xml, image sets, json
    assert first == second
    other = generate_shapes_dataset(tmp_path / "other", 8, 4, (96, 128), seed=1)
    assert _files(other.root)["annotations/instances_train.json"] != first["annotations/instances_train.json"]


def test_command_line_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = runpy.run_path(str(REPO / "tools" / "make_shapes_dataset.py"))  # in-process: no second torch import
    tool["main"]([str(tmp_path / "out"), "--num-train", "3", "--num-val", "2", "--seed", "0", "--image-size", "64"])
    assert "wrote 3 train + 2 val images" in capsys.readouterr().out
    dataset = CocoDetection(tmp_path / "out" / "JPEGImages", tmp_path / "out" / "annotations" / "instances_val.json")
    assert len(dataset) == 2 and dataset[0][0].shape == (3, 64, 64)


def test_masks_are_exact_disjoint_and_boxes_are_their_bounding_boxes(shapes: ShapesDatasetPaths) -> None:
    dataset = CocoDetection(shapes.image_dir, shapes.coco_json("train"), with_masks=True)
    assert dataset.class_names == list(SHAPE_CLASSES)
    total = 0
    for index in range(len(dataset)):
        target = dataset.get_target(index)
        image = read_image_rgb(target["file_name"])
        masks = target["masks"].numpy().astype(bool)
        assert masks.sum(axis=0).max() <= 1  # occlusion: visible regions do not overlap
        torch.testing.assert_close(target["boxes"], mask_boxes(target["masks"]), rtol=0, atol=0)
        for mask in masks:
            colours = np.unique(image[mask], axis=0)
            assert len(colours) == 1  # every visible pixel has the shape's one colour
            assert int(mask.sum()) >= 40  # tiny leftovers of occluded shapes were dropped
        total += len(masks)
    assert total > len(dataset)  # several objects an image on average


def test_render_instances_match_the_pixels_they_claim() -> None:
    # Crowded images (8 shapes on 80x80) force occlusion: masks stay disjoint, each mask's pixels
    # carry its own colour (a later shape would have painted over them otherwise).
    rng = np.random.default_rng(3)
    image, instances = render_shapes_image(rng, (80, 80), max_objects=8)
    assert len(instances) >= 2
    assert max(sum(instance.mask.astype(int) for instance in instances).ravel()) <= 1
    for instance in instances:
        ys, xs = np.nonzero(instance.mask)
        assert (image[ys, xs] == instance.color).all()
        x1, y1, x2, y2 = instance.box
        assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_coco_json_loads_with_pycocotools_and_agrees_with_voc(shapes: ShapesDatasetPaths) -> None:
    coco = COCO(str(shapes.coco_json("val")))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
    coco_dataset = CocoDetection(shapes.image_dir, shapes.coco_json("val"), with_masks=True)
    voc_dataset = VOCDetection(shapes.root, "val", image_suffix=".png", class_names=shapes.class_names)
    assert len(voc_dataset) == len(coco_dataset) == 4
    for index in range(len(coco_dataset)):
        coco_target, voc_target = coco_dataset.get_target(index), voc_dataset.get_target(index)
        assert Path(coco_target["file_name"]) == Path(voc_target["file_name"])
        assert torch.equal(coco_target["boxes"], voc_target["boxes"])
        assert torch.equal(coco_target["labels"], voc_target["labels"])
        for annotation, mask in zip(
            coco.loadAnns(coco.getAnnIds(imgIds=coco_dataset.image_ids[index])),
            coco_target["masks"],
        ):
            assert np.array_equal(coco.annToMask(annotation), mask.numpy())
            assert annotation["area"] == int(mask.sum())
    trainval = VOCDetection(shapes.root, "trainval", image_suffix=".png", class_names=shapes.class_names)
    assert len(trainval) == 12


def test_shapes_coco_dataset_generates_once_and_checks_parameters(tmp_path):
    from detkit.data import shapes_coco_dataset

    root = tmp_path / "shapes"
    train = shapes_coco_dataset(root, "train", num_train=4, num_val=2, image_size=64, seed=3)
    val = shapes_coco_dataset(root, "val", num_train=4, num_val=2, image_size=64, seed=3)
    assert len(train) == 4 and len(val) == 2
    assert list(train.class_names) == ["circle", "square", "triangle"]
    image, target = train[0]
    assert image.shape == (3, 64, 64) and target["boxes"].shape[1] == 4
    stamp = (root / "generation.json").stat().st_mtime_ns
    shapes_coco_dataset(root, "train", num_train=4, num_val=2, image_size=64, seed=3)  # reused, not rewritten
    assert (root / "generation.json").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shapes-")], "staging folder left behind"
    with pytest.raises(ValueError, match="generated with"):
        shapes_coco_dataset(root, "train", num_train=5, num_val=2, image_size=64, seed=3)


# --- size and count parameters (the large-image variant of tools/make_shapes_dataset.py --large) ---

def test_default_output_is_unchanged_by_the_new_parameters(tmp_path: Path) -> None:
    """Pinned digests of the renderer's arrays and of the COCO json, taken before ``min_objects``
    and the windowed occlusion were added: the default data is byte for byte what it was."""
    import hashlib

    digest = hashlib.sha256()
    for i in range(6):
        image, instances = render_shapes_image(np.random.default_rng([7, i]), (96, 128))
        digest.update(image.tobytes())
        for instance in instances:
            digest.update(repr((instance.label, instance.color, instance.box)).encode())
            digest.update(instance.mask.tobytes())
    assert digest.hexdigest() == "ef8421ec23044ff2306495685a45088e467e2c3096bdd98bf7675334c5ec51d2"
    paths = generate_shapes_dataset(tmp_path, 4, 2, (96, 128), seed=3)
    json_bytes = paths.coco_json("train").read_bytes() + paths.coco_json("val").read_bytes()
    assert hashlib.sha256(json_bytes).hexdigest() == "171e3e9160e4c21027b935e3998b9842f18523e935d08b7963d0848c6f527727"


def test_min_objects_and_pixel_sizes_give_many_small_shapes() -> None:
    for seed in range(3):
        image, instances = render_shapes_image(np.random.default_rng(seed), (512, 512), max_objects=30,
                                               size_range=(5 / 512, 16 / 512), min_visible_area=20,
                                               min_objects=25)
        assert 20 <= len(instances) <= 30  # 25 to 30 drawn, a few may be hidden
        masks = np.stack([instance.mask for instance in instances]).astype(bool)
        assert masks.sum(axis=0).max() <= 1  # occlusion still exact with the windowed update
        for instance in instances:
            x1, y1, x2, y2 = instance.box
            assert max(x2 - x1, y2 - y1) <= 33 and int(instance.mask.sum()) >= 20
            assert np.unique(image[instance.mask.astype(bool)], axis=0).shape[0] == 1
    with pytest.raises(ValueError, match="min_objects must be in \\[1, max_objects = 6\\], got 7"):
        render_shapes_image(np.random.default_rng(0), min_objects=7)
    with pytest.raises(ValueError, match="min_objects"):
        generate_shapes_dataset("unused", 1, 1, min_objects=0)


def test_command_line_tool_large_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = runpy.run_path(str(REPO / "tools" / "make_shapes_dataset.py"))
    # the --large settings (40-60 shapes of 5-16 px radius) on a smaller image, for speed
    tool["main"](["--large", "--out", str(tmp_path / "large"), "--num-val", "1", "--image-size", "512"])
    assert "wrote 0 train + 1 val images of 512x512" in capsys.readouterr().out
    coco = COCO(str(tmp_path / "large" / "annotations" / "instances_val.json"))
    sides = [max(a["bbox"][2], a["bbox"][3]) for a in coco.dataset["annotations"]]
    assert len(sides) >= 30 and max(sides) <= 33 and min(sides) >= 4
    assert all(a["area"] < 32 ** 2 for a in coco.dataset["annotations"])  # COCO "small", every one
    with pytest.raises(SystemExit):
        tool["main"](["--large"])  # no output folder


def test_centre_margin_zero_lets_shapes_be_cut_by_the_border():
    def touching(margin: float) -> int:
        count = 0
        for index in range(40):
            _, instances = render_shapes_image(np.random.default_rng(index), (128, 128), centre_margin=margin)
            for instance in instances:
                ys, xs = np.nonzero(instance.mask)
                count += int(xs.min() == 0 or ys.min() == 0 or xs.max() == 127 or ys.max() == 127)
        return count

    assert touching(0.0) > 2 * touching(0.1)
    with pytest.raises(ValueError, match="centre_margin must be in"):
        render_shapes_image(np.random.default_rng(0), (64, 64), centre_margin=0.5)
