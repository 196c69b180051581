"""Concepts discovered inside the model's features (VTCD, Kowal et al. CVPR 2024), step 1: discovery.

VTCD groups a video's spatiotemporal *tubelets* by the model's own features at each
layer. Here:

1. **Tubelets** (:func:`write_tubelets`, ``vt-ace tubelets``). Each video is sampled to
   the model's clip length and cut into supervoxels with vtcav's SLIC
   (:mod:`.supervoxels`; one resolution by default, so a layer's tubelets partition the
   video and two concepts of one layer never mask the same positions). The video
   itself, unmasked, goes through the model once with hooks on every chosen layer.
   A tubelet's mask, average-pooled onto a layer's ``T' x H' x W'`` grid, gives the share
   of each grid position it covers (its *grid weights*); its feature at that layer is the
   channel vector averaged over the positions with those weights. The file is an
   ordinary supervoxel clip set (so sheets, vt-embed and TCAV read the tubelets as clips
   on grey) with two extra per-row datasets a layer::

       /concepts/tubelets/vtcd_features/<layer>   N x C   float32
       /concepts/tubelets/vtcd_grid/<layer>       N x G   float16   (G = T' H' W')

   Rows of one video are contiguous; ``--shard K/N`` writes a block of whole videos and
   ``vt-merge`` joins the shards (the clip-set merge concatenates every per-row dataset).
2. **Concepts** (:func:`cluster_layer`, :func:`write_concepts`). Per layer, k-means over
   all the class's tubelets; the number of clusters is the one with the highest mean
   silhouette over ``k_min..k_max`` (default 4..12; ties to the smaller k). Every cluster is a concept
   ``vtcd_<layer>_<nn>`` (largest first), written as a supervoxel clip set of its members
   nearest the centre, with its centre: a concept file vt-ace sheet, vt-report and the
   TCAV tools read. Any tubelet belongs to the concept of its nearest centre at that layer,
   which is how :mod:`.masking` finds a concept's positions in any video.

Only layers whose output is a channel axis plus a ``T x H x W`` grid are supported (3D
CNN feature maps, Video Swin stages with channels last); a flat token sequence has no grid
to pool a tubelet onto, and is refused.

Example (in a project folder: world/ from vt-synth):
    >>> from vtcav_common.ace.candidates import select_videos
    >>> from vtcav_common.ace.supervoxels import SegmentParams
    >>> from vtcav_common.ace.vtcd import ClusterOptions, discover_concepts, write_tubelets
    >>> from vtcav_common.models import load_model
    >>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    >>> videos = select_videos("world/labels.jsonl", label="right", split="train", max_videos=2)
    >>> write_tubelets(videos, "tub.h5", loaded, ["block2", "block3"], SegmentParams(resolutions=(30,)))
    47
    >>> model, clusters = discover_concepts("tub.h5", ClusterOptions(k_min=3, k_max=4), "concepts.h5",
    ...                                     target="right")
    >>> [(c.layer, c.k, [int(s) for s in c.sizes]) for c in clusters]     # k by silhouette, largest first
    [('block2', 3, [37, 8, 2]), ('block3', 3, [37, 8, 2])]
    >>> model.names
    ['vtcd_block2_00', 'vtcd_block2_01', 'vtcd_block2_02', 'vtcd_block3_00', 'vtcd_block3_01', 'vtcd_block3_02']
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ..core import messages
from ..formats import clips as clipsets
from ..core import h5io
from ..formats.clips import ClipSetWriter, Sampling
from ..embed import h5_name
from ..core.errors import IncompatibleError, UsageError, VtcavError
from ..models.base import LoadedModel, preprocess
from ..models.layers import describe_layers, model_device, resolve_layers
from ..formats.records import VideoLabel
from ..scale.shard import Shard
from ..formats.supervoxels import SupervoxelAppender, read_rows, require_supervoxel_set
from .supervoxels import SegmentParams, load_volume, video_candidates

TOOL = "vt-ace"
TUBELET_SET = "tubelets"
FEATURES = "vtcd_features"
GRIDS = "vtcd_grid"
PREFIX = "vtcd"
DEFAULT_RESOLUTIONS = (30,)


# --------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class LayerGrid:
    """A layer's output as VTCD sees it: ``channels`` at each position of a ``T' x H' x W'`` grid."""

    name: str
    channels: int
    grid: tuple[int, int, int]
    channel_axis: int           # within the per-sample shape

    @property
    def positions(self) -> int:
        return int(np.prod(self.grid))

    def to_dict(self) -> dict:
        return {"name": self.name, "channels": self.channels, "grid": list(self.grid),
                "channel_axis": self.channel_axis}

    @classmethod
    def from_dict(cls, record: dict) -> "LayerGrid":
        return cls(record["name"], int(record["channels"]), tuple(int(v) for v in record["grid"]),
                   int(record["channel_axis"]))


def layer_grids(loaded: LoadedModel, layers: Sequence[str]) -> list[LayerGrid]:
    """Each layer's channels and grid; refuses layers without a ``T x H x W`` grid."""
    if not layers:
        raise UsageError("give at least one --layers")
    resolve_layers(loaded, list(layers))
    infos = describe_layers(loaded)
    grids = []
    for name in layers:
        info = infos[name]
        if info.shape is None:
            raise UsageError(f"layer {name} never ran in a forward pass; choose another")
        if len(info.shape) != 4:
            raise UsageError(f"layer {name} gives {list(info.shape)} per clip: VTCD needs channels and a "
                             f"T x H x W grid (a 3D CNN's feature map, a Video Swin stage); choose another layer")
        axis = 0 if info.channel_axis is None else int(info.channel_axis)
        grid = tuple(int(s) for i, s in enumerate(info.shape) if i != axis)
        grids.append(LayerGrid(name, int(info.shape[axis]), grid, axis))
    return grids


