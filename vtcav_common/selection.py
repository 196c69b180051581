"""Choosing sets (concepts, random sets, layers) by name or shell-style pattern, one rule everywhere.

``--concept 'ball_*'`` or ``--set 'random_0?'`` select every name the pattern matches
(:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[seq]``; case-sensitive, as set names are);
a plain name selects itself. A pattern that matches nothing is an error naming what exists,
so a typo never silently selects nothing.

>>> select(["ball_left", "ball_right", "random_00"], ["ball_*"])
['ball_left', 'ball_right']
>>> select(["ball_left", "random_00", "random_01"], ["random_0[1]", "ball_left"])
['ball_left', 'random_01']
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Sequence

from .errors import UsageError

PATTERN_HELP = "A name or a shell-style pattern ('ball_*', 'random_0?'); repeatable."


def is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` is one of ``patterns`` or matches one of them."""
    return any(name == p or fnmatchcase(name, p) for p in patterns)


def select(names: Sequence[str], patterns: Sequence[str] | None, what: str = "set", where: str = "") -> list[str]:
    """The ``names`` that match any of ``patterns``, in the order of ``names``; all when none given.

    Each pattern must match at least one name, or a usage error says which and lists the names.
    """
    if not patterns:
        return list(names)
    for pattern in patterns:
        if not any(matches(name, [pattern]) for name in names):
            known = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + f", ... ({len(names)})"
            place = f"{where}: " if where else ""
            raise UsageError(f"{place}no {what} matches '{pattern}' ({what}s: {known or 'none'})")
    return [name for name in names if matches(name, patterns)]
