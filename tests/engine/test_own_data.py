"""``use_own_data``: a zoo config's base datasets become the described ones (pipelines and wrappers
kept), the classes come from the data, the evaluator follows the test dataset; the fine-tuning
report names what was loaded, resized, left new and unused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from detkit.config import L, instantiate, load_config
from detkit.data import described_dataset
from detkit.data.mosaic import MosaicDataset
from detkit.engine.evaluation import config_evaluator
from detkit.engine.model_setup import init_report_data, init_report_text, load_init_checkpoint, write_init_report
from detkit.engine.own_data import base_dataset_slot, use_own_data
from detkit.evaluation import CocoEvaluator, VOCEvaluator, evaluate
from engine_helpers import REPO_ROOT
from own_data_layouts import OwnDataFolders, write_own_data

CONFIGS = REPO_ROOT / "configs"
TWO = ("circle", "triangle")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> OwnDataFolders:
    return write_own_data(tmp_path_factory.mktemp("own"), num_train=4, num_val=2, image_size=64, class_names=TWO)


def test_yolo_mosaic_wrapper_and_pipelines_are_kept(folders: OwnDataFolders) -> None:
    cfg = load_config(CONFIGS / "yolo" / "yolov3_tiny_320_shapes.py")
    mosaic_transforms = cfg.dataloader.train.dataset.transforms
    test_transforms = cfg.dataloader.test.dataset.transforms
    use_own_data(cfg, folders.yolo)
    train = cfg.dataloader.train.dataset
    assert train._target_ is MosaicDataset and train.transforms is mosaic_transforms  # the wrapper stays
    assert train.dataset._target_ is described_dataset and train.dataset.split == "train"
    assert train.dataset.transforms is None  # the mosaic runs the pipeline
    assert cfg.dataloader.test.dataset._target_ is described_dataset
    assert cfg.dataloader.test.dataset.split == "val" and cfg.dataloader.test.dataset.transforms is test_transforms
    assert cfg.model.num_classes == 2 and cfg.model.class_names == list(TWO)
    assert cfg.evaluator == {} and cfg.train.output_dir == "runs/yolov3_tiny_320_shapes-yolo"
    assert base_dataset_slot(cfg.dataloader.train, "x") == (train, "dataset")
    built = instantiate(cfg.dataloader.train.dataset, "dataloader.train.dataset")
    assert isinstance(built, MosaicDataset) and built.class_names == list(TWO) and len(built) == 4


@pytest.mark.parametrize("name,data,evaluator,best", [
    ("faster_rcnn/faster_rcnn_r18_fpn_1x_shapes", "voc", VOCEvaluator, "voc07/mAP@0.5"),
    ("ssd/ssdlite320_mobilenetv3_shapes", "coco", CocoEvaluator, "bbox/AP50"),
])
def test_rcnn_and_ssd_configs(folders: OwnDataFolders, name: str, data: str, evaluator: type, best: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.py")
    train_transforms = cfg.dataloader.train.dataset.transforms
    use_own_data(cfg, getattr(folders, data))
    node = cfg.dataloader.train.dataset
    assert node._target_ is described_dataset and node.transforms is train_transforms
    assert cfg.model.num_classes == 2 and cfg.train.best_metric == best
    test_set = instantiate(cfg.dataloader.test.dataset, "dataloader.test.dataset")
    assert type(config_evaluator(cfg, test_set)) is evaluator
    model = instantiate(cfg.model, "model")
    assert model.num_classes == 2 and list(model.class_names) == list(TWO)


def test_without_validation_there_is_no_evaluation(folders: OwnDataFolders, tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"format": "coco", "root": str(folders.coco), "val_fraction": 0,
                                "train": {"images": "train", "annotations": "annotations/instances_train.json"}}))
    cfg = load_config(CONFIGS / "ssd" / "ssdlite320_mobilenetv3_shapes.py")
    use_own_data(cfg, path)
    assert "test" not in cfg.dataloader and cfg.evaluator is None
    assert cfg.train.best_metric is None and cfg.train.patience is None


def test_a_model_without_classes_is_refused(folders: OwnDataFolders) -> None:
    cfg = load_config(CONFIGS / "ssd" / "ssdlite320_mobilenetv3_shapes.py")
    cfg.model = L(nn.Linear)(in_features=2, out_features=3)  # no classes to set
    with pytest.raises(ValueError, match="model has no num_classes key"):
        use_own_data(cfg, folders.coco)


def test_yolo_txt_is_scored_from_its_targets(folders: OwnDataFolders) -> None:
    """The evaluator of YOLO data (no json): COCO AP from the targets; the targets score 1."""
    dataset = described_dataset(folders.yolo, "val")
    evaluator = config_evaluator({"evaluator": {}}, dataset)
    assert isinstance(evaluator, CocoEvaluator) and evaluator.coco_gt is None

    class Oracle(nn.Module):
        num_classes, class_names = 2, list(TWO)

        def forward(self, images, targets=None):
            found = [dict(t) for t in self.answers[:len(images)]]
            del self.answers[:len(images)]
            return [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
                    for t in found], {}

    oracle = Oracle()
    oracle.answers = [dataset.get_target(i) for i in range(len(dataset))]
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=lambda b: tuple(zip(*b)))
    metrics = evaluate(oracle, loader, evaluator, progress=False)
    assert metrics["bbox/AP50"] == pytest.approx(1.0)


class _Net(nn.Module):
    def __init__(self, classes: int, extra: bool = False) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.cls_head = nn.Linear(8, classes)
        if extra:
            self.new_branch = nn.Linear(8, 2)


def test_init_report_names_loaded_resized_new_and_unused(tmp_path: Path) -> None:
    source = _Net(3)
    source.old_branch = nn.Linear(8, 1)
    checkpoint = tmp_path / "source.pth"
    torch.save({"model": source.state_dict()}, checkpoint)
    target = _Net(5, extra=True)
    report = load_init_checkpoint(target, checkpoint)
    assert torch.equal(target.body.weight, source.body.weight)  # what fits is loaded
    data = init_report_data(report)
    assert data["loaded"] == 2 and data["loaded_keys"] == ["body.weight", "body.bias"]
    assert data["resized_layers"] == ["cls_head"]
    assert data["resized"][0] == {"key": "cls_head.weight", "checkpoint_shape": [3, 8], "model_shape": [5, 8]}
    assert data["new"] == ["new_branch.weight", "new_branch.bias"]
    assert data["unused"] == ["old_branch.weight", "old_branch.bias"]
    text = init_report_text(report)
    assert "loaded 2 of the model's 6 tensors" in text and "layers cls_head" in text
    assert "left new (not in the checkpoint, 2): new_branch.weight" in text and "unused (" in text
    written = write_init_report(report, tmp_path / "run")
    assert json.loads(written.read_text()) == data
