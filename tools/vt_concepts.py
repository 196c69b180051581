"""vt-concepts: concept clip sets (spatial, spatiotemporal, random) from detections and videos."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.cli import frame
from vtcav_common.cli import options as opt
from vtcav_common.cli.bundles import (BUNDLE, ClipSampling, SetWriting, VideoFilter, bundled, clip_sets_output,
                                      set_replace, source_videos)
from vtcav_common.concepts import DEFAULT_CONTEXT, RANDOM_MIN_FRACTION
from vtcav_common.concepts.geometry import geometry_help
from vtcav_common.concepts.mine import mine_objects, set_records, write_random_sets
from vtcav_common.core import messages
from vtcav_common.formats import clips as clipsets

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


# --------------------------------------------------------------------------- commands
@app.command(epilog="Examples:\n\n"
             "    vt-concepts spatial gt.jsonl --videos labels.jsonl --class ball --label right -o c.h5\n\n"
             "    vt-concepts spatial dets.jsonl --videos videos/ --class person --min-conf 0.5 --max-clips 50 "
             "-o c.h5 --append")
@bundled
def spatial(
    detections: str = typer.Argument(..., help="Detections JSONL, or - for standard input."),
    out: Path = clip_sets_output(),
    videos: Optional[str] = source_videos(),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="Object class name (repeatable)."),
    filters: VideoFilter = BUNDLE,
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
    sampling: ClipSampling = BUNDLE,
    name: Optional[str] = typer.Option(None, "--name", help="The set's name (default e.g. ball_right_spatial)."),
    writing: SetWriting = BUNDLE,
    quiet: bool = opt.quiet(),
    version: bool = frame.version_option(),
) -> None:
    """**Static** concept clips: one frame's crop of an object (a square window with context,
    clipped to the frame, resized to H x W), repeated over the T frames."""
    messages.set_quiet(quiet)
    mine_objects("spatial", detections, out, videos, classes, filters.labels, filters.exclude, filters.split,
                 geometry="static", min_track=min_track, min_box=min_box, min_conf=min_conf, max_gap=max_gap,
                 per_track=per_track, max_clips=max_clips, context=context, name=name, **vars(sampling),
                 append=writing.append, replace=writing.replace, cut=writing.cut)


@app.command(epilog="Examples:\n\n"
             "    vt-concepts spatiotemporal gt.jsonl --videos labels.jsonl --class ball --label right -o c.h5\n\n"
             "    cat dets.jsonl | vt-concepts spatiotemporal - --videos labels.jsonl --class ball "
             "--geometry follow --name ball_follow -o c.h5 --append\n\n"
             "    vt-concepts spatiotemporal dets.jsonl --videos labels.jsonl --class racket --frames 16 "
             "--frame-stride 2 --size 112 -o tennis.h5")
@bundled
def spatiotemporal(
    detections: str = typer.Argument(..., help="Detections JSONL, or - for standard input."),
    out: Path = clip_sets_output(),
    videos: Optional[str] = source_videos(),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="Object class name (repeatable)."),
    filters: VideoFilter = BUNDLE,
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
    sampling: ClipSampling = BUNDLE,
    name: Optional[str] = typer.Option(None, "--name",
                                       help="The set's name (default e.g. ball_right_spatiotemporal)."),
    writing: SetWriting = BUNDLE,
    quiet: bool = opt.quiet(),
    version: bool = frame.version_option(),
) -> None:
    """**Dynamic** concept clips: the same object along its track over T frames, `--frame-stride`
    apart. Use the default `--geometry window` for motion concepts: with `follow` the crop moves
    with the object, which then looks static while the background slides the opposite way."""
    messages.set_quiet(quiet)
    mine_objects("spatiotemporal", detections, out, videos, classes, filters.labels, filters.exclude,
                 filters.split, geometry=geometry, min_track=min_track, min_box=min_box, min_conf=min_conf,
                 max_gap=max_gap, per_track=per_track, max_clips=max_clips, context=context, name=name,
                 **vars(sampling), append=writing.append, replace=writing.replace, cut=writing.cut)


@app.command(epilog="Examples:\n\n"
             "    vt-concepts random --videos labels.jsonl --exclude-label right --sets 10 --clips-per-set 50 "
             "-o c.h5 --append\n\n"
             "    vt-concepts random --videos other_videos/ --prefix rand -o random.h5")
@bundled
def random(
    out: Path = clip_sets_output(),
    videos: str = source_videos(required=True),
    filters: VideoFilter = BUNDLE,
    sets: int = typer.Option(10, "--sets", "-R", min=1, help="How many random sets (R)."),
    per_set: int = typer.Option(50, "--clips-per-set", min=1, help="Clips in each random set."),
    min_window: float = typer.Option(RANDOM_MIN_FRACTION, "--min-window", min=0.05, max=1.0,
                                     help="Smallest window side, as a fraction of the frame's shorter side."),
    sampling: ClipSampling = BUNDLE,
    prefix: str = typer.Option("random", "--prefix", help="Set names are PREFIX_00, PREFIX_01, ..."),
    role: str = typer.Option("random", "--role",
                             help="random: the sets CAVs are tested against; concept: null concepts (random "
                                  "clips handed in as concepts, to measure the false-positive rate; use another "
                                  "--prefix and --seed than the random sets)."),
    writing: SetWriting = BUNDLE,
    quiet: bool = opt.quiet(),
    version: bool = frame.version_option(),
) -> None:
    """**Random** sets: R independent sets of clips, each a random window (random size and position)
    at a random start frame of a random video (optionally only videos of some labels, or not of
    the target's, e.g. `--exclude-label right`). No clip is drawn twice. Use the same `--frames`,
    `--size` and `--frame-stride` as the concepts they are tested against."""
    messages.set_quiet(quiet)
    write_random_sets(out, videos, filters.labels, filters.exclude, filters.split, sets, per_set, min_window,
                      sampling.frames, sampling.size, sampling.stride, sampling.seed, prefix, role, writing.append,
                      writing.replace, cut=writing.cut)


@app.command(epilog="Example:\n\n    vt-concepts merge ball.h5 square.h5 random.h5 -o concepts.h5")
def merge(
    inputs: List[Path] = typer.Argument(..., help="Clip-set files to combine (same sampling)."),
    out: Path = clip_sets_output(),
    replace: bool = set_replace(),
    quiet: bool = opt.quiet(),
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
    for record in set_records(path, sets):
        sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")


from tools import vt_concepts_curate  # noqa: E402  (import, review: in a module of their own)

vt_concepts_curate.register(app)
from tools import vt_concepts_twins  # noqa: E402  (twins: in a module of its own)

vt_concepts_twins.register(app)
main = frame.entry(app, TOOL)
