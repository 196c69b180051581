"""The command frame shared by every ``vt-*`` tool.

Each tool in ``tools/`` declares a typer app and calls :func:`run`.  The frame gives
all of them the same behaviour (after csvkit's ``cli.py``):

- ``-`` means standard input or output; records go to stdout, messages to stderr;
- a :class:`~vtcav_common.errors.VtcavError` prints ``vt-x: error: message`` on one
  line and exits 1 (2 for usage errors), no traceback unless ``VTCAV_DEBUG=1``;
- SIGPIPE is restored so ``vt-detect ... | head`` ends quietly;
- outputs are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

import typer

from . import __version__
from .errors import UsageError, VtcavError  # noqa: F401  (re-exported for tools)

STDIO = "-"


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


# --------------------------------------------------------------------------- messages
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    """A progress or summary message: stderr, never stdout (stdout carries records)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def progress(iterable, total: int | None = None, description: str = ""):
    """Iterate with a progress bar on a terminal's stderr, silently otherwise."""
    if _quiet or not sys.stderr.isatty():
        yield from iterable
        return
    from rich.progress import Progress
    from rich.console import Console

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)


# --------------------------------------------------------------------------- files
def open_text_input(path: str) -> IO[str]:
    """A path or ``-`` (standard input) opened for reading text, with a clear error."""
    if path == STDIO:
        return sys.stdin
    p = Path(path)
    if not p.exists():
        raise VtcavError(f"{path}: no such file")
    if p.is_dir():
        raise VtcavError(f"{path}: is a directory, expected a file")
    return open(p, encoding="utf-8")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only.

    An interrupted or failed run leaves no half-written file that looks whole, and an
    existing file at ``path`` is kept untouched until the new one is complete.
    """
    final = Path(path)
    if final.parent and not final.parent.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + (suffix or final.suffix),
                               dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def open_text_output(path: str) -> Iterator[IO[str]]:
    """``-`` for standard output, or a file written atomically."""
    if path == STDIO:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yield handle


def read_lines(handle: IO[str]) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers."""
    for number, line in enumerate(handle, start=1):
        line = line.strip()
        if line:
            yield number, line


def parse_rgb(text: str | None, option: str) -> list[float] | None:
    """``"0.45,0.45,0.45"`` -> three floats (per-channel mean or std), or a usage error."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} takes three comma-separated numbers, got '{text}'") from None
    if len(values) != 3:
        raise UsageError(f"{option} takes three comma-separated numbers (R,G,B in [0, 1]), got '{text}'")
    return values


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIO else str(path)
