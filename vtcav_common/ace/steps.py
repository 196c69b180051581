"""vt-ace's steps as library calls, one function a subcommand.

Each step checks its input, loads the model when it needs one (``load``: the front end's model
options, called only once the input is known to be good, so that bad input is refused without
loading torch or a checkpoint), runs, writes its files and reports on stderr. The front end
(tools/vt_ace.py) only parses the command line.

The model-side modules (torch, torchvision, scikit-learn) are imported by the steps that need
them, so that ``supervoxels``, ``sheet`` and bad input answer without loading them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..core import errors, files, messages
from ..core.parsing import parse_size
from ..formats.clips import Sampling
from ..formats.records import read_jsonl, write_records
from ..scale import shard as sharding
from .candidates import select_videos, write_candidates
from .sheets import write_sheets
from .supervoxels import SegmentParams, parse_resolutions

Load = Callable[[], object]   # () -> models.base.LoadedModel


def _videos_of(videos: str, labels: list[str], split: str | None, max_videos: int | None) -> list:
    """The videos of any of ``labels`` (all videos without one), in the manifest's order, at most ``max_videos``."""
    chosen = [v for label in dict.fromkeys(labels or [None]) for v in select_videos(videos, label, split)]
    return chosen[:max_videos] if max_videos else chosen


def _seconds(started: float) -> str:
    return f"{time.perf_counter() - started:.1f} s"


def supervoxels(videos: str, out: Path, labels: list[str], split: str | None, max_videos: int | None,
                resolutions: str, compactness: float, sigma: float, min_fraction: float, max_iou: float, fill: int,
                frames: int, size: str, name: str, shard: str | None) -> None:
    """vt-ace supervoxels: each video cut into supervoxels, each written as a clip on grey."""
    part = sharding.parse_shard(shard)
    params = SegmentParams(parse_resolutions(resolutions), compactness, sigma, min_fraction, max_iou, fill)
    sampling = Sampling(frames, parse_size(size), 1)
    chosen = _videos_of(videos, labels, split, max_videos)
    label = labels[0] if len(labels) == 1 else None
    provenance = {"videos_source": Path(videos).name, "split": split}
    if len(labels) > 1:
        provenance["labels"] = labels
    chosen, identity = sharding.take_block(part, chosen)   # a contiguous block of the chosen videos, in order
    if identity is not None:
        provenance["shard"] = identity
    started = time.perf_counter()
    count = write_candidates(chosen, out, params, sampling, label, name=name, provenance=provenance)
    messages.info(f"vt-ace: {count} supervoxel clips from {len(chosen)} videos -> {out} ({_seconds(started)})")


def discover(load: Load, candidates: str, random: str, videos: str, target: str, out: Path, ranking: str, *,
             layer: str, k: int, min_members: int, max_members: int, grid: int, split: str | None,
             classifier: str, correction: str, alpha: float, set_name: str, work_dir: Path | None,
             features: str | None, seed: int, batch_size: int) -> None:
    """vt-ace discover: the candidates clustered into concepts, written, ranked by TCAV."""
    import torch

    from .discover import DiscoverOptions, check_inputs, discover as run_discovery

    options = DiscoverOptions(layer=layer, k=k, min_members=min_members, max_members=max_members, grid=grid,
                              seed=seed, classifier=classifier, correction=correction, alpha=alpha,
                              split=split or None, batch_size=batch_size)
    info = check_inputs(candidates, set_name, random, options)   # refuse bad input before loading the model
    torch.manual_seed(seed)
    loaded = load()
    started = time.perf_counter()
    given = None
    if features is not None:
        from .feature_step import read_features

        given = read_features(features, loaded, layer, grid, candidates, set_name, info.n)
    result = run_discovery(loaded, candidates, random, videos, target, out, options, set_name, work_dir,
                           features=given)
    with files.open_text_output(ranking) as handle:
        write_records(result.ranking, handle)
    flagged = sum(not r["significant"] for r in result.ranking)
    messages.info(f"vt-ace: {len(result.concepts)} concepts from {result.n_candidates} candidates -> {out}; "
                  f"{flagged} not significant ({_seconds(started)})")
    for row in result.ranking:
        side = "above" if row["direction"] == "+" else "below"
        verdict = f"significantly {side}" if row["significant"] else f"{side}, not significant"
        messages.info(f"  {row['rank']:>2}. {row['concept']}  TCAV {row['tcav_mean']:.3f} ± {row['tcav_std']:.3f} "
                      f"(random {row['null_mean']:.3f}): {verdict}; p {row['p']:.2g}, {row['correction']}-corrected "
                      f"p {row['p_corrected']:.2g}  {row['members']} members")


