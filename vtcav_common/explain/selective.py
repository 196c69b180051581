"""Selective relevance (Hiley et al. 2020) and the motion-selectivity figure.

A relevance map ``R(t, y, x)`` of a video says where the model looked; it mixes a
static, spatial part (what the object looks like) with a part that changes with motion.
The selective filter keeps the second:

1. ``D = R ⋆ K`` with the 3x3x3 *temporal Sobel* kernel
   ``K[dt, dy, dx] = d[dt] · s[dy] · s[dx]``, ``d = (-1, 0, +1)`` (a central difference
   along time: ``R(t+1) - R(t-1)``), ``s = (1, 2, 1)`` (spatial smoothing).
   ``⋆`` is correlation, ``dt, dy, dx ∈ {-1, 0, +1}``.
   **Boundaries**: the volume is padded by *replicating* its edge values on all three
   axes (``R(-1) = R(0)``, ``R(T) = R(T-1)``, likewise in space), so at the first frame
   ``D`` is the one-sided difference ``R(1) - R(0)`` (smoothed), and a map that does
   not change over time gives ``D = 0`` everywhere, borders included. (Zero padding
   would invent a derivative at the first and last frames.) No normalisation of ``K``:
   the threshold below is relative, so the kernel's scale cancels.
2. ``keep = |D| > sigma · std(D)``, the standard deviation taken over the whole
   ``T x H x W`` derivative map of *that* video.
3. ``S = R`` where ``keep``, ``0`` elsewhere.

A static video has a time-constant map, so ``D = 0``, ``std(D) = 0``, nothing passes
``|D| > 0`` and ``S`` is exactly zero.

The motion-selectivity figure of a map is the share of its mass on moving pixels,
``sum(R · M) / sum(R)``, where ``M`` marks pixels that move: by default frame-to-frame
change (:func:`motion_mask`), or the true moving objects' boxes (:func:`box_mask`).
A uniform map would score the fraction of moving pixels, reported beside it as the
chance level.

>>> import numpy as np
>>> static = np.ones((4, 8, 8), np.float32)
>>> float(selective_filter(static, sigma=1.0).sum())
0.0
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import VtcavError
from ..models.base import temporal_indices
from ..formats.records import parse_detection, read_jsonl
from ..core.video import iter_frames, probe

TIME_DERIVATIVE = (-1.0, 0.0, 1.0)
SMOOTHING = (1.0, 2.0, 1.0)


def temporal_sobel_kernel() -> np.ndarray:
    """The 3x3x3 kernel ``K[dt, dy, dx] = d[dt] s[dy] s[dx]`` (index 0 is offset -1)."""
    d, s = np.array(TIME_DERIVATIVE), np.array(SMOOTHING)
    return (d[:, None, None] * s[None, :, None] * s[None, None, :]).astype(np.float32)


def temporal_derivative(relevance: np.ndarray) -> np.ndarray:
    """``R ⋆ K`` with replicate padding: the temporal Sobel response, same shape as ``R``."""
    volume = np.asarray(relevance, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"expected a T x H x W map, got shape {volume.shape}")
    x = torch.from_numpy(np.ascontiguousarray(volume))[None, None].double()
    # F.pad takes (x_left, x_right, y_top, y_bottom, t_front, t_back).
    padded = F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate")
    kernel = torch.from_numpy(temporal_sobel_kernel())[None, None].double()
    return F.conv3d(padded, kernel)[0, 0].float().numpy()   # conv3d is a correlation


def selective_mask(relevance: np.ndarray, sigma: float) -> np.ndarray:
    """Where ``|D| > sigma · std(D)``: the voxels whose relevance changes with time."""
    derivative = temporal_derivative(relevance)
    spread = float(derivative.astype(np.float64).std())
    return np.abs(derivative) > sigma * spread


def selective_filter(relevance: np.ndarray, sigma: float) -> np.ndarray:
    """The selective map: ``R`` where its temporal derivative is large, zero elsewhere."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    relevance = np.asarray(relevance, dtype=np.float32)
    return np.where(selective_mask(relevance, sigma), relevance, np.float32(0.0))


# --------------------------------------------------------------------------- moving pixels
def frame_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, the largest absolute change over the colour channels (grey levels 0-255)."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)


def motion_mask(previous: np.ndarray | None, frame: np.ndarray, following: np.ndarray | None,
                threshold: float) -> np.ndarray:
    """Moving pixels of ``frame``: change to the previous OR the next frame above ``threshold``.

    Both neighbours are used so that an object's whole extent is marked, not only the
    crescent it uncovers; at the first and last frames only the existing neighbour counts.
    """
    moving = np.zeros(frame.shape[:2], bool)
    for other in (previous, following):
        if other is not None:
            moving |= frame_change(frame, other) > threshold
    return moving


