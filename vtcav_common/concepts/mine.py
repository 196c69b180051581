"""The vt-concepts runs as library calls, one a subcommand: :func:`mine_objects` (spatial and
spatiotemporal: the object options they share, the default set names, writing a mined concept
set), :func:`write_random_sets` (random) and :func:`set_records` (list).

A stage does not import ``scale``: a sharded run's front end passes ``cut``, which takes the
plans (all made first, from metadata alone) and returns this shard's block and its identity
(:func:`vtcav_common.scale.shard.shard_plans`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import UsageError, VtcavError
from ..core.files import display_name
from ..core.messages import info, progress
from ..formats.clips import ClipSetWriter, Sampling, check_set_name, list_sets
from .catalog import DetectionFilter, LabelFilter, VideoCatalog, load_tracks
from .geometry import track_geometries
from .plans import PlanStats, RandomDraw, limit, plan_random, plan_spatial, plan_spatiotemporal
from .render import render_plans
from ..core.parsing import parse_size

TOOL = "vt-concepts"
Cut = Callable[[list], tuple[list, "dict | None"]]


class ObjectOptions:
    """The options spatial and spatiotemporal share, validated once."""

    def __init__(self, detections: str, videos: str | None, classes: list[str] | None, labels: list[str] | None,
                 exclude: list[str] | None, split: str | None, min_conf: float, min_box: float,
                 max_gap: int, frames: int, size: str, stride: int):
        self.detections = detections
        self.catalog = VideoCatalog.open(videos, detections)
        self.label_filter = LabelFilter(frozenset(labels or ()), frozenset(exclude or ()), split)
        self.label_filter.check(self.catalog)
        self.keep = DetectionFilter(frozenset(classes or ()), min_conf, min_box, self.label_filter)
        self.max_gap = max_gap
        self.sampling = Sampling(frames, parse_size(size), stride)

    def tracks(self):
        tracks, _ = load_tracks(self.detections, self.keep, self.catalog, self.max_gap)
        if not tracks:
            raise VtcavError(f"{display_name(self.detections)}: no detections of {self.describe()}")
        return tracks

    def describe(self) -> str:
        what = f"class {', '.join(sorted(self.keep.classes))}" if self.keep.classes else "any class"
        flt = self.label_filter
        if flt.labels:
            what += f" in videos labelled {', '.join(sorted(flt.labels))}"
        if flt.exclude:
            what += f" outside videos labelled {', '.join(sorted(flt.exclude))}"
        if flt.split:
            what += f" in split {flt.split}"
        if self.keep.min_conf > 0 or self.keep.min_box > 0:
            what += f" with conf >= {self.keep.min_conf} and box >= {self.keep.min_box} px"
        return what

    def provenance(self, **extra) -> dict:
        keep, flt = self.keep, self.label_filter
        return {"detections": self.detections, "videos": self.catalog.source, "classes": sorted(keep.classes),
                "labels": sorted(flt.labels), "exclude_labels": sorted(flt.exclude), "split": flt.split,
                "min_conf": keep.min_conf, "min_box": keep.min_box, "max_gap": self.max_gap, **extra}


def default_name(kind: str, classes: list[str] | None, labels: list[str] | None, exclude: list[str] | None) -> str:
    """e.g. ``ball_right_spatiotemporal``, ``ball_not-right_spatial``, ``all_spatial``."""
    parts = ["+".join(sorted(classes)) if classes else "all"]
    if labels:
        parts.append("+".join(sorted(labels)))
    if exclude:
        parts.append("not-" + "+".join(sorted(exclude)))
    return "_".join(parts + [kind])


def write_concept(out: Path, options: ObjectOptions, plans, stats: PlanStats, name: str, kind: str,
                   geometry: str, description: str, provenance: dict, append: bool, replace: bool,
                   context: float) -> None:
    if not plans:
        raise VtcavError(f"{display_name(options.detections)}: no usable {kind} clips of "
                         f"{options.describe()} ({stats.too_short} track(s) shorter than {stats.span} frames; "
                         f"lower --min-track, --frames or --frame-stride)")
    run = {"command": kind, **provenance}
    with ClipSetWriter(out, options.sampling, TOOL, run, append=append, replace=replace) as writer:
        target = writer.add_set(name, kind=kind, role="concept", classes=sorted(options.keep.classes),
                                labels=sorted(options.label_filter.labels), geometry=geometry,
                                description=description, provenance=run)
        render_plans(plans, {name: target}, options.sampling, context,
                     progress=lambda it, n: progress(it, n, f"{name}"))
    extra = [f"{stats.tracks} eligible"] if stats.tracks != len(stats.used_tracks) else []
    if stats.too_short:
        extra.append(f"{stats.too_short} too short")
    if stats.stretched:
        extra.append(f"{stats.stretched} stretched")
    if stats.dropped_by_max:
        extra.append(f"{stats.dropped_by_max} clips over --max-clips left out")
    info(f"{TOOL}: {name}: {len(plans)} clips from {len(stats.videos)} videos, {len(stats.used_tracks)} tracks"
             f"{' (' + '; '.join(extra) + ')' if extra else ''} -> {out}")


def mine_objects(kind: str, detections: str, out: Path, videos: str | None, classes: list[str] | None,
                 labels: list[str] | None, exclude: list[str] | None, split: str | None, *, geometry: str,
                 min_track: int | None, min_box: float, min_conf: float, max_gap: int, per_track: int,
                 max_clips: int | None, context: float, frames: int, size: str, stride: int, seed: int,
                 name: str | None, append: bool = False, replace: bool = False, cut: Cut | None = None) -> None:
    """vt-concepts spatial (``kind`` 'spatial': one frame's crop of an object, repeated; ``geometry``
    'static') or spatiotemporal (the object along its track, cut with ``geometry``): the detections'
    tracks planned into clips, at most ``max_clips`` of them (a seeded subset), written as one set."""
    if kind == "spatiotemporal" and geometry not in track_geometries():
        raise UsageError(f"--geometry must be {' or '.join(track_geometries())}, got '{geometry}'")
    options = ObjectOptions(detections, videos, classes, labels, exclude, split, min_conf, min_box, max_gap,
                            frames, size, stride)
    name = name or default_name(kind, classes, labels, exclude)
    check_set_name(name)
    tracks = options.tracks()
    if kind == "spatial":
        plans, stats = plan_spatial(tracks, name, options.sampling, per_track, min_track)
        description = f"static crops of {options.describe()}"
    else:
        if all(track.track_id < 0 for track in tracks):
            raise VtcavError(f"{display_name(detections)}: the detections of {options.describe()} have no "
                             f"track ids, and spatiotemporal clips follow tracks (run vt-detect with a tracker)")
        plans, stats = plan_spatiotemporal(tracks, name, options.sampling, geometry, per_track, min_track)
        description = f"{options.describe()} along its track ({geometry} geometry)"
    plans = limit(plans, max_clips, np.random.default_rng(seed), stats)
    plans, part = cut(plans) if cut else (plans, None)
    provenance = options.provenance(seed=seed, min_track=min_track, clips_per_track=per_track,
                                    max_clips=max_clips, context=context, geometry=geometry)
    if part is not None:   # this shard's block of clips (vtcav_common.scale.shard); vt-merge joins the blocks
        provenance["shard"] = part
    write_concept(out, options, plans, stats, name, kind, geometry, description, provenance, append, replace,
                  context)


def write_random_sets(out: Path, videos: str, labels: list[str] | None, exclude: list[str] | None, split: str | None,
                      sets: int, per_set: int, min_window: float, frames: int, size: str, stride: int, seed: int,
                      prefix: str, role: str, append: bool = False, replace: bool = False,
                      cut: Cut | None = None) -> None:
    """vt-concepts random: R sets of random windows at random start frames of random videos
    (those the label filter allows), no clip drawn twice, written to ``out``."""
    if role not in ("random", "concept"):
        raise UsageError(f"--role is 'random' or 'concept', got '{role}'")
    sampling = Sampling(frames, parse_size(size), stride)
    catalog = VideoCatalog.open(videos)
    label_filter = LabelFilter(frozenset(labels or ()), frozenset(exclude or ()), split)
    label_filter.check(catalog)
    entries = [e for e in sorted(catalog.entries.values(), key=lambda e: e.video_id)
               if label_filter.allows(catalog, e.video_id)]
    if not entries:
        raise VtcavError(f"{videos}: no videos left after the label filter")
    names = [f"{prefix}_{i:02d}" for i in range(sets)]
    for set_name in names:
        check_set_name(set_name)
    draw = RandomDraw(sets, per_set, min_window)
    plans = plan_random(entries, names, sampling, draw, np.random.default_rng(seed))
    plans, part = cut(plans) if cut else (plans, None)
    pool_labels = sorted({e.label for e in entries if e.label is not None})
    run = {"command": "random", "videos": videos, "seed": seed, "labels": sorted(label_filter.labels),
           "exclude_labels": sorted(label_filter.exclude), "split": split, "sets": sets,
           "clips_per_set": per_set, "min_window": min_window, "role": role}
    if part is not None:   # this shard's block of each set; vt-merge joins the blocks
        run["shard"] = part
    source = (f"videos labelled {', '.join(pool_labels)}" if pool_labels else f"videos in {videos}")
    with ClipSetWriter(out, sampling, TOOL, run, append=append, replace=replace) as writer:
        targets = {set_name: writer.add_set(set_name, kind="random", role=role, classes=[],
                                            labels=pool_labels, geometry="random",
                                            description=f"random windows from {source}",
                                            provenance={**run, "set_index": i})
                   for i, set_name in enumerate(names)}
        render_plans(plans, targets, sampling, progress=lambda it, n: progress(it, n, "random"))
    used = {p.video_id for p in plans}
    info(f"{TOOL}: {sets} random sets x {per_set} clips from {len(used)} of {len(entries)} {source} -> {out}")


def set_records(path: Path, sets: list[str] | None) -> list[dict]:
    """vt-concepts list: a record (name, kind, role, n, T, H, W, ...) of each set of ``path`` that
    ``sets`` (names or patterns; all without) chooses."""
    from ..core import selection

    infos = list_sets(path)
    chosen = set(selection.select([i.name for i in infos], sets, "set", str(path)))
    return [i.to_record() for i in infos if i.name in chosen]
