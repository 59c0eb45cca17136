"""Tests for detkit.config: lazy calls, instantiate, load/override/save of Python config files."""

from __future__ import annotations

import copy
import importlib.util
import math
import pickle
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
    InstantiationError,
    L,
    LazyCall,
    format_config,
    instantiate,
    load_config,
    save_config,
)

CONFIGS = Path(__file__).resolve().parent / "data" / "configs"
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
