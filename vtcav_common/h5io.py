"""HDF5 files with provenance: written atomically, validated when read.

Every vtcav HDF5 file carries, as root attributes:

- ``vtcav_kind``      what the file holds: ``clips``, ``embeddings``, ``cavs``, ``relevance``;
- ``schema_version``  the layout version of that kind (readers refuse newer ones);
- ``tool``, ``tool_version``;
- ``provenance``      a JSON object (model, weights hash, layers, sampling, seed, ...);
- ``run_id``          a hash of kind, tool, version and provenance (:func:`make_run_id`).

Datasets are written without timestamps so the same inputs and seed give the same
bytes.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from . import __version__
from .files import WRITE_ERRNOS, atomic_path, release_space, request_hard_exit, reserve_space, write_error
from .errors import VtcavError

SCHEMA_VERSIONS = {"clips": 1, "embeddings": 1, "cavs": 1, "relevance": 1}


@contextlib.contextmanager
def create(path: str | Path, kind: str, tool: str, provenance: dict[str, Any]) -> Iterator[h5py.File]:
    """Create a vtcav HDF5 file of ``kind``; it appears at ``path`` only when complete."""
    if kind not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown file kind {kind!r}")
    with atomic_path(path, suffix=".h5") as tmp:
        try:
            handle = h5py.File(tmp, "w", track_order=True)
        except OSError as err:
            raise write_error(path, err) from None
        try:
            handle.attrs["vtcav_kind"] = kind
            handle.attrs["schema_version"] = SCHEMA_VERSIONS[kind]
            handle.attrs["tool"] = tool
            handle.attrs["tool_version"] = __version__
            handle.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
            handle.attrs["run_id"] = make_run_id(kind, tool, handle.attrs["provenance"])
            yield handle
            handle.flush()
        except (OSError, RuntimeError) as err:   # h5py raises RuntimeError when a flush fails
            _close_quietly(handle)
            if _is_write_failure(err, tmp):
                raise write_error(path, _reason(err)) from None
            raise
        except BaseException:
            _close_quietly(handle)
            raise
        try:
            handle.close()
        except (OSError, RuntimeError) as err:
            raise write_error(path, _reason(err)) from None
        release_space(tmp)


def reserve(handle: h5py.File, size: int, shown: str | Path) -> None:
    """Claim ``size`` bytes for the file being written, or fail now with one line
    (:func:`files.reserve_space`: HDF5 must never meet a full disk mid-write)."""
    reserve_space(handle.filename, int(size) + (1 << 20), shown)


def _close_quietly(handle: h5py.File) -> None:
    """Close after a failed write; HDF5 may fail again flushing, and must not crash at exit."""
    with contextlib.suppress(Exception):
        handle.close()


def _is_write_failure(err: Exception, tmp: Path) -> bool:
    text = str(err)
    return (getattr(err, "errno", None) in WRITE_ERRNOS or "write failed" in text or "Can't write" in text
            or tmp.name in text or "unable to flush" in text.lower())


def _reason(err: Exception) -> OSError:
    """h5py hides errno in its text: ``... errno = 27, error message = 'File too large' ...``."""
    match = re.search(r"error message = '([^']+)'", str(err))
    # HDF5's state after a failed write can crash the interpreter's final clean-up.
    request_hard_exit()
    errno_ = getattr(err, "errno", None)
    if match:
        return OSError(errno_, match.group(1))
    return err if isinstance(err, OSError) else OSError(errno_, str(err).splitlines()[0])


def make_run_id(kind: str, tool: str, provenance_json: str) -> str:
    """A file's identity: a hash of what made it (kind, tool and provenance, seeds included).

    Deterministic (the same inputs and seed give the same bytes), unlike a random uuid;
    score records carry it so that records of different runs are never pooled by mistake.
    """
    import hashlib

    text = json.dumps([kind, tool, __version__, provenance_json])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_id(handle: h5py.File) -> str:
    """The ``run_id`` attribute (files written before it existed: the same hash, computed)."""
    found = handle.attrs.get("run_id")
    if found is not None:
        return found.decode() if isinstance(found, bytes) else str(found)
    return make_run_id(str(handle.attrs.get("vtcav_kind")), str(handle.attrs.get("tool")),
                       str(handle.attrs.get("provenance")))


def open_file(path: str | Path, kind: str, group: str | None = None) -> h5py.File:
    """Open a vtcav HDF5 file for reading, checking it exists, is HDF5 and is ``kind``
    (and, when ``group`` is given, that the file holds that top-level group)."""
    path = Path(path)
    if not path.exists():
        raise VtcavError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise VtcavError(f"{path}: not a readable HDF5 file") from None
    found = handle.attrs.get("vtcav_kind")
    if found is None:
        handle.close()
        raise VtcavError(f"{path}: not a vtcav file (no 'vtcav_kind' attribute)")
    if found != kind:
        handle.close()
        raise VtcavError(f"{path}: holds {found}, expected {kind}")
    try:
        version = int(handle.attrs.get("schema_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version > SCHEMA_VERSIONS[kind]:
        handle.close()
        raise VtcavError(f"{path}: {kind} schema version {version} is newer than this vtcav "
                         f"understands ({SCHEMA_VERSIONS[kind]}); upgrade vtcav")
    if version < 1:
        handle.close()
        raise VtcavError(f"{path}: bad schema version {version}")
    if group is not None and group not in handle:
        handle.close()
        raise VtcavError(f"{path}: {kind} file has no /{group} group")
    return handle


def provenance(handle: h5py.File) -> dict[str, Any]:
    try:
        found = json.loads(handle.attrs["provenance"])
    except (KeyError, TypeError, ValueError):
        found = None
    if not isinstance(found, dict):
        raise VtcavError(f"{handle.filename}: no readable 'provenance' attribute (not written by vtcav?)")
    return found


def dataset(group: h5py.Group, name: str, data: np.ndarray | None = None, **kwargs) -> h5py.Dataset:
    """Create a dataset without timestamps (reproducible bytes), compressed when large."""
    kwargs.setdefault("track_times", False)
    shape = kwargs.get("shape", None if data is None else np.shape(data))
    if kwargs.get("compression", "auto") is None:
        kwargs.pop("compression")
    elif shape is not None and int(np.prod(shape)) * 4 > 1 << 16 and "compression" not in kwargs:
        kwargs["compression"] = "gzip"
        kwargs["compression_opts"] = 4
        kwargs.setdefault("shuffle", True)
    return group.create_dataset(name, data=data, **kwargs)


def string_dataset(group: h5py.Group, name: str, values: list[str]) -> h5py.Dataset:
    return group.create_dataset(name, data=np.array(values, dtype=h5py.string_dtype()),
                                track_times=False)


def read_strings(ds: h5py.Dataset) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]
