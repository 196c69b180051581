r"""Tracks and boxes from other tools as vtcav detection records.

Formats (``detect_format`` tells them apart from the file itself):

- ``mot``: MOTChallenge ``gt.txt`` / ``det.txt`` (``frame,id,x,y,w,h,conf,class,visibility``,
  frames from 1, boxes in pixels); a sequence folder with ``seqinfo.ini`` works too.
- ``coco``: COCO-style video annotations, as TAO (``videos``, ``images``, ``tracks``,
  ``annotations`` with an ``image_id``) and YouTube-VIS (``videos`` with ``file_names``,
  ``annotations`` with one ``bboxes`` list per track) write them; boxes ``[x, y, w, h]``.
- ``yolo``: the per-frame text files ``yolo track save_txt=True`` writes:
  ``labels/<video>_<frame>.txt`` (frames from 1), one ``class cx cy w h [conf] [id]`` line
  per object in coordinates normalised to the frame, whose size is read from the video.

The formats are a registry (:data:`DETECTION_FORMATS`): a new one is one reader function
here, decorated with :func:`detection_format`, or, from an installed package, a
:class:`DetectionFormat` in the entry-point group ``vtcav.detection_formats``
(:mod:`vtcav_common.core.registry`); ``detect_format`` recognises only the formats above, so
a lab's own is named (``vt-detect import NAME FILE``).

Every record gets the video's absolute path and ``time = frame / fps`` with the frame
rate of the video file (or of ``seqinfo.ini``). Frames are 0-based, as vt-detect writes
them.

Example (in a project folder: world/videos/ from vt-synth), the label files of two frames as
``yolo track save_txt=True`` writes them:
    >>> from pathlib import Path
    >>> from vtcav_common.detect.imports import ImportSettings, detect_format, import_detections
    >>> Path("run/labels").mkdir(parents=True)
    >>> _ = Path("run/labels/train_right_0000_1.txt").write_text("0 0.25 0.5 0.2 0.2 0.91 1\n")
    >>> _ = Path("run/labels/train_right_0000_2.txt").write_text("0 0.28 0.5 0.2 0.2 0.88 1\n")
    >>> detect_format("run/labels")
    'yolo'
    >>> settings = ImportSettings(videos="world/videos", class_names=("ball",))
    >>> for detection in import_detections(["run/labels"], "yolo", settings):
    ...     print(detection.to_json())      # frames from 0, boxes in pixels of the 64 x 64 video
    {"video_id":"train_right_0000","video":".../world/videos/train_right_0000.mp4","frame":0,...,"box":[9.6,25.6,22.4,38.4]}
    {"video_id":"train_right_0000","video":...,"frame":1,"time":0.1,...,"conf":0.88,"box":[11.52,25.6,24.32,38.4]}
"""

from __future__ import annotations

import configparser
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..core import video as videolib
from ..core.errors import UsageError, VtcavError
from ..core.registry import Registry
from ..formats.records import Detection
from .videos import VideoFinder


@dataclass(frozen=True)
class DetectionFormat:
    name: str
    # read(path, finder, settings) -> Detection records, video by video; finder.find(video_id, where,
    # near) gives a video's absolute path and its VideoInfo (size, fps)
    read: Callable[..., Iterator[Detection]]


DETECTION_FORMATS: Registry[DetectionFormat] = Registry("detection format", group="vtcav.detection_formats",
                                                        kind=DetectionFormat)


def detection_format(name: str):
    """Decorator: add a reader ``read(path, finder, settings)`` as the format ``name``."""
    def register(function):
        DETECTION_FORMATS.add(name, DetectionFormat(name, function))
        return function
    return register


# MOT17/MOT20 ground-truth classes (the evaluation keeps class 1 with conf 1).
MOT_CLASSES = {1: "pedestrian", 2: "person_on_vehicle", 3: "car", 4: "bicycle", 5: "motorbike",
               6: "non_motorized_vehicle", 7: "static_person", 8: "distractor", 9: "occluder",
               10: "occluder_on_ground", 11: "occluder_full", 12: "reflection", 13: "crowd"}
YOLO_NAME = re.compile(r"^(?P<video>.+)_(?P<frame>\d+)\.txt$")


