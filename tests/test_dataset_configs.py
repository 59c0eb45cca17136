"""Every COCO / VOC experiment config reads its data and evaluates: on a tiny shapes dataset laid out
as COCO and as VOCdevkit, its train and test loaders are built through ``detkit.config`` and its
evaluator through the engine (from the test dataset) exactly as the engine builds them, and one
batch of each is checked. Pointing a config at the folder takes one override, ``dataloader.root``
(plus ``dataloader.class_names`` for VOC's class list); batch size and worker count are shrunk.

The shapes generator writes COCO json, VOC xml and exact masks (:mod:`detkit.data.shapes`); the
fixture renames and copies them into the two layouts (VOC's JPEGImages hold the PNG bytes under a
``.jpg`` name: OpenCV decodes by content) and writes VOC's palette ``SegmentationObject`` PNGs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from detkit.config import Inherit, InstantiationError, instantiate, load_config, save_config
from detkit.data import SHAPE_CLASSES, DatasetError, generate_shapes_dataset
from detkit.data.coco import coco_segmentation_to_mask
from detkit.data.concat import ConcatDetection
from detkit.data.voc import VOCDetection
from detkit.evaluation import CocoEvaluator, VOCEvaluator
from detkit.engine import config_evaluator
from detkit.engine.runner import REQUIRED_SECTIONS
from detkit.engine.settings import TrainSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p
    for p in (REPO_ROOT / "configs").glob("*/*.py")
    if p.parent.name != "common" and (p.stem.endswith("_coco") or p.stem.endswith("_voc"))
)
IDS = [f"{p.parent.name}/{p.stem}" for p in CONFIGS]
NAMES = list(SHAPE_CLASSES)
PERSON_KEYPOINTS = 17  # COCO's person: what the Keypoint R-CNN COCO config's head predicts


def _class_names(path: Path) -> list[str]:
    """The class list a config's data has in the fixture: COCO persons for Keypoint R-CNN."""
    return ["person"] if path.parent.name == "keypoint_rcnn" else NAMES


def _person_keypoints_json(data: dict) -> dict:
    """A shapes json made a COCO person_keypoints json: one ``person`` class with 17 keypoints,
    each object's labelled shape corners first, then its box centre for the remaining ones
    (visible), so every annotation has a full keypoint set."""
    names = [f"kp{i}" for i in range(PERSON_KEYPOINTS)]
    annotations = []
    for annotation in data["annotations"]:
        x, y, w, h = annotation["bbox"]
        corners = [annotation["keypoints"][i:i + 3] for i in range(0, len(annotation["keypoints"]), 3)]
        points = [c for c in corners if c[2] > 0]
        points += [[x + w / 2, y + h / 2, 2]] * (PERSON_KEYPOINTS - len(points))
        annotations.append(dict(annotation, category_id=1, num_keypoints=PERSON_KEYPOINTS,
                                keypoints=[float(v) for point in points for v in point]))
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": names, "skeleton": [[1, 2]]}
    return dict(data, categories=[category], annotations=annotations)


