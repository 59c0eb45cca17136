"""A dataset whose classes are not the model's (order, subset, names) stops training and evaluation
before any work, with the difference in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.config import load_config
from detkit.data import SHAPE_CLASSES
from detkit.engine import build_trainer, evaluate_config
from detkit.engine.class_check import ClassMismatchError, check_classes, class_names_diff

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "yolo" / "yolov3_tiny_320_shapes.py"


def _config(root: Path, out: Path, *model_overrides: str):
    """YOLOv3-tiny on 4 generated 64 px shapes images (circle, square, triangle)."""
    cfg = load_config(CONFIG)
    return load_config(CONFIG, [
        *cfg.test_overrides, f"dataloader.root='{root}'", "dataloader.num_train=4", "dataloader.num_val=2",
        "dataloader.image_size=64", "dataloader.train.batch_size=2", "dataloader.train.dataset.output_size=64",
        "dataloader.train.dataset.transforms.size=64", "train.device='cpu'", "train.progress_bar=False",
        f"train.output_dir='{out}'", *model_overrides,
    ])


def test_the_diff_says_what_differs():
    assert class_names_diff(["a", "b"], ["a", "b"]) == ""
    assert class_names_diff(["a", "b", "c"], ["b", "a", "c"]) == (
        "the same names in another order: label 0 is 'a' for the model, 'b' for the dataset, "
        "label 1 is 'b' for the model, 'a' for the dataset")
    assert class_names_diff(["a", "x"], ["a", "b"]) == "only the model has 'x'; only the dataset has 'b'"


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.class_names=['square', 'circle', 'triangle']"], r"dataloader\.train .*the same names in another order: "
                                                             r"label 0 is 'square' for the model, 'circle'"),
    (["model.num_classes=2", "model.class_names=['circle', 'square']"], r"only the dataset has 'triangle'"),
    (["model.num_classes=4", "model.class_names=None"], r"the dataset has 3 classes .* but the model has num_classes=4"),
])
def test_training_on_a_dataset_with_other_classes_stops_before_any_work(tmp_path: Path, overrides, message):
    cfg = _config(tmp_path / "shapes", tmp_path / "run", *overrides)
    with pytest.raises(ClassMismatchError, match=message):
        build_trainer(cfg)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("*.pth"))


def test_evaluating_on_a_dataset_with_other_classes_stops_before_any_work(tmp_path: Path):
    cfg = _config(tmp_path / "shapes", tmp_path / "run", "model.class_names=['circle', 'triangle', 'square']")
    with pytest.raises(ClassMismatchError, match=r"dataloader\.test .*label 1 is 'triangle' for the model"):
        evaluate_config(cfg, progress=False)


def test_matching_classes_and_unnamed_datasets_pass(tmp_path: Path):
    class Model:
        num_classes, class_names = 3, list(SHAPE_CLASSES)

    class Unnamed:
        pass

    class Named:
        class_names = SHAPE_CLASSES

    check_classes(Model(), Named(), "data")
    check_classes(Model(), Unnamed(), "data")  # nothing to compare with
    Model.class_names = None
    check_classes(Model(), Named(), "data")  # the count agrees
