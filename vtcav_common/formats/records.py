"""JSONL records: detections and the labels manifest, validated where they are read.

See ``docs/formats.md`` for the contracts.  Readers raise :class:`VtcavError` naming
the file and line; writers emit one compact JSON object per line.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator

from ..core.files import display_name, final_name, open_text_input, read_lines
from ..core.errors import VtcavError

DETECTION_FIELDS = ("video_id", "video", "frame", "time", "track_id", "class_id", "class_name",
                    "conf", "box")


@dataclass(frozen=True)
class Detection:
    """One object found in one frame of one video.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of the original frame; ``track_id`` is
    ``None`` when the detector ran without a tracker.
    """

    video_id: str
    video: str
    frame: int
    time: float
    track_id: int | None
    class_id: int
    class_name: str
    conf: float
    box: tuple[float, float, float, float]

    def __post_init__(self):
        # Every detection is checked here, whoever makes it (vt-detect, an importer, a JSONL
        # reader): a frame of 0.5 or a confidence of 7 is a broken file, never a record.
        problem = detection_problem(self)
        if problem:
            raise ValueError(problem)

    def to_json(self) -> str:
        record = asdict(self)
        record["box"] = [round(float(v), 2) for v in self.box]
        record["conf"] = round(float(self.conf), 4)
        record["time"] = round(float(self.time), 4)
        return json_line(record)


@dataclass(frozen=True)
class VideoLabel:
    """One line of a labels manifest: a video, its class and its split."""

    video_id: str
    path: str  # absolute, resolved against the manifest's folder
    label: str
    split: str = "all"
    extra: dict = field(default_factory=dict, compare=False)


def json_line(record: dict, where: str = "") -> str:
    """One compact, strict JSON object: NaN and Infinity (not JSON) are refused, naming the field.

    >>> json_line({"score": 0.5, "n": 3})
    '{"score":0.5,"n":3}'
    >>> json_line({"score": float("nan")}, "scores.jsonl")
    Traceback (most recent call last):
    ...
    vtcav_common.core.errors.VtcavError: scores.jsonl: cannot write a record with a non-finite number in 'score' (nan)
    """
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False)
    except ValueError:
        field_name, value = _first_non_finite(record)
        raise VtcavError(f"{where or 'output'}: cannot write a record with a non-finite number in "
                         f"'{field_name}' ({value})") from None


def _first_non_finite(value, name: str = "") -> tuple[str, object]:
    if isinstance(value, float) and not math.isfinite(value):
        return name, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _first_non_finite(item, f"{name}.{key}" if name else str(key))
        if found[0]:
            return found
    return "", None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(line: str, where: str) -> dict:
    try:
        record = json.loads(line, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise VtcavError(f"{where}: not valid JSON ({err.msg})") from None
    except ValueError as err:
        raise VtcavError(f"{where}: not valid JSON ({err})") from None
    except RecursionError:
        raise VtcavError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        raise VtcavError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def detection_problem(d: Detection) -> str:
    """What is wrong with a detection ('' when nothing)."""
    if not _is_whole(d.frame) or d.frame < 0:
        return f"'frame' must be a whole number >= 0, got {d.frame!r}"
    if not _is_number(d.time) or d.time < 0:
        return f"'time' must be a finite number >= 0, got {d.time!r}"
    if not _is_number(d.conf) or not 0.0 <= d.conf <= 1.0:
        return f"'conf' must be a number in [0, 1], got {d.conf!r}"
    if d.track_id is not None and not _is_whole(d.track_id):
        return f"'track_id' must be a whole number or null, got {d.track_id!r}"
    if not _is_whole(d.class_id):
        return f"'class_id' must be a whole number, got {d.class_id!r}"
    box = d.box
    if (not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box)):
        return "'box' must be four finite numbers [x1, y1, x2, y2]"
    if box[2] <= box[0] or box[3] <= box[1]:
        return f"'box' has x2 <= x1 or y2 <= y1: {list(box)}"
    if box[2] <= 0 or box[3] <= 0:
        return f"'box' lies outside the frame (left of or above it): {list(box)}"
    return ""


def _whole(value, name: str):
    """An integer field: 3 and 3.0 pass, 0.5, true and "3" do not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise ValueError(f"'{name}' must be a whole number, got {json.dumps(value)[:40]}")
    return int(value)


