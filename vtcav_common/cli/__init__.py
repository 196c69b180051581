"""Deprecated: the old single module of the command frame, kept for one release.

It was split into :mod:`vtcav_common.cli.frame` (the typer app, ``run``, ``entry``,
``--version``), :mod:`vtcav_common.core.files` (stdin/stdout, atomic outputs),
:mod:`vtcav_common.core.messages` (info, warn, progress) and :mod:`vtcav_common.cli.options`
(options shared by every command).  Import from those; this shim re-exports them.
The typer parts load only when asked for, so library code that still imports this
module for ``atomic_path`` or ``info`` does not pull in typer.
"""

from __future__ import annotations

from ..core.errors import IncompatibleError, UsageError, VtcavError  # noqa: F401
from ..core.files import STDIO, atomic_path, display_name, open_text_input, open_text_output, read_lines  # noqa: F401
from ..core.messages import info, progress, set_quiet, warn  # noqa: F401

_FRAME = ("entry", "make_app", "run", "version_option")


def __getattr__(name: str):
    if name in _FRAME:
        from . import frame

        return getattr(frame, name)
    if name == "parse_rgb":
        from .options import parse_rgb

        return parse_rgb
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
