"""The ``detkit`` command (detkit/cli): help without torch, one-line errors, overrides anywhere,
config names, the lazy public API, and the tools/*.py wrappers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import detkit
from detkit.cli import COMMANDS, main, parse_command_args
from detkit.cli.common import CommandError, one_line, resolve_config, split_overrides

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
TOY_TRAIN = TESTS / "fixtures" / "configs" / "engine" / "toy_train.py"  # needs tests/engine on sys.path
EVAL_TESTS = TESTS / "evaluation"  # eval_toys.py

EVAL_CONFIG = f'''
import sys
sys.path.insert(0, {str(EVAL_TESTS)!r})

from eval_toys import OracleDetector, ToyShapes, collate
from torch.utils.data import DataLoader

from detkit.config import L

model = L(OracleDetector)(score=0.5)
dataloader = dict(test=L(DataLoader)(dataset=L(ToyShapes)(n=4), batch_size=2, collate_fn=collate))
'''


def _python(code: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_of_every_command_imports_no_torch(tmp_path: Path) -> None:
    process = _python("""
        import contextlib, io, json, sys
        import detkit
        from detkit.cli import COMMANDS, main
        assert detkit.__version__
        helps, codes = {}, {}
        for argv in [["--help"]] + [[name, "--help"] for name in COMMANDS]:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    main(argv)
                except SystemExit as exit:
                    codes[" ".join(argv)] = exit.code
            helps[" ".join(argv)] = out.getvalue()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "cv2", "torchvision"))
        print(json.dumps({"helps": helps, "codes": codes, "heavy": heavy}))
    """, cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    assert report["heavy"] == []
    assert set(report["codes"].values()) == {0}
    assert all(f"\n    {name}" in report["helps"]["--help"] for name in COMMANDS)
    for name in COMMANDS:
        assert report["helps"][f"{name} --help"].startswith(f"usage: detkit {name}")
        assert "--debug" in report["helps"][f"{name} --help"]


def test_version_no_command_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"detkit {detkit.__version__}"
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["trian"])
    assert exit.value.code == 2 and "unknown command 'trian'" in capsys.readouterr().err


def test_overrides_go_anywhere_on_the_line() -> None:
    args = parse_command_args("train", ["a.b=1", str(TOY_TRAIN), "--resume", "auto", "c.d=[1, 2]",
                                        "--output-dir", "out", "e=x"])
    assert args.config == str(TOY_TRAIN) and args.resume == "auto" and args.output_dir == "out"
    assert args.overrides == ["a.b=1", "c.d=[1, 2]", "e=x"]
    args = parse_command_args("test", ["x=1", "cfg.py", "--device", "cpu", "ckpt.pth", "y.z=2"])
    assert (args.config, args.checkpoint, args.overrides) == ("cfg.py", "ckpt.pth", ["x=1", "y.z=2"])
    args = parse_command_args("infer", ["cfg.py", "none", "model.t=0.5", "a.jpg", "--out", "o", "b.jpg",
                                        "model.u=1"])
    assert args.inputs == ["a.jpg", "b.jpg"] and args.overrides == ["model.t=0.5", "model.u=1"]


def test_an_existing_file_with_an_equals_sign_is_not_an_override(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a=b.jpg").write_bytes(b"")
    args = parse_command_args("infer", ["cfg.py", "none", "a=b.jpg", "--out", "o", "k=1"])
    assert args.inputs == ["a=b.jpg"] and args.overrides == ["k=1"]


@pytest.mark.parametrize(("command", "argv", "message"), [
    ("train", ["x=1"], "required: CONFIG"),
    ("test", ["cfg.py", "x=1"], "required: CHECKPOINT"),
    ("test", ["cfg.py", "ckpt.pth", "stray"], "unexpected argument(s) stray"),
    ("infer", ["cfg.py", "none", "--out", "o", "x=1"], "required: INPUTS"),
])
def test_missing_and_surplus_positionals_are_usage_errors(command: str, argv: list[str], message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_command_args(command, argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err


def _only_line(text: str, prefix: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def eval_files(tmp_path: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(EVAL_TESTS))
    from eval_toys import OracleDetector

    config = tmp_path / "toy_eval.py"
    config.write_text(EVAL_CONFIG)
    checkpoint = tmp_path / "model_final.pth"
    torch.save({"model": OracleDetector(score=0.25).state_dict()}, checkpoint)
    return config, checkpoint


def test_a_config_typo_is_one_line_naming_the_key(eval_files: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = eval_files
    assert main(["test", str(config), str(checkpoint), "modle.score=1", "--device", "cpu"]) == 2
    line = _only_line(capsys.readouterr().err, "detkit test: error: ")
    assert "modle" in line
    typo = tmp_path / "typo.py"
    typo.write_text(EVAL_CONFIG.replace("L(OracleDetector)(score=0.5)", "L(OracleDetector)(scroe=0.5)"))
    assert main(["test", str(typo), str(checkpoint)]) == 2
    line = _only_line(capsys.readouterr().err, "detkit test: error: ")
    assert "scroe" in line and "typo.py" in line


def test_missing_files_are_one_line_naming_the_path(eval_files: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = eval_files
    missing = tmp_path / "nowhere" / "model_final.pth"
    for command in (["test", str(config), str(missing), "--device", "cpu"],
                    ["infer", str(config), str(missing), str(tmp_path), "--out", str(tmp_path / "o")]):
        assert main(command) == 2
        line = _only_line(capsys.readouterr().err, f"detkit {command[0]}: error: ")
        assert f"checkpoint not found: {missing}" in line
    assert main(["test", str(tmp_path / "absent.py"), str(missing)]) == 2
    assert f"config not found: {tmp_path / 'absent.py'}" in _only_line(capsys.readouterr().err, "detkit test")
    assert main(["train", str(tmp_path / "absent.py")]) == 2
    assert "config not found" in _only_line(capsys.readouterr().err, "detkit train: error: ")


def test_a_checkpoint_that_does_not_fit_is_one_line_listing_the_keys(
        eval_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = eval_files
    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {"weight": torch.zeros(1)}}, wrong)
    assert main(["test", str(config), str(wrong), "--device", "cpu"]) == 2
    line = _only_line(capsys.readouterr().err, "detkit test: error: ")
    assert "does not fit" in line and "unexpected key" in line and "weight" in line


def test_debug_shows_the_traceback(eval_files: tuple[Path, Path], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = eval_files
    command = ["test", str(config), str(tmp_path / "none.pth"), "--device", "cpu"]
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main(["--debug", *command])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main([*command, "--debug"])
    monkeypatch.setenv("DETKIT_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main(command)


def test_an_internal_error_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from detkit.cli import env

    def broken(args: object) -> int:
        raise RuntimeError("a bug, not a mistake of the user")

    monkeypatch.setattr(env, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["env"])


def test_overrides_before_and_after_options_are_applied(eval_files: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = eval_files
    out = tmp_path / "eval"
    status = main(["test", "model.score=0.75", str(config), "none", "--out", str(out), "--device", "cpu",
                   "dataloader.test.dataset.n=3", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "coco_results.json").read_text())
    assert {r["score"] for r in results} == {0.75}  # before the options
    assert len({r["image_id"] for r in results}) == 3  # after them
    assert "metrics.json" in capsys.readouterr().out


def test_train_applies_overrides_and_writes_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(TESTS / "engine"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        status = main(["train", "train.max_iter=2", str(TOY_TRAIN), "--output-dir", str(tmp_path / "run"),
                       "train.eval_period=0", "train.checkpoint_period=1"])
    finally:
        torch.set_num_threads(threads)
    assert status == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model_final.pth").is_file()
    written = (tmp_path / "run" / "config.py").read_text()
    assert "max_iter=2" in written and "checkpoint_period=1" in written


def test_a_model_trained_by_name_reloads_with_load_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from test_api import _tiny_run_overrides  # YOLOv3-tiny, 3 CPU steps on 64 px shapes images

    run_dir = tmp_path / "run"
    overrides = _tiny_run_overrides(tmp_path / "shapes", tmp_path / "ignored")
    torch.manual_seed(0)
    status = main(["train", *overrides[:3], "yolov3_tiny_320_shapes", "--output-dir", str(run_dir), *overrides[3:]])
    assert status == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # no checkout, no config path
    model = detkit.load(run_dir / "model_final.pth")
    assert type(model).__name__ == "YOLOv3" and not model.training
    from detkit.data import SHAPE_CLASSES

    assert model.class_names == list(SHAPE_CLASSES)


def test_config_names_resolve_to_the_shipped_files() -> None:
    from detkit.model_zoo import UnknownConfigError

    path = resolve_config("faster_rcnn_r18_fpn_1x_shapes")
    assert path.name == "faster_rcnn_r18_fpn_1x_shapes.py" and path.parent.name == "faster_rcnn"
    assert resolve_config("faster_rcnn/faster_rcnn_r18_fpn_1x_shapes") == path
    with pytest.raises(UnknownConfigError, match="did you mean 'faster_rcnn_r18_fpn_1x_shapes'"):
        resolve_config("faster_rcnn_r18_fpn_1x_shape")
    with pytest.raises(CommandError, match="config not found: nowhere/x.py"):
        resolve_config("nowhere/x.py")
    with pytest.raises(UnknownConfigError, match="no model-zoo config named 'rcnn'"):
        resolve_config("rcnn")  # configs/common is not a runnable config


def test_a_zoo_name_typo_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "faster_rcnn_r18_fpn_1x_shape", "train.max_iter=1"]) == 2
    line = _only_line(capsys.readouterr().err, "detkit train: error: ")
    assert "no model-zoo config named 'faster_rcnn_r18_fpn_1x_shape'" in line and "did you mean" in line


def test_one_line_messages() -> None:
    assert one_line(KeyError("no key 'x'")) == "no key 'x'"
    assert one_line(ValueError("head:\n  a\n  b")) == "head: a; b"
    assert one_line(ValueError("first\nsecond")) == "first; second"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_split_overrides_refills_fields_in_order() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    args = argparse.Namespace(config="k=v", checkpoint="cfg.py", inputs=["ckpt.pth", "img.jpg"], overrides=[])
    split_overrides(parser, args, ["config", "checkpoint"], rest="inputs")
    assert (args.config, args.checkpoint, args.inputs, args.overrides) == ("cfg.py", "ckpt.pth", ["img.jpg"],
                                                                          ["k=v"])


def test_the_public_api_is_lazy_and_complete() -> None:
    process = _python("""
        import sys
        import detkit
        assert "torch" not in sys.modules and "detkit.apis" not in sys.modules
        assert set(detkit.__all__) <= set(dir(detkit))
        from detkit.apis import Predictor
        assert detkit.Predictor is Predictor
        try:
            detkit.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("no AttributeError")
    """)
    assert process.returncode == 0, process.stderr


def test_model_zoo_names_of_the_public_api() -> None:
    model_zoo = pytest.importorskip("detkit.model_zoo")
    assert detkit.model_zoo is model_zoo
    assert detkit.build_model is model_zoo.build_model and detkit.load is model_zoo.load


def test_evaluate_api_returns_the_metrics(eval_files: tuple[Path, Path], tmp_path: Path) -> None:
    config, checkpoint = eval_files
    metrics = detkit.evaluate(str(config), checkpoint, ["dataloader.test.batch_size=3"],
                              output_dir=tmp_path / "e", device="cpu", progress=False)
    assert metrics["bbox/AP"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["bbox/AP"] == pytest.approx(1.0)


def test_tool_wrappers_run_as_scripts(tmp_path: Path) -> None:
    tools = sorted(p for p in (REPO / "tools").glob("*.py") if not p.name.startswith("benchmark_"))
    process = _python(f"""
        import contextlib, io, runpy, sys
        failures = []
        for tool in {[str(p) for p in tools]!r}:
            sys.argv = [tool, "--help"]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    runpy.run_path(tool, run_name="__main__")
                except SystemExit as exit:
                    if exit.code != 0:
                        failures.append((tool, exit.code))
            if "usage:" not in out.getvalue():
                failures.append((tool, "no usage"))
        print(failures)
    """, cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"