def _write_palette_png(path: Path, indices: np.ndarray) -> None:
    from PIL import Image

    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), np.ascontiguousarray(indices).tobytes())
    image.putpalette([0, 0, 0] + [128, 64, 0] * 254 + [224, 224, 192])  # VOC-like: 255 is "void"
    image.save(path)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"coco": <coco root>, "voc": <VOCdevkit>}`` holding 4 train and 2 val shapes images."""
    base = tmp_path_factory.mktemp("datasets")
    shapes = generate_shapes_dataset(base / "shapes", num_train=4, num_val=2, image_size=(96, 128), seed=3,
                                     with_keypoints=True)

    coco = base / "coco"
    (coco / "annotations").mkdir(parents=True)
    for split, coco_split in (("train", "train2017"), ("val", "val2017")):
        data = json.loads(shapes.coco_json(split).read_text())
        shutil.copy(shapes.coco_json(split), coco / "annotations" / f"instances_{coco_split}.json")
        (coco / "annotations" / f"person_keypoints_{coco_split}.json").write_text(
            json.dumps(_person_keypoints_json(data)))
        (coco / coco_split).mkdir()
        for image in data["images"]:
            shutil.copy(shapes.image_dir / image["file_name"], coco / coco_split / image["file_name"])

    voc = base / "VOCdevkit"
    for year in ("VOC2007", "VOC2012"):
        root = voc / year
        shutil.copytree(shapes.root / "Annotations", root / "Annotations")
        for folder in ("JPEGImages", "SegmentationObject", "ImageSets/Main", "ImageSets/Segmentation"):
            (root / folder).mkdir(parents=True)
        for split, main_split, seg_split in (("train", "trainval", "train"), ("val", "test", "val")):
            ids = shapes.image_set(split).read_text()
            (root / "ImageSets" / "Main" / f"{main_split}.txt").write_text(ids)
            (root / "ImageSets" / "Segmentation" / f"{seg_split}.txt").write_text(ids)
            data = json.loads(shapes.coco_json(split).read_text())
            for image in data["images"]:
                stem = Path(image["file_name"]).stem
                shutil.copy(shapes.image_dir / image["file_name"], root / "JPEGImages" / f"{stem}.jpg")
                # Object k of the xml is annotation k of the image (the generator writes both from
                # one list): PNG value k + 1, as VOC's SegmentationObject.
                indices = np.zeros((image["height"], image["width"]), dtype=np.uint8)
                annotations = [a for a in data["annotations"] if a["image_id"] == image["id"]]
                for k, annotation in enumerate(annotations):
                    mask = coco_segmentation_to_mask(annotation["segmentation"], image["height"], image["width"])
                    indices[mask == 1] = k + 1
                _write_palette_png(root / "SegmentationObject" / f"{stem}.png", indices)
    return {"coco": coco, "voc": voc}


def _dataset_nodes(cfg) -> dict[str, object]:
    """The dataset node under each loader (through wrappers such as a mosaic)."""
    nodes = {}
    for loader in ("train", "test"):
        node = cfg.dataloader[loader].dataset
        while "root" not in node:
            node = node["dataset"]
        nodes[loader] = node
    return nodes


def _load_on(path: Path, roots: dict[str, Path]):
    """The config with its data pointed at the generated dataset, as a user would on the command line."""
    kind = "coco" if path.stem.endswith("_coco") else "voc"
    overrides = ["dataloader.train.batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
                 f"dataloader.root='{roots[kind]}'"]
    if kind == "voc":
        overrides.append(f"dataloader.class_names={NAMES}")
    return load_config(path, overrides)


def _check_batch(images, targets, num_classes: int, with_masks: bool, where: str,
                 names: list[str] = NAMES, num_keypoints: int = 0) -> None:
    assert len(images) == len(targets) > 0, where
    for image, target in zip(images, targets):
        assert image.dtype == torch.float32 and image.dim() == 3 and image.shape[0] == 3, where
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, where
        height, width = image.shape[-2:]
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(labels), 4), where
        assert labels.dtype == torch.int64, where
        if len(boxes):
            assert float(boxes[:, 0::2].min()) >= 0 and float(boxes[:, 0::2].max()) <= width, where
            assert float(boxes[:, 1::2].min()) >= 0 and float(boxes[:, 1::2].max()) <= height, where
            assert bool((boxes[:, 2:] > boxes[:, :2]).all()), where
            assert 0 <= int(labels.min()) and int(labels.max()) < min(num_classes, len(names)), where
        if num_keypoints:
            keypoints = target["keypoints"]
            assert keypoints.dtype == torch.float32 and keypoints.shape == (len(boxes), num_keypoints, 3), where
            visible = keypoints[..., 2] > 0
            assert bool(visible.all()), where  # the fixture labels every keypoint
        if with_masks:
            masks = target["masks"]
            assert masks.dtype == torch.uint8 and masks.shape == (len(boxes), height, width), where
            for mask, box in zip(masks.bool(), boxes):  # the masks follow their boxes (shapes: box = mask bbox)
                ys, xs = torch.nonzero(mask, as_tuple=True)
                mask_box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
                torch.testing.assert_close(mask_box, box, atol=1e-3, rtol=0, msg=where)


def test_there_are_dataset_configs() -> None:
    assert len(CONFIGS) >= 14, [p.name for p in CONFIGS]


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_loads_as_a_training_config(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    assert all(section in cfg for section in REQUIRED_SECTIONS)
    assert "evaluator" not in cfg  # the engine builds it from dataloader.test
    assert isinstance(cfg.dataloader.root, str)
    assert {"train", "test"} <= set(cfg.dataloader)
    settings = TrainSettings.from_config(dict(cfg.train, hooks=[]), str(path))
    assert settings.output_dir == f"runs/{path.stem}"
    assert (settings.max_iter is None) != (settings.max_epochs is None)
    save_config(cfg, tmp_path / "config.py")  # what the engine writes into the run folder
    assert set(load_config(tmp_path / "config.py")) == set(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_reads_and_evaluates_its_dataset(path: Path, roots: dict[str, Path]) -> None:
    cfg = _load_on(path, roots)
    num_classes = int(cfg.model["num_classes"] if "num_classes" in cfg.model else cfg.model.head.num_classes)
    with_masks = path.parent.name == "mask_rcnn"
    names = _class_names(path)
    num_keypoints = PERSON_KEYPOINTS if path.parent.name == "keypoint_rcnn" else 0
    kinds = dict(names=names, num_keypoints=num_keypoints)
    train_loader = instantiate(cfg.dataloader.train)
    assert list(train_loader.dataset.dataset.class_names) == names  # the loader wraps it in SeededSamples
    images, targets = next(iter(train_loader))
    _check_batch(images, targets, num_classes, with_masks, f"{path.stem} train", **kinds)
    if path.parent.name in ("ssd", "yolo"):  # fixed-size training inputs
        size = 512 if "512" in path.stem else 320 if "ssdlite" in path.stem else 300 if "ssd" in path.stem else 416
        assert all(tuple(image.shape[-2:]) == (size, size) for image in images), path.stem

    # Evaluation: the images as they are; predictions equal to the ground truth score 1.
    test_loader = instantiate(cfg.dataloader.test)
    assert str(_base(test_loader.dataset).source).startswith(str(roots["coco" if "coco" in path.stem else "voc"]))
    evaluator = config_evaluator(cfg, test_loader.dataset)
    if "voc" in path.stem and not with_masks:
        assert isinstance(evaluator, VOCEvaluator) and evaluator.class_names == NAMES
    else:
        assert isinstance(evaluator, CocoEvaluator)
        if "coco" in path.stem:  # the test split's own json: official ground truth
            json_name = "person_keypoints_val2017.json" if num_keypoints else "instances_val2017.json"
            assert Path(evaluator.annotation_file) == roots["coco"] / "annotations" / json_name
    evaluator.reset()
    for images, targets in test_loader:
        _check_batch(images, targets, num_classes, with_masks, f"{path.stem} test", **kinds)
        for image, target in zip(images, targets):
            assert tuple(image.shape[-2:]) == tuple(target["orig_size"]) == (96, 128)
        predictions = [
            dict(boxes=t["boxes"], labels=t["labels"], scores=torch.ones(len(t["labels"])),
                 **({"masks": t["masks"].float()} if with_masks else {}),
                 **({"keypoints": t["keypoints"], "keypoint_scores": torch.ones(t["keypoints"].shape[:2])}
                    if num_keypoints else {}))
            for t in targets
        ]  # fmt: skip
        evaluator.process(targets, predictions)
    metrics = evaluator.evaluate()
    if "voc" in path.stem and not with_masks:
        assert metrics["voc07/mAP@0.5"] == pytest.approx(1.0) and metrics["voc12/mAP@0.5"] == pytest.approx(1.0)
    else:
        assert metrics["bbox/AP"] == pytest.approx(1.0)
        if with_masks:
            assert metrics["segm/AP"] == pytest.approx(1.0)
        if num_keypoints:  # the evaluator added OKS AP because the predictions carry keypoints
            assert metrics["keypoints/AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["coco", "voc"])
@pytest.mark.parametrize("key", ["dataloader.root", "dataloader.train.dataset.root"])
def test_missing_root_names_the_path(kind: str, key: str, tmp_path: Path) -> None:
    path = REPO_ROOT / "configs" / "faster_rcnn" / f"faster_rcnn_r50_fpn_1x_{kind}.py"
    missing = tmp_path / "nowhere"
    cfg = load_config(path, [f"{key}='{missing}'"])
    with pytest.raises(InstantiationError, match="dataloader.train.dataset") as error:
        instantiate(cfg.dataloader.train)
    assert isinstance(error.value.__cause__, FileNotFoundError) and str(missing) in str(error.value)


def test_one_root_key_moves_both_datasets_through_yolos_mosaic(tmp_path: Path) -> None:
    path = REPO_ROOT / "configs" / "yolo" / "yolov3_tiny_320_shapes.py"
    small = ["dataloader.num_train=4", "dataloader.num_val=2", "dataloader.image_size=64", "dataloader.train.batch_size=2"]
    cfg = load_config(path, [f"dataloader.root='{tmp_path / 'shapes'}'", *small])
    nodes = _dataset_nodes(cfg)
    assert nodes["train"] is cfg.dataloader.train.dataset.dataset  # inside the mosaic
    assert nodes["train"].root == nodes["test"].root == Inherit("root")
    for loader in ("train", "test"):
        dataset = _base(instantiate(cfg.dataloader[loader]).dataset)
        assert Path(dataset.source).is_relative_to(tmp_path / "shapes"), (loader, dataset.source)


def _base(dataset):
    while not hasattr(dataset, "source") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset


def test_concat_detection_joins_parts_and_rejects_other_class_lists(roots: dict[str, Path]) -> None:
    parts = [VOCDetection(roots["voc"] / year, "trainval", class_names=NAMES) for year in ("VOC2007", "VOC2012")]
    joined = ConcatDetection(parts)
    assert len(joined) == 8 and joined.image_ids == parts[0].image_ids + parts[1].image_ids
    torch.testing.assert_close(joined[5][1]["boxes"], parts[1][1][1]["boxes"])
    torch.testing.assert_close(joined.get_target(-1)["boxes"], parts[1].get_target(3)["boxes"])
    reordered = VOCDetection(roots["voc"] / "VOC2012", "trainval", class_names=NAMES[::-1])
    with pytest.raises(DatasetError, match="part 1"):
        ConcatDetection([parts[0], reordered])
