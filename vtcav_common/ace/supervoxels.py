"""Supervoxels of a video and the candidate clips 3D-ACE clusters (Ji et al. 2022).

A video is sampled to ``T`` frames (uniformly over its length, as vt-embed samples a
video for the model) and its ``T x H x W`` colour volume is segmented with SLIC at
several resolutions (default 15, 50 and 80 segments). Segments under
``min_fraction`` of the volume are dropped, and so is a segment whose 3D IoU with
one already kept (from a coarser resolution) exceeds ``max_iou``.

Each kept supervoxel becomes a candidate clip: its own pixels kept, everything else
filled with a constant grey, cropped in space to a window around the supervoxel's
bounding box (the union over all frames; square, or the clip's aspect ratio, so the
content is not stretched) and resized to the clip size. The clip keeps all ``T``
frames: a supervoxel is a region of space *and* time.

Example (run by tests/test_examples.py in a vt-synth world)::

    from vtcav_common.ace.supervoxels import SegmentParams, load_volume, video_candidates

    params = SegmentParams(resolutions=(15, 50, 80))
    volume, frames = load_volume("world/videos/train_right_0000.mp4", 16)
    for candidate in video_candidates(volume, params, out_size=(64, 64)):
        assert candidate.clip.shape == (16, 64, 64, 3)     # grey outside the supervoxel
        assert candidate.mask.shape == volume.shape[:3]    # T x H x W bool at source resolution
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np

from ..core import video
from ..concepts import context_window, crop_resize
from ..core.errors import UsageError, VtcavError

DEFAULT_RESOLUTIONS = (15, 50, 80)
DEFAULT_FILL = 117          # ACE's grey: close to the usual normalisation means (0.45 x 255)


@dataclass(frozen=True)
class SegmentParams:
    """How videos are cut into supervoxels, and how a supervoxel becomes a clip."""

    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS
    compactness: float = 10.0
    sigma: float = 0.0
    min_fraction: float = 0.001     # drop supervoxels smaller than this share of the volume
    max_iou: float = 0.5            # drop a supervoxel this similar (3D IoU) to one already kept
    fill: int = DEFAULT_FILL        # grey level outside the supervoxel

    def __post_init__(self) -> None:
        if not self.resolutions or min(self.resolutions) < 1:
            raise UsageError(f"--resolutions must be positive segment counts, got {list(self.resolutions)}")
        if self.compactness <= 0:
            raise UsageError(f"--compactness must be positive, got {self.compactness}")
        if self.sigma < 0:
            raise UsageError(f"--sigma must be 0 or more, got {self.sigma}")
        if not 0 <= self.min_fraction < 1:
            raise UsageError(f"--min-fraction must be in [0, 1), got {self.min_fraction}")
        if not 0 < self.max_iou <= 1:
            raise UsageError(f"--max-iou must be in (0, 1], got {self.max_iou}")
        if not 0 <= self.fill <= 255:
            raise UsageError(f"--fill must be a grey level in 0..255, got {self.fill}")

    def to_dict(self) -> dict:
        record = asdict(self)
        record["resolutions"] = list(self.resolutions)
        return record

    @classmethod
    def from_dict(cls, record: dict, where: str) -> "SegmentParams":
        try:
            return cls(**{**record, "resolutions": tuple(int(r) for r in record["resolutions"])})
        except (KeyError, TypeError) as err:
            raise VtcavError(f"{where}: no valid segmentation parameters in its provenance ({err})") from None


@dataclass
class Supervoxel:
    mask: np.ndarray        # T x H x W bool, at source resolution
    resolution: int         # the segment count asked of SLIC
    label: int              # the segment's id in that segmentation

    @property
    def voxels(self) -> int:
        return int(self.mask.sum())


@dataclass
class Candidate:
    """A supervoxel cut out as a clip."""

    supervoxel: Supervoxel
    clip: np.ndarray        # T x h x w x 3 uint8 (the clip size), grey outside the supervoxel
    clip_mask: np.ndarray   # T x h x w bool: where the clip shows the supervoxel
    window: tuple[int, int, int, int]   # x1 y1 x2 y2 in source pixels, the same for every frame

    @property
    def mask(self) -> np.ndarray:
        return self.supervoxel.mask


# --------------------------------------------------------------------------- reading
def parse_resolutions(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UsageError(f"--resolutions expects comma-separated segment counts such as 15,50,80, got '{text}'")
    return values


def load_volume(path: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` frames spread uniformly over the video (``T x H x W x 3`` RGB) and their indices."""
    from ..models.base import temporal_indices  # here: the models package pulls in torchvision (seconds)

    count = video.probe(path).frames
    if count > 0:
        indices = temporal_indices(count, frames)
        try:
            decoded = video.read_frames(path, sorted(set(indices.tolist())))
            return np.stack([decoded[int(i)] for i in indices]), indices
        except VtcavError:
            pass  # the container's frame count was wrong: decode everything instead
    whole = video.read_video(path)
    if len(whole) == 0:
        raise VtcavError(f"{path}: no frames could be decoded")
    indices = temporal_indices(len(whole), frames)
    return whole[indices], indices


