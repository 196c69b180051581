"""``vt-ace vtcd``: from a class's videos to ranked concepts in one call (VTCD with a null).

The steps, each of which can also run alone (and the per-video ones in shards):

1. tubelets of each video and their features at each layer (:func:`.vtcd.write_tubelets`,
   ``vt-ace tubelets``), unless a tubelets file is given;
2. per-layer clustering into concepts, the concept file (:func:`.vtcd.discover_concepts`),
   unless a concept file is given (``--concepts``);
3. random masks over the concepts of all layers on the same videos, one row of regression
   statistics a video (:func:`.masking.write_mask_stats`, ``vt-ace masks``), unless a
   merged statistics file is given (``--stats``);
4. the ranking against the null (:func:`.masking.rank_concepts`), with each concept's overlap
   with ground-truth boxes when a ``gt.jsonl`` is given;
5. optionally the add/remove faithfulness tables per layer and a contact sheet per concept.

Example (in a project folder: world/ from vt-synth), on two videos of 'right' with few masks:
    >>> from vtcav_common.ace.masking import MaskOptions
    >>> from vtcav_common.ace.vtcd import ClusterOptions
    >>> from vtcav_common.ace.vtcd_run import VtcdSettings, format_ranking, run_vtcd
    >>> from vtcav_common.models import load_model
    >>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    >>> settings = VtcdSettings(target="right", layers=["block2", "block3"], split="train", max_videos=2,
    ...                         cluster=ClusterOptions(k_min=3, k_max=4), masks=MaskOptions(masks=32, bootstrap=50))
    >>> result = run_vtcd(loaded, "world/labels.jsonl", settings, out="concepts.h5")
    >>> [(r["rank"], r["concept"], r["verdict"]) for r in result.ranking]     # by excess over the null
    [(1, 'vtcd_block2_02', 'at chance'), (2, 'vtcd_block3_02', 'at chance'), (3, 'vtcd_block2_01', 'at chance'),
     (4, 'vtcd_block2_00', 'at chance'), (5, 'vtcd_block3_01', 'at chance'), (6, 'vtcd_block3_00', 'below chance')]
    >>> print(format_ranking(result.ranking, result.summary)[-1])       # the table's last line (vt-ace vtcd prints it)
    (2 videos, 6 concepts x 4 null copies; the null's own false-positive rate at alpha 0.05: 0.167 over 24 copies)
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..core import messages
from ..formats import clips as clipsets
from ..core.errors import IncompatibleError, UsageError
from ..models.base import LoadedModel
from ..formats.records import looks_like_manifest, read_manifest
from .candidates import select_videos
from .masking import MaskOptions, faithfulness, gt_overlap, rank_concepts, write_mask_stats
from .supervoxels import SegmentParams
from .vtcd import (TOOL, ClusterOptions, ConceptModel, DEFAULT_RESOLUTIONS, discover_concepts, read_concept_model,
                   read_tubelets, require_same_model, write_tubelets)


@dataclass
class VtcdSettings:
    target: str
    layers: list[str] = field(default_factory=list)
    split: str | None = None
    max_videos: int | None = None
    segmentation: SegmentParams = field(default_factory=lambda: SegmentParams(resolutions=DEFAULT_RESOLUTIONS))
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    masks: MaskOptions = field(default_factory=MaskOptions)
    faithfulness: bool = False
    max_concepts: int = 3
    repeats: int = 5
    gt: str | None = None


@dataclass
class VtcdResult:
    ranking: list[dict]
    summary: dict
    faithfulness: list[dict]
    concepts: ConceptModel
    tubelets: str


def video_paths(manifest: str) -> dict[str, str]:
    return {v.video_id: v.path for v in read_manifest(manifest)}


def run_vtcd(loaded: LoadedModel, source: str, settings: VtcdSettings, out: str | Path | None = None,
             videos: str | None = None, concepts: str | None = None, stats: str | None = None,
             work_dir: str | Path | None = None, concepts_only: bool = False) -> VtcdResult | None:
    """Everything from ``source`` (a labels manifest, or a tubelets file with ``videos`` the manifest)."""
    settings.masks.check()
    settings.cluster.check()
    loaded.class_index(settings.target)
    if concepts is None and out is None:
        raise UsageError("give -o (the concept file to write) or --concepts (one written before)")
    from_manifest = not source.endswith((".h5", ".hdf5")) and (Path(source).is_dir() or looks_like_manifest(source))
    manifest = source if from_manifest else videos
    if manifest is None:
        raise UsageError(f"{source}: a tubelets file needs --videos, the labels manifest its videos came from")
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        return _run(loaded, source, settings, out, manifest, concepts, stats, Path(work_dir), from_manifest,
                    concepts_only)
    anchor = Path(out or concepts).resolve().parent
    with tempfile.TemporaryDirectory(prefix=".vt-ace-vtcd.", dir=anchor) as tmp:
        return _run(loaded, source, settings, out, manifest, concepts, stats, Path(tmp), from_manifest,
                    concepts_only)


def _run(loaded, source, settings, out, manifest, concepts, stats, work: Path, from_manifest: bool,
         concepts_only: bool) -> VtcdResult | None:
    if from_manifest:
        chosen = select_videos(source, settings.target, settings.split, settings.max_videos)
        tubelets_path = str(work / "tubelets.h5")
        messages.info(f"{TOOL}: tubelets of {len(chosen)} videos at {', '.join(settings.layers)}")
        write_tubelets(chosen, tubelets_path, loaded, settings.layers, settings.segmentation, settings.target,
                       {"videos_source": Path(source).name, "split": settings.split})
    else:
        tubelets_path = source
    tubelets = read_tubelets(tubelets_path)
    require_same_model(tubelets.provenance, loaded, tubelets_path)
    if concepts is None:
        model, _ = discover_concepts(tubelets_path, settings.cluster, out, settings.target, settings.layers or None)
    else:
        model = read_concept_model(concepts)
        require_same_model(model.provenance, loaded, concepts)
        check_concepts_for(model, settings.target, concepts)
        if model.provenance.get("tubelets_run_id") != _run_id(tubelets_path):
            messages.warn(f"{concepts}: its concepts were discovered on other tubelets than {tubelets_path}; their "
                     f"positions in these videos are found by the nearest centre")
    if concepts_only:
        return None
    paths = video_paths(manifest)
    if stats is None:
        stats = str(work / "stats.h5")
        messages.info(f"{TOOL}: {settings.masks.masks} random masks over {len(model.names)} concepts and "
                 f"{len(model.names) * settings.masks.null_copies} null copies, {len(tubelets.order)} videos")
        write_mask_stats(loaded, model, tubelets, paths, settings.target, settings.masks, stats)
    extra = _concept_sizes(concepts or str(out))
    if settings.gt:
        overlaps = gt_overlap(model, tubelets, settings.gt)
        for name, values in overlaps.items():
            extra.setdefault(name, {}).update(values)
    ranking, summary = rank_concepts(stats, model, settings.masks, extra)
    faith = []
    if settings.faithfulness:
        faith = faithfulness(loaded, model, tubelets, paths, settings.target, ranking, settings.max_concepts,
                             settings.repeats, settings.masks.seed, settings.masks.batch_size, settings.masks.cells)
    return VtcdResult(ranking, summary, faith, model, tubelets_path)


def _run_id(path: str) -> str:
    from .vtcd import _run_id as run_id

    return run_id(path)


def _concept_sizes(path: str) -> dict[str, dict]:
    """Members kept and cluster sizes of the concept file's sets."""
    out = {}
    for info in clipsets.list_sets(path):
        if info.role == "concept":
            provenance = info.attrs.get("provenance", {})
            out[info.name] = {"members": info.n, "tubelets": int(provenance.get("cluster_size", info.n)),
                              "videos_with_tubelets": int(provenance.get("videos", 0))}
    return out


