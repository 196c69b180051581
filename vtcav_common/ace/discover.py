"""``vt-ace discover``: cluster a class's supervoxel candidates into concepts and rank them by TCAV.

1. Embed every candidate at the chosen layer (:class:`~vtcav_common.ace.features.Embedder`).
2. k-means (``k`` clusters, seeded). A cluster with fewer than ``min_members``
   candidates is dropped; a kept cluster's concept is its ``max_members`` candidates
   nearest the centre. Concepts are named ``ace_00``, ``ace_01``, ... by cluster size.
3. Write the concepts (role ``concept``, kind ``supervoxel``, with masks, distances and
   the centre) and the random sets given (role ``random``) into one clip-set file, so
   that ``vt-embed`` / ``vt-cav`` / ``vt-score`` / ``vt-stats`` can take it from there.
4. Rank: the same steps those tools take, run in-process (vt-embed of the concept and
   random sets, and of the class's videos with the class's gradients; CAVs of every
   concept against every random set and the random-vs-random null; TCAV scores;
   t-tests with a correction). Concepts are ranked by their mean TCAV score; those
   whose scores are not significantly different from the null are flagged.

Example (in a project folder, after shell/pipeline.sh: random.h5, and vt-ace supervoxels: cand.h5,
the candidates of two videos of 'right'):
    >>> from vtcav_common.ace.discover import DiscoverOptions, discover
    >>> from vtcav_common.models import load_model
    >>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    >>> result = discover(loaded, "cand.h5", "random.h5", "world/labels.jsonl", target="right",
    ...                   out="concepts.h5", options=DiscoverOptions(layer="block3", k=5, min_members=3))
    >>> result.n_candidates, result.concepts, [cluster.size for cluster in result.clusters]  # clusters of 3 or more
    (25, ['ace_00', 'ace_01', 'ace_02'], [13, 5, 4])
    >>> [(r["rank"], r["concept"], r["tcav_mean"], r["significant"]) for r in result.ranking]  # 2 videos: no power
    [(1, 'ace_00', 0.5, False), (2, 'ace_02', 0.333334, False), (3, 'ace_01', 0.25, False)]
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from ..core import messages
from ..formats import clips as clipsets
from ..core import h5io
from ..tcav.classifiers import check_classifier
from ..formats.clips import ClipSetWriter
from ..embed import clipset_inputs, embed, manifest_inputs
from ..core.errors import IncompatibleError, UsageError, VtcavError
from ..models.base import LoadedModel
from ..stats import CORRECTIONS, significance_tests
from ..tcav import FitOptions, fit_cavs, quiet_convergence, score_cavs
from .candidates import CANDIDATE_SET, TOOL
from .features import Embedder
from ..formats.supervoxels import SupervoxelAppender, read_rows, require_supervoxel_set
from .supervoxels import SegmentParams

CONCEPT_PREFIX = "ace"
READ_BATCH = 64


@dataclass(frozen=True)
class DiscoverOptions:
    layer: str
    k: int = 8
    min_members: int = 5
    max_members: int = 40
    grid: int = 2
    seed: int = 0
    classifier: str = "sgd"
    correction: str = "bonferroni"
    alpha: float = 0.05
    min_accuracy: float = 0.6
    split: str | None = "train"
    batch_size: int = 16

    def check(self) -> None:
        check_classifier(self.classifier)
        if self.correction not in CORRECTIONS:
            raise UsageError(f"unknown correction '{self.correction}'; choose from {', '.join(CORRECTIONS)}")
        if self.k < 2:
            raise UsageError(f"--k must be at least 2, got {self.k}")
        if self.min_members < 1 or self.max_members < self.min_members:
            raise UsageError(f"need 1 <= --min-members <= --max-members, got {self.min_members} and "
                             f"{self.max_members}")


@dataclass
class Cluster:
    index: int                 # k-means label
    members: np.ndarray        # candidate rows nearest the centre first (at most max_members)
    distances: np.ndarray      # their distances to the centre
    size: int                  # all candidates in the cluster
    centre: np.ndarray


@dataclass
class DiscoverResult:
    concepts: list[str]
    ranking: list[dict]
    clusters: list[Cluster]
    n_candidates: int


# --------------------------------------------------------------------------- clustering
def check_enough_candidates(n: int, options: DiscoverOptions, where: str) -> None:
    """Refuse, before any work, what cannot give even one concept."""
    if n < options.k:
        raise VtcavError(f"{where}: {n} candidate supervoxels cannot make {options.k} clusters; "
                         f"lower --k or segment more videos")
    if n < options.min_members:
        raise VtcavError(f"{where}: {n} candidate supervoxels cannot fill a concept of --min-members "
                         f"{options.min_members}; lower it or segment more videos")


def cluster_features(features: np.ndarray, options: DiscoverOptions, where: str) -> list[Cluster]:
    """k-means, then the kept clusters (largest first) with their members nearest the centre."""
    n = len(features)
    check_enough_candidates(n, options, where)
    kmeans = KMeans(n_clusters=options.k, n_init=10, random_state=options.seed).fit(features)
    distances = np.linalg.norm(features - kmeans.cluster_centers_[kmeans.labels_], axis=1)
    clusters = []
    for index in range(options.k):
        rows = np.flatnonzero(kmeans.labels_ == index)
        if len(rows) < options.min_members:
            continue
        order = rows[np.lexsort((rows, distances[rows]))][:options.max_members]
        clusters.append(Cluster(index, order, distances[order], len(rows), kmeans.cluster_centers_[index]))
    if not clusters:
        sizes = np.bincount(kmeans.labels_, minlength=options.k)
        raise VtcavError(f"{where}: no cluster has --min-members {options.min_members} candidates "
                         f"(largest {int(sizes.max())} of {n}); lower --k or --min-members, or segment more videos")
    clusters.sort(key=lambda c: (-c.size, c.index))
    return clusters


def concept_name(position: int) -> str:
    return f"{CONCEPT_PREFIX}_{position:02d}"


# --------------------------------------------------------------------------- writing
def write_concepts(out: str | Path, candidates: str, set_name: str, clusters: list[Cluster], random: str,
                   provenance: dict, target: str) -> list[str]:
    """The concept sets and the random sets, in one clip-set file (written atomically)."""
    sampling = clipsets.file_sampling(candidates)
    randoms = random_sets(random, candidates)
    names = []
    with ClipSetWriter(out, sampling, TOOL, provenance) as writer:
        for position, cluster in enumerate(clusters):
            name = concept_name(position)
            appender = SupervoxelAppender(writer.add_set(
                name, kind="supervoxel", role="concept", labels=[target], geometry="window",
                description=f"3D-ACE concept: k-means cluster {cluster.index} of the supervoxels of class "
                            f"'{target}' ({cluster.size} candidates, {len(cluster.members)} nearest the centre)",
                provenance={"cluster": cluster.index, "cluster_size": cluster.size, **provenance}))
            for start in range(0, len(cluster.members), READ_BATCH):
                rows = read_rows(candidates, set_name, cluster.members[start:start + READ_BATCH])
                appender.append_rows(rows, cluster.distances[start:start + READ_BATCH])
            appender.set_centre(cluster.centre, cluster.index, cluster.size)
            names.append(name)
        for info in randoms:
            _copy_random_set(writer, random, info)
    return names


def random_sets(random: str, candidates: str) -> list[clipsets.SetInfo]:
    """The random sets of ``random``: at least two, with the candidates' clip length and size."""
    sampling, random_sampling = clipsets.file_sampling(candidates), clipsets.file_sampling(random)
    if (random_sampling.frames, random_sampling.size) != (sampling.frames, sampling.size):
        raise IncompatibleError(f"{random}: random clips are {random_sampling.describe()}, the candidates in "
                                f"{candidates} are {sampling.describe()}; make the random sets with the same "
                                f"--frames and --size")
    randoms = [s for s in clipsets.list_sets(random) if s.role == "random"]
    if len(randoms) < 2:
        raise VtcavError(f"{random}: needs at least 2 sets of role 'random' (vt-concepts random), "
                         f"has {len(randoms)}")
    return randoms


