"""Concept clip sets in HDF5 (kind ``clips``): the file every later tool reads.

Layout (schema 1; the contract is in ``docs/formats.md``)::

    / attrs: vtcav_kind=clips, schema_version=1, tool, tool_version,
             provenance (JSON; its "sampling" = {"frames": T, "size": [H, W], "frame_stride": s})
    /concepts/<name>/   attrs: kind, role, classes, labels, geometry, description, provenance
        clips     uint8   N x T x H x W x 3   RGB, one clip per chunk, gzip
        video_id  str     N
        frames    int32   N x T               source frame index of each clip frame
        track_id  int32   N                   -1 when none
        boxes     float32 N x T x 4           crop window in source pixels (x1 y1 x2 y2)

Reading streams (``iter_clip_batches``); writing appends batch by batch
(:class:`ClipSetWriter`), so memory stays bounded however many clips a set holds.
Adding sets to an existing file, or merging files, builds a new file beside the old
one and renames it into place: the old file is untouched until the new one is whole.

Example:
    >>> import numpy as np
    >>> from vtcav_common.formats.clips import ClipSetWriter, Sampling, iter_clip_batches, list_sets
    >>> sampling = Sampling(frames=16, size=(64, 64), frame_stride=1)
    >>> clips = np.zeros((2, 16, 64, 64, 3), np.uint8)                     # two clips, N x T x H x W x 3
    >>> frames, boxes = np.tile(np.arange(16), (2, 1)), np.zeros((2, 16, 4))
    >>> with ClipSetWriter("concepts.h5", sampling, "vt-concepts", {"seed": 0}) as writer:
    ...     ball = writer.add_set("ball_right", kind="spatiotemporal", role="concept",
    ...                           classes=["ball"], labels=["right"], geometry="window")
    ...     ball.append(clips, ["v1", "v2"], frames, [1, 1], boxes)
    >>> [(s.name, s.n, s.T, s.H, s.W) for s in list_sets("concepts.h5")]
    [('ball_right', 2, 16, 64, 64)]
    >>> for batch in iter_clip_batches("concepts.h5", "ball_right", 32):
    ...     print(batch.shape, batch.dtype)
    (2, 16, 64, 64, 3) uint8
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from ..core import files, h5io
from ..core.errors import IncompatibleError, VtcavError

KIND = "clips"
ROOT = "concepts"
SET_KINDS = ("spatial", "spatiotemporal", "random", "supervoxel", "imported", "twin")
ROLES = ("concept", "random", "twin")  # twin: vtcav_common.concepts.twins (only in --relative pairs)
GEOMETRIES = ("window", "follow", "random", "static", "full")  # full: whole frames (imported)
META_CHUNK = 256  # rows per chunk of the small per-clip datasets


@dataclass(frozen=True)
class Sampling:
    """How clips are sampled: ``frames`` per clip, ``size`` (H, W), source ``frame_stride``."""

    frames: int
    size: tuple[int, int]
    frame_stride: int = 1

    def __post_init__(self):
        if self.frames < 1 or min(self.size) < 1 or self.frame_stride < 1:
            raise VtcavError(f"sampling {self.frames} frames of {self.size}, stride {self.frame_stride}: "
                             f"each must be at least 1")
        # A clip is held as uint8 and as float32 while resized: refuse one that cannot fit.
        files.check_memory(5 * self.frames * self.size[0] * self.size[1] * 3,
                           f"a clip of {self.frames} frames of {self.size[0]}x{self.size[1]}")

    def to_dict(self) -> dict:
        return {"frames": self.frames, "size": list(self.size), "frame_stride": self.frame_stride}

    @classmethod
    def from_dict(cls, record: dict, where: str) -> "Sampling":
        try:
            height, width = record["size"]
            return cls(int(record["frames"]), (int(height), int(width)), int(record.get("frame_stride", 1)))
        except (KeyError, TypeError, ValueError):
            raise VtcavError(f"{where}: provenance has no valid 'sampling' "
                             f"(frames, size [H, W], frame_stride)") from None

    def describe(self) -> str:
        return f"{self.frames} frames of {self.size[0]}x{self.size[1]}, frame stride {self.frame_stride}"


@dataclass(frozen=True)
class SetInfo:
    """What ``list_sets`` reports about one group: its name, kind, role and shape."""

    name: str
    kind: str
    role: str
    n: int
    T: int
    H: int
    W: int
    attrs: dict = field(default_factory=dict, compare=False)

    def to_record(self) -> dict:
        return {"name": self.name, "kind": self.kind, "role": self.role, "n": self.n,
                "T": self.T, "H": self.H, "W": self.W, **self.attrs}


@dataclass(frozen=True)
class SetMeta:
    """Where each clip of a set came from (everything but the pixels)."""

    video_id: list[str]
    frames: np.ndarray     # N x T int32
    track_id: np.ndarray   # N int32
    boxes: np.ndarray      # N x T x 4 float32


# --------------------------------------------------------------------------- reading
def open_clipset(path: str | Path) -> h5py.File:
    """Open a clip-set file for reading; wrong kind, newer schema or no sets is an error."""
    handle = h5io.open_file(path, KIND)
    if ROOT not in handle or not isinstance(handle[ROOT], h5py.Group):
        handle.close()
        raise VtcavError(f"{path}: clip-set file has no '/{ROOT}' group")
    return handle


def file_sampling(path: str | Path) -> Sampling:
    with open_clipset(path) as handle:
        return _sampling_of(handle, str(path))


def list_sets(path: str | Path) -> list[SetInfo]:
    """Every set in the file, in the order they were written."""
    with open_clipset(path) as handle:
        return [_set_info(name, group) for name, group in handle[ROOT].items()]


def get_set(path: str | Path, name: str) -> SetInfo:
    with open_clipset(path) as handle:
        return _set_info(name, _group(handle, name, path))


def read_clips(path: str | Path, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Clips ``start:stop`` of set ``name`` as ``n x T x H x W x 3`` uint8 RGB."""
    with open_clipset(path) as handle:
        return _group(handle, name, path)["clips"][start:stop]


