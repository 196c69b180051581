"""Concept geometries: where the crop window of each clip frame lies.

A geometry is one function registered by name; ``vt-concepts spatiotemporal --geometry`` and
its help text take the list from here, so a new geometry is one decorated function in this
file. Each function gets the clip's plan (frames and the object's boxes), the frame size, the
output size and the context factor, and returns the T x 4 crop windows in source pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

DEFAULT_CONTEXT = 1.5     # window side = object side x context: the object plus its surroundings


@dataclass(frozen=True)
class Geometry:
    name: str
    windows: Callable       # (plan, frame_w, frame_h, out_size, context) -> T x 4 ints
    help: str
    for_tracks: bool        # offered by `vt-concepts spatiotemporal --geometry`


GEOMETRIES: dict[str, Geometry] = {}


def geometry(name: str, help: str, for_tracks: bool = True):
    """Register a geometry under ``name`` (see the module docstring)."""
    def register(function):
        GEOMETRIES[name] = Geometry(name, function, help, for_tracks)
        return function
    return register


def track_geometries() -> list[str]:
    """The names ``--geometry`` accepts.

    >>> track_geometries()
    ['window', 'follow']
    """
    return [g.name for g in GEOMETRIES.values() if g.for_tracks]


def geometry_help() -> str:
    return " ".join(f"`{g.name}`: {g.help}" for g in GEOMETRIES.values() if g.for_tracks)


def context_window(box: Iterable[float], frame_w: int, frame_h: int, out_size: tuple[int, int],
                   context: float = DEFAULT_CONTEXT) -> tuple[int, int, int, int]:
    """The window around ``box``: the output's aspect (square for H = W), ``context``
    times the object's extent, shifted (and if need be shrunk) to lie inside the frame.

    >>> context_window((10, 10, 20, 20), 100, 100, (32, 32))
    (8, 8, 23, 23)
    """
    x1, y1, x2, y2 = box
    aspect = out_size[1] / out_size[0]                      # width / height
    height = max(y2 - y1, (x2 - x1) / aspect) * context
    height = min(height, frame_h, frame_w / aspect)
    win_h = max(2, int(round(height)))
    win_w = max(2, min(frame_w, int(round(win_h * aspect))))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(np.clip(round(cx - win_w / 2), 0, frame_w - win_w))
    top = int(np.clip(round(cy - win_h / 2), 0, frame_h - win_h))
    return (left, top, left + win_w, top + win_h)


def union_box(boxes: np.ndarray) -> tuple[float, float, float, float]:
    return (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))


def _one_window(plan, frame_w, frame_h, out_size, context) -> np.ndarray:
    window = context_window(union_box(plan.boxes), frame_w, frame_h, out_size, context)
    return np.repeat(np.array(window)[None], len(plan.boxes), axis=0)


@geometry("window", "a fixed window around the union of the object's boxes over the clip, so the object "
                    "moves inside it (keeps the motion).")
def _window(plan, frame_w, frame_h, out_size, context) -> np.ndarray:
    return _one_window(plan, frame_w, frame_h, out_size, context)


@geometry("follow", "the window follows the box, so the object stays put and the background slides the "
                    "other way (destroys or inverts the motion cue).")
def _follow(plan, frame_w, frame_h, out_size, context) -> np.ndarray:
    return np.array([context_window(b, frame_w, frame_h, out_size, context) for b in plan.boxes])


@geometry("static", "one frame's box repeated (spatial concepts).", for_tracks=False)
def _static(plan, frame_w, frame_h, out_size, context) -> np.ndarray:
    return _one_window(plan, frame_w, frame_h, out_size, context)     # all boxes are the same


@geometry("random", "the planned windows themselves (random clips).", for_tracks=False)
def _random(plan, frame_w, frame_h, out_size, context) -> np.ndarray:
    return plan.boxes.astype(int)


def windows_for(plan, frame_w: int, frame_h: int, out_size: tuple[int, int], context: float) -> np.ndarray:
    """The crop window of each clip frame (T x 4 ints, source pixels).

    A box that lies outside the frame (wrong video, wrong units, an importer's bad row)
    is an error: clamped to the frame it would silently become a crop of the frame's
    edge, or of the whole frame.
    """
    boxes = np.asarray(plan.boxes, dtype=np.float64)
    outside = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) \
        | (boxes[:, 0] >= frame_w) | (boxes[:, 1] >= frame_h)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        from ..core.errors import VtcavError

        raise VtcavError(f"{plan.video_path}: box {[round(float(v), 2) for v in boxes[i]]} of {plan.video_id} at "
                         f"frame {int(plan.frames[i])} lies outside the {frame_w}x{frame_h} frame "
                         f"(detections of another video, or in other units?)")
    return GEOMETRIES[plan.geometry].windows(plan, frame_w, frame_h, out_size, context)
