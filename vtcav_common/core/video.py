"""Reading and writing video files (OpenCV), with one-line errors for bad files.

Frames are uint8 RGB arrays of shape ``H x W x 3``; a whole video is ``T x H x W x 3``.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Iterator

# FFmpeg would print its own lines for a corrupt file before our one-line error.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2  # noqa: E402
import numpy as np

from .files import atomic_path, note_input
from .errors import VtcavError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int
    fps: float
    width: int
    height: int


def _open(path: str | Path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.exists():
        raise VtcavError(f"{path}: no such file")
    if path.is_dir():
        raise VtcavError(f"{path}: is a directory, expected a video file")
    note_input(path)   # --pictures into the videos' folder must not replace a video
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VtcavError(f"{path}: cannot open as a video (corrupt or unsupported format)")
    return capture


def probe(path: str | Path) -> VideoInfo:
    capture = _open(path)
    try:
        info = VideoInfo(str(path), int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                         float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0,
                         int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()
    if info.width <= 0 or info.height <= 0:
        raise VtcavError(f"{path}: video has no frames")
    return info


def iter_frames(path: str | Path, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb_frame)`` for every ``stride``-th frame, streaming."""
    capture = _open(path)
    index = 0
    yielded = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % stride == 0:
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                yielded += 1
            index += 1
    finally:
        capture.release()
    if yielded == 0:
        raise VtcavError(f"{path}: video has no decodable frames (empty or corrupt)")


def read_video(path: str | Path) -> np.ndarray:
    """The whole video as ``T x H x W x 3`` uint8 RGB (for short clips only)."""
    return np.stack([frame for _, frame in iter_frames(path)])


def read_frames(path: str | Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Only the frames at ``indices`` (decoding sequentially, keeping what is asked)."""
    wanted = set(indices)
    if not wanted:
        return {}
    last = max(wanted)
    frames = {}
    decoded = 0
    for index, frame in iter_frames(path):
        decoded = index + 1
        if index in wanted:
            frames[index] = frame
        if index >= last:
            break
    missing = wanted - frames.keys()
    if missing:
        raise VtcavError(f"{path}: no frame {min(missing)}: the video has {decoded} frame(s) "
                         f"(frames are numbered from 0; a detection or clip reaches past its end)")
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> None:
    """Write ``T x H x W x 3`` uint8 RGB frames as an mp4 (MPEG-4 part 2), atomically."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected T x H x W x 3 uint8 frames, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise VtcavError(f"{path}: cannot open a video writer for this format")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()


def find_videos(folder: str | Path) -> list[Path]:
    """Video files in a folder (not recursive), sorted by name for determinism."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