def _copy_random_set(writer: ClipSetWriter, path: str, info: clipsets.SetInfo) -> None:
    target = writer.add_set(info.name, kind=info.kind, role="random", classes=info.attrs.get("classes", []),
                            labels=info.attrs.get("labels", []), geometry=info.attrs.get("geometry", "random"),
                            description=info.attrs.get("description", ""),
                            provenance={"copied_from": Path(path).name, **info.attrs.get("provenance", {})})
    meta = clipsets.read_set_meta(path, info.name)
    for start in range(0, info.n, READ_BATCH):
        stop = min(start + READ_BATCH, info.n)
        target.append(clipsets.read_clips(path, info.name, start, stop), meta.video_id[start:stop],
                      meta.frames[start:stop], meta.track_id[start:stop], meta.boxes[start:stop])


# --------------------------------------------------------------------------- ranking
def rank_concepts(loaded: LoadedModel, concepts_file: str, concepts: list[str], videos: str, target: str,
                  options: DiscoverOptions, work_dir: Path) -> list[dict]:
    """TCAV of every concept against the file's random sets, for the class's videos."""
    layer = options.layer
    acts_path, grads_path = work_dir / "acts.h5", work_dir / "grads.h5"
    embed(loaded, [layer], clipset_inputs(concepts_file, []), acts_path, dtype="float32",
          batch_size=options.batch_size, seed=options.seed, inputs_name=Path(concepts_file).name, tool=TOOL)
    inputs = manifest_inputs(videos, loaded.input_spec.frames, [target], options.split)
    embed(loaded, [layer], inputs, grads_path, target=target, dtype="float32",
          batch_size=options.batch_size, seed=options.seed, inputs_name=Path(videos).name, tool=TOOL)
    fit_options = FitOptions(classifier=options.classifier, seed=options.seed)
    quiet_convergence(fit_cavs, [acts_path], work_dir / "cavs.h5", layers=[layer], concepts=concepts,
                      options=fit_options, tool=TOOL, warn=messages.warn)
    records = [r.to_dict() for r in score_cavs(work_dir / "cavs.h5", grads_path)]
    n_inputs = records[0]["n_inputs"] if records else 0
    results = significance_tests(records, options.correction, options.alpha, options.min_accuracy)
    return _ranking(results, concepts_file, n_inputs)


