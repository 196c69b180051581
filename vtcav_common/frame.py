"""The command frame shared by every ``vt-*`` tool.

Each tool in ``tools/`` declares a typer app with :func:`make_app` and runs it with
:func:`entry`.  The frame gives all of them the same behaviour (after csvkit's ``cli.py``):

- a :class:`~vtcav_common.errors.VtcavError` prints ``vt-x: error: message`` on one
  line and exits 1 (2 for usage errors), no traceback unless ``VTCAV_DEBUG=1``;
- SIGPIPE is restored so ``vt-detect ... | head`` ends quietly;
- ``--version`` prints the package version.

Only the front ends (``tools/``) and this module and :mod:`vtcav_common.options` import
typer; the library below them does not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Callable

import typer

from . import __version__
from .errors import UsageError, VtcavError  # noqa: F401  (re-exported for tools)


def make_app(name: str, help: str, epilog: str = "", single: bool = True) -> typer.Typer:
    """A typer app with the conventions of every vtcav tool."""
    app = typer.Typer(
        name=name,
        help=help,
        epilog=epilog,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        no_args_is_help=not single,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    if not single:
        @app.callback()
        def _group(version: bool = typer.Option(False, "--version", callback=_version_callback,
                                                is_eager=True, help="Print the version and exit.")):
            pass
    else:
        _give_command_the_app_help(app, help, epilog)
    return app


def _give_command_the_app_help(app: typer.Typer, help: str, epilog: str) -> None:
    """A single-command typer app shows its command's help, not the app's: lend the
    command the app's text and examples unless it brings its own."""
    command = app.command

    def command_with_app_help(*args, **kwargs):
        def register(function):
            if kwargs.get("help") is None and not function.__doc__:
                kwargs["help"] = help
            if kwargs.get("epilog") is None and epilog:
                kwargs["epilog"] = epilog
            return command(*args, **kwargs)(function)
        return register

    app.command = command_with_app_help


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vtcav {__version__}")
        raise typer.Exit(0)


def version_option() -> bool:
    """The ``--version`` option, for single-command tools."""
    return typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                        help="Print the version and exit.")


def run(app: typer.Typer, prog_name: str) -> None:
    """Run a tool's app with the shared error handling and exit codes."""
    with contextlib.suppress(AttributeError, ValueError):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        app(prog_name=prog_name, standalone_mode=True)
    except VtcavError as err:
        if os.environ.get("VTCAV_DEBUG"):
            raise
        print(f"{prog_name}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print(f"{prog_name}: interrupted", file=sys.stderr)
        sys.exit(130)


def entry(app: typer.Typer, prog_name: str) -> Callable[[], None]:
    """A console-script entry point for ``app``."""
    return lambda: run(app, prog_name)