def features(load: Load, candidates: str, out: Path, layer: str, grid: int, set_name: str, batch_size: int,
             shard: str | None) -> None:
    """vt-ace features: the feature step of discovery on its own (shardable)."""
    from .feature_step import write_features

    part = sharding.parse_shard(shard)
    loaded = load()
    started = time.perf_counter()
    rows = write_features(loaded, candidates, set_name, layer, grid, batch_size, out, part)
    messages.info(f"vt-ace: features of {rows} candidates at {layer} (grid {grid}) -> {out} ({_seconds(started)})")


def faithfulness(load: Load, concepts: str, ranking: str, videos: str, label: str | None, split: str | None,
                 output: str, table: Path | None, max_concepts: int, repeats: int, max_videos: int | None,
                 seed: int, batch_size: int) -> None:
    """vt-ace faithfulness: accuracy with the top / random / least concepts added or removed."""
    from .faithfulness import (FaithfulnessOptions, faithfulness as run_faithfulness, format_tables,
                               markdown_tables, read_concept_model, read_ranking)

    concept_model = read_concept_model(concepts)          # refuse bad input before loading the model
    read_ranking(ranking, concept_model.names)
    target = label or concept_model.target
    chosen = select_videos(videos, target, split or None, max_videos)
    loaded = load()
    options = FaithfulnessOptions(max_concepts, repeats, seed, batch_size)
    records = run_faithfulness(loaded, concepts, ranking, chosen, options, target)
    with files.open_text_output(output) as handle:
        write_records(records, handle)
    if table is not None:
        with files.open_text_output(str(table)) as handle:
            handle.write(markdown_tables(records) + "\n")
    for line in format_tables(records):
        messages.info(line)


def sheets(concepts: str, out_dir: Path, ranking: str | None, members: int, frames: int, scale: int, role: str,
           videos: str | None) -> None:
    """vt-ace sheet: a contact-sheet PNG per set of ``role``."""
    ranks = {record["concept"]: record for _, record in read_jsonl(ranking)} if ranking else None
    written = write_sheets(concepts, out_dir, ranks, members, frames, scale, role, videos)
    if not written:
        raise errors.VtcavError(f"{concepts}: no sets of role '{role}' to draw")
    messages.info(f"vt-ace: {len(written)} contact sheets in {out_dir}")


def tubelets(load: Load, videos: str, out: Path, labels: list[str], split: str | None, max_videos: int | None,
             layers: str, resolutions: str, compactness: float, shard: str | None) -> None:
    """vt-ace tubelets: VTCD step 1, the videos cut into tubelets pooled at every layer."""
    from ..models.layers import parse_layer_list
    from .vtcd import write_tubelets

    part = sharding.parse_shard(shard)
    params = SegmentParams(parse_resolutions(resolutions), compactness)
    chosen = _videos_of(videos, labels, split, max_videos)
    loaded = load()
    started = time.perf_counter()
    count = write_tubelets(chosen, out, loaded, parse_layer_list(layers), params,
                           labels[0] if len(labels) == 1 else None,
                           {"videos_source": Path(videos).name, "split": split}, part)
    messages.info(f"vt-ace: {count} tubelets -> {out} ({_seconds(started)})")


