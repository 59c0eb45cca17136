"""Imports go down, never up (docs/design.md, "Layering"), checked on the source of every module.

Layers, bottom to top; a module may import its own layer and the layers below it::

    ops, structures, utils -> models, data -> evaluation -> config -> engine -> export -> apis
    -> model_zoo, cli -> detkit (the package's public API in detkit/__init__.py)

The config system sits just below the engine: the engine, the APIs and the command line build
things from configs; models and data never see one. Every ``import`` / ``from ... import`` is
checked, at module level and inside functions (a lazy import is still a dependency), relative
imports resolved, and ``importlib.import_module("detkit....")`` with a literal name too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "detkit"

LAYERS: dict[str, int] = {
    "detkit._C": 0, "detkit.ops": 0, "detkit.structures": 0, "detkit.utils": 0,
    "detkit.models": 1, "detkit.data": 1,
    "detkit.evaluation": 2,
    "detkit.config": 3,
    "detkit.engine": 4,
    "detkit.export": 5,
    "detkit.apis": 6,
    "detkit.model_zoo": 7, "detkit.cli": 7, "detkit.__main__": 7,
    "detkit": 8,  # detkit/__init__.py: the public API, above everything it gathers
}
LAYER_NAMES = {0: "ops/structures/utils", 1: "models/data", 2: "evaluation", 3: "config", 4: "engine",
               5: "export", 6: "apis", 7: "model_zoo/cli", 8: "detkit (public API)"}
# Names of the root package that any layer may import: plain constants, not the API.
ROOT_CONSTANTS = {"__version__"}

@dataclass(frozen=True)
class Violation:
    """One import from a layer above the importing module's."""

    file: str
    line: int
    statement: str
    target: str
    from_layer: int
    to_layer: int

    def __str__(self) -> str:
        return (f"{self.file}:{self.line}: {self.statement}  ({LAYER_NAMES[self.from_layer]} imports "
                f"{LAYER_NAMES[self.to_layer]})")


def layer_of(module: str) -> int | None:
    """The layer of a ``detkit`` module by its first two name parts (None when unassigned)."""
    parts = module.split(".")
    return LAYERS.get(".".join(parts[:2])) if len(parts) > 1 else LAYERS["detkit"]


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    """``detkit/data/transforms/ssd.py`` -> ``detkit.data.transforms.ssd`` (``__init__`` dropped)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str, str]]:
    """``(line, statement, absolute module)`` for every detkit import anywhere in ``tree``."""
    package = module if is_package else module.rpartition(".")[0]
    # ``import detkit`` depends on what is used of it: ``detkit.__version__`` is a constant,
    # ``detkit.apis.X`` would be the apis layer.
    root_uses = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 and isinstance(node.value, ast.Name) and node.value.id == "detkit"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "detkit" and alias.asname is None:
                    for used in sorted(root_uses - ROOT_CONSTANTS):
                        yield node.lineno, f"{ast.unparse(node)}; detkit.{used}", f"detkit.{used}"
                elif alias.name == "detkit" or alias.name.startswith("detkit."):
                    yield node.lineno, ast.unparse(node), alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not (source == "detkit" or source.startswith("detkit.")):
                continue
            if source == "detkit":  # from detkit import x: x is a submodule or a root name
                for alias in node.names:
                    if alias.name not in ROOT_CONSTANTS:
                        yield node.lineno, ast.unparse(node), f"detkit.{alias.name}"
            elif node.module is None:  # from . import x, y: each a submodule of the package
                for alias in node.names:
                    yield node.lineno, ast.unparse(node), f"{source}.{alias.name}"
            else:
                yield node.lineno, ast.unparse(node), source
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and node.args[0].value.startswith("detkit")
              and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
            yield node.lineno, ast.unparse(node), node.args[0].value


def upward_imports(source: str, module: str, file: str, is_package: bool = False) -> list[Violation]:
    """The imports of ``source`` (module ``module``) that reach above its own layer."""
    own = layer_of(module)
    assert own is not None, f"{file}: {module} has no layer in LAYERS"
    found = []
    for line, statement, target in imported_modules(ast.parse(source, file), module, is_package):
        to_layer = layer_of(target)
        if to_layer is not None and to_layer > own:
            found.append(Violation(file, line, statement, target, own, to_layer))
    return found


def package_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE_DIR.parent).as_posix()


def all_violations() -> list[Violation]:
    found = []
    for path in package_modules():
        found += upward_imports(path.read_text(encoding="utf-8"), module_name(path), relative(path),
                                path.name == "__init__.py")
    return found


def test_every_subpackage_has_a_layer() -> None:
    unassigned = sorted({module_name(path) for path in package_modules() if layer_of(module_name(path)) is None})
    assert not unassigned, ("give these detkit modules a layer in tests/test_layering.py LAYERS "
                            f"(the layers of the design: bottom ops/structures/utils, top model_zoo/cli): {', '.join(unassigned)}")


def test_no_module_imports_from_a_layer_above_it() -> None:
    offending = all_violations()
    assert not offending, (
        "imports must go down the layers ops/structures/utils -> models/data -> evaluation -> "
        "config -> engine -> export -> apis -> model_zoo/cli; these go up:\n  "
        + "\n  ".join(map(str, offending)))


# --------------------------------------------------------------------------------------------
# the checker itself


@pytest.mark.parametrize("source, module, is_package, expected", [
    ("from detkit.apis.result import Result", "detkit.utils.visualization", False, ["detkit.apis.result"]),
    ("def f():\n    from detkit.engine import checkpoint\n", "detkit.models.convert.x", False, ["detkit.engine"]),
    ("import detkit.config as c", "detkit.data.coco", False, ["detkit.config"]),
    ("from ...config import L", "detkit.models.convert.x", False, ["detkit.config"]),
    ("from .. import config", "detkit.data", True, ["detkit.config"]),
    ("from detkit import config, __version__", "detkit.models.zoo", False, ["detkit.config"]),
    ("import detkit\nv = detkit.__version__", "detkit.models.convert.x", False, []),
    ("import detkit\ndef f():\n    return detkit.apis.Predictor", "detkit.data.x", False, ["detkit.apis"]),
    ("import detkit as d", "detkit.ops.nms", False, ["detkit"]),
    ("importlib.import_module('detkit.cli')", "detkit.engine.runner", False, ["detkit.cli"]),
    ("from detkit.utils.checkpoint import load_weights\nfrom .common import X\nfrom detkit import __version__",
     "detkit.data.transforms.ssd", False, []),
    ("from detkit.config import load_config", "detkit.engine.runner", False, []),
    ("from detkit.engine import train", "detkit.apis.predictor", False, []),
])
def test_the_checker_resolves_imports(source: str, module: str, is_package: bool, expected: list[str]) -> None:
    found = upward_imports(source, module, "x.py", is_package)
    assert [v.target for v in found] == expected
    for violation in found:
        assert str(violation).startswith("x.py:") and violation.statement in str(violation)


def test_the_checker_reads_the_real_tree() -> None:
    names = {module_name(path) for path in package_modules()}
    assert {"detkit", "detkit.utils.checkpoint", "detkit.data.transforms", "detkit.evaluation.loop"} <= names
    assert layer_of("detkit.data.transforms.ssd") == 1 and layer_of("detkit") == 8
