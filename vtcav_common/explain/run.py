"""A whole vt-explain run: gather the videos, explain each (one forward and one backward
pass), measure the share of relevance on moving pixels, and write maps, records, pictures."""

from __future__ import annotations

import collections
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from ..core import h5io, messages
from . import overlay
from ..core.errors import UsageError
from ..core.files import check_output, display_name
from ..models.base import LoadedModel, preprocess
from ..models.layers import model_device
from ..formats.records import filter_manifest, json_line, looks_like_manifest, read_manifest
from .selective import MassCounter, SampledVideo, box_mask, read_moving_boxes, sample_with_motion, selective_filter
from ..core.video import find_videos, iter_frames, probe
from .explainer import Explainer, Explanation
from ..formats.relevance import MapSink

# --------------------------------------------------------------------------- the whole run
@dataclass(frozen=True)
class VideoItem:
    video_id: str
    path: str
    label: str | None = None


@dataclass(frozen=True)
class ExplainOptions:
    """Everything vt-explain was asked, besides the model and the videos."""

    method: str = "gradcam"
    layer: str | None = None
    grid: tuple[int, int, int] | None = None
    target: str | None = None                # a class name or index; None = each clip's prediction
    sigma: float | None = None               # the selective filter's threshold; None = no selective map
    motion_threshold: float = 25.0           # grey levels of frame-to-frame change that count as motion
    gt: str | None = None                    # detections/gt JSONL whose `moving` boxes mark motion instead
    pictures: str | None = None              # folder for the PNG strips and overlay videos
    picture_format: str = "gif"
    strip_frames: int = 8
    picture_scale: int = 0                   # integer enlargement of the pictures; 0 = automatic
    seed: int = 0


def gather_videos(inputs: list[str], labels: list[str], split: str | None) -> list[VideoItem]:
    """Videos from manifests (filtered by label and split), folders and plain video paths."""
    if not inputs:
        raise UsageError("give videos, a folder of videos or a labels manifest (.jsonl, '-' for stdin)")
    manifests = [p for p in inputs if p == "-" or looks_like_manifest(p)]
    if (labels or split) and not manifests:
        raise UsageError("--label/--split filter a labels manifest (.jsonl); no manifest was given")
    videos: list[VideoItem] = []
    for item in inputs:
        if item in manifests:
            videos += _filtered(read_manifest(item), labels, split, display_name(item))
        elif Path(item).is_dir():
            videos += [VideoItem(p.stem, str(p)) for p in find_videos(item)]
        else:
            videos.append(VideoItem(Path(item).stem, item))
    counts = collections.Counter(v.video_id for v in videos)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    if repeated:
        raise UsageError(f"video id(s) given twice: {', '.join(repeated[:5])}")
    if not videos:
        raise UsageError("no videos to explain")
    return videos


def _filtered(entries, labels: list[str], split: str | None, name: str) -> list[VideoItem]:
    entries = filter_manifest(entries, labels, split, name)
    return [VideoItem(e.video_id, e.path, e.label) for e in entries]


def explain_videos(loaded: LoadedModel, videos: list[VideoItem], output: str | Path | None,
                   options: ExplainOptions, records: IO[str], tool: str = "vt-explain",
                   shard: dict | None = None) -> dict:
    """Explain each video; write maps (HDF5), pictures and one JSON record per video."""
    if options.sigma is not None and options.sigma < 0:
        raise UsageError(f"--selective takes a number of standard deviations >= 0, got {options.sigma}")
    explainer = Explainer(loaded, options.method, options.layer, options.grid)
    target_index = None if options.target is None else loaded.class_index(str(options.target))
    for video in videos:           # refuse missing or unreadable files before writing anything
        probe(video.path)
        if options.pictures:       # and pictures that would replace an input (the video itself)
            for suffix in ("png", options.picture_format):
                check_output(Path(options.pictures) / f"{picture_stem(video.video_id)}.{suffix}")
    boxes = None
    if options.gt:
        boxes = read_moving_boxes(options.gt, {v.video_id for v in videos})
    torch.manual_seed(options.seed)
    provenance = maps_provenance(loaded, explainer, options, target_index, videos)
    if shard is not None:   # the shard's identity (vtcav_common.scale.shard); vt-merge drops it
        provenance["shard"] = shard
    shares: dict[str, list[float]] = {"plain": [], "selective": []}
    with (h5io.create(output, "relevance", tool, provenance) if output else contextlib.nullcontext()) as handle:
        sink = (MapSink(handle, len(videos), explainer.input_size, options.sigma is not None, loaded.class_names)
                if handle else None)
        for row, video in enumerate(messages.progress(videos, total=len(videos), description="explain")):
            outcome = _explain_one(loaded, explainer, video, options, target_index, boxes)
            if sink:
                sink.write(row, video, outcome)
            if options.pictures:
                _pictures(video, outcome, options, explainer)
            record = _record(loaded, explainer, video, outcome, options)
            records.write(json_line(record, "<stdout>") + "\n")   # strict JSON: a NaN is an error
            records.flush()
            for kind in shares:
                if outcome.shares.get(kind) is not None:
                    shares[kind].append(outcome.shares[kind])
    return {"videos": len(videos), "layer": explainer.layer,
            "mean_share": {k: (float(np.mean(v)) if v else None) for k, v in shares.items()}}


