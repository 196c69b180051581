"""Temporal sampling of clips, without torch (commands that only cut clips import this)."""

from __future__ import annotations

import numpy as np


def temporal_indices(length: int, frames: int) -> np.ndarray:
    """``frames`` indices spread uniformly over ``length`` frames (repeats if too short).

    >>> temporal_indices(10, 4).tolist()
    [0, 3, 6, 9]
    """
    return np.linspace(0, length - 1, frames).round().astype(int)