# --------------------------------------------------------------------------- segmenting
def slic_labels(volume: np.ndarray, n_segments: int, params: SegmentParams) -> np.ndarray:
    """SLIC over the whole ``T x H x W`` volume: labels ``0..n-1`` (T x H x W int)."""
    from skimage.segmentation import slic

    labels = slic(volume, n_segments=n_segments, compactness=params.compactness, sigma=params.sigma,
                  channel_axis=-1, start_label=0, enforce_connectivity=True)
    # SLIC may leave gaps in the label ids: renumber densely so bincounts stay small.
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(labels.shape).astype(np.int32)


def segment_volume(volume: np.ndarray, params: SegmentParams) -> list[Supervoxel]:
    """The kept supervoxels of all resolutions, coarse to fine, in label order."""
    total = volume.shape[0] * volume.shape[1] * volume.shape[2]
    min_voxels = params.min_fraction * total
    kept: list[Supervoxel] = []
    earlier: list[tuple[np.ndarray, np.ndarray, dict[int, int]]] = []  # labels, sizes, label -> kept?
    for resolution in params.resolutions:
        labels = slic_labels(volume, resolution, params)
        sizes = np.bincount(labels.ravel())
        duplicate = np.zeros(len(sizes), bool)
        for old_labels, old_sizes, old_kept in earlier:
            duplicate |= _max_iou_with_kept(old_labels, old_sizes, old_kept, labels, sizes) > params.max_iou
        kept_here = {}
        for label in range(len(sizes)):
            if sizes[label] < min_voxels or duplicate[label]:
                continue
            kept_here[label] = len(kept)
            kept.append(Supervoxel(labels == label, resolution, label))
        earlier.append((labels, sizes, kept_here))
    return kept


def _max_iou_with_kept(old: np.ndarray, old_sizes: np.ndarray, old_kept: dict[int, int],
                       new: np.ndarray, new_sizes: np.ndarray) -> np.ndarray:
    """For each new segment, its highest 3D IoU with a kept segment of an earlier segmentation.

    One contingency table of the two label maps gives every intersection at once.
    """
    if not old_kept:
        return np.zeros(len(new_sizes))
    table = np.bincount(old.ravel().astype(np.int64) * len(new_sizes) + new.ravel(),
                        minlength=len(old_sizes) * len(new_sizes)).reshape(len(old_sizes), len(new_sizes))
    rows = np.fromiter(old_kept, int)
    inter = table[rows].astype(np.float64)
    union = old_sizes[rows, None] + new_sizes[None, :] - inter
    return (inter / np.maximum(union, 1)).max(axis=0)


# --------------------------------------------------------------------------- clips
def supervoxel_window(mask: np.ndarray, out_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A window with the clip's aspect ratio around the supervoxel's box over all frames."""
    seen = mask.any(axis=0)
    ys, xs = np.nonzero(seen.any(axis=1))[0], np.nonzero(seen.any(axis=0))[0]
    box = (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))
    return context_window(box, mask.shape[2], mask.shape[1], out_size, context=1.0)


def supervoxel_clip(volume: np.ndarray, mask: np.ndarray, window: Sequence[int], out_size: tuple[int, int],
                    fill: int) -> tuple[np.ndarray, np.ndarray]:
    """The supervoxel on grey, cropped to ``window`` and resized: clip and clip-resolution mask."""
    shown = np.where(mask[..., None], volume, np.uint8(fill))
    clip = np.stack([crop_resize(frame, window, out_size) for frame in shown])
    clip_mask = np.stack([crop_resize(m.astype(np.float32), window, out_size) for m in mask]) >= 0.5
    return clip, clip_mask


def video_candidates(volume: np.ndarray, params: SegmentParams, out_size: tuple[int, int]) -> Iterator[Candidate]:
    """Every kept supervoxel of ``volume`` as a candidate clip."""
    for supervoxel in segment_volume(volume, params):
        window = supervoxel_window(supervoxel.mask, out_size)
        clip, clip_mask = supervoxel_clip(volume, supervoxel.mask, window, out_size, params.fill)
        yield Candidate(supervoxel, clip, clip_mask, window)


def compose(volume: np.ndarray, keep: np.ndarray, fill: int) -> np.ndarray:
    """``volume`` where ``keep`` (T x H x W bool) is set, grey elsewhere."""
    return np.where(keep[..., None], volume, np.uint8(fill))