def iter_clip_batches(path: str | Path, name: str, batch_size: int = 32) -> Iterator[np.ndarray]:
    """Stream set ``name`` in batches of at most ``batch_size`` clips (bounded memory)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    with open_clipset(path) as handle:
        clips = _group(handle, name, path)["clips"]
        for start in range(0, clips.shape[0], batch_size):
            yield clips[start:start + batch_size]


def read_set_meta(path: str | Path, name: str) -> SetMeta:
    with open_clipset(path) as handle:
        group = _group(handle, name, path)
        return SetMeta(h5io.read_strings(group["video_id"]), group["frames"][()],
                       group["track_id"][()], group["boxes"][()])


def _group(handle: h5py.File, name: str, path: str | Path) -> h5py.Group:
    sets = handle[ROOT]
    if name not in sets:
        known = ", ".join(sets.keys()) or "none"
        raise VtcavError(f"{path}: no clip set '{name}' (sets: {known})")
    return sets[name]


def _set_info(name: str, group: h5py.Group) -> SetInfo:
    n, t, h, w, _ = group["clips"].shape
    attrs = {}
    for key, value in group.attrs.items():
        value = value.decode() if isinstance(value, bytes) else value
        if key in ("classes", "labels", "provenance") and isinstance(value, str):
            value = json.loads(value)
        attrs[key] = value
    kind, role = attrs.pop("kind", ""), attrs.pop("role", "")
    return SetInfo(name, str(kind), str(role), int(n), int(t), int(h), int(w), attrs)


def _sampling_of(handle: h5py.File, where: str) -> Sampling:
    return Sampling.from_dict(h5io.provenance(handle).get("sampling") or {}, where)


# --------------------------------------------------------------------------- writing
class SetAppender:
    """Appends clips to one set; created by :meth:`ClipSetWriter.add_set`."""

    def __init__(self, group: h5py.Group, sampling: Sampling):
        t, (h, w) = sampling.frames, sampling.size
        self.name = group.name.rsplit("/", 1)[-1]
        self.sampling = sampling
        self.group = group  # writers of a kind's extra per-clip datasets (e.g. supervoxel masks) add them here
        self._clips = h5io.dataset(group, "clips", shape=(0, t, h, w, 3), maxshape=(None, t, h, w, 3),
                                   chunks=(1, t, h, w, 3), dtype=np.uint8, compression="gzip",
                                   compression_opts=4)
        self._video_id = group.create_dataset("video_id", shape=(0,), maxshape=(None,), chunks=(META_CHUNK,),
                                              dtype=h5py.string_dtype(), track_times=False)
        self._frames = h5io.dataset(group, "frames", shape=(0, t), maxshape=(None, t),
                                    chunks=(META_CHUNK, t), dtype=np.int32)
        self._track_id = h5io.dataset(group, "track_id", shape=(0,), maxshape=(None,),
                                      chunks=(META_CHUNK,), dtype=np.int32)
        self._boxes = h5io.dataset(group, "boxes", shape=(0, t, 4), maxshape=(None, t, 4),
                                   chunks=(META_CHUNK, t, 4), dtype=np.float32)

    @property
    def count(self) -> int:
        return int(self._clips.shape[0])

    def append(self, clips: np.ndarray, video_ids: Sequence[str], frames: np.ndarray,
               track_ids: Sequence[int], boxes: np.ndarray) -> None:
        """Add ``n`` clips with their sources; shapes must match the file's sampling."""
        clips = np.asarray(clips)
        n = len(clips)
        t, (h, w) = self.sampling.frames, self.sampling.size
        frames = np.asarray(frames, dtype=np.int32).reshape(n, t)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(n, t, 4)
        track_ids = np.asarray(track_ids, dtype=np.int32).reshape(n)
        if clips.shape != (n, t, h, w, 3) or clips.dtype != np.uint8:
            raise ValueError(f"clips must be n x {t} x {h} x {w} x 3 uint8, got {clips.shape} {clips.dtype}")
        if len(video_ids) != n:
            raise ValueError(f"{len(video_ids)} video ids for {n} clips")
        if n == 0:
            return
        start = self.count
        for dataset, rows in ((self._clips, clips), (self._video_id, np.array(video_ids, dtype=object)),
                              (self._frames, frames), (self._track_id, track_ids), (self._boxes, boxes)):
            dataset.resize(start + n, axis=0)
            dataset[start:start + n] = rows


