"""Build detkit's compiled kernels and lay out the package; the metadata is in pyproject.toml.

The extension ``detkit._C`` is compiled from ``csrc/`` with torch's cpp_extension, against the torch
of the build environment (pip's isolated one pins the same torch as the runtime):

* CPU kernels (``csrc/cpu/*.cpp``) always;
* CUDA kernels (``csrc/cuda/*.cu``) when a CUDA toolkit is found and either a GPU is visible or
  ``FORCE_CUDA=1`` (``TORCH_CUDA_ARCH_LIST`` is respected; a default list otherwise);
* nothing when ``DETKIT_NO_EXT=1``: detkit then runs fully on its pure-PyTorch fallbacks.

The kernels are optional: where they cannot be built (no compiler, a failing compile, no torch in a
``--no-build-isolation`` build) the install goes on without them and says so in one line, unless
``DETKIT_REQUIRE_EXT=1`` (what ``make test`` and CI set) turns that into an error.

The top-level ``configs/`` tree is installed as the package ``detkit.model_zoo.configs``, so the
shipped configs work from any directory; an editable install reads them from the checkout.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

from setuptools import find_namespace_packages, find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# Turing to Hopper (CUDA 13 dropped Volta), plus PTX so newer GPUs can JIT the Hopper code.
DEFAULT_CUDA_ARCH_LIST = "7.5;8.0;8.6;8.9;9.0+PTX"
HOW_TO_BUILD = ("to build them, install a C++ compiler (and a CUDA toolkit for the GPU kernels), then run "
                "`pip install --no-build-isolation --no-deps --force-reinstall <this checkout>` "
                "with torch installed")
CONFIGS_PACKAGE = "detkit.model_zoo.configs"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _without_kernels(reason: str) -> None:
    """The one line that says the kernels were not built, why, and how to build them."""
    print(f"detkit: compiled kernels not built ({reason}); detkit will run on its pure-PyTorch "
          f"fallbacks; {HOW_TO_BUILD}", file=sys.stderr, flush=True)


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


def _optional_build_ext(base: type) -> type:
    """``base`` (torch's BuildExtension) whose failure leaves an install on the fallbacks."""

    class OptionalBuildExtension(base):  # type: ignore[misc, valid-type]
        def run(self) -> None:
            try:
                super().run()
            except Exception as exc:  # no compiler, a compile error, a missing header...
                if _env_flag("DETKIT_REQUIRE_EXT"):
                    raise
                # Nothing half-built is installed or copied into the source tree.
                self.extensions = []
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                _without_kernels(f"the build failed: {first_line}")

    return OptionalBuildExtension


def _extensions_and_cmdclass() -> tuple[list, dict]:
    if _env_flag("DETKIT_NO_EXT"):
        _without_kernels("DETKIT_NO_EXT=1")
        return [], {}
    _locate_cuda_home()  # before cpp_extension is imported: it reads CUDA_HOME once
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:  # --no-build-isolation without torch installed
        if _env_flag("DETKIT_REQUIRE_EXT"):
            raise
        _without_kernels(f"torch cannot be imported at build time: {exc}")
        return [], {}

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
    build_ext = _optional_build_ext(BuildExtension).with_options(use_ninja=True)
    return [extension], {"build_ext": build_ext}


def _packages() -> list[str]:
    """detkit's packages, and configs/ (namespace folders included) as detkit.model_zoo.configs."""
    configs = find_namespace_packages(where=os.path.join(ROOT, "configs"), exclude=["*__pycache__*"])
    return find_packages(include=["detkit", "detkit.*"]) + [CONFIGS_PACKAGE] + [
        f"{CONFIGS_PACKAGE}.{name}" for name in configs
    ]


ext_modules, cmdclass = _extensions_and_cmdclass()

setup(
    packages=_packages(),
    package_dir={CONFIGS_PACKAGE: "configs"},
    # darknet cfgs, class-name lists and sample photos used at run time
    package_data={"detkit": ["model_data/**/*"]},
    include_package_data=True,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
