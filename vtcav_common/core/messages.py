"""Messages to stderr: info (silenced by ``-q``), warnings, progress.

Standard output carries records only, so every message here goes to stderr.  Progress is
a rich bar on a terminal; elsewhere (SLURM logs, nohup, a pipe) it is a plain line at a
steady interval, ``VTCAV_PROGRESS_INTERVAL`` seconds (default 10), so a long step is never
silent for hours: ``vt-embed: clips 120/400 (30%), 2.1/s, ETA 2m13s``.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_quiet = False
_prog = "vtcav"
DEFAULT_INTERVAL = 10.0


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def set_prog(name: str) -> None:
    """The command's name, which starts every progress line."""
    global _prog
    _prog = name


def info(message: str) -> None:
    """A progress or summary message: stderr, never stdout (stdout carries records)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def progress(iterable, total: int | None = None, description: str = "", size=None):
    """Iterate over ``iterable``, showing progress on stderr unless ``-q``.

    ``size(item)``: how many units an item counts for (a batch of clips counts its clips;
    ``total`` is then in the same units); each item counts one without it.
    """
    if _quiet:
        yield from iterable
        return
    count = size or (lambda item: 1)
    if sys.stderr.isatty():
        yield from _bar(iterable, total, description, count)
        return
    yield from _lines(iterable, total, description, _interval(), count)


def _interval() -> float:
    text = os.environ.get("VTCAV_PROGRESS_INTERVAL", "")
    try:
        return max(float(text), 0.01) if text else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def _bar(iterable, total, description, count):
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task, count(item))


def format_duration(seconds: float) -> str:
    """``133`` -> ``2m13s``; ``4000`` -> ``1h06m``.

    >>> format_duration(7.4), format_duration(133), format_duration(4000)
    ('7s', '2m13s', '1h06m')
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(description: str, done: int, total: int | None, elapsed: float) -> str:
    """One plain progress line (without the command's name).

    >>> progress_line("clips", 120, 400, 57.0)
    'clips 120/400 (30%), 2.1/s, ETA 2m13s'
    >>> progress_line("videos", 3, None, 1.5)
    'videos 3, 2.0/s'
    """
    rate = done / elapsed if elapsed > 0 else 0.0
    text = f"{description or 'items'} {done}"
    if total:
        text += f"/{total} ({100 * done // total}%)"
    text += f", {rate:.{2 if rate < 1 else 1 if rate < 10 else 0}f}/s"
    if total and rate > 0 and done < total:
        text += f", ETA {format_duration((total - done) / rate)}"
    return text


_tickers: set[_Ticker] = set()


def stop_progress() -> None:
    """Stop every progress line now (the frame calls this before a command's last line, so that
    no progress line follows an error or the end)."""
    for ticker in list(_tickers):
        ticker.stop(finished=False)


class _Ticker:
    """Prints the count every ``interval`` seconds from a thread, so that one long item (a
    large batch on the CPU) does not stop the heartbeat."""

    def __init__(self, description: str, total: int | None, interval: float):
        self.description, self.total, self.interval = description, total, interval
        self.done, self.printed = 0, False
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        _tickers.add(self)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.print()

    def print(self) -> None:
        self.printed = True
        line = progress_line(self.description, self.done, self.total, time.monotonic() - self.started)
        print(f"{_prog}: {line}", file=sys.stderr, flush=True)

    def stop(self, finished: bool) -> None:
        if self not in _tickers:
            return
        _tickers.discard(self)
        self._stop.set()
        self._thread.join()
        if finished and self.printed:  # a log that showed progress also shows the end
            self.print()


def _lines(iterable, total, description, interval, count):
    ticker = _Ticker(description, total, interval)
    finished = False
    try:
        for item in iterable:
            yield item
            ticker.done += count(item)
        finished = True
    finally:
        ticker.stop(finished)
