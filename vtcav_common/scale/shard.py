"""``--shard K/N``: a deterministic split of a command's inputs, so existing engines
(``make -j``, GNU parallel, SLURM job arrays) can run one heavy step as N processes.

The partition (the same in every command):

- the items are taken **in the order the unsharded run processes them** (a manifest's
  line order, a folder's videos sorted by name, a clip set's clip index);
- shard K (0-based, as ``$SLURM_ARRAY_TASK_ID``) gets the contiguous block
  ``[floor(K*n/N), floor((K+1)*n/N))`` of each group of items (the videos of a run, or
  the clips of each clip set), so the shards' sizes differ by at most one;
- where the model runs on batches (vt-embed), the blocks are counted in **whole batches**
  of ``--batch-size`` (the last one may be short): every shard then runs the very batches
  the unsharded run runs, and gives the same bits (a convolution's float rounding can
  depend on how many clips share its batch);
- so concatenating the shards 0..N-1 gives exactly the unsharded order, which is what
  ``vt-merge`` does.

Every shard is a complete file of its kind with the provenance of the run, plus the
shard's identity::

    "shard": {"index": K, "count": N, "by": "input order",
              "items": {"<group>": [start, stop, total], ...}}

HDF5 outputs keep it in their root provenance; a JSONL output (detections) keeps it in
a sidecar ``FILE.shard.json``, because JSONL files hold records only.

>>> shard = parse_shard("1/3")
>>> shard.rows(10)
range(3, 6)
>>> [parse_shard(f"{k}/3").rows(10) for k in range(3)]
[range(0, 3), range(3, 6), range(6, 10)]
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

from ..core.errors import UsageError
from ..core.files import atomic_open as atomic_output, file_sha256

T = TypeVar("T")
BY = "input order"
SIDECAR_SUFFIX = ".shard.json"
HELP = ("Process only shard K of N (0-based, e.g. 0/4 .. 3/4, or $SLURM_ARRAY_TASK_ID/N): a contiguous block "
        "of the inputs in their order; join the shards' files with vt-merge. See docs/scale.md.")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def bounds(self, n: int, unit: int = 1) -> tuple[int, int]:
        units = -(-n // unit)   # whole batches of `unit` items, the last one maybe short
        return min(n, self.index * units // self.count * unit), min(n, (self.index + 1) * units // self.count * unit)

    def rows(self, n: int, unit: int = 1) -> range:
        """The item positions of this shard among ``n`` items (in blocks of ``unit``)."""
        return range(*self.bounds(n, unit))

    def take(self, items: Sequence[T]) -> list[T]:
        start, stop = self.bounds(len(items))
        return list(items[start:stop])

    def identity(self, groups: dict[str, int], unit: int = 1) -> dict:
        """The shard record for provenance: per group of items, ``[start, stop, total]``."""
        return {"index": self.index, "count": self.count, "by": BY if unit == 1 else f"{BY}, batches of {unit}",
                "items": {name: [*self.bounds(n, unit), n] for name, n in groups.items()}}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard | None:
    """``"K/N"`` -> :class:`Shard` (``None`` for no sharding); a usage error otherwise.

    ``K`` may be ``$SLURM_ARRAY_TASK_ID`` left unexpanded by a quoting mistake: that is
    refused like any other non-number.
    """
    if text is None or text == "":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--shard takes K/N (shard K of N, 0-based, e.g. 0/4), got '{text}'")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise UsageError(f"--shard {text}: K must be in 0..N-1 (shards are numbered from 0)")
    return Shard(index, count)


# --------------------------------------------------------------------------- JSONL sidecars
def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}{SIDECAR_SUFFIX}")


def write_sidecar(path: str | os.PathLike, kind: str, tool: str, provenance: dict, identity: dict) -> Path:
    """Write ``FILE.shard.json`` (atomically) for a JSONL shard ``FILE``."""
    from .. import __version__

    target = sidecar_path(path)
    record = {"vtcav_kind": kind, "tool": tool, "tool_version": __version__,
              "file": Path(path).name, "provenance": provenance, "shard": identity}
    write_text_atomic(target, json.dumps(record, sort_keys=True, indent=1) + "\n")
    return target


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_output(path, "w") as handle:
        handle.write(text)


def require_file_output(shard: Shard | None, output: str) -> None:
    """A JSONL shard needs a real file: its identity goes into the sidecar beside it."""
    if shard is not None and output == "-":
        raise UsageError(f"--shard {shard} needs -o FILE (the shard's identity is written to FILE{SIDECAR_SUFFIX})")


def _sha256(path: str | os.PathLike) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def detect_provenance(model: str, settings, inputs: Sequence[str]) -> dict:
    """What must agree between detection shards: the detector, its settings, the inputs."""
    from dataclasses import asdict

    return {"detector": Path(model).name, "detector_sha256": _sha256(model), "settings": asdict(settings),
            "inputs": [str(Path(item).resolve()) for item in inputs]}


def shard_input_sets(input_sets: list, shard: Shard | None, batch_size: int = 1) -> tuple[list, dict | None]:
    """vt-embed's input sets cut to this shard's rows of each set (clip index order), in
    whole batches.

    Each set keeps its name, so every shard file has every set, with its block of rows;
    returns the sets and the shard's identity (``None`` without sharding).
    """
    if shard is None:
        return input_sets, None
    from dataclasses import replace
    from functools import partial

    identity = shard.identity({s.name: s.n for s in input_sets}, batch_size)
    cut = [replace(s, n=len(shard.rows(s.n, batch_size)), batches=partial(s.batches, rows=shard.rows(s.n, batch_size)))
           for s in input_sets]
    return cut, identity


def take_block(shard: Shard | None, items: Sequence[T], unit: str = "videos") -> tuple[Sequence[T], dict | None]:
    """The one shard idiom of the front ends: a sharded run's contiguous block of ``items`` (in
    input order) and the identity its output records; unsharded, all of them and None."""
    if shard is None:
        return items, None
    return shard.take(items), shard.identity({unit: len(items)})


def shard_plans(plans: list, shard: Shard | None, append: bool = False) -> tuple[list, dict | None]:
    """vt-concepts' clip plans cut to this shard: a block of each set's clips, by clip index.

    The plans are all made first (cheap: no video is decoded), so every shard draws the same
    clips as the unsharded run; a shard then decodes only its block. The order is the one
    the unsharded run writes (videos in order of first appearance), so the shards concatenate
    to it.
    """
    if shard is None:
        return plans, None
    if append:
        raise UsageError("--shard writes a file of its own: join the shards with vt-merge, then add sets to it "
                         "(vt-concepts merge)")
    # videos in order of first appearance, each video's plans in order: the order in which
    # concepts.render.by_video cuts and writes them (no import of the concepts stage here)
    by_video: dict[str, list] = {}
    for plan in plans:
        by_video.setdefault(plan.video_path, []).append(plan)
    ordered = [plan for group in by_video.values() for plan in group]
    per_set: dict[str, list] = {}
    for plan in ordered:
        per_set.setdefault(plan.set_name, []).append(plan)
    keep = {id(plan) for members in per_set.values() for plan in shard.take(members)}
    identity = shard.identity({name: len(members) for name, members in per_set.items()})
    identity["by"] = "clip index in each set"
    return [plan for plan in ordered if id(plan) in keep], identity


def drop_sidecar(output: str) -> None:
    """An unsharded run over a former shard's file: its old sidecar would call the new file a shard."""
    if output != "-":
        sidecar_path(output).unlink(missing_ok=True)
