"""Cutting the planned clips: crop windows around objects, and decoding each video once to
append its clips to their sets in bounded batches."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from ..core import video
from ..formats.clips import Sampling, SetAppender
from .geometry import DEFAULT_CONTEXT, context_window, union_box, windows_for  # noqa: F401  (re-exported)
from .plans import ClipPlan

FLUSH_EVERY = 32          # clips held in memory before they are written


def crop_resize(frame: np.ndarray, window: Iterable[int], out_size: tuple[int, int]) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in window)
    crop = frame[y1:y2, x1:x2]
    shrinking = crop.shape[0] > out_size[0] or crop.shape[1] > out_size[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_size[1], out_size[0]), interpolation=interpolation)


def cut_clip(frames: dict[int, np.ndarray], plan: ClipPlan, sampling: Sampling,
             context: float) -> tuple[np.ndarray, np.ndarray]:
    """The clip (T x H x W x 3) and its windows (T x 4) for one plan."""
    first = frames[int(plan.frames[0])]
    frame_h, frame_w = first.shape[:2]
    windows = windows_for(plan, frame_w, frame_h, sampling.size, context)
    clip = np.empty((sampling.frames, *sampling.size, 3), np.uint8)
    for t, (index, window) in enumerate(zip(plan.frames, windows)):
        same_as_before = t > 0 and index == plan.frames[t - 1] and np.array_equal(window, windows[t - 1])
        clip[t] = clip[t - 1] if same_as_before else crop_resize(frames[int(index)], window, sampling.size)
    return clip, windows


# --------------------------------------------------------------------------- rendering
def by_video(plans: list[ClipPlan]) -> Iterator[tuple[str, list[ClipPlan]]]:
    """Plans grouped by video path, videos in order of first appearance."""
    groups: dict[str, list[ClipPlan]] = {}
    for plan in plans:
        groups.setdefault(plan.video_path, []).append(plan)
    yield from groups.items()


def render_plans(plans: list[ClipPlan], sets: dict[str, SetAppender], sampling: Sampling,
                 context: float = DEFAULT_CONTEXT,
                 progress: Callable[[Iterable, int], Iterable] = lambda it, n: it) -> None:
    """Decode each video once, cut its clips, and append them to their sets in batches."""
    buffers: dict[str, list] = {name: [] for name in sets}
    held = 0  # clips buffered over all sets: the bound on memory, however many sets
    groups = list(by_video(plans))
    for path, video_plans in progress(groups, len(groups)):
        wanted = sorted({int(i) for plan in video_plans for i in plan.frames})
        frames = video.read_frames(path, wanted)
        for plan in video_plans:
            clip, windows = cut_clip(frames, plan, sampling, context)
            buffers[plan.set_name].append((clip, plan.video_id, plan.frames, plan.track_id, windows))
            held += 1
            if held >= FLUSH_EVERY:
                _flush_all(sets, buffers)
                held = 0
        del frames
    _flush_all(sets, buffers)


def _flush_all(sets: dict[str, SetAppender], buffers: dict[str, list]) -> None:
    for name, buffer in buffers.items():
        _flush(sets[name], buffer)


def _flush(target: SetAppender, buffer: list) -> None:
    if not buffer:
        return
    clips, video_ids, frames, track_ids, windows = zip(*buffer)
    target.append(np.stack(clips), list(video_ids), np.stack(frames), list(track_ids), np.stack(windows))
    buffer.clear()
