"""Parsers of option values that the library shares with the front ends (no typer here).

Each raises :class:`~vtcav_common.core.errors.UsageError` (exit status 2) naming the option.
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


MAX_SIDE = 4096   # frames larger than 4K are not what a video model takes


def parse_size(text: str, minimum: int = 8) -> tuple[int, int]:
    """``--size``: ``"64"`` -> (64, 64); ``"64x48"`` -> (64, 48) as (H, W).

    >>> parse_size("64"), parse_size("64x48")
    ((64, 64), (64, 48))
    """
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < minimum:
        raise UsageError(f"--size must be H or HxW with sides of at least {minimum} pixels, got '{text}'")
    if max(values) > MAX_SIDE:   # --size 30000 would allocate tens of GiB per clip batch
        raise UsageError(f"--size {text}: sides of at most {MAX_SIDE} pixels")
    return (values[0], values[-1])


def square_size(text: str | None, minimum: int = 8) -> int | None:
    """``--size`` where the frame is square (a model's input, the synthetic world).

    >>> square_size("112"), square_size("112x112"), square_size(None)
    (112, 112, None)
    """
    if text is None:
        return None
    height, width = parse_size(text, minimum)
    if height != width:
        raise UsageError(f"--size {text}: this frame is square; give one number")
    return height
