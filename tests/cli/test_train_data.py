"""``detkit train MODEL --data DATASET [--weights CKPT]``: one training step of an R-CNN, an SSD and a
YOLO zoo config on 2-class data (the configs have 3), in each of the three formats; fine-tuning
from a checkpoint with another class count; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detkit.cli import main as cli_main
from own_data_layouts import OwnDataFolders, write_own_data

TWO = ("circle", "triangle")
COMMON = ["train.max_iter=1", "train.progress_bar=False", "train.device='cpu'", "train.checkpoint_period=1"]
SMALL = {  # tiny inputs, batch 2
    "faster_rcnn_r18_fpn_1x_shapes": ["dataloader.train.batch_size=2", "model.preprocess.min_size=64",
                                      "model.preprocess.max_size=64"],
    "ssdlite320_mobilenetv3_shapes": ["dataloader.train.batch_size=2", "model.image_size=(160, 160)"],
    "yolov3_tiny_320_shapes": ["dataloader.train.batch_size=2", "model.input_size=(64, 64)", "model.train_sizes=(64,)",
                               "dataloader.train.dataset.output_size=64", "dataloader.train.dataset.transforms.size=64"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> OwnDataFolders:
    return write_own_data(tmp_path_factory.mktemp("own"), num_train=4, num_val=2, image_size=64, class_names=TWO)


def _train(config: str, data: Path, out: Path, *extra: str) -> int:
    return cli_main(["train", config, "--data", str(data), "--output-dir", str(out), *extra, *COMMON, *SMALL[config]])


@pytest.mark.parametrize("config,fmt", [
    ("faster_rcnn_r18_fpn_1x_shapes", "voc"),
    ("ssdlite320_mobilenetv3_shapes", "coco"),
    ("yolov3_tiny_320_shapes", "yolo"),
])
def test_one_step_on_own_data(data: OwnDataFolders, tmp_path: Path, config: str, fmt: str) -> None:
    out = tmp_path / "run"
    assert _train(config, getattr(data, fmt), out) == 0
    checkpoint = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert checkpoint["iteration"] == 1
    assert checkpoint["class_names"] == list(TWO)  # from the data, not the config's three shapes
    assert checkpoint["model_config"]["num_classes"] == 2
    assert "described_dataset" in (out / "config.py").read_text()
    metrics = (out / "metrics.jsonl").read_text()
    assert '"type": "eval"' in metrics  # evaluated on the val split with the evaluator it calls for
    assert ("voc07/mAP@0.5" if fmt == "voc" else "bbox/AP50") in metrics


def test_fine_tuning_reports_the_resized_head(data: OwnDataFolders, tmp_path: Path) -> None:
    three = write_own_data(tmp_path / "three", num_train=4, num_val=2, image_size=64)
    assert _train("yolov3_tiny_320_shapes", data.yolo, tmp_path / "two_class") == 0
    weights = tmp_path / "two_class" / "model_final.pth"
    out = tmp_path / "fine_tuned"
    assert _train("yolov3_tiny_320_shapes", three.yolo, out, "--weights", str(weights)) == 0
    report = json.loads((out / "init_report.json").read_text())
    assert report["resized_layers"] == ["head.preds.0", "head.preds.1"]  # 3 anchors x (5 + classes) outputs
    assert {r["key"] for r in report["resized"]} == {f"head.preds.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    assert report["new"] == [] and report["unused"] == [] and report["loaded"] > 50
    assert "resized, freshly initialised" in (out / "log.txt").read_text()
    assert torch.load(out / "model_final.pth", weights_only=True)["class_names"] == list(three.class_names)


@pytest.mark.parametrize("args,message", [
    (["--data", "no/such/folder"], "--data no/such/folder: no such file or folder"),
    (["--weights", "no/such.pth"], "--weights no/such.pth: no such checkpoint file"),
])
def test_bad_arguments_are_one_line(data: OwnDataFolders, tmp_path: Path, capsys: pytest.CaptureFixture,
                                    args: list[str], message: str) -> None:
    if "--data" not in args:
        args = [*args, "--data", str(data.coco)]
    status = cli_main(["train", "ssdlite320_mobilenetv3_shapes", *args, "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after any log line of an earlier test's handler
    assert status == 2 and err.startswith("detkit train: error: ") and message in err
    assert not (tmp_path / "r").exists()