class ClipSetWriter:
    """Write sets to ``out``: new sets are staged, then the file is assembled atomically.

    With ``append=True`` and an existing ``out``, its sets are kept (the sampling must
    match); a new set with an existing name is an error unless ``replace=True``.
    Nothing appears at ``out`` unless the ``with`` block ends without an exception.
    """

    def __init__(self, out: str | Path, sampling: Sampling, tool: str, provenance: dict[str, Any],
                 append: bool = False, replace: bool = False):
        self.out = Path(out)
        self.sampling = sampling
        self.tool = tool
        self.provenance = {**provenance, "sampling": sampling.to_dict()}
        self.replace = replace
        self.existing: list[str] = []
        self._append = append
        self._base: Path | None = None
        self._lock = files.exclusive_output(self.out)
        self._sets: dict[str, SetAppender] = {}
        self._staging: h5py.File | None = None
        self._staging_path: Path | None = None

    def __enter__(self) -> "ClipSetWriter":
        # One writer of OUT at a time, from reading the sets it has to renaming the new file
        # over it: concurrent --append runs each keep the other's sets.
        self._lock.__enter__()
        try:
            return self._enter()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def _enter(self) -> "ClipSetWriter":
        self._base = self.out if self._append and self.out.exists() else None
        if self._base is not None:
            with open_clipset(self._base) as handle:
                found = _sampling_of(handle, str(self._base))
                if found != self.sampling:
                    raise IncompatibleError(
                        f"{self._base}: holds clips of {found.describe()}, this run makes "
                        f"{self.sampling.describe()}; refusing to mix them in one file (use the same "
                        f"--frames, --size and --frame-stride, or another output file)")
                self.existing = list(handle[ROOT].keys())
            files.replacing_input(self._base)   # read to be replaced: the new file goes in its place
        # a findable temporary (.NAME.vtcav-PID.tmp.staging.h5): SIGTERM and the next run clean it up
        self._staging_path = tmp = files.claim_temp(Path(os.path.realpath(self.out)), ".staging.h5", self.out)
        self._staging = h5py.File(tmp, "w", track_order=True, rdcc_nbytes=0)  # whole chunks: no cache needed
        self._staging.create_group(ROOT, track_order=True)
        return self

    def add_set(self, name: str, kind: str, role: str, classes: Sequence[str] = (),
                labels: Sequence[str] = (), geometry: str = "window", description: str = "",
                provenance: dict | None = None) -> SetAppender:
        """Start a new set; its name must be new in this run (and in the file unless replacing)."""
        check_set_name(name)
        if kind not in SET_KINDS or role not in ROLES or geometry not in GEOMETRIES:
            raise ValueError(f"bad set attributes: kind={kind!r} role={role!r} geometry={geometry!r}")
        if name in self._sets:
            raise VtcavError(f"{self.out}: clip set '{name}' is written twice in one run")
        if name in self.existing and not self.replace:
            raise VtcavError(f"{self.out}: already has a clip set '{name}'; choose another --name "
                             f"or pass --replace")
        group = self._staging[ROOT].create_group(name, track_order=True)
        group.attrs["kind"] = kind
        group.attrs["role"] = role
        group.attrs["classes"] = json.dumps(list(classes))
        group.attrs["labels"] = json.dumps(list(labels))
        group.attrs["geometry"] = geometry
        group.attrs["description"] = description
        group.attrs["provenance"] = json.dumps(provenance or {}, sort_keys=True)
        self._sets[name] = SetAppender(group, self.sampling)
        return self._sets[name]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._close_staging()
            if exc_type is None:
                self._assemble()
        finally:
            if self._staging_path is not None:
                files.release_temp(self._staging_path)
            self._lock.__exit__(None, None, None)

    def _close_staging(self) -> None:
        try:
            self._staging.close()
        except RuntimeError as err:   # h5py's report of a full disk or size limit met on close
            refused = files.refused_write(err)
            if refused is None:
                raise
            raise files.write_error(self.out, refused) from None

    def _assemble(self) -> None:
        sources: list[tuple[Path, list[str]]] = []
        provenances = [self.provenance]
        if self._base is not None:
            kept = [name for name in self.existing if name not in self._sets]
            sources.append((self._base, kept))
            with open_clipset(self._base) as handle:
                provenances = [h5io.provenance(handle), self.provenance]
            files.replacing_input(self._base)
        sources.append((self._staging_path, list(self._sets)))
        provenance = self.provenance if len(provenances) == 1 else combined_provenance(provenances)
        _write_combined(self.out, self.tool, provenance, sources)


