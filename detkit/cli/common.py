"""What the subcommands share: overrides anywhere on the line, config names, one-line errors.

Nothing here imports torch: ``detkit --help`` and ``detkit <sub> --help`` parse without it. Each
subcommand module imports its heavy dependencies inside its ``run()``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# `a.b.c=value`: a dotted key of identifiers (digits allowed after the first part), then `=`.
OVERRIDE_RE = re.compile(r"^[A-Za-z_]\w*(\.\w+)*=")

# Exceptions that a user's mistake raises (besides CommandError, missing files, ValueError and
# KeyError, which cover detkit.utils.checkpoint.CheckpointError and the model zoo's errors too):
# (module, class name). Looked up in sys.modules when an error arrives, so listing a class never
# imports its module; a module that is not loaded cannot have raised it.
USER_ERROR_CLASSES: tuple[tuple[str, str], ...] = (
    ("detkit.config", "ConfigError"),
    ("detkit.utils.checkpoint", "CheckpointError"),
    ("detkit.utils.image_io", "ImageReadError"),
    ("detkit.apis.video", "VideoOpenError"),
)


class CommandError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def is_override(item: str) -> bool:
    """Whether a positional argument is a ``key.path=value`` override (and not an existing file)."""
    return bool(OVERRIDE_RE.match(item)) and not os.path.exists(item)


def split_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    fields: Sequence[str], rest: str | None = None) -> None:
    """Move every ``key=value`` among the positionals into ``args.overrides``; refill the others.

    argparse fills positionals in order, so ``detkit train a=1 CONFIG`` first reads ``a=1`` as
    the config. All positional values (``fields``, then the list ``rest``, then
    ``args.overrides``) are pooled, the overrides taken out, and the remaining values handed back
    to ``fields`` one each and the surplus to ``rest``.

    Args:
        parser: For the usage error when a field is left without a value or a value is surplus.
        args: The parsed namespace; changed in place.
        fields: Names of the single-value positionals, in order.
        rest: Name of a trailing list positional (``nargs="+"`` or ``"*"``) taking the surplus.
    """
    pooled = [getattr(args, name) for name in fields if getattr(args, name) is not None]
    pooled += list(getattr(args, rest) or []) if rest else []
    pooled += list(getattr(args, "overrides", None) or [])
    args.overrides = [item for item in pooled if is_override(item)]
    values = [item for item in pooled if not is_override(item)]
    missing = [name.upper() for name in fields[len(values):]]
    if rest and len(values) <= len(fields):
        missing.append(rest.upper())
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    for name, value in zip(fields, values):
        setattr(args, name, value)
    surplus = values[len(fields):]
    if rest:
        setattr(args, rest, surplus)
    elif surplus:
        parser.error(f"unexpected argument(s) {' '.join(surplus)}; overrides are key.path=value")


def resolve_config(config: str | os.PathLike[str]) -> Path:
    """A config file named by path or by model-zoo name (:func:`detkit.model_zoo.resolve_config_file`).

    Raises:
        CommandError: A path (it has a ``/`` or ends in ``.py``) to no file and no zoo config.
        detkit.model_zoo.UnknownConfigError: Neither a file nor a zoo name (closest names listed).
    """
    from detkit.model_zoo import resolve_config_file

    try:
        return resolve_config_file(config)
    except FileNotFoundError as error:
        raise CommandError(str(error)) from None


def load_config_arg(config: Any, overrides: Sequence[str] | None = None) -> Any:
    """A loaded config from a path, a model-zoo name or an already loaded config, with overrides
    (:func:`detkit.model_zoo.load_config_like`; a missing path is a :class:`CommandError`)."""
    import detkit.engine.settings  # noqa: F401 - registers the train section's types for the override check
    from detkit.model_zoo import load_config_like

    if isinstance(config, (str, os.PathLike)):
        config = resolve_config(config)
    return load_config_like(config, overrides)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` comes from bad input (printed in one line) rather than from a bug."""
    if isinstance(error, (CommandError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                          ValueError, KeyError)):
        return True
    for module_name, class_name in USER_ERROR_CLASSES:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(error, cls):
            return True
    return False


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (a KeyError's quotes dropped, later lines joined)."""
    message = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    head, tail = lines[0], lines[1:]
    return head + (" " if head.endswith(":") else "; ") + "; ".join(tail) if tail else head


def debug_requested(args: argparse.Namespace | None = None) -> bool:
    """``--debug`` on the command line or ``DETKIT_DEBUG=1`` in the environment."""
    if getattr(args, "debug", False):
        return True
    return os.environ.get("DETKIT_DEBUG", "0").lower() in ("1", "true", "yes", "on")


def report_error(prog: str, error: BaseException) -> int:
    """Print ``<prog>: error: <message>`` on stderr; the exit status 2."""
    print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
    return 2
