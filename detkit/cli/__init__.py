"""The ``detkit`` command: ``detkit COMMAND [ARGS] [key.path=value ...]``.

Each command is one module of this package (``detkit/cli/<command>.py``) that defines ``HELP`` (a
line for the command list), ``add_arguments(parser)``, ``run(args) -> exit status`` and, when it
needs one, ``check_args(parser, args)``; its docstring is the command's description.
``tools/<tool>.py`` call the same modules' ``main()``.

Conventions, the same for every command:

* config overrides ``key.path=value`` go anywhere on the line, before or after the options;
* a config is a file or a model-zoo name (``faster_rcnn_r18_fpn_1x_shapes``);
* a user's mistake (a config error, a missing file, a checkpoint that does not fit, an image that
  cannot be read, a bad value) is one line ``detkit COMMAND: error: ...`` on stderr and exit
  status 2; ``--debug`` (or ``DETKIT_DEBUG=1``) shows the traceback instead. Other errors keep
  their traceback;
* ``--help`` answers without importing torch: the modules import it inside ``run()``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from detkit.cli.common import debug_requested, is_user_error, report_error

# command -> module of detkit.cli, in the order of `detkit --help`.
COMMANDS: dict[str, str] = {
    "train": "train",
    "test": "test",
    "infer": "infer",
    "eval": "eval",
    "convert": "convert",
    "strip": "strip",
    "demo": "demo",
    "env": "env",
    "fetch": "fetch",
    "plot": "plot",
    "export": "export",
    # Dataset tools are two words, `detkit data SUBCOMMAND` (a module detkit/cli/data_<sub>.py each).
    "data convert": "data_convert",
    "data browse": "data_browse",
    "data stats": "data_stats",
}
GROUPS = ("data",)  # `detkit data convert ...` runs the command "data convert"

DESCRIPTION = """detkit: object detection in PyTorch.

  detkit demo                                           # detect on the sample photos
  detkit train faster_rcnn_r18_fpn_1x_shapes train.max_iter=200
  detkit test faster_rcnn_r18_fpn_1x_shapes runs/faster_rcnn_r18_fpn_1x_shapes/model_final.pth
  detkit infer CONFIG CHECKPOINT photos/ clip.mp4 --out runs/infer

A CONFIG is a config file or a model-zoo name. Config overrides key.path=value (Python literals) go
anywhere on the line. A mistake in what is asked (a config error, a missing file, a checkpoint that
does not fit) is one line `detkit COMMAND: error: ...` and exit status 2; --debug (or
DETKIT_DEBUG=1) shows the traceback."""

__all__ = ["COMMANDS", "build_parser", "main", "parse_command_args", "run_command"]


def command_module(name: str) -> ModuleType:
    """The module that implements command ``name``."""
    return importlib.import_module(f"detkit.cli.{COMMANDS[name]}")


def build_parser(name: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of one command (``prog`` defaults to ``detkit NAME``)."""
    module = command_module(name)
    parser = argparse.ArgumentParser(
        prog=prog or f"detkit {name}", description=module.__doc__,
        epilog=getattr(module, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also DETKIT_DEBUG=1)")
    return parser


def parse_command_args(name: str, argv: Sequence[str] | None = None,
                       prog: str | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) for command ``name``; options and positionals mix."""
    parser = build_parser(name, prog)
    args = parser.parse_intermixed_args(None if argv is None else list(argv))
    check = getattr(command_module(name), "check_args", None)
    if check is not None:
        check(parser, args)
    return args


def run_command(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse and run command ``name``; a user's mistake becomes one line and exit status 2.

    Returns:
        The exit status.
    """
    prog = prog or f"detkit {name}"
    args = parse_command_args(name, argv, prog)
    try:
        status = command_module(name).run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug_requested(args) or not is_user_error(error):
            raise
        return report_error(prog, error)
    return int(status or 0)


def _top_parser() -> argparse.ArgumentParser:
    from detkit import __version__

    parser = argparse.ArgumentParser(
        prog="detkit", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="`detkit COMMAND --help` describes a command.")
    parser.add_argument("--version", action="version", version=f"detkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        commands.add_parser(name, help=command_module(name).HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit [--debug] COMMAND ...``: the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0].startswith("-"):
        option = argv.pop(0)
        if option == "--debug":
            debug = True
        else:  # --help, --version, or an unknown option (argparse answers and exits)
            _top_parser().parse_args([option])
    if not argv:
        _top_parser().print_help(sys.stderr)
        return 2
    name = argv.pop(0)
    if name in GROUPS:
        subcommands = [command.split(" ", 1)[1] for command in COMMANDS if command.startswith(name + " ")]
        if not argv or argv[0] not in subcommands:
            _top_parser().error(f"{name} needs a subcommand: {', '.join(subcommands) or 'none yet'}")
        name = f"{name} {argv.pop(0)}"
    if name not in COMMANDS:
        _top_parser().error(f"unknown command {name!r} (choose from {', '.join(COMMANDS)})")
    return run_command(name, argv + (["--debug"] if debug else []))
