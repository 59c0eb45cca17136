"""Tests for detkit.config: lazy calls, instantiate, load/override/save of Python config files."""

from __future__ import annotations

import copy
import importlib.util
import math
import pickle
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from config_toys import Recorder, ToyBackbone, ToyDetector, ToyHead, make_schedule
from torch import nn

from detkit.config import (
    ConfigDict,
    ConfigError,
    ConfigKeyError,
    Inherit,
    InstantiationError,
    L,
    LazyCall,
    UnsafeConfigError,
    apply_overrides,
    config_from_data,
    config_to_data,
    format_config,
    instantiate,
    load_config,
    save_config,
)

CONFIGS = Path(__file__).resolve().parent / "fixtures" / "configs"
SMALL = CONFIGS / "toy" / "toy_detector_small.py"


def _load_base_module() -> Any:
    """Import configs/common/toy_models.py by path, as a fresh module."""
    file = CONFIGS / "common" / "toy_models.py"
    spec = importlib.util.spec_from_file_location("_toy_models_base", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- L() and instantiate()


def test_L_records_the_call_without_making_it() -> None:
    calls: list[int] = []

    def build(x: int = 1) -> int:
        calls.append(x)
        return x * 10

    node = L(build)(x=2)
    assert isinstance(node, LazyCall) and isinstance(node, dict)
    assert node._target_ is build and node["_target_"] is build
    assert node.x == 2 and calls == []
    node.x = 3
    assert instantiate(node) == 30 and calls == [3]


def test_nested_nodes_are_attributes() -> None:
    node = L(ToyDetector)(backbone=L(ToyBackbone)(depth=2), heads=[])
    node.backbone.depth = 4
    node.backbone.width = 6
    assert node.backbone == {"_target_": ToyBackbone, "depth": 4, "width": 6}
    model = instantiate(node)
    assert len([m for m in model.backbone.body if isinstance(m, nn.Conv2d)]) == 4
    assert model.backbone.out_channels == 6


def test_instantiate_builds_nested_containers_and_fresh_objects() -> None:
    tree = {
        "model": L(ToyDetector)(
            backbone=L(ToyBackbone)(width=4),
            heads=[L(ToyHead)(in_channels=4, num_classes=k) for k in (2, 3)],
        ),
        "extras": (L(Recorder)(a=1), [L(make_schedule)(steps=(1, 2))], {"n": L(Recorder)(b=2)}),
        "plain": 5,
    }
    built = instantiate(tree)
    assert type(built) is dict and built["plain"] == 5
    model = built["model"]
    assert isinstance(model, ToyDetector) and isinstance(model.backbone, ToyBackbone)
    assert [h.cls.out_channels for h in model.heads] == [2, 3]
    recorder, schedules, inner = built["extras"]
    assert isinstance(recorder, Recorder) and recorder.kwargs == {"a": 1}
    assert schedules == [{"steps": [1, 2], "gamma": 0.1}]
    assert type(inner) is dict and inner["n"].kwargs == {"b": 2}

    again = instantiate(tree)
    assert again["model"] is not model and again["model"].backbone is not model.backbone
    p1, p2 = next(model.parameters()), next(again["model"].parameters())
    assert p1.data_ptr() != p2.data_ptr()
    assert isinstance(tree["model"], LazyCall)  # the config itself is untouched


def test_L_checks_keywords_against_the_signature() -> None:
    with pytest.raises(ConfigKeyError, match=r"ToyBackbone has no key 'deptth'; did you mean"):
        L(ToyBackbone)(deptth=3)
    with pytest.raises(TypeError, match="keyword arguments only"):
        L(ToyBackbone)(3)
    with pytest.raises(TypeError, match="callable"):
        L("detkit.models.ResNet")  # type: ignore[arg-type]


def test_attribute_typo_on_a_node_fails_and_leaves_it_unchanged() -> None:
    node = L(ToyBackbone)(depth=2)
    with pytest.raises(ConfigKeyError, match=r"ToyBackbone has no key 'deptth'; did you mean"):
        node.deptth = 5
    with pytest.raises(ConfigKeyError, match="'widht'.*'width'"):
        node["widht"] = 5
    with pytest.raises(AttributeError, match="'width'"):
        node.widht  # noqa: B018 (reading a missing key)
    assert dict(node) == {"_target_": ToyBackbone, "depth": 2}


def test_target_taking_kwargs_accepts_any_key() -> None:
    node = L(Recorder)(lr=0.1)
    node.anything = [1, 2]
    assert instantiate(node).kwargs == {"lr": 0.1, "anything": [1, 2]}


def test_constructor_error_names_the_key_path_and_keeps_the_cause() -> None:
    cfg = load_config(SMALL, ["model.backbone.depth=0"])
    expected = r"while building model\.backbone \(config_toys\.ToyBackbone\): ValueError"
    with pytest.raises(InstantiationError, match=expected) as info:
        instantiate(cfg.model)
    assert isinstance(info.value.__cause__, ValueError)
    assert "depth must be >= 1" in str(info.value)
    with pytest.raises(InstantiationError, match=r"model\.backbone"):
        instantiate(cfg)  # the whole config: the same path
    node = L(ToyDetector)(backbone=L(ToyBackbone)(depth=-1), heads=[])
    with pytest.raises(InstantiationError, match=r"building detector\.backbone"):
        instantiate(node, key="detector")


# ---------------------------------------------------------------- load_config


def test_load_config_returns_the_top_level_names() -> None:
    cfg = load_config(SMALL)
    assert set(cfg) == {"model", "train", "optimizer"}  # no modules, functions, _private
    assert cfg.model.backbone.depth == 3  # set by the child after calling the base
    assert cfg.model.heads[0].num_classes == 5  # a parameter of the base
    assert cfg.model.pixel_mean == (103.5, 116.3, 123.7)
    assert isinstance(cfg.train, ConfigDict) and cfg.train.max_iter == 10
    assert cfg.train.output_dir == "runs/toy_small"
    model = instantiate(cfg.model)
    assert isinstance(model, ToyDetector) and model.heads[0].cls.out_channels == 5
    # the test data's configs package does not stay in sys.modules after the load
    assert "configs.common.toy_models" not in sys.modules


def test_typo_in_a_config_file_names_file_line_key_and_suggestion() -> None:
    expected = r"typo_in_call\.py:\d+: .*ToyBackbone has no key 'deptth'; did you mean 'depth'"
    with pytest.raises(ConfigKeyError, match=expected):
        load_config(CONFIGS / "toy" / "typo_in_call.py")


def test_attribute_typo_in_a_child_config_names_file_and_line() -> None:
    expected = r"typo_in_attribute\.py:4: .*'widht'; did you mean 'width'"
    with pytest.raises(ConfigKeyError, match=expected):
        load_config(CONFIGS / "toy" / "typo_in_attribute.py")


def test_configs_package_next_to_the_file_wins_and_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = types.ModuleType("configs")  # e.g. the project's own configs package, imported first
    other.__path__ = []
    monkeypatch.setitem(sys.modules, "configs", other)
    cfg = load_config(SMALL)
    assert cfg.model.backbone.depth == 3
    assert sys.modules["configs"] is other


def test_relative_import_of_a_base() -> None:
    cfg = load_config(CONFIGS / "toy" / "relative_import.py")
    assert cfg.model.heads[0].num_classes == 2 and cfg.model.backbone.width == 4


def test_loaded_config_survives_deepcopy_and_pickle() -> None:
    cfg = load_config(SMALL)
    for clone in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert clone == cfg and isinstance(clone.model.backbone, LazyCall)
        with pytest.raises(ConfigKeyError, match=r"\(at model\.backbone\) has no key 'deptj'"):
            clone.model.backbone.deptj = 1
        clone.model.backbone.depth = 1
        assert cfg.model.backbone.depth == 3


def test_base_functions_return_independent_trees() -> None:
    base = _load_base_module()
    a, b = base.toy_detector(num_classes=4), base.toy_detector(num_classes=4)
    assert a == b and a is not b and a.backbone is not b.backbone and a.heads is not b.heads
    a.backbone.depth = 7
    a.heads.append(L(ToyHead)(in_channels=8, num_classes=1))
    assert b.backbone.depth == 2 and len(b.heads) == 1

    # a child that changes the base does not leak into another child, or into a second load
    small = load_config(SMALL)
    default = load_config(CONFIGS / "toy" / "toy_detector_default.py")
    assert small.model.backbone.depth == 3 and default.model.backbone.depth == 2
    again = load_config(SMALL)
    again.model.backbone.depth = 9
    assert small.model.backbone.depth == 3


# ---------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    ("override", "get", "expected"),
    [
        ("model.backbone.depth=4", lambda c: c.model.backbone.depth, 4),
        ("optimizer.lr=0.5", lambda c: c.optimizer.lr, 0.5),
        ("optimizer.lr=1e-3", lambda c: c.optimizer.lr, 1e-3),
        ("train.amp=True", lambda c: c.train.amp, True),
        ("train.steps=(10, 20, 30)", lambda c: c.train.steps, (10, 20, 30)),
        ("train.sizes=[256, 288]", lambda c: c.train.sizes, [256, 288]),
        ("train.output_dir=runs/x", lambda c: c.train.output_dir, "runs/x"),
        ("train.output_dir='a b'", lambda c: c.train.output_dir, "a b"),
        ("model.heads.0.num_classes=11", lambda c: c.model.heads[0].num_classes, 11),
        ("train.sizes.1=512", lambda c: c.train.sizes, [320, 512]),
        ("train.schedule.gamma=0.5", lambda c: c.train.schedule.gamma, 0.5),
        ("model.backbone.in_channels=1", lambda c: c.model.backbone.in_channels, 1),  # unset arg
        ("train.schedule=None", lambda c: c.train.schedule, None),  # a whole sub-tree
    ],
)
def test_overrides_are_parsed_as_literals(override: str, get: Any, expected: Any) -> None:
    cfg = load_config(SMALL, [override])
    value = get(cfg)
    assert value == expected and type(value) is type(expected)


