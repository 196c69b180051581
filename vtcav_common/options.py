"""Options every command shares, declared once: one name, one meaning, one type.

The front ends in ``tools/`` use these as parameter defaults, e.g.
``output: str = options.output()``.  Old spellings stay as hidden aliases for one
release (``--out``, ``--batch``) so scripts written against them keep working.
"""

from __future__ import annotations

from .errors import UsageError


def parse_rgb(text: str | None, option: str) -> list[float] | None:
    """``"0.45,0.45,0.45"`` -> three floats (per-channel mean or std), or a usage error.

    >>> parse_rgb("0.45,0.45,0.45", "--mean")
    [0.45, 0.45, 0.45]
    >>> parse_rgb(None, "--mean") is None
    True
    """
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} takes three comma-separated numbers, got '{text}'") from None
    if len(values) != 3:
        raise UsageError(f"{option} takes three comma-separated numbers (R,G,B in [0, 1]), got '{text}'")
    return values
