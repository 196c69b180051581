"""Join the shards of one run (``--shard K/N``, see :mod:`vtcav_common.scale.shard`) into the
file the unsharded run writes.

The kind is read from the shards themselves: an HDF5 file's ``vtcav_kind`` attribute
(``embeddings``, ``relevance``, ``clips``), or a JSONL file's sidecar ``FILE.shard.json``
(``detections``). Because shard K holds the K-th contiguous block of the inputs in their
order, the merge is a concatenation in shard order:

- JSONL: the records of shard 0, then shard 1, ...: byte for byte the unsharded output;
- HDF5: every per-item dataset (the rows of each embeddings set, each clip set, each
  relevance map) is joined along its first axis; everything else (the layer table,
  attributes) is taken from shard 0. Numeric arrays become **virtual datasets** that
  read the shards' rows in place (no copy; the shards must stay where they are,
  relative to the merged file) unless ``copy=True``, which writes a self-contained file.
  Strings are always copied (HDF5 cannot map variable-length data virtually).

Before writing anything the shards are checked: every one carries a shard record, all
are shards of the same run (provenance equal but for the shard record), and together
they are exactly shards 0..N-1, each once. The merged file's provenance is the run's,
with ``merged_from`` (the shard count and file names) instead of ``shard``.

>>> merge_files(["acts.0.h5", "acts.1.h5"], "acts.h5")          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import IncompatibleError, UsageError, VtcavError
from ...core.files import atomic_open
from ..shard import SIDECAR_SUFFIX, sidecar_path
from .provenance import SHARD_LISTS, join_lists, merged_provenance  # noqa: F401  (importable from here)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Where each HDF5 kind keeps its per-item rows: the groups under this path (None: the root
# datasets, one group of rows).
ROW_GROUPS = {"embeddings": "sets", "clips": "concepts", "relevance": None, "masking": None}
# Settings that may differ between shards without changing a result (where a shard ran).
LOCAL_SETTINGS = {"device", "batch", "batch_size"}
# Per-kind provenance keys that count a shard's own items (the merge writes the total); the
# keys that list them are SHARD_LISTS (.provenance).
SHARD_COUNTS = {"relevance": {"videos"}, "masking": {"videos"}}


@dataclass
class ShardFile:
    path: str
    kind: str
    provenance: dict
    identity: dict

    @property
    def label(self) -> str:
        return f"{self.identity['index']}/{self.identity['count']}"


# --------------------------------------------------------------------------- reading shards
def read_shard(path: str) -> ShardFile:
    """The kind, provenance and shard record of one shard file; one-line errors otherwise."""
    p = Path(path)
    if path.endswith(SIDECAR_SUFFIX):
        raise UsageError(f"{path}: give the shard file itself, not its sidecar")
    if not p.is_file():
        raise VtcavError(f"{path}: no such file")
    with open(p, "rb") as handle:
        head = handle.read(8)
    if head == HDF5_SIGNATURE:
        return _read_hdf5_shard(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise VtcavError(f"{path}: not a shard (no HDF5 shard record and no {side.name} beside it; "
                         f"was it written with --shard?)")
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
        return ShardFile(path, str(record["vtcav_kind"]), dict(record["provenance"]), _identity(record["shard"]))
    except (ValueError, KeyError, TypeError) as err:
        raise VtcavError(f"{side}: not a valid shard record ({err})") from None


def _read_hdf5_shard(path: str) -> ShardFile:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            kind = handle.attrs.get("vtcav_kind")
            text = handle.attrs.get("provenance")
    except OSError:
        raise VtcavError(f"{path}: not a readable HDF5 file") from None
    if kind is None or text is None:
        raise VtcavError(f"{path}: not a vtcav file (no 'vtcav_kind'/'provenance' attributes)")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind not in ROW_GROUPS:
        raise VtcavError(f"{path}: vt-merge does not join {kind} files (it joins {', '.join(ROW_GROUPS)} "
                         f"and detections)")
    provenance = json.loads(text)
    if "shard" not in provenance:
        raise VtcavError(f"{path}: not a shard (its provenance has no shard record; was it written with --shard?)")
    return ShardFile(path, kind, provenance, _identity(provenance["shard"]))


def _identity(record) -> dict:
    if not isinstance(record, dict) or not isinstance(record.get("index"), int) \
            or not isinstance(record.get("count"), int):
        raise ValueError("the shard record needs integer 'index' and 'count'")
    return record


def _comparable(shard: ShardFile) -> dict:
    """A shard's provenance as it must agree with the other shards'."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in LOCAL_SETTINGS and k != "shard"}
        return value
    counts = SHARD_COUNTS.get(shard.kind, set()) | SHARD_LISTS.get(shard.kind, set())
    return strip({k: v for k, v in shard.provenance.items() if k not in counts})