def format_ranking(ranking: list[dict], summary: dict) -> list[str]:
    """The ranking as text lines (stderr): effect and excess over the null with their intervals."""
    lines = [f"{'rank':>4}  {'concept':<18} {'effect [95% CI]':<26} {'null mean [95% CI]':<26} "
             f"{'excess [95% CI]':<26} {'Holm p':>8}  verdict"]
    for r in ranking:
        lines.append(f"{r['rank']:>4}  {r['concept']:<18} {_ci(r['effect'], r['effect_ci']):<26} "
                     f"{_ci(r['null_mean'], r['null_ci']):<26} {_ci(r['excess'], r['excess_ci']):<26} "
                     f"{r['p_corrected']:>8.2g}  {r['verdict']}" + _gt(r))
    lines.append(f"({summary['videos']} videos, {summary['concepts']} concepts x {summary['null_copies']} null copies; "
                 f"the null's own false-positive rate at alpha {summary['alpha']}: "
                 f"{summary['null_false_positive_rate']:.3f} over {summary['null_tests']} copies)")
    return lines


def _ci(value: float, interval: list[float]) -> str:
    return f"{value:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]"


def _gt(record: dict) -> str:
    if "gt_overlap" not in record:
        return ""
    best = max(record["gt_overlap"], key=lambda k: record["gt_overlap"][k])
    return f"  ({best} {record['gt_overlap'][best]:.2f})"


def markdown_ranking(ranking: list[dict], summary: dict) -> str:
    """The discovery table in Markdown."""
    gt = [k for k in (ranking[0].get("gt_overlap") or {})] if ranking else []
    head = ["rank", "concept", "layer", "tubelets (videos)", "effect [95% CI]", "null [95% CI]", "excess [95% CI]",
            "Holm p", "verdict"] + [f"on {k} (track)" for k in gt]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ranking:
        cells = [str(r["rank"]), f"`{r['concept']}`", r["layer"], f"{r.get('tubelets', '')} ({r['videos_present']})",
                 _ci(r["effect"], r["effect_ci"]), _ci(r["null_mean"], r["null_ci"]), _ci(r["excess"], r["excess_ci"]),
                 f"{r['p_corrected']:.2g}", r["verdict"]]
        cells += [f"{r['gt_overlap'][k]:.2f} ({r['gt_track_overlap'][k]:.2f})" for k in gt]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\n{summary['videos']} videos; {summary['concepts']} concepts, each with "
                 f"{summary['null_copies']} null copies; effect = drop of the target's response when masked; "
                 f"excess = effect - mean effect of the null copies; intervals: Poisson bootstrap over videos. "
                 f"The null's own false-positive rate (each copy against its siblings, alpha {summary['alpha']}): "
                 f"{summary['null_false_positive_rate']:.3f} over {summary['null_tests']} copies.")
    return "\n".join(lines)


def check_concepts_for(model: ConceptModel, target: str, where: str) -> None:
    if model.target != target:
        raise IncompatibleError(f"{where}: concepts of class '{model.target}', not '{target}'")
