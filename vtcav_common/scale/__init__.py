"""Scaling out: ``--shard K/N`` and joining the shards' outputs (vt-merge)."""