def check_shards(shards: list[ShardFile], out: str = "vt-merge") -> list[ShardFile]:
    """The shards in index order, or a one-line refusal (missing, duplicated, incompatible)."""
    if not shards:
        raise UsageError("no shard files given")
    first = shards[0]
    for shard in shards[1:]:
        if shard.kind != first.kind:
            raise IncompatibleError(f"{shard.path}: holds {shard.kind}, but {first.path} holds {first.kind}")
        if shard.identity["count"] != first.identity["count"]:
            raise IncompatibleError(f"{shard.path}: shard {shard.label}, but {first.path} is shard {first.label} "
                                    f"(a different shard count)")
    seen: dict[int, str] = {}
    for shard in shards:
        index = shard.identity["index"]
        if index in seen:
            raise VtcavError(f"{shard.path}: shard {shard.label} given twice (also {seen[index]})")
        seen[index] = shard.path
    count = first.identity["count"]
    missing = [k for k in range(count) if k not in seen]
    if missing:
        names = ", ".join(f"{k}/{count}" for k in missing)
        raise VtcavError(f"{out}: missing shard{'s' if len(missing) > 1 else ''} {names} of {count} "
                         f"(given: {', '.join(f'{k}/{count}' for k in sorted(seen))})")
    ordered = sorted(shards, key=lambda s: s.identity["index"])
    reference = _comparable(ordered[0])
    totals = {k: v[2] for k, v in ordered[0].identity.get("items", {}).items()}
    for shard in ordered[1:]:
        theirs = _comparable(shard)
        differs = sorted(k for k in set(reference) | set(theirs) if reference.get(k) != theirs.get(k))
        if differs:
            raise IncompatibleError(f"{shard.path}: not a shard of the same run as {ordered[0].path} "
                                    f"(differs in {', '.join(differs)})")
        mine = {k: v[2] for k, v in shard.identity.get("items", {}).items()}
        if mine != totals:
            raise IncompatibleError(f"{shard.path}: split {_brief(mine)} items, {ordered[0].path} split "
                                    f"{_brief(totals)}: not the same inputs")
    for group, total in totals.items():      # the blocks must tile 0..total (same partition in every shard)
        end = 0
        for shard in ordered:
            start, stop, _ = shard.identity["items"][group]
            if start != end:
                raise IncompatibleError(f"{shard.path}: shard {shard.label} starts at item {start} of '{group}', "
                                        f"the shard before ends at {end} (shards run with different --batch-size?)")
            end = stop
        if end != total:
            raise IncompatibleError(f"{ordered[-1].path}: the shards end at item {end} of '{group}', not {total}")
    return ordered


def _brief(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- merging
def merge_files(paths: list[str], out: str, copy: bool = False) -> dict:
    """Check and join the shards ``paths`` into ``out``; returns a small summary."""
    resolved = {os.path.realpath(p) for p in paths}
    if os.path.realpath(out) in resolved:
        raise UsageError(f"{out}: the output is one of the shards")
    shards = check_shards([read_shard(p) for p in paths], out)
    kind = shards[0].kind
    if kind == "detections":
        rows = _merge_jsonl(shards, out)
    else:
        from .hdf5 import merge_hdf5

        rows = merge_hdf5(shards, out, ROW_GROUPS[kind], copy=copy)
    stale = sidecar_path(out)
    if stale.exists():          # the merged file is no shard: a sidecar left from before would say it is
        stale.unlink()
    return {"kind": kind, "shards": len(shards), "rows": rows, "virtual": kind != "detections" and not copy}


def _merge_jsonl(shards: list[ShardFile], out: str) -> int:
    lines = 0
    with atomic_open(out, "wb") as target:
        for shard in shards:
            with open(shard.path, "rb") as source:
                for line in source:
                    if not line.endswith(b"\n"):
                        line += b"\n"   # a last line without its newline must not glue onto the next shard's
                    target.write(line)
                    lines += 1
    return lines
