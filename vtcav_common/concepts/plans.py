"""Which clips to cut, planned from metadata alone (tracks, video headers): spatial,
spatiotemporal and random clip plans, and the seeded subset kept under --max-clips."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import video
from ..formats.clips import Sampling
from ..core.errors import VtcavError
from .catalog import Track, VideoEntry

RANDOM_MIN_FRACTION = 0.3  # random windows span 30-100% of the frame's shorter side


# --------------------------------------------------------------------------- plans
@dataclass
class ClipPlan:
    """One clip to cut: which set, which video, which frames and boxes, which geometry."""

    set_name: str
    video_id: str
    video_path: str
    track_id: int
    frames: np.ndarray  # T source frame indices
    boxes: np.ndarray   # T x 4: the object's boxes, or the windows themselves (geometry "random")
    geometry: str       # static | window | follow | random


@dataclass
class PlanStats:
    span: int = 1       # source frames a clip covers
    tracks: int = 0
    too_short: int = 0
    stretched: int = 0
    dropped_by_max: int = 0
    videos: set = field(default_factory=set)       # videos of the clips kept
    used_tracks: set = field(default_factory=set)  # (video_id, track_id) of the clips kept


def spread(first: int, last: int, count: int) -> list[int]:
    """Up to ``count`` distinct integers evenly spread over ``[first, last]``."""
    if count <= 1:
        return [(first + last) // 2]
    return sorted(set(np.linspace(first, last, count).round().astype(int).tolist()))


def plan_spatial(tracks: list[Track], set_name: str, sampling: Sampling, per_track: int = 1,
                 min_track: int = 1) -> tuple[list[ClipPlan], PlanStats]:
    """One static clip per chosen frame: frames spread evenly along each track."""
    plans, stats = [], PlanStats(span=min_track)
    for track in tracks:
        if track.length < min_track:
            stats.too_short += 1
            continue
        stats.tracks += 1
        for i in spread(0, track.length - 1, per_track):
            frames = np.full(sampling.frames, track.frames[i])
            boxes = np.repeat(track.boxes[i][None], sampling.frames, axis=0)
            plans.append(ClipPlan(set_name, track.video_id, track.video, track.track_id, frames, boxes, "static"))
    return plans, stats


def plan_spatiotemporal(tracks: list[Track], set_name: str, sampling: Sampling, geometry: str = "window",
                        per_track: int = 1, min_track: int | None = None) -> tuple[list[ClipPlan], PlanStats]:
    """Clips of T frames, ``frame_stride`` apart, along each track.

    A track must cover the clip's whole span, ``(T - 1) * stride + 1`` frames.  With a
    smaller ``min_track``, shorter tracks are stretched to T frames by repeating frames
    (which slows their motion down), and counted as such.
    """
    span = (sampling.frames - 1) * sampling.frame_stride + 1
    min_track = span if min_track is None else min_track
    plans, stats = [], PlanStats(span=min_track)
    offsets = np.arange(sampling.frames) * sampling.frame_stride
    for track in tracks:
        if track.length < min_track:
            stats.too_short += 1
            continue
        stats.tracks += 1
        if track.length >= span:
            choices = [start + offsets for start in spread(0, track.length - span, per_track)]
        else:
            stats.stretched += 1
            choices = [np.linspace(0, track.length - 1, sampling.frames).round().astype(int)]
        for positions in choices:
            plans.append(ClipPlan(set_name, track.video_id, track.video, track.track_id,
                                  track.frames[positions], track.boxes[positions], geometry))
    return plans, stats


def limit(plans: list[ClipPlan], max_clips: int | None, rng: np.random.Generator,
          stats: PlanStats) -> list[ClipPlan]:
    """At most ``max_clips`` plans, a seeded random subset kept in its original order."""
    if max_clips is not None and len(plans) > max_clips:
        keep = np.sort(rng.choice(len(plans), size=max_clips, replace=False))
        stats.dropped_by_max += len(plans) - max_clips
        plans = [plans[i] for i in keep]
    stats.videos = {p.video_id for p in plans}
    # an untracked detection (track -1) counts as a track of its own
    stats.used_tracks = {(p.video_id, p.track_id if p.track_id >= 0 else -1 - int(p.frames[0])) for p in plans}
    return plans


@dataclass(frozen=True)
class RandomDraw:
    sets: int = 10
    per_set: int = 50
    min_fraction: float = RANDOM_MIN_FRACTION


def plan_random(entries: list[VideoEntry], names: list[str], sampling: Sampling, draw: RandomDraw,
                rng: np.random.Generator) -> list[ClipPlan]:
    """``per_set`` random clips for each set name, no clip drawn twice across sets.

    Each clip: a video drawn uniformly, a start frame so the clip fits, and a square
    window of random side (``min_fraction``-100% of the shorter frame side) and position.
    """
    span = (sampling.frames - 1) * sampling.frame_stride + 1
    usable, longest = [], None
    for entry in entries:
        info = video.probe(entry.path)
        if info.frames >= span:
            usable.append((entry, info))
        if longest is None or info.frames > longest.frames:
            longest = info
    if not usable:
        where = f"{longest.path}: the longest video has {longest.frames} frame(s), and " if longest else ""
        raise VtcavError(f"{where}no video has the {span} frames a clip spans "
                         f"({sampling.frames} frames, stride {sampling.frame_stride}; lower --frames "
                         f"or --frame-stride)")
    plans, used = [], set()
    offsets = np.arange(sampling.frames) * sampling.frame_stride
    for name in names:
        for _ in range(draw.per_set):
            for _attempt in range(1000):
                entry, info = usable[int(rng.integers(len(usable)))]
                start = int(rng.integers(0, info.frames - span + 1))
                window = _random_window(info.width, info.height, sampling, draw.min_fraction, rng)
                key = (entry.video_id, start, window)
                if key not in used:
                    break
            else:
                raise VtcavError(f"cannot draw {draw.sets} x {draw.per_set} distinct random clips "
                                 f"from {len(usable)} videos; ask for fewer")
            used.add(key)
            plans.append(ClipPlan(name, entry.video_id, entry.path, -1, start + offsets,
                                  np.repeat(np.array(window, float)[None], sampling.frames, axis=0), "random"))
    return plans


def _random_window(width: int, height: int, sampling: Sampling, min_fraction: float,
                   rng: np.random.Generator) -> tuple[int, int, int, int]:
    out_h, out_w = sampling.size
    max_h = min(height, int(width * out_h / out_w))
    win_h = int(rng.integers(max(2, int(round(min_fraction * max_h))), max_h + 1))
    win_w = max(1, min(width, int(round(win_h * out_w / out_h))))
    x1 = int(rng.integers(0, width - win_w + 1))
    y1 = int(rng.integers(0, height - win_h + 1))
    return (x1, y1, x1 + win_w, y1 + win_h)