def grid_weights(mask: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """A ``T x H x W`` bool mask -> the share of each grid position it covers (``G`` float32)."""
    x = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return F.adaptive_avg_pool3d(x, grid).reshape(-1).numpy()


class FeatureGrid:
    """One forward pass of a video: every layer's output as ``G x C`` (positions x channels)."""

    def __init__(self, loaded: LoadedModel, grids: list[LayerGrid]):
        from ..embed.layer_pass import LayerPass

        self.loaded = loaded
        self.grids = grids
        self._pass = LayerPass(loaded, [g.name for g in grids])
        self._device = model_device(loaded.module)

    def __call__(self, volume: np.ndarray) -> dict[str, np.ndarray]:
        x = preprocess(volume[None], self.loaded.input_spec, self._device)
        acts = self._pass(x).acts
        out = {}
        for g in self.grids:
            a = np.moveaxis(acts[g.name][0], g.channel_axis, -1)
            out[g.name] = np.ascontiguousarray(a.reshape(g.positions, g.channels), dtype=np.float32)
        return out


def pooled_features(weights: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """Tubelets' features: ``n x G`` grid weights and ``G x C`` activations -> ``n x C`` weighted means."""
    total = weights.sum(axis=1, keepdims=True)
    return (weights @ acts) / np.maximum(total, 1e-12)


# --------------------------------------------------------------------------- step 1: tubelets
class _RowWriter:
    """Appends rows to one resizable per-row dataset."""

    def __init__(self, group: h5py.Group, name: str, width: int, dtype, chunk: int):
        self.data = h5io.dataset(group, name, shape=(0, width), maxshape=(None, width), chunks=(chunk, width),
                                 dtype=dtype, compression="gzip", compression_opts=4)

    def append(self, rows: np.ndarray) -> None:
        start = self.data.shape[0]
        self.data.resize(start + len(rows), axis=0)
        self.data[start:start + len(rows)] = rows


def write_tubelets(videos: list[VideoLabel], out: str | Path, loaded: LoadedModel, layers: Sequence[str],
                   params: SegmentParams, label: str | None = None, provenance: dict | None = None,
                   shard: Shard | None = None, size: tuple[int, int] | None = None) -> int:
    """Cut every video into tubelets, pool each one's features at every layer; returns the rows written.

    Memory holds one video (its volume, its tubelets and one forward pass's activations).
    """
    grids = layer_grids(loaded, layers)
    spec = loaded.input_spec
    sampling = Sampling(spec.frames, tuple(size or spec.size), 1)
    record = {**(provenance or {}), "model": loaded.provenance, "input": spec.to_dict(),
              "segmentation": params.to_dict(), "label": label, "vtcd_layers": [g.to_dict() for g in grids],
              "videos": [v.video_id for v in videos], "temporal_sampling": "uniform over each video"}
    if shard is not None:
        record["shard"] = shard.identity({"videos": len(videos)})
        videos = shard.take(videos)
        record["videos"] = [v.video_id for v in videos]
    features = FeatureGrid(loaded, grids)
    with ClipSetWriter(out, sampling, TOOL, record) as writer:
        appender = writer.add_set(TUBELET_SET, kind="supervoxel", role="concept", labels=[label] if label else [],
                                  geometry="window", provenance=record,
                                  description="VTCD tubelets: SLIC supervoxels on grey, with their features "
                                              "pooled at each layer and their grid weights")
        target = SupervoxelAppender(appender)
        feats = appender.group.create_group(FEATURES, track_order=True)
        weights = appender.group.create_group(GRIDS, track_order=True)
        writers = {g.name: (_RowWriter(feats, h5_name(g.name), g.channels, np.float32, 256),
                            _RowWriter(weights, h5_name(g.name), g.positions, np.float16, 64)) for g in grids}
        for entry in messages.progress(videos, len(videos), "videos"):
            volume, frames = load_volume(entry.path, spec.frames)
            candidates = list(video_candidates(volume, params, sampling.size))
            if not candidates:
                continue
            acts = features(volume)
            for g in grids:
                w = np.stack([grid_weights(c.mask, g.grid) for c in candidates])
                writers[g.name][0].append(pooled_features(w, acts[g.name]))
                writers[g.name][1].append(w.astype(np.float16))
            target.append(candidates, [entry.video_id] * len(candidates),
                          np.repeat(frames[None], len(candidates), axis=0),
                          np.repeat(np.array(volume.shape[:3])[None], len(candidates), axis=0))
        count = target.count
    return count


@dataclass
class Tubelets:
    """What discovery and masking read of a tubelets file (features are read per layer or per video)."""

    path: str
    grids: list[LayerGrid]
    video_ids: list[str]                 # per row
    spans: dict[str, tuple[int, int]]    # video id -> its rows [start, stop)
    order: list[str]                     # the videos in file order
    provenance: dict

    @property
    def n(self) -> int:
        return len(self.video_ids)

    def grid(self, layer: str) -> LayerGrid:
        return next(g for g in self.grids if g.name == layer)

    def features(self, layer: str, rows: slice | None = None) -> np.ndarray:
        with clipsets.open_clipset(self.path) as handle:
            data = handle[clipsets.ROOT][TUBELET_SET][FEATURES][h5_name(layer)]
            return data[rows if rows is not None else slice(None)].astype(np.float32)

    def weights(self, layer: str, rows: slice) -> np.ndarray:
        with clipsets.open_clipset(self.path) as handle:
            return handle[clipsets.ROOT][TUBELET_SET][GRIDS][h5_name(layer)][rows].astype(np.float32)


def read_tubelets(path: str) -> Tubelets:
    """A tubelets file (merged if it was sharded), checked."""
    require_supervoxel_set(path, TUBELET_SET)
    with clipsets.open_clipset(path) as handle:
        provenance = h5io.provenance(handle)
        group = handle[clipsets.ROOT][TUBELET_SET]
        if "vtcd_layers" not in provenance or FEATURES not in group or GRIDS not in group:
            raise VtcavError(f"{path}: not a tubelets file of vt-ace tubelets (no VTCD features)")
        if "shard" in provenance:
            shard = provenance["shard"]
            raise VtcavError(f"{path}: shard {shard.get('index')}/{shard.get('count')} of the tubelets; join the "
                             f"shards with vt-merge first")
        video_ids = h5io.read_strings(group["video_id"])
    if not video_ids:
        raise VtcavError(f"{path}: holds no tubelets")
    spans: dict[str, tuple[int, int]] = {}
    order: list[str] = []
    for row, vid in enumerate(video_ids):
        if order and order[-1] == vid:
            spans[vid] = (spans[vid][0], row + 1)
            continue
        if vid in spans:
            raise VtcavError(f"{path}: the rows of video {vid} are not contiguous")
        spans[vid] = (row, row + 1)
        order.append(vid)
    grids = [LayerGrid.from_dict(r) for r in provenance["vtcd_layers"]]
    return Tubelets(path, grids, video_ids, spans, order, provenance)


def require_same_model(provenance: dict, loaded: LoadedModel, where: str) -> None:
    model = provenance.get("model") or {}
    for key in ("arch", "weights_sha256", "num_classes"):
        if model.get(key) != loaded.provenance.get(key):
            raise IncompatibleError(f"{where}: made with a different model ({key} {str(model.get(key))[:16]} vs "
                                    f"{str(loaded.provenance.get(key))[:16]}); use the same --model and --weights")


# --------------------------------------------------------------------------- step 2: clustering
@dataclass(frozen=True)
class ClusterOptions:
    # The silhouette alone favours the coarsest split (the ball against everything else at
    # every layer of the motion world); k_min is the fewest concepts worth reading.
    k_min: int = 4
    k_max: int = 12
    max_members: int = 40
    seed: int = 0
    silhouette_sample: int = 3000

    def check(self) -> None:
        if not 2 <= self.k_min <= self.k_max:
            raise UsageError(f"need 2 <= --k-min <= --k-max, got {self.k_min} and {self.k_max}")
        if self.max_members < 1:
            raise UsageError(f"--max-members must be at least 1, got {self.max_members}")


@dataclass
class LayerClusters:
    layer: str
    k: int
    silhouettes: dict[int, float]     # k -> mean silhouette
    centres: np.ndarray               # k x C, largest cluster first
    labels: np.ndarray                # per tubelet row, in the order of ``centres``
    sizes: np.ndarray


def cluster_layer(features: np.ndarray, layer: str, options: ClusterOptions, where: str) -> LayerClusters:
    """k-means with the silhouette-best k in ``k_min..k_max``; clusters renumbered largest first."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(features)
    top = min(options.k_max, n - 1)
    if top < options.k_min:
        raise VtcavError(f"{where}: {n} tubelets cannot make {options.k_min} clusters; cut more videos or "
                         f"lower --k-min")
    scores: dict[int, float] = {}
    fits = {}
    sample = min(n, options.silhouette_sample)
    for k in range(options.k_min, top + 1):
        fit = KMeans(n_clusters=k, n_init=10, random_state=options.seed).fit(features)
        if len(np.unique(fit.labels_)) < 2:
            continue
        scores[k] = float(silhouette_score(features, fit.labels_, sample_size=sample if sample < n else None,
                                           random_state=options.seed))
        fits[k] = fit
    if not scores:
        raise VtcavError(f"{where}: the tubelets' features at {layer} do not separate into clusters")
    best = max(scores, key=lambda k: (round(scores[k], 6), -k))
    fit = fits[best]
    sizes = np.bincount(fit.labels_, minlength=best)
    order = sorted(range(best), key=lambda c: (-sizes[c], c))
    rename = np.empty(best, int)
    rename[order] = np.arange(best)
    return LayerClusters(layer, best, scores, fit.cluster_centers_[order].astype(np.float32),
                         rename[fit.labels_], sizes[order])


def concept_name(layer: str, index: int) -> str:
    return f"{PREFIX}_{re.sub(r'[^A-Za-z0-9]+', '_', layer).strip('_')}_{index:02d}"


def nearest(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each row's nearest centre (ties to the lower index)."""
    d = (features ** 2).sum(1)[:, None] - 2 * features @ centres.T + (centres ** 2).sum(1)[None]
    return d.argmin(axis=1)


@dataclass
class ConceptModel:
    """The discovered concepts of all layers, in a fixed order: what masking needs."""

    names: list[str]
    layers: list[str]            # per concept
    centres: list[np.ndarray]    # per concept (C of its layer)
    grids: list[LayerGrid]
    target: str
    model: dict
    provenance: dict

    def of_layer(self, layer: str) -> list[int]:
        return [i for i, name in enumerate(self.layers) if name == layer]

    def assign(self, layer: str, features: np.ndarray) -> np.ndarray:
        """Global concept index of each tubelet at ``layer`` (nearest centre)."""
        idx = self.of_layer(layer)
        return np.asarray(idx)[nearest(features, np.stack([self.centres[i] for i in idx]))]


def write_concepts(tubelets: Tubelets, clusters: list[LayerClusters], out: str | Path, target: str,
                   options: ClusterOptions) -> list[str]:
    """One supervoxel clip set per concept (its members nearest the centre), atomically."""
    sampling = clipsets.file_sampling(tubelets.path)
    record = {"model": tubelets.provenance.get("model"), "input": tubelets.provenance.get("input"),
              "target": target, "tubelets": Path(tubelets.path).name,
              "tubelets_run_id": _run_id(tubelets.path), "vtcd_layers": [g.to_dict() for g in tubelets.grids],
              "segmentation": tubelets.provenance.get("segmentation"), "vtcd": asdict(options),
              "silhouette": {c.layer: {str(k): round(v, 6) for k, v in c.silhouettes.items()} for c in clusters}}
    names = []
    with ClipSetWriter(out, sampling, TOOL, record) as writer:
        for lc in clusters:
            features = tubelets.features(lc.layer)
            for index in range(lc.k):
                rows = np.flatnonzero(lc.labels == index)
                dist = np.linalg.norm(features[rows] - lc.centres[index], axis=1)
                chosen = rows[np.lexsort((rows, dist))][:options.max_members]
                chosen_dist = np.linalg.norm(features[chosen] - lc.centres[index], axis=1)
                n_videos = len({tubelets.video_ids[r] for r in rows})
                name = concept_name(lc.layer, index)
                appender = SupervoxelAppender(writer.add_set(
                    name, kind="supervoxel", role="concept", labels=[target], geometry="window",
                    description=f"VTCD concept at {lc.layer}: k-means cluster {index} of {lc.k} (silhouette-best) "
                                f"of the tubelets of class '{target}' ({len(rows)} tubelets in {n_videos} videos)",
                    provenance={"layer": lc.layer, "cluster": index, "cluster_size": int(len(rows)),
                                "videos": n_videos, "k": lc.k}))
                for start in range(0, len(chosen), 64):
                    part = chosen[start:start + 64]
                    appender.append_rows(read_rows(tubelets.path, TUBELET_SET, part), chosen_dist[start:start + 64])
                appender.set_centre(lc.centres[index], index, int(len(rows)))
                appender.appender.group.attrs["layer"] = lc.layer
                names.append(name)
    return names


def _run_id(path: str) -> str:
    with h5py.File(path, "r") as handle:
        value = handle.attrs.get("run_id", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def read_concept_model(path: str) -> ConceptModel:
    """The concepts of a ``vt-ace vtcd`` concept file, in file order."""
    with clipsets.open_clipset(path) as handle:
        provenance = h5io.provenance(handle)
        if "vtcd_layers" not in provenance:
            raise VtcavError(f"{path}: not a VTCD concept file (vt-ace vtcd)")
        names, layers, centres = [], [], []
        for name, group in handle[clipsets.ROOT].items():
            if group.attrs.get("role") == "concept" and "centre" in group and "layer" in group.attrs:
                names.append(name)
                layers.append(str(group.attrs["layer"]))
                centres.append(group["centre"][()].astype(np.float32))
    if not names:
        raise VtcavError(f"{path}: holds no VTCD concepts")
    return ConceptModel(names, layers, centres, [LayerGrid.from_dict(r) for r in provenance["vtcd_layers"]],
                        str(provenance.get("target")), provenance.get("model") or {}, provenance)


def discover_concepts(tubelets_path: str, options: ClusterOptions, out: str | Path, target: str,
                      layers: Sequence[str] | None = None) -> tuple[ConceptModel, list[LayerClusters]]:
    """Cluster every layer's tubelet features, write the concept file, return the concepts."""
    options.check()
    tubelets = read_tubelets(tubelets_path)
    known = [g.name for g in tubelets.grids]
    chosen = list(layers) if layers else known
    missing = [name for name in chosen if name not in known]
    if missing:
        raise UsageError(f"{tubelets_path}: has no features at {', '.join(missing)} (it has {', '.join(known)})")
    clusters = []
    for layer in chosen:
        lc = cluster_layer(tubelets.features(layer), layer, options, tubelets_path)
        messages.info(f"{TOOL}: {layer}: k = {lc.k} by silhouette "
                 f"({', '.join(f'{k}: {s:.3f}' for k, s in lc.silhouettes.items())}); sizes "
                 f"{', '.join(str(int(s)) for s in lc.sizes)}")
        clusters.append(lc)
    write_concepts(tubelets, clusters, out, target, options)
    return read_concept_model(str(out)), clusters
