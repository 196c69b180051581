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


def expand(names: Sequence[str], requested: Sequence[str] | None, what: str = "set", where: str = "") -> list[str]:
    """``requested`` with each pattern replaced by the names it matches (in ``names``' order).

    Plain names are kept as given, in their place, so the caller's own checks and order
    apply to them; a name selected twice is kept once.

    >>> expand(["b", "random_00", "a", "random_01"], ["a", "random_*"])
    ['a', 'random_00', 'random_01']
    """
    out: list[str] = []
    for item in requested or ():
        found = select(names, [item], what, where) if is_pattern(item) else [item]
        out += [name for name in found if name not in out]
    return out


def hdf5_set_names(path: str, group: str) -> list[str]:
    """The names under ``group`` (``concepts`` of a clip file, ``sets`` of an embeddings file), in order;
    empty when the file cannot be read (the caller's own reader then reports why)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            found = handle.get(group)
            return list(found.keys()) if isinstance(found, h5py.Group) else []
    except (OSError, ValueError, KeyError, RuntimeError, TypeError):   # damaged: the reader says how
        return []
