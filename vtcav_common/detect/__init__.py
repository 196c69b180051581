"""Objects and their tracks in videos: an ultralytics detector with its own trackers.

The detector is any ultralytics weights file (YOLOv8 and later, RT-DETR) on local disk;
nothing is downloaded.  Frames are decoded video by video and sent to the detector in
batches, while the tracker (ByteTrack or BoT-SORT) is updated frame by frame in order.
A fresh tracker is made for every video, so track ids restart at 1 and never leak from
one video into the next.

>>> from vtcav_common import detect                          # doctest: +SKIP
>>> detector = detect.Detector.load("weights/detector.pt", detect.DetectSettings())  # doctest: +SKIP
>>> source = detect.collect_sources(["world/labels.jsonl"])[0]                    # doctest: +SKIP
>>> info = detect.check_video(source)                                             # doctest: +SKIP
>>> for record in detector.video(source, info.fps):                               # doctest: +SKIP
...     print(record.to_json())

Importing this module points ultralytics at a folder under the system's temporary
directory and switches it offline, so it neither touches the network nor writes to the
home directory.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..core import video as vio
from ..core.errors import UsageError, VtcavError
from ..core.messages import progress, warn
from ..formats.records import Detection, looks_like_manifest, read_manifest, write_records

TRACKERS = ("bytetrack", "botsort", "none")
DETECTING_TASKS = ("detect", "segment", "pose")   # tasks whose results carry axis-aligned boxes
MODEL_DEFINITION_SUFFIXES = (".yaml", ".yml")


# --------------------------------------------------------------------------- ultralytics setup
def ultralytics_home() -> Path:
    """Where ultralytics may keep its settings and caches (never the home directory)."""
    return Path(tempfile.gettempdir()) / "vtcav-ultralytics"


def configure_ultralytics() -> None:
    """Switch ultralytics offline and give it a scratch home; must run before importing it."""
    home = ultralytics_home()
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(home / "config"))
    os.environ.setdefault("MPLCONFIGDIR", str(home / "matplotlib"))


def route_ultralytics_logs(level: int = logging.WARNING) -> None:
    """Send ultralytics' log (stdout by default) to stderr: stdout carries records only."""
    from ultralytics.utils import LOGGER

    LOGGER.setLevel(level)
    for handler in LOGGER.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
            handler.setLevel(level)


configure_ultralytics()


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class VideoSource:
    """A video to process: its id and its absolute path (also what records carry)."""

    video_id: str
    path: Path


def collect_sources(inputs: Sequence[str]) -> list[VideoSource]:
    """Video files, folders of videos and labels manifests (``.jsonl``) -> videos to process.

    A manifest gives each video's id; a plain file's id is its stem.  Paths are made
    absolute so that the records can be opened by a later tool reading them from a pipe.
    """
    if not inputs:
        raise UsageError("no input videos: give video files, folders or a labels manifest (.jsonl)")
    sources: list[VideoSource] = []
    for item in inputs:
        path = Path(item)
        if looks_like_manifest(item):
            sources += [VideoSource(label.video_id, Path(label.path).resolve()) for label in read_manifest(item)]
        elif path.is_dir():
            found = vio.find_videos(path)
            if not found:
                raise VtcavError(f"{item}: no video files in this folder ({', '.join(vio.VIDEO_SUFFIXES)})")
            sources += [VideoSource(p.stem, p.resolve()) for p in found]
        else:
            sources.append(VideoSource(path.stem, path.resolve()))
    _refuse_duplicate_ids(sources)
    return sources


def _refuse_duplicate_ids(sources: Iterable[VideoSource]) -> None:
    seen: dict[str, Path] = {}
    for source in sources:
        if source.video_id in seen:
            raise UsageError(f"two videos share the id '{source.video_id}': {seen[source.video_id]} and "
                             f"{source.path} (video ids must be unique; use a manifest to name them)")
        seen[source.video_id] = source.path


def check_video(source: VideoSource) -> vio.VideoInfo:
    """Open the video and decode its first frame; a one-line error if it cannot be read."""
    info = vio.probe(source.path)
    frames = vio.iter_frames(source.path)
    try:
        next(frames)  # raises VtcavError when there is no decodable frame
    finally:
        frames.close()
    return info


