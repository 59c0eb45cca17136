"""The one Python API: train with ``run_training``, reload with ``load`` (no config path), evaluate with
``evaluate_config``; checkpoints that are truncated, foreign or unsafe fail naming the path or key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detkit.config import UnsafeConfigError, config_from_data, load_config
from detkit.data import SHAPE_CLASSES
from detkit.engine import evaluate_config, run_training
from detkit.model_zoo import CheckpointError, load, read_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "yolo" / "yolov3_tiny_320_shapes.py"


def _tiny_run_overrides(root: Path, out: Path) -> list[str]:
    """YOLOv3-tiny on 8 generated 64 px shapes images, 3 steps on the CPU, one evaluation at the end."""
    return [
        *load_config(CONFIG).test_overrides, f"dataloader.root='{root}'", "dataloader.num_train=8",
        "dataloader.num_val=2", "dataloader.image_size=64", "dataloader.train.batch_size=2",
        "dataloader.train.dataset.output_size=64", "dataloader.train.dataset.transforms.size=64",
        "model.head.score_thresh=0.0", "train.max_iter=3", "train.eval_period=0", "train.checkpoint_period=0",
        "train.device='cpu'", "train.progress_bar=False", "train.log_period=1", f"train.output_dir='{out}'",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    trainer = run_training(CONFIG, overrides=_tiny_run_overrides(base / "shapes", base / "run"))
    return trainer, base / "run"


def test_trained_model_reloads_from_its_checkpoint_alone(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    trainer, run_dir = trained
    checkpoint = read_checkpoint(run_dir / "model_final.pth")
    assert checkpoint["class_names"] == list(SHAPE_CLASSES)
    assert checkpoint["model_config"]["_target_"] == "detkit.models.detectors.yolo:YOLOv3"
    assert checkpoint["model_config"]["head"]["num_classes"] == {"_inherit_": "num_classes"}

    monkeypatch.chdir(tmp_path)  # no checkout, no config file at hand
    model = load(run_dir / "model_final.pth")
    assert not model.training and model.class_names == list(SHAPE_CLASSES)
    reference = trainer.unwrapped_model.eval()
    images = [torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1)), torch.rand(3, 48, 64)]
    with torch.no_grad():
        expected, _ = reference(images)
        got, _ = model(images)
    assert sum(len(p["boxes"]) for p in expected) > 0
    for a, b in zip(expected, got):
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=0, atol=0)
        torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=0)
        assert torch.equal(a["labels"], b["labels"])


def test_evaluate_config_scores_the_checkpoint_on_the_test_loader(trained, tmp_path: Path):
    _, run_dir = trained
    overrides = [o for o in _tiny_run_overrides(run_dir.parent / "shapes", run_dir) if o.startswith(("dataloader", "model"))]
    cfg = load_config(CONFIG, overrides)
    report = evaluate_config(cfg, run_dir / "model_final.pth", device="cpu", output_dir=tmp_path / "eval",
                             progress=False)
    assert {"bbox/AP", "bbox/AP50"} <= set(report) and 0.0 <= report["bbox/AP50"] <= 1.0
    assert (tmp_path / "eval" / "metrics.json") in report.written and (tmp_path / "eval" / "metrics.json").is_file()
    assert "AP" in report.summary
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        evaluate_config(cfg, tmp_path / "nowhere.pth", device="cpu", progress=False)


def test_missing_truncated_and_foreign_checkpoints_name_the_path(trained, tmp_path: Path):
    _, run_dir = trained
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load(tmp_path / "missing.pth")
    data = (run_dir / "model_final.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*truncated\.pth"):
        load(tmp_path / "truncated.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text\.pth"):
        load(tmp_path / "text.pth")
    state = read_checkpoint(run_dir / "model_final.pth")
    torch.save(state["model"], tmp_path / "state_dict.pth")  # a bare state dict: no config
    with pytest.raises(CheckpointError, match=r"state_dict\.pth: not a self-contained detkit checkpoint"):
        load(tmp_path / "state_dict.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: it holds a list"):
        load(tmp_path / "list.pth")


def test_checkpoint_whose_weights_do_not_fit_its_config_names_the_path(trained, tmp_path: Path):
    _, run_dir = trained
    state = read_checkpoint(run_dir / "model_final.pth")
    state["model_config"].update(num_classes=5, class_names=None)
    torch.save(state, tmp_path / "mismatch.pth")
    with pytest.raises(CheckpointError, match=r"mismatch\.pth: the weights do not fit"):
        load(tmp_path / "mismatch.pth")


@pytest.mark.parametrize("target", ["os:system", "builtins:eval"])
def test_checkpoint_with_an_unsafe_target_is_refused_before_anything_runs(trained, tmp_path: Path, target: str):
    _, run_dir = trained
    state = read_checkpoint(run_dir / "model_final.pth")
    state["model_config"]["backbone"] = {"_target_": target, "command": "touch pwned"}
    torch.save(state, tmp_path / "unsafe.pth")
    with pytest.raises(UnsafeConfigError, match=rf"model\.backbone: refused target '{target}'"):
        load(tmp_path / "unsafe.pth")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    with pytest.raises(UnsafeConfigError):
        config_from_data(state["model_config"])
