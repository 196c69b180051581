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

from .. import __version__
from .files import (WRITE_ERRNOS, atomic_path, note_hdf5_input, release_space, request_hard_exit, reserve_space,
                    write_error)
from .errors import VtcavError

SCHEMA_VERSIONS = {"clips": 1, "embeddings": 1, "cavs": 1, "relevance": 1, "masking": 1}


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
    note_hdf5_input(path)
    try:
        _check_header(handle, path, kind, group)
        validate(handle, path, kind)
    except VtcavError:
        handle.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:   # HDF5 refusing its own metadata
        handle.close()
        raise VtcavError(f"{path}: damaged HDF5 file ({str(err).splitlines()[0][:160]})") from None
    return handle


def _check_header(handle: h5py.File, path: Path, kind: str, group: str | None) -> None:
    """The root attributes: a vtcav file, of ``kind``, of a schema this version reads."""
    found = handle.attrs.get("vtcav_kind")
    if isinstance(found, bytes):
        found = found.decode("utf-8", "replace")
    if found is None:
        raise VtcavError(f"{path}: not a vtcav file (no 'vtcav_kind' attribute)")
    if not isinstance(found, str) or found != kind:
        raise VtcavError(f"{path}: holds {str(found)[:40]}, expected {kind}")
    try:
        version = int(handle.attrs.get("schema_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version > SCHEMA_VERSIONS[kind]:
        raise VtcavError(f"{path}: {kind} schema version {version} is newer than this vtcav "
                         f"understands ({SCHEMA_VERSIONS[kind]}); upgrade vtcav")
    if version < 1:
        raise VtcavError(f"{path}: bad schema version {version}")
    if group is not None and (not isinstance(handle.get(group, getlink=True), h5py.HardLink)
                              or not isinstance(handle[group], h5py.Group)):
        raise VtcavError(f"{path}: {kind} file has no /{group} group")


# --------------------------------------------------------------------------- validation
# The layout of each kind, as far as readers rely on it: the groups whose datasets are
# tables of rows, and for each such group the dataset that names the rows (its length is
# the number of rows every other table in the group must have). Patterns are paths with
# ``*`` for any one name.
ROW_TABLES = {
    "embeddings": {"sets/*": "ids", "sets/*/acts": "../ids", "sets/*/grads": "../ids"},
    "clips": {"concepts/*": ("video_id", ("clips", "frames", "track_id", "boxes"))},   # (vt-ace adds per-set data)
    "cavs": {"layers/*": "vectors"},
    "relevance": {"": "ids"},
}
# Datasets that must be arrays of a given number of dimensions and dtype kind.
ANY_ARRAY = "fiubOS"   # numbers or strings, at least one dimension
SHAPES = {
    "embeddings": {"sets/*/ids": (1, "OS"), "sets/*/labels": (1, "OS"), "sets/*/logits": (2, "f"),
                   "sets/*/acts/*": (None, "f"), "sets/*/grads/*": (None, "f")},
    "clips": {"concepts/*/clips": (5, "u"), "concepts/*/video_id": (1, "OS"), "concepts/*/frames": (2, "iu"),
              "concepts/*/track_id": (1, "iu"), "concepts/*/boxes": (3, "f")},
    "cavs": {"layers/*/vectors": (2, "f"), "layers/*/concept": (1, "OS"), "layers/*/against": (1, "OS"),
             "layers/*/kind": (1, "OS"), "layers/*/replicate": (1, "iu"), "layers/*/accuracy": (1, "f"),
             "layers/*/*": (None, ANY_ARRAY)},
    "relevance": {"ids": (1, "OS"), "plain": (None, "f"), "selective": (None, "f"), "*": (None, ANY_ARRAY)},
}
for _kind in ("embeddings", "clips"):   # every other table of a set is an array too
    SHAPES[_kind]["sets/*/*" if _kind == "embeddings" else "concepts/*/*"] = (None, ANY_ARRAY)
# Groups readers rely on, with the attributes they read: (attribute, "str" | "int" | "ints").
GROUPS = {
    "embeddings": {"sets": (), "layers": (), "sets/*/acts": (), "sets/*/grads": (),
                   "sets/*": (("kind", "str"), ("role", "str"), ("n", "int")),
                   "layers/*": (("name", "str"), ("shape", "ints"))},
    "clips": {"concepts": (), "concepts/*": (("kind", "str"), ("role", "str")),
              # vt-ace tubelets: per layer, each tubelet's pooled feature and its grid weights
              "concepts/*/vtcd_features": (), "concepts/*/vtcd_grid": ()},
    "cavs": {"layers": (), "layers/*": ()},
    "relevance": {},
}
# Datasets every group of a pattern must hold (readers index them without asking).
REQUIRED = {
    "embeddings": {"sets/*": ("ids",)},   # (vt-ace features files have no logits)
    "clips": {"concepts/*": ("clips", "video_id", "frames", "track_id", "boxes")},
    "cavs": {"layers/*": ("vectors", "concept", "against", "kind", "replicate", "accuracy")},
    "relevance": {"": ("ids", "plain")},
}
MAX_OBJECTS = 200_000   # a file with more links than this is not one vtcav wrote
MAX_DEPTH = 12


def _matches(pattern: str, name: str) -> bool:
    parts, names = pattern.split("/") if pattern else [], name.split("/") if name else []
    return len(parts) == len(names) and all(p in ("*", n) for p, n in zip(parts, names))


def validate(handle: h5py.File, path: str | Path, kind: str) -> None:
    """Check a vtcav file's structure before any data is read: one line naming the file
    and the object, never a traceback, a crash or a silent fill value later.

    Every link is walked (metadata only): soft and external links (vtcav writes none),
    link loops and objects reached twice, a group where a dataset belongs or the reverse,
    a scalar or string dataset where an array belongs, tables of one group whose row
    counts differ (ids shorter than rows), datasets that declare more rows than the file
    stores (unwritten chunks read as zeros), and virtual datasets (vt-merge) whose shard
    files are gone.
    """
    seen: set = set()
    datasets: dict[str, h5py.Dataset] = {}
    groups: dict[str, h5py.Group] = {"": handle}

    def walk(group: h5py.Group, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise VtcavError(f"{path}: /{prefix} is nested more than {MAX_DEPTH} levels deep (a link loop?)")
        for name in group:
            where = f"{prefix}/{name}" if prefix else name
            link = group.get(name, getlink=True)
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                what = "a soft" if isinstance(link, h5py.SoftLink) else "an external"
                raise VtcavError(f"{path}: /{where} is {what} link (vtcav files hold none; it may dangle, "
                                 f"loop or point outside the file)")
            try:
                item = group[name]
            except (KeyError, OSError, RuntimeError) as err:
                raise VtcavError(f"{path}: /{where} cannot be opened ({str(err).splitlines()[0][:120]})") from None
            token = h5py.h5o.get_info(item.id).token if hasattr(h5py.h5o.get_info(item.id), "token") \
                else h5py.h5o.get_info(item.id).addr
            if token in seen:
                raise VtcavError(f"{path}: /{where} is a second link to an object already in the file "
                                 f"(a loop or an alias; vtcav files have neither)")
            seen.add(token)
            if len(seen) > MAX_OBJECTS:
                raise VtcavError(f"{path}: more than {MAX_OBJECTS} objects; not a vtcav file")
            if isinstance(item, h5py.Group):
                groups[where] = item
                walk(item, where, depth + 1)
            elif isinstance(item, h5py.Dataset):
                datasets[where] = item
                _check_dataset(item, where, path)
            else:
                raise VtcavError(f"{path}: /{where} is a named type, not a dataset or group")

    walk(handle, "", 0)
    shapes = SHAPES.get(kind, {})
    for pattern, (ndim, kinds) in shapes.items():
        for name in groups:
            if _matches(pattern, name) and not any(_matches(g, name) for g in GROUPS.get(kind, {})):
                raise VtcavError(f"{path}: /{name} is a group where a dataset belongs")
        for name, ds in datasets.items():
            if not _matches(pattern, name):
                continue
            if ds.shape is None or len(ds.shape) == 0:
                raise VtcavError(f"{path}: /{name} is a scalar where an array belongs")
            if ndim is not None and len(ds.shape) != ndim:
                raise VtcavError(f"{path}: /{name} has {len(ds.shape)} dimension(s), expected {ndim}")
            found = ds.dtype.kind
            if found not in kinds and not (found == "O" and "O" in kinds):
                want = {"f": "floats", "u": "unsigned integers", "iu": "integers", "OS": "strings"}.get(kinds, kinds)
                raise VtcavError(f"{path}: /{name} holds {ds.dtype}, expected {want}")
    for pattern, wanted in GROUPS.get(kind, {}).items():
        for name in datasets:
            if _matches(pattern, name):
                raise VtcavError(f"{path}: /{name} is a dataset where a group belongs")
        for name, group in groups.items():
            if _matches(pattern, name):
                for attr, form in wanted:
                    _check_attr(group, attr, form, name, path)
    for pattern, names in REQUIRED.get(kind, {}).items():
        for name in groups:
            if _matches(pattern, name):
                for child in names:
                    full = f"{name}/{child}" if name else child
                    if full not in datasets:
                        raise VtcavError(f"{path}: /{full} is missing")
    for pattern, key in ROW_TABLES.get(kind, {}).items():
        key, only = key if isinstance(key, tuple) else (key, None)
        for name, group in groups.items():
            if not _matches(pattern, name):
                continue
            key_name = "/".join([*name.split("/")[:-1], key[3:]]) if key.startswith("../") else \
                (f"{name}/{key}" if name else key)
            key_ds = datasets.get(key_name.strip("/"))
            if key_ds is None:
                if key.startswith("../") or pattern == "":
                    continue
                raise VtcavError(f"{path}: /{name} has no '{key}' dataset")
            if not key_ds.shape:
                continue   # reported above when it matters
            rows = key_ds.shape[0]
            declared = group.attrs.get("n")
            if declared is not None and not key.startswith("../"):
                try:
                    declared_rows = int(declared)
                except (TypeError, ValueError):
                    raise VtcavError(f"{path}: /{name} has a bad row count attribute n={declared!r}") from None
                if declared_rows != rows:
                    raise VtcavError(f"{path}: /{name} declares {declared_rows} rows but /{key_name} has {rows}")
            for child in (only or group):
                ds = datasets.get(f"{name}/{child}" if name else child)
                if ds is not None and ds.shape and ds.shape[0] != rows and ds is not key_ds:
                    raise VtcavError(f"{path}: /{ds.name.lstrip('/')} has {ds.shape[0]} rows but "
                                     f"/{key_name} has {rows}")


def _check_attr(group: h5py.Group, attr: str, form: str, name: str, path) -> None:
    try:
        value = group.attrs[attr]
    except KeyError:
        raise VtcavError(f"{path}: /{name} lacks its '{attr}' attribute") from None
    except (OSError, RuntimeError, TypeError, ValueError) as err:
        raise VtcavError(f"{path}: /{name}: unreadable '{attr}' attribute ({str(err).splitlines()[0][:80]})") from None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    ok = {"str": lambda v: isinstance(v, str),
          "int": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0,
          "ints": lambda v: isinstance(v, np.ndarray) and v.ndim == 1 and (v.size == 0 or v.dtype.kind in "iu"
                                                                            and bool((v > 0).all()))}[form]
    if not ok(value):
        want = {"str": "a string", "int": "a whole number >= 0", "ints": "a list of positive whole numbers"}[form]
        raise VtcavError(f"{path}: /{name} attribute '{attr}' should be {want}, not {str(value)[:40]!r}")


def _check_dataset(ds: h5py.Dataset, where: str, path) -> None:
    """One dataset's own consistency: a numeric or string dtype, the data it declares stored."""
    kind = ds.dtype.kind
    if kind not in "fiubOS" or (kind == "O" and h5py.check_string_dtype(ds.dtype) is None):
        raise VtcavError(f"{path}: /{where} holds {ds.dtype}, not numbers or strings")
    if ds.shape is None:
        raise VtcavError(f"{path}: /{where} is an empty (null) dataset")
    if ds.is_virtual:
        base = Path(path).parent
        for source in ds.virtual_sources():
            name = source.file_name
            if name != "." and not (base / name).exists() and not Path(name).exists():
                raise VtcavError(f"{path}: /{where} maps a shard file that is gone ({name}); merge again, or "
                                 f"restore it")
        return
    nbytes = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize
    if nbytes == 0:
        return
    chunks = ds.chunks
    if chunks is None:
        stored = ds.id.get_storage_size()
        if stored < nbytes and ds.compression is None and kind != "O":
            raise VtcavError(f"{path}: /{where} declares {ds.shape} but stores only {stored} of {nbytes} "
                             f"bytes (cut short, or never written)")
        return
    expected = int(np.prod([-(-size // chunk) for size, chunk in zip(ds.shape, chunks)], dtype=np.float64))
    stored = ds.id.get_num_chunks()
    if stored < expected:
        raise VtcavError(f"{path}: /{where} declares {ds.shape[0]} rows but stores data for fewer "
                         f"({stored} of {expected} chunks written)")


def provenance(handle: h5py.File) -> dict[str, Any]:
    try:
        found = json.loads(handle.attrs["provenance"])
    except (KeyError, TypeError, ValueError, RecursionError):
        found = None
    if not isinstance(found, dict):
        raise VtcavError(f"{handle.filename}: no readable 'provenance' attribute (not written by vtcav?)")
    # the parts readers compare field by field must be objects
    for key in ("model", "input", "sampling", "shard"):
        if key in found and found[key] is not None and not isinstance(found[key], dict):
            raise VtcavError(f"{handle.filename}: provenance '{key}' is not an object (damaged, or not vtcav's)")
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
    try:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]
    except UnicodeDecodeError:   # a damaged string: name the file and dataset, not "an input"
        raise VtcavError(f"{ds.file.filename}: {ds.name} holds text that is not UTF-8 (damaged?)") from None
