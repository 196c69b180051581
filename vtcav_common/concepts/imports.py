"""Hand-curated concept clips as a clip set: a folder of clip videos, or an ``.npy``/``.npz`` array.

Arrays are ``N x T x H x W x 3`` (or PyTorch's ``N x 3 x T x H x W``), uint8, or float in
[0, 1] (or [0, 255]). An ``.npz`` gives one set per array (named after its key) unless a
key is chosen. Each clip is sampled to ``frames`` frames spread uniformly over its length
and resized (area interpolation) to ``size``; by default both are the clips' own, so
nothing is resampled. Per-clip sources: ``video_id`` the clip's file stem (videos) or
``<file>:<index>`` (arrays), ``frames`` the source frame indices, ``track_id`` -1, ``boxes``
the whole source frame.

Example (in a project folder: picked.npz, an array of clips, and curated/ball_bounce/, clip videos):
    >>> from vtcav_common.concepts.imports import array_batches, array_sets, import_clip_sets, write_imported
    >>> from vtcav_common.formats.clips import ClipSetWriter, Sampling, list_sets
    >>> import_clip_sets(["picked.npz", "curated/ball_bounce"], "curated.h5", frames=16, size="64x64")
    2
    >>> [(s.name, s.kind, s.n, s.T, s.H, s.W) for s in list_sets("curated.h5")]
    [('picked', 'imported', 4, 16, 64, 64), ('ball_bounce', 'imported', 2, 16, 64, 64)]

    One array, step by step (resampled to 8 frames of 32 x 32):

    >>> sets = array_sets("picked.npz")                  # {"picked": N x T x H x W x 3 uint8}
    >>> with ClipSetWriter("c.h5", Sampling(8, (32, 32)), "vt-concepts", {}) as writer:
    ...     write_imported(writer, "ball", array_batches(sets["picked"], "picked.npz"), "concept",
    ...                    "hand-picked", {"source": "picked.npz"})
    4
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core import video as videolib
from ..core.errors import UsageError, VtcavError
from ..core.messages import info
from ..core.parsing import parse_size
from ..formats.clips import ROLES, ClipSetWriter, Sampling, check_set_name

BATCH = 32  # clips converted and written at a time


def as_uint8_clips(array: np.ndarray, where: str) -> np.ndarray:
    """Validate an array of clips and bring it to ``N x T x H x W x 3`` uint8 RGB."""
    if array.ndim == 4 and array.shape[-1] == 3:          # one clip
        array = array[None]
    if array.ndim == 5 and array.shape[-1] != 3 and array.shape[1] == 3:
        array = np.moveaxis(array, 1, -1)                 # N x 3 x T x H x W (PyTorch) -> N x T x H x W x 3
    if array.ndim != 5 or array.shape[-1] != 3:
        raise VtcavError(f"{where}: expected clips N x T x H x W x 3 (or N x 3 x T x H x W), got shape "
                         f"{' x '.join(map(str, array.shape))}")
    if array.shape[0] == 0:
        raise VtcavError(f"{where}: holds no clips")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
        low, high = float(np.min(array)), float(np.max(array))
        if not np.isfinite([low, high]).all() or low < 0 or high > 255:
            raise VtcavError(f"{where}: values must be in [0, 1] or [0, 255], found {low:g} .. {high:g}")
        scale = 255.0 if np.issubdtype(array.dtype, np.floating) and high <= 1.0 else 1.0
        return np.clip(np.asarray(array, np.float32) * scale + 0.5, 0, 255).astype(np.uint8)
    raise VtcavError(f"{where}: unsupported array type {array.dtype} (use uint8 or float)")


def array_sets(path: str | Path, key: str | None = None) -> dict[str, np.ndarray]:
    """The clip arrays of an ``.npy`` (one set, named after the file) or ``.npz`` (one per key)."""
    path = Path(path)
    declared = _declared_arrays(path)   # before loading: object arrays and sizes that cannot fit
    try:
        loaded = np.load(path, allow_pickle=False)  # no pickles: an array file must not run code
    except FileNotFoundError:
        raise VtcavError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as err:
        raise VtcavError(f"{path}: not a NumPy .npy/.npz array file ({str(err).splitlines()[0][:160]})") from None
    try:
        if isinstance(loaded, np.ndarray):
            return {path.stem: as_uint8_clips(loaded, str(path))}
        with loaded:
            keys = [key] if key else [k for k in loaded.files if k in declared]
            missing = [k for k in keys if k not in loaded.files]
            if missing:
                raise VtcavError(f"{path}: no array '{missing[0]}' (arrays: {', '.join(loaded.files)})")
            return {k: as_uint8_clips(loaded[k], f"{path}[{k}]") for k in keys}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:   # a member cut short or corrupt
        raise VtcavError(f"{path}: unreadable array ({str(err).splitlines()[0][:160]})") from None


def _declared_arrays(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and dtype each array of an .npy/.npz declares, read from the headers only;
    an object array (pickled Python objects) or one larger than memory is refused here."""
    from ..core.files import check_memory

    def header(handle, where: str):
        try:
            version = np.lib.format.read_magic(handle)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(handle))
        except (ValueError, OSError, EOFError, SyntaxError) as err:
            raise VtcavError(f"{where}: not a NumPy array ({str(err).splitlines()[0][:160]})") from None
        if dtype.hasobject:
            raise VtcavError(f"{where}: holds Python objects ({dtype}), not numbers; refusing (loading them "
                             f"could run code): save the clips as uint8 or float")
        check_memory(int(np.prod(shape, dtype=np.float64)) * max(dtype.itemsize, 4), where)
        return tuple(shape), dtype

    if not path.exists():
        raise VtcavError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            found = {}
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if name.endswith(".npy"):
                        with archive.open(name) as member:
                            found[name[:-4]] = header(member, f"{path}[{name[:-4]}]")
            return found
        with open(path, "rb") as handle:
            return {path.stem: header(handle, str(path))}
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise VtcavError(f"{path}: not a NumPy .npy/.npz array file ({str(err).splitlines()[0][:160]})") from None


