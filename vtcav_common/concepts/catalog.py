"""Where the videos are and which objects they hold: the catalog of videos (a manifest or a
folder), the label and detection filters, and detection records joined into tracks."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..formats import records
from ..core import video
from ..core.errors import UsageError, VtcavError
from ..core.files import display_name
from ..core.messages import warn


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
    unlisted: dict[str, int] = defaultdict(int)
    for det in records.read_detections(detections):
        class_counts[det.class_name] += 1
        if keep.classes and det.class_name not in keep.classes:
            continue
        width, height = det.box[2] - det.box[0], det.box[3] - det.box[1]
        if det.conf < keep.min_conf or min(width, height) < keep.min_box:
            continue
        if catalog.has_labels and det.video_id not in catalog.entries:
            unlisted[det.video_id] += 1  # a manifest was given: its videos are the ones meant
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
    if not class_counts:
        raise VtcavError(f"{display_name(detections)}: no detection records (the file is empty)")
    if unlisted:
        ids = sorted(unlisted)
        message = (f"{display_name(detections)}: {sum(unlisted.values())} detection(s) of {len(ids)} video id(s) "
                   f"not in {catalog.source} left out ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})")
        if not points:
            raise VtcavError(message.replace(" left out", ", and no other detections"))
        warn(message)
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
