"""3D-ACE's feature step as a file of its own, so that it can run in shards.

``vt-ace features`` embeds the candidate supervoxel clips at one layer, pooled as discovery
pools them (:class:`~vtcav_common.ace.features.Embedder`), and writes them as an embeddings
file (kind ``embeddings``)::

    /sets/<candidate set>/ids        "video_id#i"
    /sets/<candidate set>/acts/<layer>   N x F float32   (F = channels x grid^k)
    / provenance: model, input, layers, features {layer, grid}, candidates, candidates_n

With ``--shard K/N`` it embeds a block of whole batches of the candidates; ``vt-merge``
joins the shards, and ``vt-ace discover --features FILE`` clusters them instead of
embedding the candidates again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..formats import clips as clipsets
from ..core import h5io, messages
from ..embed import h5_name
from ..formats.embeddings import model_identity
from ..core.errors import IncompatibleError, VtcavError
from ..models.base import LoadedModel
from ..scale.shard import Shard
from .features import Embedder

TOOL = "vt-ace"


def write_features(loaded: LoadedModel, candidates: str, set_name: str, layer: str, grid: int, batch_size: int,
                   out: str | Path, shard: Shard | None = None) -> int:
    """Embed (a shard of) the candidates and write the features file; returns the rows written."""
    infos = {info.name: info for info in clipsets.list_sets(candidates)}
    if set_name not in infos:
        raise VtcavError(f"{candidates}: no clip set '{set_name}' (sets: {', '.join(infos) or 'none'})")
    n = infos[set_name].n
    rows = range(n) if shard is None else shard.rows(n, batch_size)   # whole batches: the same bits
    embedder = Embedder(loaded, layer, grid, batch_size)
    provenance = {"model": loaded.provenance, "input": loaded.input_spec.to_dict(), "layers": [layer],
                  "features": embedder.spec.to_dict(), "candidates": Path(candidates).name,
                  "candidate_set": set_name, "candidates_n": n, "sets": [set_name], "seed": 0}
    if shard is not None:
        provenance["shard"] = shard.identity({set_name: n}, batch_size)
    parts, ids = [], []
    with clipsets.open_clipset(candidates) as handle:
        group = handle[clipsets.ROOT][set_name]
        starts = range(rows.start, rows.stop, batch_size)
        for start in messages.progress(starts, len(starts), "candidates"):
            stop = min(start + batch_size, rows.stop)
            parts.append(embedder(group["clips"][start:stop]))
            names = [v.decode() if isinstance(v, bytes) else str(v) for v in group["video_id"][start:stop]]
            ids += [f"{name}#{start + i}" for i, name in enumerate(names)]
    width = parts[0].shape[1] if parts else 0
    features = np.concatenate(parts) if parts else np.zeros((0, width), np.float32)
    with h5io.create(out, "embeddings", TOOL, provenance) as handle:
        table = handle.create_group("layers", track_order=True).create_group(h5_name(layer))
        table.attrs["name"], table.attrs["shape"] = layer, [int(features.shape[1])] if len(features) else []
        sets = handle.create_group("sets", track_order=True).create_group(set_name, track_order=True)
        sets.attrs["kind"], sets.attrs["role"], sets.attrs["n"] = "supervoxel", "concept", len(rows)
        h5io.string_dataset(sets, "ids", ids)
        dataset = h5io.dataset(sets.create_group("acts"), h5_name(layer), features.astype(np.float32),
                               compression=None)
        dataset.attrs["name"] = layer
    return len(rows)


def read_features(path: str, loaded: LoadedModel, layer: str, grid: int, candidates: str, set_name: str,
                  n: int) -> np.ndarray:
    """The candidates' features from ``vt-ace features``, checked against this discovery run."""
    with h5io.open_file(path, "embeddings") as handle:
        provenance = h5io.provenance(handle)
        if "shard" in provenance:
            shard = provenance["shard"]
            raise VtcavError(f"{path}: shard {shard.get('index')}/{shard.get('count')} of the features; join the "
                             f"shards with vt-merge first")
        if "features" not in provenance:
            raise VtcavError(f"{path}: not a features file of vt-ace features")
        if provenance["features"] != {"layer": layer, "grid": grid}:
            raise IncompatibleError(f"{path}: features of {provenance['features']}, but discovery uses "
                                    f"layer {layer} with --grid {grid}")
        if model_identity(provenance) != model_identity({"model": loaded.provenance,
                                                         "input": loaded.input_spec.to_dict()}):
            raise IncompatibleError(f"{path}: computed with another model or input sampling than the one given")
        if provenance.get("candidate_set") != set_name or provenance.get("candidates_n") != n \
                or provenance.get("candidates") != Path(candidates).name:
            raise IncompatibleError(f"{path}: features of {provenance.get('candidates')}:"
                                    f"{provenance.get('candidate_set')} ({provenance.get('candidates_n')} clips), "
                                    f"not of {Path(candidates).name}:{set_name} ({n} clips)")
        features = handle["sets"][set_name]["acts"][h5_name(layer)][()]
    if len(features) != n:
        raise VtcavError(f"{path}: {len(features)} feature rows for {n} candidates")
    return features.astype(np.float32, copy=False)