def parse_detection(record: dict, where: str) -> Detection:
    missing = [name for name in DETECTION_FIELDS if name not in record]
    if missing:
        raise VtcavError(f"{where}: detection record lacks field(s) {', '.join(missing)}")
    box = record["box"]
    if (not isinstance(box, (list, tuple)) or len(box) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)):
        raise VtcavError(f"{where}: 'box' must be four finite numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise VtcavError(f"{where}: 'box' has x2 <= x1 or y2 <= y1: {box}")
    try:
        frame = _whole(record["frame"], "frame")
        track = record["track_id"]
        for name in ("time", "conf"):
            if not _is_number(record[name]):
                raise ValueError(f"'{name}' must be a finite number, got {json.dumps(record[name])[:40]}")
        return Detection(
            video_id=str(record["video_id"]), video=str(record["video"]), frame=frame,
            time=float(record["time"]), track_id=None if track is None else _whole(track, "track_id"),
            class_id=_whole(record["class_id"], "class_id"), class_name=str(record["class_name"]),
            conf=float(record["conf"]), box=(x1, y1, x2, y2))
    except (TypeError, ValueError, OverflowError) as err:
        raise VtcavError(f"{where}: bad value in detection record ({err})") from None


def read_detections(path: str) -> Iterator[Detection]:
    """Stream detections from a JSONL file or ``-``."""
    name = display_name(path)
    handle = open_text_input(path)
    try:
        for number, line in read_lines(handle):
            yield parse_detection(_parse_json(line, f"{name}:{number}"), f"{name}:{number}")
    finally:
        if handle is not None and path != "-":
            handle.close()


def write_records(records: Iterable, out: IO[str]) -> int:
    """Write records (objects with ``to_json`` or plain dicts) one per line, as strict JSON."""
    count = 0
    where = final_name(display_name(getattr(out, "name", "") or "output"))
    for record in records:
        text = record.to_json() if hasattr(record, "to_json") else json_line(record, where)
        out.write(text + "\n")
        count += 1
    return count


def read_jsonl(path: str) -> Iterator[tuple[str, dict]]:
    """Plain JSONL records with a ``file:line`` locator for error messages."""
    name = display_name(path)
    handle = open_text_input(path)
    try:
        for number, line in read_lines(handle):
            where = f"{name}:{number}"
            yield where, _parse_json(line, where)
    finally:
        if path != "-":
            handle.close()


def read_manifest(path: str) -> list[VideoLabel]:
    """A labels manifest (``labels.jsonl``): ``video_id``, ``path`` and ``label`` per line.

    Relative paths are resolved against the manifest's folder, so a manifest and its
    videos can move together.
    """
    base = Path(path).resolve().parent if path != "-" else Path.cwd()
    labels = []
    seen = set()
    for where, record in read_jsonl(path):
        for name in ("video_id", "path", "label"):
            if name not in record:
                raise VtcavError(f"{where}: manifest record lacks field '{name}'")
            value = record[name]
            if isinstance(value, bool) or not isinstance(value, str if name == "path" else (str, int)) \
                    or value == "":
                raise VtcavError(f"{where}: manifest field '{name}' must be a non-empty string, "
                                 f"got {json.dumps(value)[:40]}")
        if not isinstance(record.get("split", ""), str):
            raise VtcavError(f"{where}: manifest field 'split' must be a string")
        video_id = str(record["video_id"])
        if video_id in seen:
            raise VtcavError(f"{where}: duplicate video_id '{video_id}'")
        seen.add(video_id)
        video_path = Path(record["path"])
        if not video_path.is_absolute():
            video_path = base / video_path
        extra = {k: v for k, v in record.items() if k not in ("video_id", "path", "label", "split")}
        labels.append(VideoLabel(video_id, str(video_path), str(record["label"]),
                                 str(record.get("split", "all")), extra))
    if not labels:
        raise VtcavError(f"{display_name(path)}: manifest has no videos")
    return labels


def looks_like_manifest(path: str) -> bool:
    return path.endswith(".jsonl")


def filter_manifest(videos: list, labels: list[str], split: str | None, name: str) -> list:
    """Keep the manifest entries with one of ``labels`` (all if empty) in ``split`` (all if None).

    An unknown label, or a split with no videos left, is a usage error naming the manifest.
    """
    from ..core.errors import UsageError

    if labels:
        known = {v.label for v in videos}
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise UsageError(f"{name}: no videos with label(s) {', '.join(unknown)} "
                             f"(labels: {', '.join(sorted(known))})")
        videos = [v for v in videos if v.label in labels]
    if split:
        videos = [v for v in videos if v.split == split]
        if not videos:
            raise UsageError(f"{name}: no videos in split '{split}'{' with the chosen labels' if labels else ''}")
    return videos
