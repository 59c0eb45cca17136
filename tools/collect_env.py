"""Report the environment detkit runs in: Python, torch, torchvision, CUDA, compilers, and which
detkit kernels loaded for which devices.

    python tools/collect_env.py
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command_version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not found"
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"
    return output.splitlines()[-1] if output else "unknown"


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
        ("nvcc", _command_version(["nvcc", "--version"])),
        ("c++", _first_line(["c++", "--version"])),
        ("detkit._C", "loaded" if _ext.ext_loaded() else f"not built ({_ext.ext_load_error()})"),
        ("detkit CUDA kernels", f"compiled for CUDA {_ext.cuda_version()}" if _ext.cuda_version() > 0 else "none"),
        ("DETKIT_DISABLE_EXT", os.environ.get("DETKIT_DISABLE_EXT", "unset")),
        ("kernels used on cpu", "compiled" if _ext.has_ext("cpu") else "pure-PyTorch fallbacks"),
        ("kernels used on cuda", "compiled" if _ext.has_ext("cuda") and torch.cuda.is_available()
         else ("compiled (no GPU visible)" if _ext.has_ext("cuda") else "pure-PyTorch fallbacks")),
    ]
    return rows


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not found"
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"
    return output.splitlines()[0] if output else "unknown"


def main() -> None:
    rows = collect_env()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:{width}s}  {value}")


if __name__ == "__main__":
    main()
