"""``vt-embed --pool``: average pooling of activations AND gradients over time and space.

Pooling P is linear, so it is exact for TCAV when activations and gradients get the same
P: a CAV v learnt on pooled activations is the direction Pᵀv in the full space, and the
directional derivative along it is ∇·Pᵀv = (P∇)·v, the pooled gradient dotted with v.
Pooling trades the resolution of a concept for size, never correctness (tested in
tests/test_embed.py). The pooling is part of a file's provenance (``pool``), so pooled
and unpooled files are never combined.

Specs (``parse_pool``): ``TxHxW`` average-pools each layer's T x H x W grid to at most
that grid (adaptive pooling, as torch's ``adaptive_avg_pool3d``; an axis already smaller
stays as it is); ``time`` averages over time only (T becomes 1), ``space`` over space only
(H and W become 1); ``1x1x1`` is global average pooling; ``none`` (or no option) keeps
the full activations. Axes are kept (size 1), so channel axes and layouts do not move.

>>> parse_pool("2x4x4")
Pooling(text='2x4x4', grid=(2, 4, 4))
>>> parse_pool("space").grid
(None, 1, 1)
>>> pooled_shape((96, 16, 56, 56), 0, parse_pool("2x4x4"))
(96, 2, 4, 4)
>>> pooled_shape((8, 28, 28, 192), 3, parse_pool("time"))
(1, 28, 28, 192)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import UsageError

WORDS = {"time": (1, None, None), "space": (None, 1, 1)}
_GRID = re.compile(r"^(\d+)x(\d+)x(\d+)$")
HELP = ("Average-pool activations and gradients alike (exact for TCAV): TxHxW (e.g. 2x4x4, at most that grid), "
        "'time', 'space', 1x1x1 (global) or none. Recorded in provenance; pooled and unpooled files do not mix.")


@dataclass(frozen=True)
class Pooling:
    """A pooling spec: its text (as recorded) and the target grid, None = keep that axis."""

    text: str
    grid: tuple[int | None, int | None, int | None]


def parse_pool(text: str | None) -> Pooling | None:
    """``--pool`` text -> a :class:`Pooling`, or None for no pooling; a usage error when malformed."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    word = text.strip().lower()
    if word in WORDS:
        return Pooling(word, WORDS[word])
    match = _GRID.match(word)
    if not match or min(int(v) for v in match.groups()) < 1:
        raise UsageError(f"--pool takes TxHxW (positive integers, e.g. 2x4x4), 'time', 'space' or 'none', "
                         f"got '{text}'")
    grid = tuple(int(v) for v in match.groups())
    return Pooling("x".join(map(str, grid)), grid)


def grid_axes(shape: tuple[int, ...], channel_axis: int | None, layer: str) -> tuple[int, int, int]:
    """The positions of T, H, W in a per-sample shape (C x T x H x W or T x H x W x C)."""
    if len(shape) != 4 or channel_axis not in (0, 3):
        raise UsageError(f"--pool: layer {layer} gives {'x'.join(map(str, shape)) or 'a scalar'} per clip, not "
                         f"a C x T x H x W or T x H x W x C grid; leave it out or drop --pool")
    return (1, 2, 3) if channel_axis == 0 else (0, 1, 2)


def pooled_shape(shape: tuple[int, ...], channel_axis: int | None, pooling: Pooling | None,
                 layer: str = "?") -> tuple[int, ...]:
    """The per-sample shape after ``pooling`` (unchanged without one)."""
    if pooling is None:
        return tuple(shape)
    out = list(shape)
    for axis, target in zip(grid_axes(shape, channel_axis, layer), pooling.grid):
        if target is not None:
            out[axis] = min(target, shape[axis])
    return tuple(out)


def pool(batch, channel_axis: int | None, pooling: Pooling | None, layer: str = "?"):
    """Average-pool a torch tensor ``N x (per-sample shape)``; the same linear map for acts and grads."""
    if pooling is None:
        return batch
    import torch.nn.functional as F

    shape = tuple(batch.shape[1:])
    target = pooled_shape(shape, channel_axis, pooling, layer)
    if target == shape:
        return batch
    channels_last = grid_axes(shape, channel_axis, layer) == (0, 1, 2)
    x = batch.permute(0, 4, 1, 2, 3) if channels_last else batch
    size = target[:3] if channels_last else target[1:]
    y = F.adaptive_avg_pool3d(x.float(), size)
    return (y.permute(0, 2, 3, 4, 1) if channels_last else y).contiguous()