@dataclass(frozen=True)
class ImportSettings:
    video: str | None = None          # the one video the annotations are of
    videos: str | None = None         # a folder of videos or a labels manifest, found by video id
    class_names: tuple[str, ...] = ()  # class id -> name, from a names file
    min_visibility: float = 0.0       # MOT: drop boxes less visible than this
    keep_ignored: bool = False        # MOT gt: keep rows with conf 0 (ignored by the benchmark)
    min_conf: float = 0.0


def detect_format(path: str | Path) -> str:
    """``mot``, ``coco`` or ``yolo`` from the file or folder itself, or a usage error."""
    p = Path(path)
    if p.is_dir():
        if (p / "seqinfo.ini").exists() or (p / "gt" / "gt.txt").exists() or (p / "det" / "det.txt").exists():
            return "mot"
        labels = p / "labels" if (p / "labels").is_dir() else p
        if any(YOLO_NAME.match(f.name) for f in labels.glob("*.txt")):
            return "yolo"
        raise UsageError(f"{path}: a folder with neither a MOT sequence nor YOLO label files; name --format")
    if not p.exists():
        raise VtcavError(f"{path}: no such file")
    if p.suffix.lower() == ".json":
        return "coco"
    if YOLO_NAME.match(p.name) and p.suffix == ".txt":
        with open(p, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
        if "," not in first:
            return "yolo"
    if p.suffix.lower() in (".txt", ".csv"):
        return "mot"
    raise UsageError(f"{path}: cannot tell the format from the file; name it (mot, coco or yolo)")


def import_detections(inputs: Iterable[str], fmt: str, settings: ImportSettings) -> Iterator[Detection]:
    """Detection records of every input, video by video, in the order of the inputs."""
    finder = VideoFinder(settings.video, settings.videos)
    for path in inputs:
        chosen = detect_format(path) if fmt == "auto" else fmt
        reader = DETECTION_FORMATS[chosen].read   # an unknown name: a usage error listing the formats
        try:
            yield from reader(Path(path), finder, settings)
        except UnicodeDecodeError as err:
            raise VtcavError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x})") from None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:
            # A field missing or of the wrong type anywhere in a hand-made annotation file; and
            # every record is validated by Detection itself (frame, conf in [0, 1], box).
            detail = f"missing {err}" if isinstance(err, KeyError) else str(err).splitlines()[0][:200]
            raise VtcavError(f"{path}: malformed {chosen} annotations ({detail})") from None


def _name(settings: ImportSettings, class_id: int, default: dict[int, str] | None = None,
          offset: int = 0) -> str:
    """A class's name: the names file (line ``id - offset``), the format's own names, or ``class_ID``."""
    index = class_id - offset
    if settings.class_names and 0 <= index < len(settings.class_names):
        return settings.class_names[index]
    if default and class_id in default:
        return default[class_id]
    return f"class_{class_id}"


def _clip_box(x: float, y: float, w: float, h: float, info: videolib.VideoInfo, where: str) -> tuple | None:
    """``[x, y, w, h]`` -> ``(x1, y1, x2, y2)`` inside the frame; None when nothing is left.

    NaN or infinite numbers are an error (``max(0, nan)`` is 0: the box would become the
    whole frame), and so is a box reaching more than a frame beyond the frame's edges
    (the wrong units, or another video's size).
    """
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise VtcavError(f"{where}: box [{x}, {y}, {w}, {h}] has a non-finite number")
    if (w <= 0 or h <= 0 or x < -info.width or y < -info.height or x + w > 2 * info.width
            or y + h > 2 * info.height):
        raise VtcavError(f"{where}: box [x {x:g}, y {y:g}, w {w:g}, h {h:g}] is not inside the "
                         f"{info.width}x{info.height} frame")
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(info.width), x + w), min(float(info.height), y + h)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


# --------------------------------------------------------------------------- MOTChallenge
def _mot_files(path: Path) -> tuple[Path, dict]:
    """The annotation file and the sequence's ``seqinfo.ini`` (``{}`` when there is none)."""
    if path.is_dir():
        for candidate in (path / "gt" / "gt.txt", path / "det" / "det.txt"):
            if candidate.exists():
                return candidate, _seqinfo(path)
        raise VtcavError(f"{path}: MOT sequence folder without gt/gt.txt or det/det.txt")
    if not path.exists():
        raise VtcavError(f"{path}: no such file")
    for folder in (path.parent, path.parent.parent):
        if (folder / "seqinfo.ini").exists():
            return path, _seqinfo(folder)
    return path, {}