# --------------------------------------------------------------------------- model
def detect_videos(detector: "Detector", sources: Sequence[VideoSource], out, allow_empty: bool = False) -> int:
    """vt-detect's run: every video's tracked detections written to ``out`` (JSONL), in input order;
    returns the number of records.

    Every video is checked readable before any record is written. A video without a single
    detection is an error naming it (a wrong --conf or model looks like that), or with
    ``allow_empty`` a warning.
    """
    infos = [check_video(source) for source in sources]
    empty, total = [], 0
    for source, info in progress(zip(sources, infos), total=len(sources), description="videos"):
        count = write_records(detector.video(source, info.fps), out)
        total += count
        if count == 0:
            empty.append(source)
            if allow_empty:
                warn(f"{source.path}: no detections")
    if empty and not allow_empty:
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        names = ", ".join(str(s.path) for s in empty[:3]) + more
        raise VtcavError(f"no detections in {len(empty)} video(s): {names} "
                         f"(--allow-empty to accept, or lower --conf)")
    return total


@dataclass(frozen=True)
class DetectSettings:
    """How to run the detector; ``imgsz=None`` uses the size the model was trained at."""

    conf: float = 0.25
    iou: float = 0.7
    imgsz: int | None = None
    device: str = "cpu"
    batch: int = 16
    stride: int = 1
    tracker: str = "bytetrack"
    classes: str | None = None   # comma-separated class names; None keeps every class


def load_model(weights: str | Path):
    """An ultralytics model from a local weights file, or a one-line error naming it."""
    path = Path(weights)
    if not path.exists():
        raise VtcavError(f"{weights}: no such weights file")
    if path.is_dir():
        raise VtcavError(f"{weights}: is a directory, expected a weights file")
    if path.suffix.lower() in MODEL_DEFINITION_SUFFIXES:
        raise VtcavError(f"{weights}: is a model definition, not trained weights")
    if path.stat().st_size == 0:
        raise VtcavError(f"{weights}: empty weights file")
    from ultralytics import YOLO

    route_ultralytics_logs()
    try:
        model = YOLO(str(path))
    except Exception as err:  # ultralytics raises many kinds for a bad file; all mean "not loadable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VtcavError(f"{weights}: cannot load as ultralytics weights ({reason})") from None
    if model.task not in DETECTING_TASKS:
        raise VtcavError(f"{weights}: is a '{model.task}' model; vt-detect needs one that gives boxes "
                         f"({', '.join(DETECTING_TASKS)})")
    return model


def class_ids(names: dict[int, str], wanted: str | None) -> list[int] | None:
    """Comma-separated class names -> the model's class ids (None: keep every class)."""
    if wanted is None:
        return None
    chosen = [name.strip() for name in wanted.split(",") if name.strip()]
    by_name = {name: index for index, name in names.items()}
    unknown = [name for name in chosen if name not in by_name]
    if unknown or not chosen:
        raise UsageError(f"unknown class name(s) {', '.join(unknown) or '(none given)'}; "
                         f"the model knows: {', '.join(names.values())}")
    return sorted({by_name[name] for name in chosen})


def make_tracker(kind: str):
    """A fresh ultralytics tracker (track ids start at 1), or None for ``none``."""
    if kind not in TRACKERS:
        raise UsageError(f"unknown tracker '{kind}'; choose one of {', '.join(TRACKERS)}")
    if kind == "none":
        return None
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    config = IterableSimpleNamespace(**YAML.load(check_yaml(f"{kind}.yaml")))
    return TRACKER_MAP[config.tracker_type](args=config)


