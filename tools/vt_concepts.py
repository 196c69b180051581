"""vt-concepts: concept clip sets (spatial, spatiotemporal, random) from detections and videos."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from vtcav_common.cli import frame
from vtcav_common.core import errors, files, messages
from vtcav_common.formats import clips as clipsets
from vtcav_common.cli import options as opt
from vtcav_common.scale import shard as sharding
from vtcav_common.formats.clips import Sampling
from vtcav_common.concepts import (DEFAULT_CONTEXT, RANDOM_MIN_FRACTION, limit, parse_size, plan_spatial,
                                   plan_spatiotemporal)
from vtcav_common.concepts.geometry import geometry_help, track_geometries
from vtcav_common.concepts.mine import ObjectOptions, default_name, write_concept, write_random_sets
from vtcav_common.core.errors import UsageError, VtcavError

TOOL = "vt-concepts"

# FFmpeg's own log lines (e.g. "moov atom not found") would break the one-line error
# convention, and the error raised for a bad video already names the file.
# Set OPENCV_FFMPEG_LOGLEVEL yourself to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

app = frame.make_app(
    TOOL,
    help="Cut concept clip sets for Video-TCAV from detections (`vt-detect`, or any detector's JSONL in "
         "the same record format) and videos, and random sets to test them against. Each set is one "
         "group of an HDF5 file of `T x H x W x 3` RGB clips (see docs/formats.md).\n\n"
         "- `spatial`: an object's crop from one frame, repeated over the T frames (static).\n"
         "- `spatiotemporal`: the same object along its track over T frames (dynamic).\n"
         "- `random`: R random sets of random windows from (other) videos.\n"
         "- `merge`: several clip-set files into one; `list`: the sets of a file as JSONL.",
    epilog="Examples:\n\n"
           "    vt-concepts spatiotemporal gt.jsonl --videos labels.jsonl --class ball --label right -o c.h5\n\n"
           "    vt-concepts spatial gt.jsonl --videos labels.jsonl --class ball --label right -o c.h5 --append\n\n"
           "    vt-concepts random --videos labels.jsonl --exclude-label right --sets 10 -o c.h5 --append\n\n"
           "    cat detections.jsonl | vt-concepts spatiotemporal - --videos labels.jsonl --class ball -o c.h5",
    single=False,
)


# --------------------------------------------------------------------------- shared options
# (declared once in vtcav_common/cli/options.py; these only give them this command's defaults and help)
def _out() -> Path:
    return opt.output(..., help="The clip-set HDF5 file to write (written atomically).")


def _videos(required: bool = False):
    return typer.Option(... if required else None, "--videos",
                        help="A labels manifest (labels.jsonl: video_id, path, label) or a folder of videos. "
                             "Without it, the detection records' own video paths are used.")


def _seed() -> int:
    return opt.seed()


def _frames() -> int:
    return opt.frames(16, help="Frames per clip (T).")


def _size() -> str:
    return opt.size("64", help="Clip size: H (square) or HxW, in pixels.")


def _stride() -> int:
    return opt.frame_stride(1, help="Source frames between clip frames. Sets in one file must share it.")


def _labels():
    return opt.labels(help="Only videos with this manifest label (repeatable).")


def _exclude():
    return typer.Option(None, "--exclude-label", help="Leave out videos with this label (repeatable).")


def _split():
    return opt.split(help="Only videos of this manifest split (e.g. train).")


def _append() -> bool:
    return typer.Option(False, "--append", help="Add the set(s) to OUT, keeping the sets it has.")


def _replace() -> bool:
    return typer.Option(False, "--replace", help="With --append or merge: a set of the same name is replaced.")


def _quiet() -> bool:
    return opt.quiet()


# --------------------------------------------------------------------------- commands
@app.command(epilog="Examples:\n\n"
             "    vt-concepts spatial gt.jsonl --videos labels.jsonl --class ball --label right -o c.h5\n\n"
             "    vt-concepts spatial dets.jsonl --videos videos/ --class person --min-conf 0.5 --max-clips 50 "
             "-o c.h5 --append")
def spatial(
    detections: str = typer.Argument(..., help="Detections JSONL, or - for standard input."),
    out: Path = _out(),
    videos: Optional[str] = _videos(),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="Object class name (repeatable)."),
    labels: Optional[List[str]] = _labels(),
    exclude: Optional[List[str]] = _exclude(),
    split: Optional[str] = _split(),
    min_track: int = typer.Option(1, "--min-track", min=1, help="Shortest track, in frames."),
    min_box: float = typer.Option(0.0, "--min-box", min=0, help="Smallest box side, in pixels."),
    min_conf: float = typer.Option(0.0, "--min-conf", min=0, max=1, help="Lowest detection confidence."),
    max_gap: int = typer.Option(8, "--max-gap", min=0, help="A track lost for more frames is split in two."),
    per_track: int = typer.Option(1, "--clips-per-track", min=1,
                                  help="Clips per track, from frames spread along it."),
    max_clips: Optional[int] = typer.Option(None, "--max-clips", min=1,
                                            help="At most this many clips (a seeded random subset)."),
    context: float = typer.Option(DEFAULT_CONTEXT, "--context", min=1.0,
                                  help="Window side / object side: how much surrounding is kept."),
    frames: int = _frames(),
    size: str = _size(),
    stride: int = _stride(),
    seed: int = _seed(),
    name: Optional[str] = typer.Option(None, "--name", help="The set's name (default e.g. ball_right_spatial)."),
    append: bool = _append(),
    replace: bool = _replace(),
    shard: Optional[str] = opt.shard(),
    quiet: bool = _quiet(),
    version: bool = frame.version_option(),
) -> None:
    """**Static** concept clips: one frame's crop of an object (a square window with context,
    clipped to the frame, resized to H x W), repeated over the T frames."""
    messages.set_quiet(quiet)
    options = ObjectOptions(detections, videos, classes, labels, exclude, split, min_conf, min_box, max_gap,
                            frames, size, stride)
    name = name or default_name("spatial", classes, labels, exclude)
    clipsets.check_set_name(name)
    plans, stats = plan_spatial(options.tracks(), name, options.sampling, per_track, min_track)
    plans = limit(plans, max_clips, np.random.default_rng(seed), stats)
    plans, part = sharding.shard_plans(plans, sharding.parse_shard(shard), append)
    provenance = options.provenance(seed=seed, min_track=min_track, clips_per_track=per_track,
                                    max_clips=max_clips, context=context, geometry="static")
    if part is not None:   # this shard's block of clips (vtcav_common.scale.shard); vt-merge joins the blocks
        provenance["shard"] = part
    write_concept(out, options, plans, stats, name, "spatial", "static",
                   f"static crops of {options.describe()}", provenance, append, replace, context)


@app.command(epilog="Examples:\n\n"
             "    vt-concepts spatiotemporal gt.jsonl --videos labels.jsonl --class ball --label right -o c.h5\n\n"
             "    cat dets.jsonl | vt-concepts spatiotemporal - --videos labels.jsonl --class ball "
             "--geometry follow --name ball_follow -o c.h5 --append\n\n"
             "    vt-concepts spatiotemporal dets.jsonl --videos labels.jsonl --class racket --frames 16 "
             "--frame-stride 2 --size 112 -o tennis.h5")
def spatiotemporal(
    detections: str = typer.Argument(..., help="Detections JSONL, or - for standard input."),
    out: Path = _out(),
    videos: Optional[str] = _videos(),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="Object class name (repeatable)."),
    labels: Optional[List[str]] = _labels(),
    exclude: Optional[List[str]] = _exclude(),
    split: Optional[str] = _split(),
    geometry: str = typer.Option("window", "--geometry", help=geometry_help()),
    min_track: Optional[int] = typer.Option(None, "--min-track", min=1,
                                            help="Shortest track, in frames (default: the clip's span, "
                                                 "(T-1) x stride + 1; shorter tracks are stretched)."),
    min_box: float = typer.Option(0.0, "--min-box", min=0, help="Smallest box side, in pixels."),
    min_conf: float = typer.Option(0.0, "--min-conf", min=0, max=1, help="Lowest detection confidence."),
    max_gap: int = typer.Option(8, "--max-gap", min=0,
                                help="Gaps up to this many frames are filled by linear interpolation; "
                                     "a longer gap splits the track."),
    per_track: int = typer.Option(1, "--clips-per-track", min=1,
                                  help="Clips per track, with start frames spread along it."),
    max_clips: Optional[int] = typer.Option(None, "--max-clips", min=1,
                                            help="At most this many clips (a seeded random subset)."),
    context: float = typer.Option(DEFAULT_CONTEXT, "--context", min=1.0,
                                  help="Window side / object (or union) side: how much surrounding is kept."),
    frames: int = _frames(),
    size: str = _size(),
    stride: int = _stride(),
    seed: int = _seed(),
    name: Optional[str] = typer.Option(None, "--name",
                                       help="The set's name (default e.g. ball_right_spatiotemporal)."),
    append: bool = _append(),
    replace: bool = _replace(),
    shard: Optional[str] = opt.shard(),
    quiet: bool = _quiet(),
    version: bool = frame.version_option(),
) -> None:
    """**Dynamic** concept clips: the same object along its track over T frames, `--frame-stride`
    apart. Use the default `--geometry window` for motion concepts: with `follow` the crop moves
    with the object, which then looks static while the background slides the opposite way."""
    messages.set_quiet(quiet)
    if geometry not in track_geometries():
        raise UsageError(f"--geometry must be {' or '.join(track_geometries())}, got '{geometry}'")
    options = ObjectOptions(detections, videos, classes, labels, exclude, split, min_conf, min_box, max_gap,
                            frames, size, stride)
    name = name or default_name("spatiotemporal", classes, labels, exclude)
    clipsets.check_set_name(name)
    tracks = options.tracks()
    if all(track.track_id < 0 for track in tracks):
        raise VtcavError(f"{files.display_name(detections)}: the detections of {options.describe()} have no "
                         f"track ids, and spatiotemporal clips follow tracks (run vt-detect with a tracker)")
    plans, stats = plan_spatiotemporal(tracks, name, options.sampling, geometry, per_track, min_track)
    plans = limit(plans, max_clips, np.random.default_rng(seed), stats)
    plans, part = sharding.shard_plans(plans, sharding.parse_shard(shard), append)
    provenance = options.provenance(seed=seed, min_track=min_track, clips_per_track=per_track,
                                    max_clips=max_clips, context=context, geometry=geometry)
    if part is not None:   # this shard's block of clips (vtcav_common.scale.shard); vt-merge joins the blocks
        provenance["shard"] = part
    write_concept(out, options, plans, stats, name, "spatiotemporal", geometry,
                   f"{options.describe()} along its track ({geometry} geometry)", provenance,
                   append, replace, context)


@app.command(epilog="Examples:\n\n"
             "    vt-concepts random --videos labels.jsonl --exclude-label right --sets 10 --clips-per-set 50 "
             "-o c.h5 --append\n\n"
             "    vt-concepts random --videos other_videos/ --prefix rand -o random.h5")
def random(
    out: Path = _out(),
    videos: str = _videos(required=True),
    labels: Optional[List[str]] = _labels(),
    exclude: Optional[List[str]] = _exclude(),
    split: Optional[str] = _split(),
    sets: int = typer.Option(10, "--sets", "-R", min=1, help="How many random sets (R)."),
    per_set: int = typer.Option(50, "--clips-per-set", min=1, help="Clips in each random set."),
    min_window: float = typer.Option(RANDOM_MIN_FRACTION, "--min-window", min=0.05, max=1.0,
                                     help="Smallest window side, as a fraction of the frame's shorter side."),
    frames: int = _frames(),
    size: str = _size(),
    stride: int = _stride(),
    seed: int = _seed(),
    prefix: str = typer.Option("random", "--prefix", help="Set names are PREFIX_00, PREFIX_01, ..."),
    role: str = typer.Option("random", "--role",
                             help="random: the sets CAVs are tested against; concept: null concepts (random "
                                  "clips handed in as concepts, to measure the false-positive rate; use another "
                                  "--prefix and --seed than the random sets)."),
    append: bool = _append(),
    replace: bool = _replace(),
    shard: Optional[str] = opt.shard(),
    quiet: bool = _quiet(),
    version: bool = frame.version_option(),
) -> None:
    """**Random** sets: R independent sets of clips, each a random window (random size and position)
    at a random start frame of a random video (optionally only videos of some labels, or not of
    the target's, e.g. `--exclude-label right`). No clip is drawn twice. Use the same `--frames`,
    `--size` and `--frame-stride` as the concepts they are tested against."""
    messages.set_quiet(quiet)
    if role not in ("random", "concept"):
        raise errors.UsageError(f"--role is 'random' or 'concept', got '{role}'")
    write_random_sets(out, videos, labels, exclude, split, sets, per_set, min_window,
                      Sampling(frames, parse_size(size), stride), seed, prefix, role, append, replace,
                      cut=lambda plans: sharding.shard_plans(plans, sharding.parse_shard(shard), append))


@app.command(epilog="Example:\n\n    vt-concepts merge ball.h5 square.h5 random.h5 -o concepts.h5")
def merge(
    inputs: List[Path] = typer.Argument(..., help="Clip-set files to combine (same sampling)."),
    out: Path = _out(),
    replace: bool = _replace(),
    quiet: bool = _quiet(),
    version: bool = frame.version_option(),
) -> None:
    """Combine the sets of several clip-set files into one. Files with different T, H x W or
    frame stride are refused; a set name found twice is refused unless `--replace`."""
    messages.set_quiet(quiet)
    names = clipsets.merge_files(inputs, out, TOOL, replace=replace)
    messages.info(f"{TOOL}: merged {len(names)} sets from {len(inputs)} files -> {out}")


@app.command(name="list", epilog="Example:\n\n    vt-concepts list concepts.h5 | jq -r .name")
def list_(
    path: Path = typer.Argument(..., help="A clip-set HDF5 file."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Only these sets: names or patterns such as "
                                                                 "'random_*' (repeatable)."),
    version: bool = frame.version_option(),
) -> None:
    """The sets of a clip-set file, one JSON record a line on stdout (name, kind, role, n, T, H, W, ...)."""
    from vtcav_common.core import selection

    infos = clipsets.list_sets(path)
    chosen = set(selection.select([i.name for i in infos], sets, "set", str(path)))
    for info in (i for i in infos if i.name in chosen):
        sys.stdout.write(json.dumps(info.to_record(), separators=(",", ":")) + "\n")


from tools import vt_concepts_curate  # noqa: E402  (import, review: in a module of their own)

vt_concepts_curate.register(app)
from tools import vt_concepts_twins  # noqa: E402  (twins: in a module of its own)

vt_concepts_twins.register(app)
main = frame.entry(app, TOOL)
