"""Mining concept clips from detections, and drawing random clips (the logic of vt-concepts).

Three kinds of clip, all ``T x H x W x 3`` uint8 RGB:

- **spatial**: one frame's crop of an object, repeated over the T frames (static);
- **spatiotemporal**: the same object along its track over T frames (dynamic), cut
  either through a fixed *window* around the union of the track's boxes over the clip
  (the object moves inside it: the motion survives) or a window that *follows* the box
  (the object stays put and the background slides the other way: the motion cue is
  destroyed or inverted);
- **random**: random windows at random start frames of random videos.

The work is planned first from metadata alone (detections, video headers), then the
pixels are cut video by video, so memory holds one video's frames and one batch of
clips at a time.

Example::

    catalog = VideoCatalog.open("world/labels.jsonl")
    tracks, _ = load_tracks("world/gt.jsonl", DetectionFilter(classes={"ball"}), catalog)
    plans, stats = plan_spatiotemporal(tracks, sampling, geometry="window")
    with ClipSetWriter("c.h5", sampling, "vt-concepts", {}) as writer:
        render_plans(plans, {"ball": writer.add_set("ball", "spatiotemporal", "concept")}, sampling)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from . import records, video
from .cli import display_name
from .clipsets import Sampling, SetAppender
from .errors import UsageError, VtcavError

DEFAULT_CONTEXT = 1.5     # window side = object side x context: the object plus its surroundings
RANDOM_MIN_FRACTION = 0.3  # random windows span 30-100% of the frame's shorter side
FLUSH_EVERY = 32          # clips held in memory before they are written


# --------------------------------------------------------------------------- videos
@dataclass(frozen=True)
class VideoEntry:
    video_id: str
    path: str
    label: str | None = None
    split: str | None = None


class VideoCatalog:
    """Where each video is and what label it has: a labels manifest, a folder, or nothing.

    Detection records name their video by ``video_id`` and by ``video``, the path as
    written in the manifest (relative to the manifest's folder).  A manifest resolves
    by ``video_id``; a folder by the file's name (or ``<video_id>.<ext>``); otherwise
    the record's own path is used, relative to the detections file's folder.
    """

    def __init__(self, source: str | None, entries: dict[str, VideoEntry], base: Path | None,
                 folder: Path | None, fallback_base: Path | None = None):
        self.source = source
        self.entries = entries
        self.base = base
        self.folder = folder
        self.fallback_base = fallback_base

    @classmethod
    def open(cls, videos: str | None, detections: str | None = None) -> "VideoCatalog":
        fallback = Path(detections).resolve().parent if detections and detections != "-" else None
        if videos is None:
            return cls(None, {}, None, None, fallback)
        path = Path(videos)
        if path.is_dir():
            entries = {p.stem: VideoEntry(p.stem, str(p)) for p in video.find_videos(path)}
            return cls(videos, entries, None, path, fallback)
        if not path.exists():
            raise VtcavError(f"{videos}: no such manifest or folder of videos")
        manifest = records.read_manifest(videos)
        entries = {e.video_id: VideoEntry(e.video_id, e.path, e.label, e.split) for e in manifest}
        return cls(videos, entries, path.resolve().parent, None, fallback)

    @property
    def has_labels(self) -> bool:
        return self.folder is None and self.source is not None

    def label(self, video_id: str) -> str | None:
        entry = self.entries.get(video_id)
        return entry.label if entry else None

    def split(self, video_id: str) -> str | None:
        entry = self.entries.get(video_id)
        return entry.split if entry else None

    def path_for(self, video_id: str, record_video: str) -> str:
        """The file to read for a detection record's video."""
        if self.folder is not None:
            named = self.folder / Path(record_video).name
            if named.exists():
                return str(named)
        entry = self.entries.get(video_id)
        if entry is not None:
            return entry.path
        recorded = Path(record_video)
        if recorded.is_absolute():
            return str(recorded)
        for base in (self.base, self.fallback_base):
            if base is not None and (base / recorded).exists():
                return str(base / recorded)
        return str(recorded)


@dataclass(frozen=True)
class LabelFilter:
    """Which videos take part, by their manifest label and split (empty = no restriction)."""

    labels: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    split: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.labels or self.exclude or self.split)

    def allows(self, catalog: VideoCatalog, video_id: str) -> bool:
        if not self.active:
            return True
        label = catalog.label(video_id)
        if label is None:
            return False
        if self.labels and label not in self.labels:
            return False
        if label in self.exclude:
            return False
        return self.split is None or catalog.split(video_id) == self.split

    def check(self, catalog: VideoCatalog) -> None:
        """Labels need a manifest; a label no video has is a usage error."""
        if not self.active:
            return
        if not catalog.has_labels:
            raise UsageError("--label, --exclude-label and --split need --videos LABELS.jsonl (a manifest)")
        known = sorted({e.label for e in catalog.entries.values()})
        unknown = sorted((self.labels | self.exclude) - set(known))
        if unknown:
            raise UsageError(f"unknown label(s) {', '.join(unknown)}; {catalog.source} has {', '.join(known)}")
        splits = sorted({e.split for e in catalog.entries.values()})
        if self.split is not None and self.split not in splits:
            raise UsageError(f"unknown split '{self.split}'; {catalog.source} has {', '.join(splits)}")


