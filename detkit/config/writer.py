"""The writer: a config tree back to Python source (``save_config``) or to log text (``format_config``).

``save_config`` writes a file that ``load_config`` turns into the same tree: each target is
imported by module and qualified name, values are written as literals, placeholders as
``Inherit("key")`` and config-only keys as ``L(target, config_only=[...])``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from detkit.config.lazy import EXEC_MODULE, TARGET, ConfigError, Inherit, LazyCall, target_name

__all__ = ["format_config", "save_config"]


def reference(target: Any, key: str) -> tuple[str, str]:
    """``(module, qualname)`` of an importable callable, or a ConfigError naming ``key``."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    problem = None
    if not module or not qualname or "<" in qualname:
        problem = "it is a lambda or a local function/class"
    elif module in ("__main__", EXEC_MODULE):
        problem = f"it is defined in {'a config file' if module == EXEC_MODULE else '__main__'}"
    elif module != "configs" and not module.startswith("configs."):  # configs.* load afresh
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            problem = f"{module}.{qualname} cannot be imported"
    if problem:
        raise ConfigError(f"cannot save {key or '(root)'}: {target!r} is not an importable "
                          f"callable ({problem}); use a module-level class or function")
    return module, qualname


class _Writer:
    """Turns a config tree into Python source; ``name`` maps a callable to the text naming it."""

    def __init__(self, name: Callable[[Any, str], str], strict: bool) -> None:
        self.name = name
        self.strict = strict

    def value(self, v: Any, key: str, indent: int) -> str:
        if isinstance(v, LazyCall):
            items = [(k, x) for k, x in v.items() if k != TARGET]
            extra = f", config_only={list(v.config_only)!r}" if v.config_only else ""
            return f"L({self.name(v[TARGET], key)}{extra})" + self.call(items, key, indent)
        if isinstance(v, Inherit):
            return repr(v)
        if isinstance(v, dict):
            if all(isinstance(k, str) and k.isidentifier() for k in v):
                return "dict" + self.call(list(v.items()), key, indent)
            parts = [f"{k!r}: {self.value(x, f'{key}.{k}', indent + 1)}" for k, x in v.items()]
            return self.block("{", "}", parts, indent)
        if isinstance(v, (list, tuple)):
            parts = [self.value(x, f"{key}.{i}", indent + 1) for i, x in enumerate(v)]
            if isinstance(v, tuple) and len(parts) == 1:
                return f"({parts[0]},)"
            return self.block(*("()" if isinstance(v, tuple) else "[]"), parts, indent)
        if isinstance(v, float) and not math.isfinite(v):
            return f"float({str(v)!r})"
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
            return repr(v)
        if inspect.isclass(v) or inspect.isroutine(v):
            return self.name(v, key)
        if self.strict:
            raise ConfigError(f"cannot save {key}: {type(v).__name__} value {v!r} is not a "
                              "Python literal, a config node or an importable callable")
        return repr(v)

    def call(self, items: list[tuple[str, Any]], key: str, indent: int) -> str:
        parts = [(f"{k}=" if k.isidentifier() else f"**{{{k!r}: ") +
                 self.value(x, f"{key}.{k}", indent + 1) + ("" if k.isidentifier() else "}")
                 for k, x in items]
        return self.block("(", ")", parts, indent)

    @staticmethod
    def block(open_: str, close: str, parts: list[str], indent: int) -> str:
        """Parts on one line when short and flat, else one per line with trailing commas."""
        flat = ", ".join(parts)
        if "\n" not in flat and len(flat) + 4 * indent < 80:
            return open_ + flat + close
        pad = "    " * indent
        return open_ + "\n" + "".join(f"{pad}    {p},\n" for p in parts) + pad + close

    def body(self, cfg: Mapping[str, Any]) -> str:
        out = []
        for key, v in cfg.items():
            if not (isinstance(key, str) and key.isidentifier()):
                raise ConfigError(f"cannot write top-level key {key!r}: not a Python name")
            out.append(f"{key} = {self.value(v, key, 0)}\n")
        return "\n".join(out)


def save_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config as a Python file that ``load_config`` turns into the same tree.

    Each target is imported by module and qualified name; values are written as literals.

    Raises:
        ConfigError: a target is a lambda, a local function or otherwise not importable, or a
            value is not a literal; the message names the key.
    """
    imports: dict[tuple[str, str], str] = {}  # (module, top-level name) -> local alias
    taken = set(cfg) | {"L", "Inherit"}

    def name(target: Any, key: str) -> str:
        module, qualname = reference(target, key)
        top, _, rest = qualname.partition(".")
        if (module, top) not in imports:
            alias, n = top, 1
            while alias in taken:
                alias, n = f"{top}_{n}", n + 1
            taken.add(alias)
            imports[(module, top)] = alias
        return imports[(module, top)] + (f".{rest}" if rest else "")

    body = _Writer(name, strict=True).body(cfg)
    source = getattr(cfg, "__dict__", {}).get("_cfg_file", "<in memory>")
    lines = ["# Resolved config written by detkit.config.save_config", f"# from {source}",
             "from detkit.config import Inherit, L"]
    by_module: dict[str, list[str]] = {}
    for (module, top), alias in sorted(imports.items()):
        by_module.setdefault(module, []).append(top + (f" as {alias}" if alias != top else ""))
    lines += [f"from {module} import {', '.join(names)}" for module, names in by_module.items()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n" + body)


def format_config(cfg: Any) -> str:
    """Readable text of a config for logs: the ``save_config`` body with dotted target names.

    Args:
        cfg: a loaded config (one ``name = ...`` line per top-level key), or any node or value.
    """
    writer = _Writer(lambda target, key: target_name(target), strict=False)
    if isinstance(cfg, Mapping) and not isinstance(cfg, LazyCall):
        return writer.body(cfg)
    return writer.value(cfg, "", 0)
