"""File helpers every tool shares: ``-`` for stdin/stdout, atomic outputs, numbered lines.

No typer here: library modules (``video``, ``records``, ``h5io``) import these.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import VtcavError

STDIO = "-"


def display_name(path: str) -> str:
    """How a path is named in messages: ``<stdin>`` for ``-``."""
    return "<stdin>" if path == STDIO else str(path)


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
    """Non-blank lines with their 1-based numbers.

    >>> import io
    >>> list(read_lines(io.StringIO("a\\n\\n b \\n")))
    [(1, 'a'), (3, 'b')]
    """
    for number, line in enumerate(handle, start=1):
        line = line.strip()
        if line:
            yield number, line