def check_set_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise VtcavError(f"bad clip set name {name!r}: use a non-empty name without '/' "
                         f"or surrounding spaces")


def require_same_sampling(first_name: str, first: Sampling, second_name: str, second: Sampling) -> None:
    """Refuse to put clips of different T, H x W or frame stride in one file."""
    if first != second:
        raise IncompatibleError(f"{second_name}: holds clips of {second.describe()}, but {first_name} "
                                f"holds {first.describe()}; refusing to mix them (use the same --frames, "
                                f"--size and --frame-stride)")


def combined_provenance(provenances: list[dict]) -> dict:
    """The provenance of a file assembled from several runs: the shared sampling and each run's own."""
    runs: list[dict] = []
    for provenance in provenances:
        if "combined" in provenance:
            runs.extend(provenance["combined"])
        else:
            runs.append({k: v for k, v in provenance.items() if k != "sampling"})
    return {"sampling": provenances[0]["sampling"], "combined": runs}


def merge_files(paths: Sequence[str | Path], out: str | Path, tool: str, replace: bool = False) -> list[str]:
    """Combine the sets of several clip-set files into ``out`` (same sampling required).

    A set name found in two inputs is an error unless ``replace``, when the later one wins.
    Returns the names written, in order.
    """
    if not paths:
        raise VtcavError("nothing to merge: give at least one clip-set file")
    chosen: dict[str, Path] = {}
    provenances, first = [], None
    for path in map(Path, paths):
        with open_clipset(path) as handle:
            sampling = _sampling_of(handle, str(path))
            if first is None:
                first = (str(path), sampling)
            require_same_sampling(first[0], first[1], str(path), sampling)
            provenances.append(h5io.provenance(handle))
            for name in handle[ROOT].keys():
                if name in chosen and not replace:
                    raise VtcavError(f"{path}: clip set '{name}' is also in {chosen[name]}; "
                                     f"rename one or pass --replace (the later file wins)")
                chosen.pop(name, None)
                chosen[name] = path
    sources: list[tuple[Path, list[str]]] = []
    for name, path in chosen.items():
        if sources and sources[-1][0] == path:
            sources[-1][1].append(name)
        else:
            sources.append((path, [name]))
    _write_combined(Path(out), tool, combined_provenance(provenances), sources)
    return list(chosen)


