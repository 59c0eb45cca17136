"""Build and install detkit.

The extension ``detkit._C`` is compiled from ``csrc/`` with torch's cpp_extension:

* CPU kernels (``csrc/cpu/*.cpp``) always;
* CUDA kernels (``csrc/cuda/*.cu``) when a CUDA toolkit is found and either a GPU is visible or
  ``FORCE_CUDA=1`` (``TORCH_CUDA_ARCH_LIST`` is respected; a default list otherwise);
* nothing when ``DETKIT_NO_EXT=1``: detkit then runs fully on its pure-PyTorch fallbacks.

Install with ``pip install --no-build-isolation -e .`` so the build uses the torch already installed.
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# Turing to Hopper (CUDA 13 dropped Volta), plus PTX so newer GPUs can JIT the Hopper code.
DEFAULT_CUDA_ARCH_LIST = "7.5;8.0;8.6;8.9;9.0+PTX"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _locate_cuda_home() -> None:
    """Point CUDA_HOME at a real toolkit before torch's cpp_extension looks for one.

    torch derives CUDA_HOME from the location of ``nvcc`` on PATH; where that is a wrapper script
    (``/usr/local/bin/nvcc`` here) it lands on a folder without ``include/cuda.h``.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "include", "cuda.h")) and os.path.isfile(
            os.path.join(candidate, "bin", "nvcc")
        ):
            os.environ["CUDA_HOME"] = candidate
            return


def _extensions_and_cmdclass() -> tuple[list, dict]:
    if _env_flag("DETKIT_NO_EXT"):
        print("detkit: DETKIT_NO_EXT=1, installing without compiled kernels (pure-PyTorch fallbacks)")
        return [], {}

    _locate_cuda_home()
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    sources = [os.path.join("csrc", "detkit.cpp")] + sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    extra_compile_args: dict[str, list[str]] = {"cxx": ["-O3"]}
    define_macros: list[tuple[str, str | None]] = []

    use_cuda = CUDA_HOME is not None and (torch.cuda.is_available() or _env_flag("FORCE_CUDA"))
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCH_LIST)
        sources += cuda_sources
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        extension_class = CUDAExtension
        print(f"detkit: building CPU and CUDA kernels (CUDA_HOME={CUDA_HOME}, "
              f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']})")
    else:
        extension_class = CppExtension
        reason = "no CUDA toolkit found" if CUDA_HOME is None else "no GPU visible and FORCE_CUDA not set"
        print(f"detkit: building CPU kernels only ({reason})")

    extension = extension_class(
        name="detkit._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
    )
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions_and_cmdclass()

setup(
    name="detkit",
    version="0.1.0",
    description="Object detection in PyTorch: SSD, YOLO, Faster/Mask R-CNN, MTCNN, with compiled NMS and RoIAlign",
    packages=find_packages(include=["detkit", "detkit.*"]),
    # darknet cfgs and class-name lists used at run time
    package_data={"detkit": ["model_data/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=["torch", "torchvision", "numpy", "opencv-python-headless", "pycocotools", "albumentations", "tqdm"],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
