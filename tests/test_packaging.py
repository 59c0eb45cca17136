"""Packaging: what a built wheel holds, the optional kernels, and (marked slow) a fresh-venv install.

The wheel tests build from a copy of the sources with ``pip wheel --no-build-isolation --no-deps``
(the torch already installed, nothing downloaded). The fresh-venv test does what a new user does,
``python -m venv`` then ``pip install <checkout>`` with pip's defaults (build isolation on, so pip
installs torch twice: into the build environment and into the venv); it takes minutes and is
marked ``slow`` (``pytest -m slow tests/test_packaging.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "requirements.txt", "Makefile",
           "pytest.ini", "detkit", "configs", "csrc"]
NO_EXT_LINE = "detkit: compiled kernels not built"


def copy_sources(target: Path) -> Path:
    """The files a build reads, without build outputs (compiled kernels, caches, build/)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "build", "*.egg-info")
    target.mkdir(parents=True)
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def build_wheel(source: Path, out: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path | None]:
    """``pip wheel -v --no-build-isolation --no-deps`` of ``source`` into ``out``."""
    command = [sys.executable, "-m", "pip", "wheel", "-v", "--no-build-isolation", "--no-deps",
               "--no-index", "-w", str(out), str(source)]
    process = subprocess.run(command, cwd=source.parent, capture_output=True, text=True, timeout=900,
                             env={**os.environ, **env})
    wheels = sorted(out.glob("detkit-*.whl"))
    return process, (wheels[0] if wheels else None)


@pytest.fixture(scope="module")
def no_ext_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    process, wheel = build_wheel(copy_sources(root / "src"), root / "dist", DETKIT_NO_EXT="1")
    assert process.returncode == 0 and wheel is not None, process.stdout[-3000:] + process.stderr[-3000:]
    assert f"{NO_EXT_LINE} (DETKIT_NO_EXT=1)" in process.stdout + process.stderr
    return wheel