def box_mask(boxes: list[tuple[float, float, float, float]], height: int, width: int) -> np.ndarray:
    """Pixels whose centre ``(i + 0.5, j + 0.5)`` lies inside any box ``(x1, y1, x2, y2)``."""
    mask = np.zeros((height, width), bool)
    centres_x = np.arange(width) + 0.5
    centres_y = np.arange(height) + 0.5
    for x1, y1, x2, y2 in boxes:
        cols = (centres_x >= x1) & (centres_x <= x2)
        rows = (centres_y >= y1) & (centres_y <= y2)
        mask |= rows[:, None] & cols[None, :]
    return mask


@dataclass
class MassCounter:
    """Accumulates, frame by frame, how much of a map's mass falls on moving pixels."""

    total: float = 0.0
    on_moving: float = 0.0

    def add(self, relevance_frame: np.ndarray, moving: np.ndarray) -> None:
        frame = relevance_frame.astype(np.float64)
        self.total += float(frame.sum())
        self.on_moving += float(frame[moving].sum())

    def share(self) -> float | None:
        """``None`` for an empty map (e.g. a selective map with nothing left)."""
        return self.on_moving / self.total if self.total > 0 else None


def motion_share(relevance: np.ndarray, moving: np.ndarray) -> float | None:
    """Share of ``relevance``'s mass on ``moving`` pixels (same shapes, e.g. T x H x W)."""
    counter = MassCounter()
    counter.add(np.asarray(relevance), np.asarray(moving, bool))
    return counter.share()


# --------------------------------------------------------------------------- sampled frames
@dataclass
class SampledVideo:
    """The frames a model sees (uniformly sampled) and, per frame, its moving pixels."""

    path: str
    indices: np.ndarray            # T: the source frame shown at each map frame
    frames: np.ndarray             # T x H x W x 3 uint8 RGB, at the source's size
    moving: np.ndarray             # T x H x W bool, from frame differences
    source_frames: int             # frames in the source video
    fps: float


def sample_with_motion(path: str, frames: int, threshold: float) -> SampledVideo:
    """Decode only what is needed: the sampled frames and their neighbours, streaming.

    The container's frame count decides the sampling; when it is missing or wrong (the
    stream ends early) the frames are counted by decoding, and sampling is redone.
    """
    info = probe(path)
    if info.frames > 0:
        indices = temporal_indices(info.frames, frames)
        sampled = _decode_sampled(path, indices, threshold)
        if sampled is not None:
            return SampledVideo(str(path), indices, *sampled, info.frames, info.fps)
    count = sum(1 for _ in iter_frames(path))
    indices = temporal_indices(count, frames)
    sampled = _decode_sampled(path, indices, threshold)
    if sampled is None:
        raise VtcavError(f"{path}: the video changed while it was read")
    return SampledVideo(str(path), indices, *sampled, count, info.fps)


def _decode_sampled(path: str, indices: np.ndarray, threshold: float):
    """``(frames, moving)`` at ``indices``, or None when the video is shorter than expected."""
    wanted = set(int(i) for i in indices)
    last = max(wanted)
    kept: dict[int, np.ndarray] = {}
    masks: dict[int, np.ndarray] = {}
    before = previous = None          # frames i-2 and i-1 of the stream
    for index, frame in iter_frames(path):
        if index - 1 in wanted:       # frame i-1 now has both neighbours
            masks[index - 1] = motion_mask(before, previous, frame, threshold)
        if index in wanted:
            kept[index] = frame
        if index > last:
            break
        before, previous = previous, frame
    if last not in kept:
        return None
    if last not in masks:             # the stream ended on the sampled last frame: no next frame
        masks[last] = motion_mask(before, previous, None, threshold)
    order = [int(i) for i in indices]
    return np.stack([kept[i] for i in order]), np.stack([masks[i] for i in order])


def read_moving_boxes(path: str, video_ids: set[str]) -> dict[str, dict[int, list[tuple]]]:
    """Boxes of records with ``moving: true`` from a detections/gt JSONL, per video and frame.

    Only the videos in ``video_ids`` are kept, so memory grows with the videos explained,
    not with the file.
    """
    boxes: dict[str, dict[int, list[tuple]]] = {}
    flagged = 0
    for where, record in read_jsonl(path):
        if "moving" in record:
            flagged += 1
            if not isinstance(record["moving"], bool):
                raise VtcavError(f"{where}: 'moving' must be true or false, got {json.dumps(record['moving'])[:40]}")
        if not record.get("moving") or str(record.get("video_id")) not in video_ids:
            continue
        detection = parse_detection(record, where)
        boxes.setdefault(detection.video_id, {}).setdefault(detection.frame, []).append(detection.box)
    if not flagged:   # plain detections: every video would get a motion share of 0, silently
        raise VtcavError(f"{path}: no record has the 'moving' field --gt needs (vt-synth's gt.jsonl has it; "
                         f"a detector's output does not)")
    return boxes
