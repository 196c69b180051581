"""Supervoxel clip sets: ordinary clip sets (``vtcav_common.formats.clips``) with extra per-clip data.

A set of kind ``supervoxel`` holds, beside the usual ``clips``, ``video_id``,
``frames``, ``track_id`` (-1) and ``boxes`` (the crop window, the same on every frame):

    masks         bool    N x T x H x W   where the clip shows the supervoxel, at CLIP
                                          resolution (map back to the source with
                                          ``boxes`` and ``source_shape``: :func:`source_mask`)
    segment       int32   N x 3           resolution (segments asked of SLIC), label id in
                                          that segmentation, size in voxels
    source_shape  int32   N x 3           T, H, W of the segmented source volume

Concept sets written by ``vt-ace discover`` also hold:

    distance      float32 N               each member's distance to the cluster centre
    centre        float32 F               the cluster centre in the clustering features
    attrs: cluster (k-means index), cluster_size (all candidates in the cluster)

Readers that know nothing of these datasets (vt-embed, vt-concepts list) ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import h5py
import numpy as np

from . import clips as clipsets
from ..core import h5io
from .clips import SetAppender
from ..core.errors import VtcavError

SEGMENT_COLUMNS = ("resolution", "label", "voxels")


class SupervoxelAppender:
    """Appends candidates (clips plus masks and segment info) to a ``supervoxel`` set."""

    def __init__(self, appender: SetAppender):
        self.appender = appender
        t, (h, w) = appender.sampling.frames, appender.sampling.size
        group = appender.group
        self._masks = h5io.dataset(group, "masks", shape=(0, t, h, w), maxshape=(None, t, h, w),
                                   chunks=(1, t, h, w), dtype=bool, compression="gzip", compression_opts=4)
        self._segment = h5io.dataset(group, "segment", shape=(0, 3), maxshape=(None, 3), chunks=(256, 3),
                                     dtype=np.int32)
        self._segment.attrs["columns"] = list(SEGMENT_COLUMNS)
        self._source_shape = h5io.dataset(group, "source_shape", shape=(0, 3), maxshape=(None, 3),
                                          chunks=(256, 3), dtype=np.int32)
        self._distance = None

    @property
    def count(self) -> int:
        return self.appender.count

    def append(self, candidates: Sequence, video_ids: Sequence[str], frames: np.ndarray,
               source_shapes: np.ndarray) -> None:
        """Add candidates (:class:`~vtcav_common.ace.supervoxels.Candidate`); ``frames`` (n x T) are their
        source frame indices."""
        n = len(candidates)
        if n == 0:
            return
        t = self.appender.sampling.frames
        boxes = np.stack([np.repeat(np.array(c.window, np.float32)[None], t, axis=0) for c in candidates])
        self.appender.append(np.stack([c.clip for c in candidates]), list(video_ids), frames,
                             [-1] * n, boxes)
        segments = np.array([[c.supervoxel.resolution, c.supervoxel.label, c.supervoxel.voxels]
                             for c in candidates], np.int32)
        self._extend(self._masks, np.stack([c.clip_mask for c in candidates]))
        self._extend(self._segment, segments)
        self._extend(self._source_shape, np.asarray(source_shapes, np.int32).reshape(n, 3))

    def append_rows(self, rows: "SupervoxelRows", distances: np.ndarray) -> None:
        """Add rows copied from another supervoxel set, with their distances to a centre."""
        n = len(rows.video_id)
        self.appender.append(rows.clips, rows.video_id, rows.frames, [-1] * n, rows.boxes)
        self._extend(self._masks, rows.masks)
        self._extend(self._segment, rows.segment)
        self._extend(self._source_shape, rows.source_shape)
        if self._distance is None:
            self._distance = h5io.dataset(self.appender.group, "distance", shape=(0,), maxshape=(None,),
                                          chunks=(256,), dtype=np.float32)
        self._extend(self._distance, np.asarray(distances, np.float32))

    def set_centre(self, centre: np.ndarray, cluster: int, cluster_size: int) -> None:
        h5io.dataset(self.appender.group, "centre", np.asarray(centre, np.float32))
        self.appender.group.attrs["cluster"] = int(cluster)
        self.appender.group.attrs["cluster_size"] = int(cluster_size)

    @staticmethod
    def _extend(dataset: h5py.Dataset, rows: np.ndarray) -> None:
        start = dataset.shape[0]
        dataset.resize(start + len(rows), axis=0)
        dataset[start:start + len(rows)] = rows


@dataclass
class SupervoxelRows:
    """Some rows of a supervoxel set, everything but the set's attributes."""

    clips: np.ndarray
    video_id: list[str]
    frames: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    segment: np.ndarray
    source_shape: np.ndarray


def require_supervoxel_set(path: str, name: str) -> clipsets.SetInfo:
    info = clipsets.get_set(path, name)
    with clipsets.open_clipset(path) as handle:
        group = handle[clipsets.ROOT][name]
        missing = [d for d in ("masks", "segment", "source_shape") if d not in group]
    if info.kind != "supervoxel" or missing:
        raise VtcavError(f"{path}: set '{name}' is not a supervoxel set (kind {info.kind!r}"
                         f"{', no ' + ', '.join(missing) if missing else ''}); make one with vt-ace supervoxels")
    return info


def read_rows(path: str, name: str, indices: Sequence[int]) -> SupervoxelRows:
    """Rows ``indices`` (any order) of a supervoxel set, read in one pass."""
    indices = np.asarray(indices, dtype=np.int64)
    order = np.argsort(indices, kind="stable")
    ascending = indices[order]
    unique, inverse = np.unique(ascending, return_inverse=True)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    with clipsets.open_clipset(path) as handle:
        group = handle[clipsets.ROOT][name]

        def take(dataset: str) -> np.ndarray:
            values = group[dataset][unique] if len(unique) else group[dataset][:0]
            return values[inverse][back]

        video_ids = np.array(h5io.read_strings(group["video_id"]), dtype=object)
        return SupervoxelRows(take("clips"), list(video_ids[indices]), take("frames"), take("boxes"),
                              take("masks"), take("segment"), take("source_shape"))


def read_column(path: str, name: str, dataset: str) -> np.ndarray:
    with clipsets.open_clipset(path) as handle:
        group = handle[clipsets.ROOT][name]
        if dataset not in group:
            raise VtcavError(f"{path}: set '{name}' has no '{dataset}' dataset")
        return group[dataset][()]


def source_mask(clip_mask: np.ndarray, window: Sequence[float], source_shape: Sequence[int]) -> np.ndarray:
    """A clip-resolution mask mapped back into its source volume (``T x H x W`` bool)."""
    t, h, w = (int(v) for v in source_shape)
    x1, y1, x2, y2 = (int(round(v)) for v in window)
    out = np.zeros((t, h, w), bool)
    for frame, m in enumerate(clip_mask):
        out[frame, y1:y2, x1:x2] = cv2.resize(m.astype(np.float32), (x2 - x1, y2 - y1),
                                              interpolation=cv2.INTER_LINEAR) >= 0.5
    return out
