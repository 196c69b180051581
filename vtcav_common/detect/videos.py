"""Find the video file an imported annotation is of, and read what it knows (size, fps)."""

from __future__ import annotations

from pathlib import Path

from ..core import video as videolib
from ..core.errors import VtcavError
from ..formats.records import read_manifest


class VideoFinder:
    """Resolve a video id to a readable video file: ``--video`` (one video), ``--videos``
    (a folder, by file stem, or a labels manifest, by ``video_id``), or a video beside the
    annotations named after the id. Each file is probed once."""

    def __init__(self, video: str | None = None, videos: str | None = None):
        self.video = video
        self.by_id: dict[str, str] = {}
        self.source = videos
        if videos is not None:
            p = Path(videos)
            if p.is_dir():
                self.by_id = {f.stem: str(f.resolve()) for f in videolib.find_videos(p)}
            elif p.is_file():
                self.by_id = {e.video_id: str(Path(e.path).resolve()) for e in read_manifest(videos)}
            else:
                raise VtcavError(f"{videos}: no such folder of videos or manifest")
        self._probed: dict[str, videolib.VideoInfo] = {}
        self._claimed: set[str] = set()

    def find(self, video_id: str, annotations: str, near: Path | None = None) -> tuple[str, videolib.VideoInfo]:
        """The absolute path of ``video_id``'s video and its header; an error naming both when none."""
        path = self._locate(video_id, near)
        if path is None:
            where = f" in {self.source}" if self.source else ""
            raise VtcavError(f"{annotations}: no video found for '{video_id}'{where} (give --video FILE, or "
                             f"--videos with a folder of videos named after the ids or a labels manifest)")
        if path not in self._probed:
            self._probed[path] = videolib.probe(path)
        return path, self._probed[path]

    def _locate(self, video_id: str, near: Path | None) -> str | None:
        if video_id in self.by_id:
            return self.by_id[video_id]
        if self.video is not None:
            # One video for one annotated video: a second id would silently share its pixels.
            self._claimed.add(video_id)
            if len(self._claimed) > 1:
                raise VtcavError(f"--video {self.video}: the annotations are of several videos "
                                 f"({', '.join(sorted(self._claimed))}); give --videos instead")
            return str(Path(self.video).resolve())
        for folder in filter(None, (near, near.parent if near else None)):
            for suffix in videolib.VIDEO_SUFFIXES:
                candidate = folder / f"{video_id}{suffix}"
                if candidate.is_file():
                    return str(candidate.resolve())
        return None