def vtcd_settings(target: str, layers: str, split: str | None, max_videos: int | None, resolutions: str,
                  compactness: float, k_min: int, k_max: int, max_members: int, masks: int, rate: float,
                  null_copies: int, bootstrap: int, alpha: float, response: str, cells: str, seed: int,
                  batch_size: int, faithfulness: bool, max_concepts: int, gt: str | None):
    """The settings of a VTCD run (:class:`.vtcd_run.VtcdSettings`) from vt-ace vtcd's options."""
    from ..models.layers import parse_layer_list
    from .masking import MaskOptions
    from .vtcd import ClusterOptions
    from .vtcd_run import VtcdSettings

    return VtcdSettings(
        target=target, layers=parse_layer_list(layers), split=split or None, max_videos=max_videos,
        segmentation=SegmentParams(parse_resolutions(resolutions), compactness),
        cluster=ClusterOptions(k_min=k_min, k_max=k_max, max_members=max_members, seed=seed),
        masks=MaskOptions(masks=masks, rate=rate, null_copies=null_copies, bootstrap=bootstrap, alpha=alpha,
                          seed=seed, batch_size=batch_size, response=response, cells=cells),
        faithfulness=faithfulness, max_concepts=max_concepts, gt=gt)


def vtcd(load: Load, source: str, out: Path | None, *, ranking: str, table: Path | None, videos: str | None,
         concepts: str | None, stats: str | None, concepts_only: bool, faith: str | None, sheets: Path | None,
         work_dir: Path | None, **settings) -> None:
    """vt-ace vtcd: the whole VTCD run (or its last steps; ``settings``: :func:`vtcd_settings`' arguments),
    its ranking, faithfulness records, tables and contact sheets written, the ranking and tables reported."""
    from .faithfulness import format_tables, markdown_tables
    from .vtcd_run import format_ranking, markdown_ranking, run_vtcd

    settings = vtcd_settings(faithfulness=faith is not None, **settings)
    loaded = load()
    started = time.perf_counter()
    result = run_vtcd(loaded, source, settings, out, videos, concepts, stats, work_dir, concepts_only)
    if result is None:
        messages.info(f"vt-ace: concepts -> {out} ({_seconds(started)})")
        return
    with files.open_text_output(ranking) as handle:
        write_records(result.ranking, handle)
    if faith is not None:
        with files.open_text_output(faith) as handle:
            write_records(result.faithfulness, handle)
    layers = list(dict.fromkeys(r["layer"] for r in result.faithfulness))
    if table is not None:
        parts = [markdown_ranking(result.ranking, result.summary)]
        for layer in layers:
            # 3D-ACE's tables, on the masked videos themselves (not held-out ones)
            parts.append(markdown_tables([r for r in result.faithfulness if r["layer"] == layer]).replace(
                " test videos,", " videos (the masked ones),"))
        with files.open_text_output(str(table)) as handle:
            handle.write("\n\n".join(parts) + "\n")
    if sheets is not None:
        sources = videos if videos else (None if source.endswith((".h5", ".hdf5")) else source)
        written = write_sheets(concepts or str(out), sheets, {r["concept"]: r for r in result.ranking},
                               videos=sources)
        messages.info(f"vt-ace: {len(written)} contact sheets in {sheets}")
    messages.info(f"vt-ace: {len(result.ranking)} concepts ranked ({_seconds(started)})")
    for line in format_ranking(result.ranking, result.summary):
        messages.info(line)
    for layer in layers:
        for line in format_tables([r for r in result.faithfulness if r["layer"] == layer], "mean_prob"):
            messages.info(f"  {layer}: {line}")


def masks(load: Load, concepts: str, tubelets_file: str, out: Path, videos: str, target: str | None, masks: int,
          rate: float, null_copies: int, response: str, cells: str, seed: int, batch_size: int,
          shard: str | None) -> None:
    """vt-ace masks: VTCD step 3 on its own (shardable), each video's masking statistics."""
    from .masking import MaskOptions, write_mask_stats
    from .vtcd import read_concept_model, read_tubelets, require_same_model
    from .vtcd_run import video_paths

    part = sharding.parse_shard(shard)
    options = MaskOptions(masks=masks, rate=rate, null_copies=null_copies, seed=seed, batch_size=batch_size,
                          response=response, cells=cells)
    options.check()
    concept_model = read_concept_model(concepts)
    tubes = read_tubelets(tubelets_file)
    paths = video_paths(videos)
    loaded = load()
    require_same_model(concept_model.provenance, loaded, concepts)
    started = time.perf_counter()
    done = write_mask_stats(loaded, concept_model, tubes, paths, target or concept_model.target, options, out, part)
    messages.info(f"vt-ace: masking statistics of {done} videos -> {out} ({_seconds(started)})")
