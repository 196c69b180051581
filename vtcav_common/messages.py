"""Messages to stderr: info (silenced by ``-q``), warnings, progress.

Standard output carries records only, so every message here goes to stderr.
"""

from __future__ import annotations

import sys

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


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
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
