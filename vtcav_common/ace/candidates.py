"""``vt-ace supervoxels``: a class's videos cut into candidate supervoxel clips, one clip-set file.

Videos are read one at a time, and each video's candidates are appended to the file
before the next is read, so memory holds one video whatever the number of videos.

Example (in a project folder: world/ from vt-synth):
    >>> from vtcav_common.ace.candidates import select_videos, write_candidates
    >>> from vtcav_common.ace.supervoxels import SegmentParams
    >>> from vtcav_common.formats.clips import Sampling, list_sets
    >>> videos = select_videos("world/labels.jsonl", label="right", split="train", max_videos=2)
    >>> [v.video_id for v in videos]
    ['train_right_0000', 'train_right_0001']
    >>> write_candidates(videos, "cand.h5", SegmentParams(resolutions=(15,)), Sampling(16, (64, 64)),
    ...                  label="right")                # SLIC at 15 segments a video: the candidates written
    25
    >>> [(s.name, s.kind) for s in list_sets("cand.h5")]
    [('supervoxels', 'supervoxel')]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import messages
from ..formats.clips import ClipSetWriter, Sampling
from ..core.errors import UsageError, VtcavError
from ..formats.records import VideoLabel, looks_like_manifest, read_manifest
from ..core.video import find_videos
from ..formats.supervoxels import SupervoxelAppender
from .supervoxels import SegmentParams, load_volume, video_candidates

TOOL = "vt-ace"
CANDIDATE_SET = "supervoxels"


def select_videos(source: str, label: str | None, split: str | None, max_videos: int | None = None
                  ) -> list[VideoLabel]:
    """The videos of a manifest (filtered by label and split) or of a folder, in order."""
    path = Path(source)
    if path.is_dir():
        if label or split:
            raise UsageError(f"{source}: a folder of videos has no labels or splits; give a labels manifest "
                             f"to use --label/--split")
        videos = [VideoLabel(p.stem, str(p), "", "all") for p in find_videos(path)]
    elif not path.exists():
        raise VtcavError(f"{source}: no such manifest or folder of videos")
    elif not looks_like_manifest(source):
        raise UsageError(f"{source}: expected a labels manifest (.jsonl) or a folder of videos")
    else:
        videos = read_manifest(source)
        if label:
            known = sorted({v.label for v in videos})
            if label not in known:
                raise UsageError(f"{source}: no videos with label '{label}' (labels: {', '.join(known)})")
            videos = [v for v in videos if v.label == label]
        if split:
            videos = [v for v in videos if v.split == split]
    if not videos:
        raise VtcavError(f"{source}: no videos{' with label ' + repr(label) if label else ''}"
                         f"{' in split ' + repr(split) if split else ''}")
    return videos[:max_videos] if max_videos else videos


def write_candidates(videos: list[VideoLabel], out: str | Path, params: SegmentParams, sampling: Sampling,
                     label: str | None = None, name: str = CANDIDATE_SET, provenance: dict | None = None) -> int:
    """Segment every video and write its candidates to set ``name`` of ``out``; returns the count."""
    record = {**(provenance or {}), "segmentation": params.to_dict(), "label": label,
              "videos": [v.video_id for v in videos], "temporal_sampling": "uniform over each video"}
    with ClipSetWriter(out, sampling, TOOL, record) as writer:
        appender = writer.add_set(name, kind="supervoxel", role="concept", labels=[label] if label else [],
                                  geometry="window",
                                  description="3D-ACE candidates: SLIC supervoxels on grey, cropped and resized",
                                  provenance=record)
        target = SupervoxelAppender(appender)
        for entry in messages.progress(videos, len(videos), "videos"):
            volume, frames = load_volume(entry.path, sampling.frames)
            candidates = list(video_candidates(volume, params, sampling.size))
            target.append(candidates, [entry.video_id] * len(candidates),
                          np.repeat(frames[None], len(candidates), axis=0),
                          np.repeat(np.array(volume.shape[:3])[None], len(candidates), axis=0))
        count = target.count
    return count