@dataclass
class _Outcome:
    sampled: SampledVideo
    explanation: Explanation
    selective: np.ndarray | None
    shares: dict[str, float | None]
    moving_fraction: float


def _explain_one(loaded: LoadedModel, explainer: Explainer, video: VideoItem, options: ExplainOptions,
                 target_index: int | None, boxes: dict | None) -> _Outcome:
    sampled = sample_with_motion(video.path, loaded.input_spec.frames, options.motion_threshold)
    x = preprocess(sampled.frames[None], loaded.input_spec, model_device(loaded.module))
    explanation = explainer(x, target_index)
    selective = None if options.sigma is None else selective_filter(explanation.relevance, options.sigma)
    height, width = sampled.frames.shape[1:3]
    if boxes is not None:
        per_frame = boxes.get(video.video_id, {})
        if not per_frame:
            messages.warn(f"{options.gt}: no moving boxes for video {video.video_id}; its motion share is 0")
        moving = np.stack([box_mask(per_frame.get(int(i), []), height, width) for i in sampled.indices])
    else:
        moving = sampled.moving
    maps = {"plain": explanation.relevance, "selective": selective}
    counters = {kind: MassCounter() for kind, m in maps.items() if m is not None}
    for i in range(len(sampled.indices)):   # at the source's size, one frame at a time
        for kind, counter in counters.items():
            counter.add(overlay.resize_map(maps[kind][i], height, width), moving[i])
    return _Outcome(sampled, explanation, selective, {k: c.share() for k, c in counters.items()},
                    float(moving.mean()))


def _record(loaded: LoadedModel, explainer: Explainer, video: VideoItem, outcome: _Outcome,
            options: ExplainOptions) -> dict:
    result = outcome.explanation
    names = loaded.class_names
    record = {"video_id": video.video_id}
    if video.label is not None:
        record["label"] = video.label
    record.update({
        "target": names[result.target_index], "target_index": result.target_index,
        "target_probability": round(float(result.probabilities[result.target_index]), 4),
        "predicted": names[result.predicted_index], "predicted_index": result.predicted_index,
        "probability": round(float(result.probabilities[result.predicted_index]), 4),
        "method": options.method, "layer": explainer.layer, "sigma": options.sigma,
        "motion": "gt" if options.gt else "frame-difference",
        "motion_share": {k: (None if v is None else round(v, 4)) for k, v in outcome.shares.items()},
        "moving_fraction": round(outcome.moving_fraction, 4),
    })
    return record


def picture_stem(video_id: str) -> str:
    """A video id as a file name (path separators replaced)."""
    return video_id.replace("/", "_").replace("\\", "_") or "video"


def _pictures(video: VideoItem, outcome: _Outcome, options: ExplainOptions, explainer: Explainer) -> None:
    folder = Path(options.pictures)
    folder.mkdir(parents=True, exist_ok=True)
    sampled, plain = outcome.sampled, outcome.explanation.relevance
    scale = overlay.map_scale(plain)
    enlarge = options.picture_scale or overlay.auto_scale(*sampled.frames.shape[1:3])
    what = options.method + (f" {explainer.layer}" if explainer.layer else "")
    rows = [(f"plain: {what}", plain)]
    if outcome.selective is not None:
        rows.append((f"selective: sigma {options.sigma:g}", outcome.selective))
    columns = overlay.strip_columns(len(sampled.indices), options.strip_frames)
    stem = picture_stem(video.video_id)
    times = [f"{sampled.indices[c] / sampled.fps:.2f} s (f{sampled.indices[c]})" if sampled.fps else
             f"frame {sampled.indices[c]}" for c in columns]
    overlay.write_png(folder / f"{stem}.png",
                      overlay.strip_image(sampled.frames, rows, columns, scale, enlarge, times, options.method))
    frames = overlay.overlay_frames(iter_frames(video.path), sampled.indices, [m for _, m in rows], scale, enlarge,
                                    captions=[caption for caption, _ in rows], fps=sampled.fps,
                                    bar_label=options.method)
    overlay.write_overlay_video(folder / f"{stem}.{options.picture_format}", frames, sampled.fps,
                                options.picture_format)


def maps_provenance(loaded: LoadedModel, explainer: Explainer, options: ExplainOptions,
                    target_index: int | None, videos: list[VideoItem]) -> dict:
    """The relevance file's provenance: the model, the method and every setting of the run."""
    motion = ({"source": "gt", "file": Path(options.gt).name} if options.gt else
              {"source": "frame-difference", "threshold": options.motion_threshold})
    return {"model": loaded.provenance, "input": loaded.input_spec.to_dict(), "method": options.method,
            "layer": explainer.layer, "grid": list(options.grid) if options.grid else None,
            "target": None if target_index is None else loaded.class_names[target_index],
            "target_index": target_index, "target_rule": "given" if target_index is not None else "predicted",
            "sigma": options.sigma, "selective_kernel": "temporal sobel 3x3x3, replicate padding",
            "motion": motion, "seed": options.seed, "videos": len(videos)}
