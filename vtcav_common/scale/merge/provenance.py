"""The merged file's provenance: shard 0's, without its shard record, per-shard lists joined."""

from __future__ import annotations

from pathlib import Path

# Per-kind provenance keys that list a shard's own items: the merge joins the lists in shard order.
SHARD_LISTS = {"clips": {"videos"}}


def merged_provenance(shards: list) -> dict:
    """The provenance of the file joined from ``shards`` (:class:`~vtcav_common.scale.merge.ShardFile`)."""
    provenance = join_lists(shards[0].kind, [s.provenance for s in shards])
    provenance["merged_from"] = {"count": len(shards), "files": [Path(s.path).name for s in shards]}
    return provenance


def join_lists(kind: str, provenances: list[dict]) -> dict:
    """Shard 0's provenance without its shard record, per-shard lists joined in shard order."""
    joined = {k: v for k, v in provenances[0].items() if k != "shard"}
    for key in SHARD_LISTS.get(kind, ()):
        if all(isinstance(p.get(key), list) for p in provenances):
            joined[key] = [item for p in provenances for item in p[key]]
    return joined