def _seqinfo(folder: Path) -> dict:
    ini = folder / "seqinfo.ini"
    if not ini.exists():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
        return {**dict(parser["Sequence"]), "folder": str(folder)}
    except (configparser.Error, KeyError, UnicodeDecodeError) as err:
        raise VtcavError(f"{ini}: not a MOT seqinfo.ini ({err.__class__.__name__})") from None


@detection_format("mot")
def _mot(path: Path, finder: VideoFinder, settings: ImportSettings) -> Iterator[Detection]:
    table, seq = _mot_files(path)
    if seq:
        video_id = seq.get("name") or Path(seq["folder"]).name
    else:  # MOT17-02/gt/gt.txt -> MOT17-02; a loose det.txt -> its own stem
        video_id = table.parent.parent.name if table.parent.name in ("gt", "det") else table.stem
    video_path, info = finder.find(video_id, str(table), near=Path(seq["folder"]) if seq else table.parent)
    fps = float(seq.get("framerate") or 0) or info.fps
    rows = []
    with open(table, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{table}:{number}"
            try:
                values = [float(v) for v in line.replace(" ", "").strip().split(",")]
            except ValueError:
                raise VtcavError(f"{where}: not a MOT row (frame,id,x,y,w,h,conf,class,visibility)") from None
            if len(values) < 6:
                raise VtcavError(f"{where}: a MOT row has at least 6 numbers (frame,id,x,y,w,h), got {len(values)}")
            rows.append((where, (values + [-1.0] * 9)[:9]))  # MOT15's det.txt adds 3D x,y,z
    for where, (frame, track, x, y, w, h, conf, cls, visibility) in sorted(rows, key=lambda r: (r[1][0], r[1][1])):
        if frame < 1 or w <= 0 or h <= 0:
            raise VtcavError(f"{where}: frame must be >= 1 and the box's w, h > 0")
        is_gt = table.name.startswith("gt") or cls > 0
        if is_gt and conf == 0 and not settings.keep_ignored:
            continue  # MOT marks boxes the evaluation ignores with conf 0
        if 0 <= visibility < settings.min_visibility:
            continue
        box = _clip_box(x, y, w, h, info, where)
        score = 1.0 if is_gt else conf
        if box is None or score < settings.min_conf:
            continue
        class_id = int(cls) if cls > 0 else 0
        name = _name(settings, class_id, MOT_CLASSES, offset=1) if class_id else _name(settings, 0, {0: "object"})
        index = int(frame) - 1
        yield Detection(video_id=video_id, video=video_path, frame=index, time=index / fps,
                        track_id=int(track) if track >= 0 else None, class_id=class_id, class_name=name,
                        conf=min(max(score, 0.0), 1.0), box=box)


# --------------------------------------------------------------------------- COCO-style video
@detection_format("coco")
def _coco(path: Path, finder: VideoFinder, settings: ImportSettings) -> Iterator[Detection]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VtcavError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise VtcavError(f"{path}: not COCO-style video annotations (no 'videos' list)")
    categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", []) if "id" in c and "name" in c}
    annotations = data.get("annotations") or []
    per_video: dict[int, list[tuple[int, int | None, int, float, list]]] = defaultdict(list)
    if annotations and "bboxes" in annotations[0]:       # YouTube-VIS: one annotation = one track
        for number, ann in enumerate(annotations):
            for frame, bbox in enumerate(ann.get("bboxes") or []):
                if bbox:
                    per_video[ann["video_id"]].append((frame, ann.get("id", number), ann["category_id"],
                                                       float(ann.get("score", 1.0)), bbox))
    else:                                                # TAO: per-image annotations with a track id
        images = {img["id"]: img for img in data.get("images", [])}
        order = _frame_order(images.values())
        for ann in annotations:
            image = images.get(ann.get("image_id"))
            if image is None:
                raise VtcavError(f"{path}: annotation {ann.get('id')} names image {ann.get('image_id')}, "
                                 f"which is not in 'images'")
            frame = int(image["frame_index"]) if "frame_index" in image else order[image["id"]]
            per_video[ann.get("video_id", image.get("video_id"))].append(
                (frame, ann.get("track_id"), ann["category_id"], float(ann.get("score", 1.0)), ann["bbox"]))
    for entry in data["videos"]:
        found = per_video.get(entry["id"])
        if not found:
            continue
        video_id = _coco_video_id(entry)
        video_path, info = finder.find(video_id, str(path), near=path.parent)
        for frame, track, category, score, bbox in sorted(found, key=lambda r: (r[0], -1 if r[1] is None else r[1])):
            box = _clip_box(*(float(v) for v in bbox[:4]), info, f"{path}: video {video_id}, frame {frame}")
            if box is None or score < settings.min_conf:
                continue
            name = _name(settings, int(category), categories)
            yield Detection(video_id=video_id, video=video_path, frame=frame, time=frame / info.fps,
                            track_id=None if track is None else int(track), class_id=int(category),
                            class_name=name, conf=min(max(score, 0.0), 1.0), box=box)


def _frame_order(images: Iterable[dict]) -> dict:
    """Without ``frame_index``: each image's position in its video, by file name."""
    by_video: dict = defaultdict(list)
    for image in images:
        by_video[image.get("video_id")].append(image)
    order = {}
    for group in by_video.values():
        for position, image in enumerate(sorted(group, key=lambda i: (str(i.get("file_name", "")), i["id"]))):
            order[image["id"]] = position
    return order


def _coco_video_id(entry: dict) -> str:
    """``train/YFCC100M/v_abc`` -> ``v_abc``; YouTube-VIS: the folder of its first frame."""
    if entry.get("name"):
        return Path(str(entry["name"])).stem
    names = entry.get("file_names") or []
    if names:
        return Path(names[0]).parent.name
    return str(entry["id"])


# --------------------------------------------------------------------------- yolo save_txt
@detection_format("yolo")
def _yolo(path: Path, finder: VideoFinder, settings: ImportSettings) -> Iterator[Detection]:
    folder = path / "labels" if (path / "labels").is_dir() else path
    files = [folder] if folder.is_file() else sorted(folder.glob("*.txt"))
    by_video: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for file in files:
        match = YOLO_NAME.match(file.name)
        if match:
            by_video[match["video"]].append((int(match["frame"]), file))
    if not by_video:
        raise VtcavError(f"{path}: no YOLO label files named <video>_<frame>.txt")
    for video_id in sorted(by_video):
        video_path, info = finder.find(video_id, str(path), near=folder.parent)
        rows = []
        for frame, file in sorted(by_video[video_id]):
            with open(file, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        rows.append((f"{file}:{number}", frame, line.split()))
        has_conf = _yolo_has_conf(rows)
        for where, frame, fields in rows:
            try:
                cls, cx, cy, w, h = int(float(fields[0])), *(float(v) for v in fields[1:5])
                extra = [float(v) for v in fields[5:]]
            except (ValueError, IndexError):
                raise VtcavError(f"{where}: not a YOLO label line (class cx cy w h [conf] [id])") from None
            conf = extra.pop(0) if extra and has_conf else 1.0
            track = int(extra[0]) if extra else None
            box = _clip_box((cx - w / 2) * info.width, (cy - h / 2) * info.height, w * info.width,
                            h * info.height, info, where)
            if box is None or conf < settings.min_conf:
                continue
            index = frame - 1  # ultralytics counts a video's frames from 1
            yield Detection(video_id=video_id, video=video_path, frame=index, time=index / info.fps,
                            track_id=track, class_id=cls, class_name=_name(settings, cls), conf=conf, box=box)


def _yolo_has_conf(rows: list) -> bool:
    """Six columns are ``... conf`` (save_conf) or ``... id`` (tracking): ids are whole numbers >= 1,
    confidences are in (0, 1]; seven columns are ``... conf id``."""
    sixth = [float(fields[5]) for _, _, fields in rows if len(fields) == 6]
    if any(len(fields) >= 7 for _, _, fields in rows):
        return True
    return bool(sixth) and not all(v.is_integer() and v >= 1 for v in sixth)


def read_class_names(path: str) -> tuple[str, ...]:
    """Class names, one a line (``.txt``), or the ``names`` of a YOLO data YAML / a COCO JSON."""
    p = Path(path)
    if not p.is_file():
        raise VtcavError(f"{path}: no such class-names file")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        names = (yaml.safe_load(text) or {}).get("names")
        if isinstance(names, dict):
            return tuple(str(names[k]) for k in sorted(names))
        if isinstance(names, list):
            return tuple(map(str, names))
        raise VtcavError(f"{path}: YAML without a 'names' list or mapping")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