def _write_combined(out: Path, tool: str, provenance: dict, sources: list[tuple[Path, list[str]]]) -> None:
    """Write ``out`` (atomically) holding the named sets copied from each source in order."""
    with h5io.create(out, KIND, tool, provenance) as dst:
        root = dst.create_group(ROOT, track_order=True)
        for path, names in sources:
            if not names:
                continue
            with h5py.File(path, "r") as src:
                for name in names:
                    src.copy(src[ROOT][name], root, name=name)


def drop_clips(path: str | Path, out: str | Path, tool: str, drops: dict[str, Sequence[int]]) -> dict[str, int]:
    """Write ``out``: ``path``'s sets, without the clips ``drops`` names (set -> clip indices).

    Every per-clip dataset of a set (clips, sources, and a kind's extras such as supervoxel
    masks) loses the same rows; the provenance records what was dropped. Returns the
    number of clips left in each changed set.
    """
    with open_clipset(path) as src:
        for name, indices in drops.items():
            n = _group(src, name, path)["clips"].shape[0]
            bad = [i for i in indices if not 0 <= i < n]
            if bad:
                raise VtcavError(f"{path}: set '{name}' has clips 0..{n - 1}, no clip {bad[0]}")
            if len(set(indices)) >= n:
                raise VtcavError(f"{path}: dropping every clip of '{name}' would leave an empty set")
        provenance = h5io.provenance(src)
        dropped = {name: sorted(set(map(int, indices))) for name, indices in drops.items()}
        provenance = {**provenance, "dropped": {**provenance.get("dropped", {}), **dropped}}
        left = {}
        with h5io.create(out, KIND, tool, provenance) as dst:
            root = dst.create_group(ROOT, track_order=True)
            for name, group in src[ROOT].items():
                if name not in dropped:
                    src.copy(group, root, name=name)
                    continue
                n = group["clips"].shape[0]
                keep = np.setdiff1d(np.arange(n), dropped[name])
                target = root.create_group(name, track_order=True)
                for key, value in group.attrs.items():
                    target.attrs[key] = value
                for key, data in group.items():
                    _copy_rows(data, target, key, keep, n)
                left[name] = int(len(keep))
    return left


def _copy_rows(data: h5py.Dataset, target: h5py.Group, key: str, keep: np.ndarray, n: int) -> None:
    """Copy dataset ``data`` keeping rows ``keep`` (when it has one row per clip), chunk layout kept."""
    if data.ndim == 0 or data.shape[0] != n:
        target.create_dataset(key, data=data[()], track_times=False)
        return
    rows = len(keep)
    chunks = True if data.chunks is None else (min(data.chunks[0], rows),) + data.chunks[1:]
    out = target.create_dataset(key, shape=(rows,) + data.shape[1:], maxshape=(None,) + data.shape[1:],
                                dtype=data.dtype, chunks=chunks, compression=data.compression,
                                compression_opts=data.compression_opts, track_times=False)
    for start in range(0, rows, META_CHUNK):  # bounded memory for sets of many clips
        out[start:start + META_CHUNK] = data[keep[start:start + META_CHUNK]]


# --------------------------------------------------------------------------- temporal twins
# A twin set (vt-concepts twins) is named SOURCE~TRANSFORM: the same clips with only time changed.
SEPARATOR = "~"


@dataclass(frozen=True)
class Transform:
    name: str
    question: str      # what a preference of the original over this twin means
    help: str


TRANSFORMS = {t.name: t for t in (
    Transform("frozen", "motion", "one frame of each clip repeated (--frame-kept)"),
    Transform("shuffled", "frame order", "each clip's frames in a seeded random order"),
    Transform("reversed", "direction", "the frames in reverse order"),
    Transform("blurred", "appearance", "every frame blurred in space (--blur-sigma pixels), the motion kept"),
)}


def twin_name(source: str, transform: str) -> str:
    return f"{source}{SEPARATOR}{transform}"


def parse_twin(name: str) -> tuple[str, str] | None:
    """``(source, transform)`` of a twin set's name, or None for any other name."""
    source, sep, transform = name.rpartition(SEPARATOR)
    return (source, transform) if sep and source and transform in TRANSFORMS else None