def test_the_wheel_ships_configs_model_data_and_the_command(no_ext_wheel: Path) -> None:
    with zipfile.ZipFile(no_ext_wheel) as wheel:
        names = set(wheel.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
        metadata = Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
    shipped_configs = {str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.py")}
    assert shipped_configs and {"configs/common/rcnn.py", "configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py"} \
        <= shipped_configs
    for config in shipped_configs:  # every config, the common factories and namespace folders included
        assert f"detkit/model_zoo/{config}" in names, config
    for data in (REPO / "detkit" / "model_data").rglob("*"):
        if data.is_file():
            assert str(data.relative_to(REPO)) in names, data
    assert "detkit/cli/__init__.py" in names and "detkit/__init__.py" in names
    assert not any(n.startswith(("tests/", "tools/", "configs/", "csrc/")) for n in names)
    assert not any(n.endswith(".so") for n in names)  # DETKIT_NO_EXT=1: no kernels
    assert "[console_scripts]\ndetkit = detkit.cli:main" in entry_points
    requires = metadata.get_all("Requires-Dist")
    assert "torch==2.14.1" in requires and "torchvision==0.29.1" in requires
    assert {"export", "tensorboard", "test"} <= set(metadata.get_all("Provides-Extra"))
    assert metadata["Version"] == __import__("detkit").__version__


def test_build_and_runtime_pin_the_same_torch() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    build_torch = [r for r in project["build-system"]["requires"] if r.startswith("torch")]
    runtime_torch = [r for r in project["project"]["dependencies"] if r.startswith("torch")
                     and not r.startswith("torchvision")]
    pinned = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.startswith("torch==")]
    assert build_torch == runtime_torch == pinned == ["torch==2.14.1"]
    assert project["project"]["scripts"] == {"detkit": "detkit.cli:main"}


def _broken_compiler(folder: Path) -> Path:
    compiler = folder / "broken-c++"
    compiler.write_text("#!/bin/sh\necho 'broken-c++: simulated compiler failure' >&2\nexit 1\n")
    compiler.chmod(0o755)
    return compiler


@pytest.mark.parametrize("failure", ["no compiler", "compile error"])
def test_a_failing_build_installs_on_the_fallbacks_with_one_line(failure: str, tmp_path: Path) -> None:
    source = copy_sources(tmp_path / "src")
    env = {"FORCE_CUDA": "0", "DETKIT_REQUIRE_EXT": "0"}
    if failure == "no compiler":
        env["CXX"] = str(_broken_compiler(tmp_path))
    else:  # every source fails at once, so nothing compiles for long
        for cpp in (source / "csrc").rglob("*.cpp"):
            cpp.write_text("#error simulated compile error\n" + cpp.read_text())
    process, wheel = build_wheel(source, tmp_path / "dist", **env)
    output = process.stdout + process.stderr
    assert process.returncode == 0 and wheel is not None, output[-4000:]
    lines = [line for line in output.splitlines() if NO_EXT_LINE in line]
    assert len(lines) == 1 and "the build failed" in lines[0] and "--no-build-isolation" in lines[0]
    with zipfile.ZipFile(wheel) as built:
        assert not any(n.endswith(".so") for n in built.namelist())
        assert "detkit/model_zoo/configs/common/rcnn.py" in built.namelist()
    assert not list((source / "detkit").glob("_C*.so"))  # nothing half-built in the source tree


def test_require_ext_turns_a_failing_compile_into_an_error(tmp_path: Path) -> None:
    process, wheel = build_wheel(copy_sources(tmp_path / "src"), tmp_path / "dist",
                                 CXX=str(_broken_compiler(tmp_path)), FORCE_CUDA="0", DETKIT_REQUIRE_EXT="1")
    assert process.returncode != 0 and wheel is None
    assert NO_EXT_LINE not in process.stdout + process.stderr


@pytest.mark.slow
def test_fresh_venv_install_with_pip_defaults(tmp_path: Path) -> None:
    """``pip install <checkout>`` into a new venv, then from a folder outside the checkout: ``detkit
    --help``, ``detkit.build_model`` by zoo name, the kernels loaded, ``detkit train`` by zoo name and
    ``detkit.load`` of the trained checkpoint."""
    source = copy_sources(tmp_path / "checkout")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "DETKIT_"))}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=env)
    python, detkit_command = venv / "bin" / "python", venv / "bin" / "detkit"
    install = subprocess.run([str(python), "-m", "pip", "install", str(source)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=1800, env=env)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), cwd=elsewhere, capture_output=True, text=True, timeout=600, env=env)

    help_ = run(str(detkit_command), "--help")
    assert help_.returncode == 0 and "train" in help_.stdout and "infer" in help_.stdout
    check = run(str(python), "-c", """
import sys
import detkit
assert "torch" not in sys.modules
assert "site-packages" in detkit.__file__
path = detkit.model_zoo.get_config_file("faster_rcnn_r18_fpn_1x_shapes")
assert "site-packages" in str(path) and path.parent.parent.name == "configs", path
model = detkit.build_model("faster_rcnn_r50_fpn_1x_coco")
from detkit.ops import _ext
print(type(model).__name__, _ext.ext_loaded())
""")
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.split() == ["FasterRCNN", "True"]  # kernels built against the venv's torch
    env_report = run(str(detkit_command), "env")
    assert env_report.returncode == 0 and re.search(r"detkit\._C\s+loaded", env_report.stdout)

    # `detkit train` by zoo name, then `detkit.load` of the run's checkpoint with no config path
    from test_api import _tiny_run_overrides  # YOLOv3-tiny, 3 CPU steps on 64 px shapes images

    run_dir = elsewhere / "run"
    train = run(str(detkit_command), "train", "yolov3_tiny_320_shapes", "--output-dir", str(run_dir),
                *_tiny_run_overrides(elsewhere / "shapes", run_dir))
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = run_dir / "model_final.pth"
    reload = run(str(python), "-c", f"import detkit; print(type(detkit.load({str(checkpoint)!r})).__name__)")
    assert reload.returncode == 0 and reload.stdout.strip() == "YOLOv3", reload.stderr[-3000:]
    shutil.rmtree(venv, ignore_errors=True)  # gigabytes (torch); kept when the test fails
