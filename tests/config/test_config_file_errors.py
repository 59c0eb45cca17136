"""A config that does not compile or fails while it runs (itself or a base it imports) is one line
``file:line: reason`` (before: a SyntaxError or NameError traceback from the loader)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.cli import main as cli_main
from detkit.config import ConfigError, ConfigFileError, load_config


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``configs/`` folder in the working folder, as in a checkout."""
    (tmp_path / "configs" / "common").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "configs"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("lr = 0.1\nmodel = dict(a=1,\nb = 2\n", "configs/x.py:2: invalid syntax ('(' was never closed)"),
    ("lr = 0.1\nif lr\n    pass\n", "configs/x.py:2: invalid syntax (expected ':')"),
    ("lr = 0.1\n  x = 2\n", "configs/x.py:2: invalid syntax (unexpected indent)"),
    ("lr = 0.1\nmodel = dict(lr=lrr)\n", "configs/x.py:2: NameError: name 'lrr' is not defined"),
    ("import math\n\nfrom configs.common.nope import y\n",
     "configs/x.py:3: ModuleNotFoundError: No module named 'configs.common.nope'"),
    ("from configs.common.base import missing\n",
     "configs/x.py:1: ImportError: cannot import name 'missing' from 'configs.common.base'"),
])
def test_an_error_in_the_config_names_its_file_and_line(tree: Path, text: str, message: str) -> None:
    write(tree / "common" / "base.py", "def thing(n):\n    return dict(n=n)\n")
    write(tree / "x.py", text)
    with pytest.raises(ConfigFileError) as caught:
        load_config(tree / "x.py")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("base, call, message", [
    ("def thing(n):\n    return dict(n=n,\n", "thing(3)",
     "configs/common/base.py:2: invalid syntax ('(' was never closed)"),
    ("def thing(n):\n    return dict(n=m)\n", "thing(3)",
     "configs/common/base.py:2: NameError: name 'm' is not defined"),
    ("def thing(n):\n    return dict(n=n)\n", "thing(depth=3)",  # the mistake is the child's call
     "configs/x.py:2: TypeError: thing() got an unexpected keyword argument 'depth'"),
])
def test_an_error_in_a_base_names_the_base(tree: Path, base: str, call: str, message: str) -> None:
    write(tree / "common" / "base.py", base)
    write(tree / "x.py", f"from configs.common.base import thing\nmodel = {call}\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config(tree / "x.py")
    assert str(caught.value) == message


def test_a_relative_import_of_a_broken_base(tree: Path) -> None:
    write(tree / "common" / "base.py", "x = [1, 2\n")
    write(tree / "x.py", "from .common.base import x\n")
    with pytest.raises(ConfigFileError, match=r"^configs/common/base\.py:1: invalid syntax"):
        load_config(tree / "x.py")


def test_on_the_command_line_it_is_one_line_and_exit_status_2(tree: Path, capsys) -> None:
    write(tree / "x.py", "model = dict(a=1,\n")
    assert cli_main(["train", "configs/x.py"]) == 2
    assert capsys.readouterr().err == "detkit train: error: configs/x.py:1: invalid syntax ('(' was never closed)\n"


def test_a_file_outside_the_working_folder_is_named_in_full(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "far").mkdir()
    (tmp_path / "here").mkdir()
    config = write(tmp_path / "far" / "y.py", "a = (\n")
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(ConfigFileError) as caught:
        load_config(config)
    assert str(caught.value) == f"{config}:1: invalid syntax ('(' was never closed)"