# --------------------------------------------------------------------------- detection
class Detector:
    """A loaded detector and its settings; detects (and tracks) one video at a time."""

    def __init__(self, model, settings: DetectSettings):
        self.model = model
        self.settings = settings
        self.names: dict[int, str] = dict(model.names)
        self.class_filter = class_ids(self.names, settings.classes)
        make_tracker(settings.tracker)  # refuse an unknown tracker before any work
        self.frames_done = 0

    @classmethod
    def load(cls, weights: str | Path, settings: DetectSettings) -> "Detector":
        return cls(load_model(weights), settings)

    def video(self, source: VideoSource, fps: float) -> Iterator[Detection]:
        """The detections of one video, frame by frame, streaming."""
        tracker = make_tracker(self.settings.tracker)  # fresh per video: ids do not leak across videos
        frames = vio.iter_frames(source.path, self.settings.stride)
        for batch in _batches(frames, self.settings.batch):
            results = self._predict([frame[..., ::-1] for _, frame in batch])  # ultralytics wants BGR
            for (index, _), result in zip(batch, results):
                self.frames_done += 1
                yield from self._frame_records(source, index, index / fps, result, tracker)

    def _predict(self, bgr_frames: list[np.ndarray]) -> list:
        options = dict(conf=self.settings.conf, iou=self.settings.iou, device=self.settings.device,
                       classes=self.class_filter, verbose=False, save=False, stream=False)
        if self.settings.imgsz:
            options["imgsz"] = self.settings.imgsz
        frames = [np.ascontiguousarray(frame) for frame in bgr_frames]
        return self.model.predict(frames, batch=len(frames), **options)

    def _frame_records(self, source: VideoSource, index: int, time: float, result,
                       tracker) -> Iterator[Detection]:
        boxes = result.boxes.cpu().numpy()
        if tracker is None:
            rows = [(None, i) for i in range(len(boxes))]
        else:
            # Tracker rows are [x1, y1, x2, y2, track_id, score, cls, det_index]; only confirmed
            # tracks come back.  We keep the detector's own box (not the Kalman-smoothed one),
            # which is what a crop of this frame should use.
            tracks = tracker.update(boxes, result.orig_img)
            rows = [(int(row[4]), int(row[-1])) for row in tracks]
        for track_id, i in rows:
            x1, y1, x2, y2 = (float(v) for v in boxes.xyxy[i])
            if x2 <= x1 or y2 <= y1:
                continue  # a degenerate box is no object and no valid record
            class_id = int(boxes.cls[i])
            yield Detection(video_id=source.video_id, video=str(source.path), frame=index, time=time,
                            track_id=track_id, class_id=class_id, class_name=self.names[class_id],
                            conf=float(boxes.conf[i]), box=(x1, y1, x2, y2))


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- evaluation
def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_truth(truth: Iterable[Detection], detections: Iterable[Detection],
                min_iou: float = 0.5) -> dict[tuple[str, int, int], Detection]:
    """For each true box, keyed ``(video_id, true track_id, frame)``: the same-class
    detection that overlaps it most, if that overlap reaches ``min_iou``."""
    by_frame: dict[tuple[str, int], list[Detection]] = {}
    for d in detections:
        by_frame.setdefault((d.video_id, d.frame), []).append(d)
    matched = {}
    for t in truth:
        candidates = [d for d in by_frame.get((t.video_id, t.frame), ()) if d.class_id == t.class_id]
        best = max(candidates, key=lambda d: box_iou(t.box, d.box), default=None)
        if best is not None and box_iou(t.box, best.box) >= min_iou:
            matched[(t.video_id, t.track_id, t.frame)] = best
    return matched


def track_stability(truth: Sequence[Detection], detections: Iterable[Detection],
                    min_iou: float = 0.5) -> dict[tuple[str, int], float]:
    """Per true object ``(video_id, track_id)``: the share of its frames whose matched
    detection carries the object's most common track id (1.0 = one unbroken track;
    a missed frame or a switched id both count against it)."""
    matched = match_truth(truth, detections, min_iou)
    frames: dict[tuple[str, int], list[int]] = {}
    for t in truth:
        frames.setdefault((t.video_id, t.track_id), []).append(t.frame)
    shares = {}
    for (video_id, track), object_frames in frames.items():
        ids = [matched[(video_id, track, f)].track_id for f in object_frames if (video_id, track, f) in matched]
        dominant = max((ids.count(i) for i in set(ids)), default=0)
        shares[(video_id, track)] = dominant / len(object_frames)
    return shares