def _ranking(results: list[dict], concepts_file: str, n_inputs: int) -> list[dict]:
    by_concept = {r["concept"]: r for r in results if r["kind"] == "concept"}
    sizes = {s.name: s for s in clipsets.list_sets(concepts_file)}
    order = sorted(by_concept, key=lambda name: (-by_concept[name]["mean"], name))
    ranking = []
    for rank, name in enumerate(order, start=1):
        r = by_concept[name]
        ranking.append({
            "rank": rank, "concept": name, "target": r["target"], "layer": r["layer"],
            "tcav_mean": round(r["mean"], 6), "tcav_std": round(r["std"], 6),
            "null_mean": round(r["null_mean"], 6), "null_std": round(r["null_std"], 6), "magnitude": r["magnitude"],
            "p": r["p"], "p_corrected": r["p_corrected"], "correction": r["correction"],
            "significant": r["significant"], "direction": r["direction"],
            "cav_accuracy": round(r["cav_accuracy"], 6), "cav_ok": r["cav_ok"],
            "members": sizes[name].n, "cluster_size": int(sizes[name].attrs.get("provenance", {}).get(
                "cluster_size", sizes[name].n)),
            "random_sets": r["n"], "n_inputs": n_inputs})
    return ranking


# --------------------------------------------------------------------------- the whole run
def check_inputs(candidates: str, set_name: str, random: str, options: DiscoverOptions) -> clipsets.SetInfo:
    """What can be refused before loading a model: options, the candidate set and its size, the random sets."""
    options.check()
    info = require_supervoxel_set(candidates, set_name)
    check_enough_candidates(info.n, options, candidates)
    random_sets(random, candidates)
    return info


def discover(loaded: LoadedModel, candidates: str, random: str, videos: str, target: str, out: str | Path,
             options: DiscoverOptions, set_name: str = CANDIDATE_SET, work_dir: str | Path | None = None,
             features: np.ndarray | None = None) -> DiscoverResult:
    """Cluster, write the concept file, rank; returns the concepts and their ranking."""
    info = check_inputs(candidates, set_name, random, options)
    loaded.class_index(target)
    with clipsets.open_clipset(candidates) as handle:
        segmentation = SegmentParams.from_dict(h5io.provenance(handle).get("segmentation") or {}, candidates)
    embedder = Embedder(loaded, options.layer, options.grid, options.batch_size)
    if features is None:   # else given by vt-ace features (the feature step, maybe run in shards)
        messages.info(f"{TOOL}: embedding {info.n} candidates at {options.layer}")
        features = embedder.over(messages.progress(clipsets.iter_clip_batches(candidates, set_name, READ_BATCH),
                                              -(-info.n // READ_BATCH), "candidates"))
    clusters = cluster_features(features, options, candidates)
    messages.info(f"{TOOL}: {len(clusters)} of {options.k} clusters kept "
             f"(sizes {', '.join(str(c.size) for c in clusters)})")
    provenance = {"model": loaded.provenance, "input": loaded.input_spec.to_dict(), "target": target,
                  "candidates": Path(candidates).name, "candidate_set": set_name, "random": Path(random).name,
                  "features": embedder.spec.to_dict(), "segmentation": segmentation.to_dict(),
                  "discover": {k: v for k, v in asdict(options).items() if k not in ("batch_size",)}}
    names = write_concepts(out, candidates, set_name, clusters, random, provenance, target)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        ranking = rank_concepts(loaded, str(out), names, videos, target, options, Path(work_dir))
    else:
        with tempfile.TemporaryDirectory(prefix=".vt-ace.", dir=Path(out).resolve().parent) as tmp:
            ranking = rank_concepts(loaded, str(out), names, videos, target, options, Path(tmp))
    return DiscoverResult(names, ranking, clusters, info.n)