def test_override_with_a_dict_becomes_a_config_dict() -> None:
    cfg = load_config(SMALL, ["train={'max_iter': 5, 'output_dir': 'r'}", "train.max_iter=6"])
    assert isinstance(cfg.train, ConfigDict) and cfg.train == {"max_iter": 6, "output_dir": "r"}


def test_override_of_a_missing_path_names_path_file_and_suggestions() -> None:
    expected = r"model\.backbone\.deptth=4.*toy_detector_small\.py.*'deptth'; did you mean 'depth'"
    with pytest.raises(ConfigError, match=expected):
        load_config(SMALL, ["model.backbone.deptth=4"])
    with pytest.raises(ConfigError, match=r"'modle'; did you mean 'model'"):
        load_config(SMALL, ["modle.backbone.depth=4"])
    with pytest.raises(ConfigError, match=r"train has no key 'max_iters'; did you mean 'max_iter'"):
        load_config(SMALL, ["train.max_iters=4"])
    with pytest.raises(ConfigError, match=r"model\.heads is a list of 1 items, no index '3'"):
        load_config(SMALL, ["model.heads.3.num_classes=2"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(SMALL, ["model.backbone.depth"])
    with pytest.raises(ConfigError, match=r"train\.output_dir is a str"):
        load_config(SMALL, ["train.output_dir.x=1"])


# ---------------------------------------------------------------- save_config / format_config


def test_save_then_load_builds_the_same_thing(tmp_path: Path) -> None:
    overrides = ["model.backbone.width=4", "model.heads.0.in_channels=4", "train.steps=(5,)",
                 "optimizer.lr=0.125", "train.output_dir=runs/round trip", "train.amp=True"]
    cfg = load_config(SMALL, overrides)
    cfg.model.backbone.act = nn.GELU  # a class as a value is written as an import
    cfg.train.limit = float("inf")
    save_config(cfg, tmp_path / "out" / "config.py")
    saved = load_config(tmp_path / "out" / "config.py")

    assert saved == cfg  # same targets (the callables themselves), same literals and types
    assert saved.train.steps == (5,) and saved.model.backbone.act is nn.GELU
    assert math.isinf(saved.train.limit)
    m1, m2 = instantiate(cfg.model), instantiate(saved.model)
    assert _shapes(m1) == _shapes(m2) and list(m1.state_dict()) == list(m2.state_dict())
    assert isinstance(m2.backbone.body[1], nn.GELU)
    x = torch.zeros(1, 3, 8, 8)
    assert m2.heads[0].cls(m2.backbone(x)).shape == (1, 5, 8, 8)
    kwargs = {"lr": 0.125, "momentum": 0.9}
    assert instantiate(saved.optimizer).kwargs == instantiate(cfg.optimizer).kwargs == kwargs
    assert instantiate(saved.train) == instantiate(cfg.train)


def test_save_rejects_unimportable_targets_naming_the_key(tmp_path: Path) -> None:
    def local_fn(x: int = 0) -> int:
        return x

    lazy_lambda = L(lambda depth=1: depth)(depth=2)
    cfg = ConfigDict(model=L(ToyDetector)(backbone=lazy_lambda, heads=[]))
    with pytest.raises(ConfigError, match=r"cannot save model\.backbone: .*lambda"):
        save_config(cfg, tmp_path / "a.py")
    cfg = ConfigDict(train=ConfigDict(fn=L(local_fn)(x=1)))
    with pytest.raises(ConfigError, match=r"cannot save train\.fn: .*local"):
        save_config(cfg, tmp_path / "b.py")
    cfg = ConfigDict(model=L(Recorder)(weight=torch.ones(2)))
    with pytest.raises(ConfigError, match=r"cannot save model\.weight: Tensor"):
        save_config(cfg, tmp_path / "c.py")
    assert not (tmp_path / "a.py").exists()


def test_format_config_shows_targets_and_values() -> None:
    text = format_config(load_config(SMALL))
    assert "model = L(config_toys.ToyDetector)(" in text
    assert "L(config_toys.ToyBackbone)(depth=3, width=8)" in text
    assert "output_dir='runs/toy_small'" in text
    assert format_config(L(Recorder)(x=(1,))) == "L(config_toys.Recorder)(x=(1,))"


def test_a_configs_package_elsewhere_on_sys_path_does_not_shadow(tmp_path, monkeypatch):
    # A regular `configs` package (with __init__.py) earlier on sys.path must not hide the bases of
    # the config file being loaded, which live in that file's own configs/ tree (a namespace folder).
    other = tmp_path / "other" / "configs" / "common"
    other.mkdir(parents=True)
    (other.parent / "__init__.py").write_text("")
    (other / "__init__.py").write_text("")
    (other / "base.py").write_text("VALUE = 'other tree'\n")
    mine = tmp_path / "mine" / "configs"
    (mine / "common").mkdir(parents=True)
    (mine / "common" / "base.py").write_text("VALUE = 'my tree'\n")
    (mine / "child.py").write_text("from configs.common.base import VALUE\nvalue = VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path / "other"))
    assert load_config(mine / "child.py").value == "my tree"


# ---------------------------------------------------------------- Inherit: values said once


def _inheriting_detector(num_classes: int = 4) -> LazyCall:
    return L(ToyDetector)(
        backbone=L(ToyBackbone)(width=Inherit("width")),
        heads=[L(ToyHead)(in_channels=Inherit("width"), num_classes=Inherit("num_classes")) for _ in range(2)],
        pixel_mean=(0.0, 0.0, 0.0),
    )


def test_inherit_takes_the_value_of_the_nearest_enclosing_node() -> None:
    tree = ConfigDict(width=6, num_classes=3, model=_inheriting_detector())
    model = instantiate(tree)["model"]
    assert model.backbone.out_channels == 6 and [h.cls.out_channels for h in model.heads] == [3, 3]
    tree.model.heads[1] = L(ToyHead)(in_channels=Inherit("width"), num_classes=Inherit("num_classes"))
    tree.num_classes = 7  # changed after the tree was made: read when it is built
    assert [h.cls.out_channels for h in instantiate(tree)["model"].heads] == [7, 7]


def test_inherit_skips_its_own_key_and_follows_chains_of_placeholders() -> None:
    inner = L(Recorder)(num_classes=Inherit("num_classes"), leaf=L(Recorder)(num_classes=Inherit("num_classes")))
    outer = L(Recorder)(num_classes=5, mid=inner)
    built = instantiate(outer)
    assert built.kwargs["mid"].kwargs["num_classes"] == 5
    assert built.kwargs["mid"].kwargs["leaf"].kwargs["num_classes"] == 5
    sibling = instantiate(L(Recorder)(a=2, b=Inherit("a")))
    assert sibling.kwargs == {"a": 2, "b": 2}


def test_a_sub_tree_built_alone_finds_values_above_it_after_load_override_copy_and_pickle() -> None:
    cfg = load_config(SMALL, ["train.max_iter=3"])
    cfg.width = 5  # a top-level value
    cfg.model.backbone.width = Inherit("width")
    assert instantiate(cfg.model.backbone).out_channels == 5
    for clone in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        clone.width = 9
        assert instantiate(clone.model.backbone).out_channels == 9
    assert instantiate(cfg.model.backbone).out_channels == 5


def test_inherit_without_a_provider_names_the_key_and_where_it_looked() -> None:
    node = L(ToyDetector)(backbone=L(ToyBackbone)(width=Inherit("widht")), heads=[])
    with pytest.raises(InstantiationError, match=r"detector\.backbone\.width: Inherit\('widht'\) found no "
                                                 r"enclosing node with key 'widht' \(looked in detector\.backbone, detector\)"):
        instantiate(node, key="detector")


def test_config_only_keys_are_held_for_the_sub_tree_and_not_passed() -> None:
    node = L(ToyDetector, config_only=["num_classes"])(
        num_classes=3, backbone=L(ToyBackbone)(), heads=[L(ToyHead)(in_channels=8, num_classes=Inherit("num_classes"))]
    )
    node.num_classes = 6  # a key of the node: attribute access and overrides reach it
    cfg = apply_overrides(ConfigDict(model=node), ["model.num_classes=2"])
    assert instantiate(cfg.model).heads[0].cls.out_channels == 2
    with pytest.raises(ConfigKeyError, match="'num_clases'; did you mean 'num_classes'"):
        node.num_clases = 1
    with pytest.raises(TypeError, match="list of key names"):
        L(ToyDetector, config_only="num_classes")


def test_num_classes_and_class_names_of_a_node_must_agree_naming_both_keys() -> None:
    node = L(Recorder)(num_classes=Inherit("n"), class_names=["a", "b"], n=3)
    with pytest.raises(InstantiationError, match=r"model\.num_classes=3 but model\.class_names has 2 names"):
        instantiate(node, key="model")
    node.n = 2
    assert instantiate(node).kwargs["num_classes"] == 2
    node.class_names = None
    node.n = 5
    assert instantiate(node).kwargs["num_classes"] == 5


def test_save_config_round_trips_placeholders_and_config_only_keys(tmp_path: Path) -> None:
    cfg = ConfigDict(width=4, num_classes=2, model=_inheriting_detector())
    cfg["holder"] = L(ToyDetector, config_only=["num_classes"])(num_classes=Inherit("num_classes"),
                                                               backbone=L(ToyBackbone)(), heads=[])
    save_config(cfg, tmp_path / "config.py")
    text = (tmp_path / "config.py").read_text()
    assert "Inherit('width')" in text and "config_only=['num_classes']" in text
    saved = load_config(tmp_path / "config.py", ["num_classes=3"])
    assert saved.model.heads[0].num_classes == Inherit("num_classes")
    assert saved.holder.config_only == ("num_classes",)
    model = instantiate(saved.model)
    assert model.backbone.out_channels == 4 and model.heads[0].cls.out_channels == 3
    assert "Inherit('num_classes')" in format_config(saved)


# ---------------------------------------------------------------- the safe data form


def test_data_form_round_trips_and_is_plain_data(tmp_path: Path) -> None:
    node = L(Recorder)(
        num_classes=3, inner=L(Recorder)(num_classes=Inherit("num_classes"), act=nn.GELU, size=(1, 2)),
        values=[1.5, float("inf"), None, "x", True], mapping={"a": 1},
    )
    data = config_to_data(node)
    assert data["_target_"] == "config_toys:Recorder"
    assert data["inner"]["num_classes"] == {"_inherit_": "num_classes"}
    assert data["inner"]["act"] == {"_ref_": "torch.nn.modules.activation:GELU"}
    torch.save({"model_config": data}, tmp_path / "c.pth")
    read = torch.load(tmp_path / "c.pth", weights_only=True)["model_config"]
    back = config_from_data(read, allowed_modules=["config_toys", "torch.nn"])
    assert back == node and isinstance(back.inner, LazyCall) and back.inner.size == (1, 2)
    assert instantiate(back).kwargs["inner"].kwargs["num_classes"] == 3


def test_data_form_resolves_placeholders_answered_above_the_tree() -> None:
    cfg = ConfigDict(num_classes=4, model=L(Recorder)(head=L(Recorder)(num_classes=Inherit("num_classes"))))
    cfg.model = cfg.model  # assignment links the node to cfg (load_config links every node)
    assert config_to_data(cfg.model)["head"]["num_classes"] == 4  # said outside the model: its value
    with pytest.raises(ConfigError, match=r"cannot write head\.num_classes: Inherit\('num_classes'\) found no"):
        config_to_data(L(Recorder)(head=L(Recorder)(num_classes=Inherit("num_classes"))))


@pytest.mark.parametrize("target", ["os:system", "builtins:eval", "subprocess:Popen", "torch:load",
                                    "detkit.config.loader:load_config", "detkit.models.zoo:yolov3_tiny_coco",
                                    "detkit.models.backbones.resnet:torch.load", "detkit.models.detectors.yolo:Tensor",
                                    "detkit.models.zoo:read_class_names.__globals__", "not a spec"])
def test_data_form_refuses_targets_outside_the_allow_list_naming_key_and_target(target: str) -> None:
    data = {"_target_": "detkit.models.backbones.resnet:ResNet", "depth": 18,
            "norm": {"_target_": target, "command": "echo pwned"}}
    with pytest.raises(UnsafeConfigError, match=rf"model\.norm: .*{re.escape(repr(target))}"):
        config_from_data(data)
    with pytest.raises(UnsafeConfigError, match=r"model\.act: refused target 'builtins:eval'"):
        config_from_data({"_target_": "detkit.models.backbones.resnet:ResNet", "act": {"_ref_": "builtins:eval"}})


def test_data_form_checks_keys_against_the_target() -> None:
    with pytest.raises(ConfigKeyError, match="'deptth'; did you mean 'depth'"):
        config_from_data({"_target_": "detkit.models.backbones.resnet:ResNet", "deptth": 18})
    with pytest.raises(ConfigError, match="not part of the config data form"):
        config_from_data({"_target_": "detkit.models.backbones.resnet:ResNet", "depth": torch.ones(1)})


def test_checkpoint_model_config_leaves_out_files_of_initial_weights() -> None:
    # A backbone started from a local ImageNet file: the checkpoint's state dict holds those
    # weights since, and the file need not exist where the checkpoint is loaded.
    from configs.common.rcnn import faster_rcnn
    from detkit.config import model_config_entries

    model = faster_rcnn(3, depth=18, backbone_weights="/nowhere/resnet18.pth", class_names=["a", "b", "c"])
    entries = model_config_entries(model)
    assert entries["model_config"]["backbone"]["weights"] is None
    assert entries["model_config"]["backbone"]["depth"] == 18 and entries["class_names"] == ["a", "b", "c"]
    assert model.backbone.weights == "/nowhere/resnet18.pth"  # the config itself is left as it was
    instantiate(config_from_data(entries["model_config"]))  # builds: no file is read
