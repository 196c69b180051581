"""The relevance file (HDF5, kind ``relevance``): one row per video of maps, verdicts and
motion shares, written as each video is done (its provenance: :func:`vtcav_common.explain.run.maps_provenance`)."""

from __future__ import annotations

import h5py
import numpy as np

from ..core import h5io


class MapSink:
    """The relevance file's datasets, one row per video, written as each video is done."""

    def __init__(self, handle, n: int, size: tuple[int, int, int], selective: bool, class_names: list[str]):
        self.class_names = class_names
        t = size[0]
        strings = h5py.string_dtype()
        self.strings = {name: handle.create_dataset(name, shape=(n,), dtype=strings, track_times=False)
                        for name in ("ids", "paths", "labels", "targets", "predicted")}
        self.numbers = {
            "target_index": h5io.dataset(handle, "target_index", shape=(n,), dtype=np.int32),
            "predicted_index": h5io.dataset(handle, "predicted_index", shape=(n,), dtype=np.int32),
            "probability": h5io.dataset(handle, "probability", shape=(n,), dtype=np.float32),
            "target_probability": h5io.dataset(handle, "target_probability", shape=(n,), dtype=np.float32),
            "frame_indices": h5io.dataset(handle, "frame_indices", shape=(n, t), dtype=np.int32),
            "source_frames": h5io.dataset(handle, "source_frames", shape=(n,), dtype=np.int32),
            "source_size": h5io.dataset(handle, "source_size", shape=(n, 2), dtype=np.int32),
            "motion_share": h5io.dataset(handle, "motion_share", shape=(n, 2), dtype=np.float32),
            "moving_fraction": h5io.dataset(handle, "moving_fraction", shape=(n,), dtype=np.float32),
        }
        map_options = dict(shape=(n, *size), dtype=np.float32, chunks=(1, *size), compression="gzip",
                           compression_opts=4, shuffle=True)
        self.plain = h5io.dataset(handle, "plain", **map_options)
        self.selective = h5io.dataset(handle, "selective", **map_options) if selective else None

    def write(self, row: int, video, outcome) -> None:
        """Row ``row``: ``video`` a :class:`~vtcav_common.explain.run.VideoItem`, ``outcome`` its explanation."""
        result, sampled = outcome.explanation, outcome.sampled
        names = self.class_names
        for name, value in (("ids", video.video_id), ("paths", video.path), ("labels", video.label or ""),
                            ("targets", names[result.target_index]), ("predicted", names[result.predicted_index])):
            self.strings[name][row] = value
        self.numbers["target_index"][row] = result.target_index
        self.numbers["predicted_index"][row] = result.predicted_index
        self.numbers["probability"][row] = result.probabilities[result.predicted_index]
        self.numbers["target_probability"][row] = result.probabilities[result.target_index]
        self.numbers["frame_indices"][row] = sampled.indices
        self.numbers["source_frames"][row] = sampled.source_frames
        self.numbers["source_size"][row] = sampled.frames.shape[1:3]
        self.numbers["motion_share"][row] = [_nan(outcome.shares.get("plain")), _nan(outcome.shares.get("selective"))]
        self.numbers["moving_fraction"][row] = outcome.moving_fraction
        self.plain[row] = result.relevance
        if self.selective is not None:
            self.selective[row] = outcome.selective


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