# --------------------------------------------------------------------------- tracks
@dataclass(frozen=True)
class DetectionFilter:
    classes: frozenset[str] = frozenset()   # empty: every class
    min_conf: float = 0.0
    min_box: float = 0.0                    # the box's shorter side, in pixels
    videos: LabelFilter = LabelFilter()


@dataclass
class Track:
    """One object's boxes in one video, for every frame from ``frames[0]`` to ``frames[-1]``."""

    video_id: str
    video: str          # the video file to read (resolved through the catalog)
    track_id: int       # -1: a detection without a tracker
    class_name: str
    frames: np.ndarray  # int, consecutive
    boxes: np.ndarray   # len(frames) x 4

    @property
    def length(self) -> int:
        return len(self.frames)


def load_tracks(detections: str, keep: DetectionFilter, catalog: VideoCatalog,
                max_gap: int = 8) -> tuple[list[Track], dict[str, int]]:
    """Read detections, keep those that pass ``keep``, and join them into tracks.

    Returns the tracks (sorted by video, track and first frame) and how many
    detections each class has in the whole file.  Only the kept detections' boxes are
    held in memory.  A class name the file does not have is a usage error.
    """
    class_counts: dict[str, int] = defaultdict(int)
    # (video, track, n) -> frame -> (conf, box, class name); n numbers untracked detections
    points: dict[tuple[str, int, int], dict[int, tuple]] = defaultdict(dict)
    videos: dict[str, str] = {}
    untracked = 0
    for det in records.read_detections(detections):
        class_counts[det.class_name] += 1
        if keep.classes and det.class_name not in keep.classes:
            continue
        width, height = det.box[2] - det.box[0], det.box[3] - det.box[1]
        if det.conf < keep.min_conf or min(width, height) < keep.min_box:
            continue
        if not keep.videos.allows(catalog, det.video_id):
            continue
        if det.video_id not in videos:
            videos[det.video_id] = catalog.path_for(det.video_id, det.video)
        if det.track_id is None:
            untracked += 1  # each untracked detection stands alone
            key = (det.video_id, -1, untracked)
        else:
            key = (det.video_id, det.track_id, 0)
        previous = points[key].get(det.frame)
        if previous is None or det.conf > previous[0]:
            points[key][det.frame] = (det.conf, det.box, det.class_name)
    unknown = sorted(keep.classes - class_counts.keys())
    if unknown:
        raise UsageError(f"unknown class(es) {', '.join(unknown)}; {display_name(detections)} "
                         f"has {', '.join(sorted(class_counts)) or 'no detections'}")
    tracks = []
    for (video_id, track_id, _), by_frame in sorted(points.items()):
        tracks.extend(_segments(video_id, videos[video_id], track_id, by_frame, max_gap))
    return tracks, dict(class_counts)


def _segments(video_id: str, video_path: str, track_id: int, by_frame: dict, max_gap: int) -> Iterator[Track]:
    """Split a track where it is lost for more than ``max_gap`` frames; fill smaller gaps."""
    frames = np.array(sorted(by_frame))
    boxes = np.array([by_frame[f][1] for f in frames], dtype=np.float64)
    names = [by_frame[f][2] for f in frames]
    cuts = np.flatnonzero(np.diff(frames) > max_gap + 1) + 1
    for part in np.split(np.arange(len(frames)), cuts):
        seg_frames, seg_boxes = frames[part], boxes[part]
        every = np.arange(seg_frames[0], seg_frames[-1] + 1)
        filled = np.stack([np.interp(every, seg_frames, seg_boxes[:, k]) for k in range(4)], axis=1)
        majority = Counter(names[i] for i in part).most_common(1)[0][0]  # detectors may flip a class
        yield Track(video_id, video_path, track_id, majority, every, filled)


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
    usable = []
    for entry in entries:
        info = video.probe(entry.path)
        if info.frames >= span:
            usable.append((entry, info))
    if not usable:
        raise VtcavError(f"no video has the {span} frames a clip spans "
                         f"({sampling.frames} frames, stride {sampling.frame_stride})")
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


# --------------------------------------------------------------------------- geometry
def context_window(box: Iterable[float], frame_w: int, frame_h: int, out_size: tuple[int, int],
                   context: float = DEFAULT_CONTEXT) -> tuple[int, int, int, int]:
    """The window around ``box``: the output's aspect (square for H = W), ``context``
    times the object's extent, shifted (and if need be shrunk) to lie inside the frame."""
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


def windows_for(plan: ClipPlan, frame_w: int, frame_h: int, out_size: tuple[int, int],
                context: float) -> np.ndarray:
    """The crop window of each clip frame (T x 4 ints, source pixels)."""
    if plan.geometry == "random":
        return plan.boxes.astype(int)
    if plan.geometry == "follow":
        return np.array([context_window(b, frame_w, frame_h, out_size, context) for b in plan.boxes])
    # static and window: one window for the whole clip (for static all boxes are the same)
    window = context_window(union_box(plan.boxes), frame_w, frame_h, out_size, context)
    return np.repeat(np.array(window)[None], len(plan.boxes), axis=0)


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


def parse_size(text: str) -> tuple[int, int]:
    """``"64"`` -> (64, 64); ``"64x48"`` -> (64, 48) as (H, W)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 8:
        raise UsageError(f"--size must be H or HxW with sides of at least 8 pixels, got '{text}'")
    return (values[0], values[-1])