def resample(clips: np.ndarray, sampling: Sampling) -> tuple[np.ndarray, np.ndarray]:
    """Clips at ``sampling``'s T and H x W, and the source frame indices used (N x T)."""
    n, t, h, w, _ = clips.shape
    indices = np.linspace(0, t - 1, sampling.frames).round().astype(np.int32)
    out_h, out_w = sampling.size
    picked = clips[:, indices]
    if (h, w) != (out_h, out_w):
        flat = picked.reshape(-1, h, w, 3)
        flat = np.stack([cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA) for frame in flat])
        picked = flat.reshape(n, sampling.frames, out_h, out_w, 3)
    return np.ascontiguousarray(picked), np.broadcast_to(indices, (n, sampling.frames)).copy()


def write_imported(writer: ClipSetWriter, name: str, batches: Iterator[tuple[np.ndarray, list[str], tuple]],
                   role: str, description: str, provenance: dict) -> int:
    """Add set ``name`` from ``(clips, ids, (H, W) of the source)`` batches; returns the clip count."""
    target = writer.add_set(name, kind="imported", role=role, classes=[], labels=[], geometry="full",
                            description=description, provenance=provenance)
    for clips, ids, (src_h, src_w) in batches:
        resampled, frames = resample(clips, writer.sampling)
        boxes = np.broadcast_to(np.array([0, 0, src_w, src_h], np.float32),
                                (len(ids), writer.sampling.frames, 4))
        target.append(resampled, ids, frames, [-1] * len(ids), boxes)
    return target.count


def array_batches(array: np.ndarray, source: str) -> Iterator[tuple[np.ndarray, list[str], tuple]]:
    stem = Path(source).stem
    for start in range(0, len(array), BATCH):
        chunk = array[start:start + BATCH]
        yield chunk, [f"{stem}:{start + i}" for i in range(len(chunk))], chunk.shape[2:4]


def folder_clips(folder: str | Path) -> list[Path]:
    files = videolib.find_videos(folder)
    if not files:
        raise VtcavError(f"{folder}: no video files ({', '.join(videolib.VIDEO_SUFFIXES)})")
    return files


def video_batches(files: list[Path]) -> Iterator[tuple[np.ndarray, list[str], tuple]]:
    """One clip per video file, all its frames (clips are short); ``resample`` spreads T over them."""
    for file in files:
        frames = videolib.read_video(file)
        yield frames[None], [file.stem], frames.shape[1:3]


def natural_sampling(first: np.ndarray | Path, frames: int | None, size: tuple[int, int] | None,
                     stride: int = 1) -> Sampling:
    """The sampling of the output: given values, else those of the first clip (array or video)."""
    if isinstance(first, np.ndarray):
        t, h, w = first.shape[1:4]
    else:
        info = videolib.probe(first)
        t, h, w = info.frames, info.height, info.width
    return Sampling(frames or int(t), size or (int(h), int(w)), stride)


def import_clip_sets(sources: list[str], output: Path, name: str | None = None, key: str | None = None,
                     role: str = "concept", frames: int | None = None, size: str | None = None,
                     append: bool = False, replace: bool = False) -> int:
    """vt-concepts import: folders of clip videos, .npy or .npz arrays into one clip-set file, each
    source a set (``name`` renames the only one); clips resampled to ``frames``/``size`` when given,
    else kept as they are. Returns the number of sets written."""
    tool = "vt-concepts"
    if role not in ROLES:
        raise UsageError(f"--role takes {' or '.join(ROLES)}, got '{role}'")
    wanted_size = parse_size(size) if size else None
    planned = []  # (set name, source, batches(sampling), first clip)
    for source in sources:
        path = Path(source)
        if path.is_dir():
            videos = folder_clips(path)
            planned.append((path.name, source, lambda sampling, v=videos: video_batches(v), videos[0]))
        elif path.suffix.lower() in (".npy", ".npz"):
            for set_name, array in array_sets(path, key).items():
                planned.append((set_name, source, lambda sampling, a=array, src=source: array_batches(a, src),
                                array))
        elif not path.exists():
            raise VtcavError(f"{source}: no such file or folder")
        else:
            raise UsageError(f"{source}: import takes a folder of clip videos, an .npy or an .npz file")
    if name is not None:
        if len(planned) != 1:
            raise UsageError(f"--name names one set, but the sources hold {len(planned)}")
        planned = [(name,) + planned[0][1:]]
    sampling = natural_sampling(planned[0][3], frames, wanted_size)
    run = {"command": "import", "sources": [Path(s).name for s in sources], "key": key, "role": role}
    with ClipSetWriter(output, sampling, tool, run, append=append, replace=replace) as writer:
        for set_name, source, batches, _ in planned:
            check_set_name(set_name)
            count = write_imported(writer, set_name, batches(sampling), role, f"imported from {Path(source).name}",
                                   {**run, "source": str(source)})
            info(f"{tool}: {set_name}: {count} clips imported from {source}")
    info(f"{tool}: {len(planned)} set(s) of {sampling.describe()} -> {output}")
    return len(planned)
