"""detkit.model_zoo: the shipped configs by name, from any working directory; the darknet
architectures said once (the importer and the configs build the same modules)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detkit import model_zoo
from detkit.config import ConfigError, LazyCall, instantiate, load_config
from detkit.model_zoo import registry
from detkit.models.convert.darknet import build_yolov3_from_cfg
from detkit.models.detectors import FasterRCNN
from detkit.models.zoo import YOLO_DATA_DIR, YOLOV3_ARCHS, build_yolov3

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_list_configs_names_every_experiment_file_once() -> None:
    names = model_zoo.list_configs()
    files = sorted(p for p in REPO_CONFIGS.glob("*/*.py") if p.parent.name != "common")
    assert names == sorted(p.stem for p in files) and len(set(names)) == len(names)
    assert {"yolov3_tiny_416_coco", "faster_rcnn_r50_fpn_1x_coco", "mtcnn_facenet_pretrained"} <= set(names)
    assert "rcnn" not in names and "datasets" not in names  # the bases are not experiments


def test_get_config_by_name_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = model_zoo.get_config_file("yolov3_tiny_416_coco")
    assert path == REPO_CONFIGS / "yolo" / "yolov3_tiny_416_coco.py"
    assert model_zoo.get_config_file("yolo/yolov3_tiny_416_coco.py") == path
    cfg = model_zoo.get_config("yolov3_tiny_416_coco", ["model.num_classes=20", "model.class_names=None"])
    assert cfg.model.num_classes == 20 and isinstance(cfg.model.head, LazyCall)


def test_unknown_name_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(model_zoo.UnknownConfigError, match=r"'yolov3_tiny_416_cocco'; did you mean 'yolov3_tiny_416_coco'"):
        model_zoo.get_config_file("yolov3_tiny_416_cocco")
    with pytest.raises(model_zoo.UnknownConfigError, match="no model-zoo config named 'ssd/yolov3_tiny_416_coco'"):
        model_zoo.get_config_file("ssd/yolov3_tiny_416_coco")  # right name, wrong folder


def test_build_model_from_a_name_in_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = model_zoo.build_model("faster_rcnn_r50_fpn_1x_coco")
    assert isinstance(model, FasterRCNN) and model.num_classes == 80
    small = model_zoo.build_model("faster_rcnn_r50_fpn_1x_coco", ["model.num_classes=3"])
    assert small.roi_heads.box_predictor.cls_score.out_features == 4  # 3 classes + background


def test_build_model_from_a_path_a_config_or_a_node(tmp_path: Path) -> None:
    path = REPO_CONFIGS / "yolo" / "yolov3_tiny_320_shapes.py"
    expected = _shapes(model_zoo.build_model(path))
    cfg = load_config(path)
    assert _shapes(model_zoo.build_model(cfg)) == expected
    assert _shapes(model_zoo.build_model(cfg.model)) == expected
    assert model_zoo.build_model(cfg.model, ["model.num_classes=2", "model.class_names=['a', 'b']"]).num_classes == 2
    assert cfg.model.num_classes == 3  # overrides work on a copy
    with pytest.raises(ConfigError, match="defines no `model`"):
        model_zoo.build_model({"train": {}})


def test_the_packaged_configs_win_over_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = tmp_path / "model_zoo" / "configs"
    (packaged / "toy").mkdir(parents=True)
    (packaged / "common").mkdir()
    (packaged / "common" / "base.py").write_text("WIDTH = 7\n")
    (packaged / "toy" / "only_here.py").write_text("from configs.common.base import WIDTH\nwidth = WIDTH\n")
    monkeypatch.setattr(registry, "_PACKAGED", packaged)
    assert model_zoo.configs_dir() == packaged and model_zoo.list_configs() == ["only_here"]
    assert model_zoo.get_config("only_here").width == 7
    monkeypatch.setattr(registry, "_PACKAGED", tmp_path / "absent")
    assert model_zoo.configs_dir() == REPO_CONFIGS
    monkeypatch.setenv("DETKIT_CONFIGS", str(packaged))  # another tree, by environment
    assert model_zoo.list_configs() == ["only_here"]
    monkeypatch.setenv("DETKIT_CONFIGS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no detkit configs folder found"):
        model_zoo.list_configs()


def test_config_module_gives_the_factories_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rcnn = model_zoo.config_module("common.rcnn")
    model = instantiate(rcnn.faster_rcnn(num_classes=2, depth=18, min_size=64, max_size=96))
    assert model.num_classes == 2 and model.roi_heads.num_classes == 2


def test_load_of_a_zoo_name_without_weights_says_so() -> None:
    with pytest.raises(ValueError, match="'ssd300_vgg16_120e_coco' has no pretrained weights"):
        model_zoo.load("ssd300_vgg16_120e_coco")
    with pytest.raises(model_zoo.UnknownConfigError):
        model_zoo.load("no_such_model")


@pytest.mark.network
def test_load_of_a_pretrained_zoo_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = model_zoo.load("yolov3_tiny_coco_pretrained")
    assert not model.training and len(model.class_names) == 80 and model.class_names[0] == "person"


# ---------------------------------------------------------------- the darknet architectures, said once


@pytest.mark.parametrize("arch", sorted(YOLOV3_ARCHS))
def test_arch_tables_are_what_the_modules_report(arch: str) -> None:
    table = YOLOV3_ARCHS[arch]
    model = build_yolov3(arch, num_classes=3)
    assert {k: (s.channels, s.stride) for k, s in model.backbone.output_shape().items()} == dict(table.backbone_shapes)
    assert {k: (s.channels, s.stride) for k, s in model.neck.output_shape().items()} == dict(table.head_shapes)


@pytest.mark.parametrize(("arch", "cfg_name"), [("darknet53", "yolov3_d53_416_coco"), ("tiny", "yolov3_tiny_416_coco")])
def test_darknet_import_and_the_config_build_the_same_modules(arch: str, cfg_name: str) -> None:
    from_cfg = build_yolov3_from_cfg(YOLO_DATA_DIR / YOLOV3_ARCHS[arch].cfg_file)
    cfg = model_zoo.get_config(cfg_name)
    from_config = instantiate(cfg.model)
    assert _shapes(from_cfg) == _shapes(from_config)
    assert [type(m).__name__ for m in from_cfg.modules()] == [type(m).__name__ for m in from_config.modules()]
