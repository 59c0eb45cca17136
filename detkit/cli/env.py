"""Report the environment detkit runs in: Python, torch, torchvision, CUDA, compilers, and which
detkit kernels loaded for which devices (and how to build them when they did not).

    detkit env
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence

from detkit.cli import parse_command_args, run_command

HELP = "report torch, CUDA, compilers and which detkit kernels loaded"
HOW_TO_BUILD = ("to build the kernels: install a C++ compiler (and a CUDA toolkit for the GPU "
                "kernels), then `pip install --no-build-isolation --no-deps --force-reinstall "
                "<detkit checkout>` (or `make install` in the checkout)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``detkit env`` takes no options."""


def _run_output(command: list[str]) -> list[str]:
    """The output lines of ``command``, or one line saying why there are none."""
    if shutil.which(command[0]) is None:
        return ["not found"]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"error: {exc}"]
    return output.splitlines() or ["unknown"]


def _package_version(name: str) -> str:
    try:
        return getattr(importlib.import_module(name), "__version__", "installed")
    except ImportError:
        return "not installed"


def collect_env() -> list[tuple[str, str]]:
    """(name, value) rows describing the environment."""
    import torch

    import detkit
    from detkit.ops import _ext

    rows = [
        ("detkit", f"{detkit.__version__} ({os.path.dirname(detkit.__file__)})"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("torch", f"{torch.__version__} (built with CUDA {torch.version.cuda})"),
        ("torchvision", _package_version("torchvision")),
        ("numpy", _package_version("numpy")),
        ("opencv (cv2)", _package_version("cv2")),
        ("pycocotools", _package_version("pycocotools")),
        ("albumentations", _package_version("albumentations")),
        ("CPU threads (torch)", str(torch.get_num_threads())),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            rows.append((f"GPU {index}", torch.cuda.get_device_name(index)))
    rows += [
        ("nvcc", _run_output(["nvcc", "--version"])[-1]),
        ("c++", _run_output(["c++", "--version"])[0]),
        ("detkit._C", "loaded" if _ext.ext_loaded() else f"not built ({_ext.ext_load_error()}); {HOW_TO_BUILD}"),
        ("detkit CUDA kernels", f"compiled for CUDA {_ext.cuda_version()}" if _ext.cuda_version() > 0 else "none"),
        ("DETKIT_DISABLE_EXT", os.environ.get("DETKIT_DISABLE_EXT", "unset")),
        ("kernels used on cpu", "compiled" if _ext.has_ext("cpu") else "pure-PyTorch fallbacks"),
        ("kernels used on cuda", "compiled" if _ext.has_ext("cuda") and torch.cuda.is_available()
         else ("compiled (no GPU visible)" if _ext.has_ext("cuda") else "pure-PyTorch fallbacks")),
    ]
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the rows as an aligned table."""
    rows = collect_env()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:{width}s}  {value}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit env``."""
    return parse_command_args("env", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit env``; returns the exit status."""
    return run_command("env", argv)
