"""Joining HDF5 shards: per-item datasets concatenated (virtually or by copy), the rest
taken from shard 0. See :mod:`vtcav_common.scale.merge`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ...core.errors import IncompatibleError, VtcavError
from ...core.files import atomic_path
from .provenance import join_lists, merged_provenance

COPY_ROWS_BYTES = 64 << 20   # copy at most this much per read: memory stays bounded


def _row_datasets(handle: h5py.File, row_group: str | None) -> dict[str, str]:
    """Per-item datasets: their path -> the name of their group of items."""
    found: dict[str, str] = {}
    if row_group is None:
        for name, item in handle.items():
            if isinstance(item, h5py.Dataset):
                found[name] = "videos"
        return found
    if row_group not in handle:
        return found
    for set_name, group in handle[row_group].items():
        def visit(name, item, set_name=set_name, group=group):
            if isinstance(item, h5py.Dataset):
                found[f"{group.name.lstrip('/')}/{name}"] = set_name
        group.visititems(visit)
    return found


def _check_layout(shards, files, rows: dict[str, str], row_group: str | None) -> None:
    first = files[0]
    for shard, handle in zip(shards[1:], files[1:]):
        extra = sorted(set(_row_datasets(handle, row_group)) - set(rows))
        if extra:
            raise IncompatibleError(f"{shard.path}: has {extra[0]}, which {shards[0].path} lacks")
        for path in rows:
            if path not in handle:
                raise IncompatibleError(f"{shard.path}: lacks {path}, which {shards[0].path} has")
            a, b = first[path], handle[path]
            if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
                raise IncompatibleError(f"{shard.path}: {path} is {b.dtype} x {b.shape[1:]}, "
                                        f"{shards[0].path} has {a.dtype} x {a.shape[1:]}")
    for shard, handle in zip(shards, files):
        items = shard.identity.get("items", {})
        for path, group in rows.items():
            if path not in handle:
                raise IncompatibleError(f"{shard.path}: lacks {path}, which {shards[0].path} has")
            if group in items:
                expected = items[group][1] - items[group][0]
                if handle[path].shape[0] != expected:
                    raise VtcavError(f"{shard.path}: {path} has {handle[path].shape[0]} rows, its shard record "
                                     f"says {expected} (a truncated or edited shard?)")


def merge_hdf5(shards, out: str, row_group: str | None, copy: bool = False) -> int:
    """Write the merged HDF5 file atomically; returns the number of rows joined (all groups)."""
    files = [h5py.File(s.path, "r") for s in shards]
    try:
        rows = _row_datasets(files[0], row_group)
        _check_layout(shards, files, rows, row_group)
        out_path = Path(out)
        out_dir = out_path.resolve().parent
        provenance = merged_provenance(shards)
        if shards[0].kind == "relevance" and isinstance(provenance.get("videos"), int):
            provenance["videos"] = sum(f[next(iter(rows))].shape[0] for f in files) if rows else 0
        with atomic_path(out_path, ".h5") as tmp, h5py.File(tmp, "w", track_order=True) as dst:
            for key, value in files[0].attrs.items():
                dst.attrs[key] = value
            dst.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
            _copy_tree(files[0], dst, files, shards, rows, out_dir, copy)
        one_per_group = {group: path for path, group in reversed(list(rows.items()))}.values()
        return sum(f[path].shape[0] for f in files for path in one_per_group)
    finally:
        for handle in files:
            handle.close()


def _copy_tree(src: h5py.Group, dst: h5py.Group, files, shards, rows, out_dir: Path, copy: bool) -> None:
    for name, item in src.items():
        path = item.name.lstrip("/")
        if isinstance(item, h5py.Group):
            group = dst.create_group(name, track_order=True)
            for key, value in item.attrs.items():
                group.attrs[key] = value
            if "provenance" in item.attrs:   # a set's own provenance: no shard record, lists joined
                group.attrs["provenance"] = _group_provenance(shards, files, path)
            _copy_tree(item, group, files, shards, rows, out_dir, copy)
            if "n" in group.attrs:    # a set's clip count: the merged total
                counted = [p for p in rows if p.startswith(path + "/")]
                if counted:
                    group.attrs["n"] = sum(f[counted[0]].shape[0] for f in files)
        elif path in rows:
            _join(name, path, dst, files, shards, out_dir, copy)
        else:
            src.copy(item, dst, name=name)


def _group_provenance(shards, files, path: str) -> str:
    try:
        provenances = [json.loads(f[path].attrs["provenance"]) for f in files]
    except (KeyError, ValueError, TypeError):
        return files[0][path].attrs["provenance"]
    if not all(isinstance(p, dict) for p in provenances):
        return files[0][path].attrs["provenance"]
    return json.dumps(join_lists(shards[0].kind, provenances), sort_keys=True)


def _join(name: str, path: str, dst: h5py.Group, files, shards, out_dir: Path, copy: bool) -> None:
    sources = [f[path] for f in files]
    first = sources[0]
    total = sum(s.shape[0] for s in sources)
    shape = (total, *first.shape[1:])
    is_string = h5py.check_string_dtype(first.dtype) is not None or first.dtype.kind == "O"
    if copy or is_string or total == 0:
        options = dict(shape=shape, dtype=first.dtype, track_times=False)
        if first.chunks and total:
            options["chunks"] = (min(first.chunks[0], total), *first.chunks[1:])
            if first.compression:
                options.update(compression=first.compression, compression_opts=first.compression_opts)
            options["shuffle"] = first.shuffle
        if first.maxshape and first.maxshape[0] is None:
            options["maxshape"] = (None, *first.shape[1:])
            options.setdefault("chunks", True)
        target = dst.create_dataset(name, **options)
        start = 0
        for source in sources:
            row_bytes = max(1, int(np.prod(source.shape[1:])) * source.dtype.itemsize)
            step = max(1, COPY_ROWS_BYTES // row_bytes)
            for a in range(0, source.shape[0], step):
                b = min(a + step, source.shape[0])
                target[start + a:start + b] = source[a:b]
            start += source.shape[0]
    else:
        layout = h5py.VirtualLayout(shape=shape, dtype=first.dtype)
        start = 0
        for shard, source in zip(shards, sources):
            if source.shape[0]:
                # relative to the merged file: the shards and the merge can move together
                name_in_file = os.path.relpath(os.path.realpath(shard.path), out_dir)
                layout[start:start + source.shape[0]] = h5py.VirtualSource(name_in_file, path, shape=source.shape)
            start += source.shape[0]
        # a missing shard file reads as NaN (not as zeros that look like data)
        fill = np.nan if first.dtype.kind == "f" else 0
        target = dst.create_virtual_dataset(name, layout, fillvalue=fill)
    for key, value in first.attrs.items():
        target.attrs[key] = value
