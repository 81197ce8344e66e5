"""The ``assistant`` command line: every subcommand, and the one place errors become one line.

Expected failures (``common.errors.AssistantError`` and subclasses) print
``assistant: error: <what> (<hint>)`` and exit with their code (2 for usage, 1 otherwise).
Anything else is a bug: one line too, and the traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from common.errors import AssistantError

from assistant import __version__
from assistant.commands import COMMAND_MODULES


class _Parser(argparse.ArgumentParser):
    """argparse with our one-line error format (exit code 2)."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"assistant: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="assistant",
        description="A private coding assistant that trains its own model.",
    )
    parser.add_argument("--version", action="version", version=f"assistant {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--model", metavar="PATH",
                        help="checkpoint to chat with (default: [model] path in the settings, else models/)")
    parser.add_argument("--resume", nargs="?", const="list", metavar="ID",
                        help="resume a saved session: pick one from this project's sessions list, or give its ID")
    parser.add_argument("--continue", dest="continue_", action="store_true",
                        help="resume this project's latest session")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _default_action(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``assistant`` with no subcommand: open the TUI once it exists, else show what the CLI offers."""
    try:
        tui = importlib.import_module("assistant.tui.app")
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("assistant.tui"):
            raise
        parser.print_help()
        print("\nThe chat app (TUI) is not built yet; the commands above work today.")
        return 0
    return tui.run_app(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("ASSISTANT_DEBUG") == "1"
    try:
        handler = getattr(args, "handler", None)
        if handler is None:
            return _default_action(args, parser)
        return int(handler(args) or 0)
    except AssistantError as exc:
        if debug:
            traceback.print_exc()
        print(f"assistant: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("assistant: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        print(
            f"assistant: error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
