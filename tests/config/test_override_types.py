"""An override whose value does not fit the value it replaces fails at load time, naming the key,
the expected type and the config's value (before: ``optimizer.lr=fast`` reached the optimiser as
the string 'fast' and failed there with a TypeError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.cli import main as cli_main
from detkit.config import ConfigError, OverrideTypeError, instantiate, load_config

CONFIG = '''
from detkit.config import L
from detkit.engine import build_optimizer
from detkit.models.preprocess import RCNNPreprocess

model = L(RCNNPreprocess)(min_size=800, max_size=1333, pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.2, 0.2, 0.2))
optimizer = L(build_optimizer)(name="SGD", lr=0.01)
train = dict(max_iter=1000, checkpoint_period=1000, amp=False, output_dir="runs/x", steps=(600, 800),
             ema=dict(decay=0.9), init_checkpoint=None, eval_fraction=0.5)
'''


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "types.py"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=fast", "override optimizer.lr='fast': expected float (the config has 0.01), got str"),
    ("train.checkpoint_period='5'",
     "override train.checkpoint_period='5': expected int (the config has 1000), got str"),
    ("train.max_iter=1e3", "override train.max_iter=1000.0: expected int (the config has 1000), got float"),
    ("train.max_iter=True", "override train.max_iter=True: expected int (the config has 1000), got bool"),
    ("train.amp=1", "override train.amp=1: expected bool (the config has False), got int"),
    ("optimizer.lr=False", "override optimizer.lr=False: expected float (the config has 0.01), got bool"),
    ("train.output_dir=2024", "override train.output_dir=2024: expected str (the config has 'runs/x'), got int"),
    ("train.steps=700", "override train.steps=700: expected a list or tuple (the config has (600, 800)), got int"),
    ("train.eval_fraction=half",
     "override train.eval_fraction='half': expected float (the config has 0.5), got str"),
    # an argument the config leaves unset is checked against the target's default
    ("optimizer.momentum=high", "override optimizer.momentum='high': expected float (the config has 0.9), got str"),
])
def test_a_value_of_the_wrong_type_names_key_and_expected_type(config_file: Path, override: str,
                                                                message: str) -> None:
    with pytest.raises(OverrideTypeError) as caught:
        load_config(config_file, [override])
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ConfigError)


@pytest.mark.parametrize("override, key, expected", [
    ("optimizer.lr=1", ("optimizer", "lr"), 1),  # an int may replace a float
    ("train.steps=[100, 200]", ("train", "steps"), [100, 200]),  # lists and tuples interchange
    ("train.init_checkpoint=runs/a/model.pth", ("train", "init_checkpoint"), "runs/a/model.pth"),  # None
    ("train.max_iter=None", ("train", "max_iter"), None),  # None replaces anything
    ("train.ema=False", ("train", "ema"), False),  # a sub-tree by a literal
    ("train.ema=None", ("train", "ema"), None),
    ("model.min_size=(640, 672)", ("model", "min_size"), (640, 672)),  # the annotation admits it
    ("train.output_dir='2024'", ("train", "output_dir"), "2024"),  # quoted: a str
])
def test_values_that_fit_are_set(config_file: Path, override: str, key: tuple[str, str], expected) -> None:
    cfg = load_config(config_file, [override])
    value = cfg[key[0]][key[1]]
    assert value == expected and type(value) is type(expected)


def test_a_whole_node_can_still_be_replaced_and_then_built(config_file: Path) -> None:
    cfg = load_config(config_file, ["train={'max_iter': 5}", "train.max_iter=6", "model=None"])
    assert cfg.train == {"max_iter": 6} and cfg.model is None
    assert instantiate(load_config(config_file, ["model.min_size=(640, 672)"]).model).min_size == (640, 672)


def test_on_the_command_line_it_is_one_line_and_exit_status_2(config_file: Path, capsys) -> None:
    assert cli_main(["train", str(config_file), "optimizer.lr=fast"]) == 2
    err = capsys.readouterr().err
    assert err == ("detkit train: error: override optimizer.lr='fast': expected float "
                   "(the config has 0.01), got str\n")


def test_a_registered_section_admits_what_its_schema_admits():
    # The engine registers train's TrainSettings types: amp is False | True | "fp16" | "bf16".
    import detkit.engine.settings  # noqa: F401
    from detkit.config import ConfigDict, apply_overrides

    def fresh() -> ConfigDict:
        return ConfigDict(train=ConfigDict(amp=False, checkpoint_period=1000))

    assert apply_overrides(fresh(), ["train.amp='bf16'"]).train.amp == "bf16"
    cfg = fresh()
    with pytest.raises(ValueError, match=r"override train.amp='fp32': expected bool"):
        apply_overrides(cfg, ["train.amp='fp32'"])
    with pytest.raises(ValueError, match=r"override train.checkpoint_period='5': expected int"):
        apply_overrides(cfg, ["train.checkpoint_period='5'"])
