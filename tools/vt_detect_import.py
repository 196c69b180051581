"""vt-detect import: tracks from other tools (MOTChallenge, TAO / YouTube-VIS, yolo save_txt, and
any format an installed package registers) as detection JSONL, and mmaction2 list files as a
labels manifest.

Registered on vt-detect's app by :func:`register`, so it is ``vt-detect import``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.core import files, messages
from vtcav_common.cli import frame, options
from vtcav_common.core.errors import UsageError
from vtcav_common.core.registry import UnknownName
from vtcav_common.detect.imports import (DETECTION_FORMATS, ImportSettings, import_detections,
                                               read_class_names)
from vtcav_common.formats.records import write_records

PROG = "vt-detect import"


def formats() -> tuple[str, ...]:
    """What --format takes: auto, the detection formats' registry (installed packages' too), mmaction."""
    return ("auto", *DETECTION_FORMATS, "mmaction")


FORMATS = formats()   # for --help

HELP = ("Convert tracks or boxes made by other tools into vtcav's detection JSONL (the records "
        "vt-detect writes, ready for vt-concepts), or an mmaction2 list file into a labels manifest.\n\n"
        "- `mot`: MOTChallenge `gt.txt` / `det.txt` (frame,id,x,y,w,h,conf,class,visibility), or a "
        "sequence folder (its `seqinfo.ini` gives the name and frame rate). Ground-truth rows with conf 0 "
        "(ignored by the benchmark) are left out unless `--keep-ignored`.\n"
        "- `coco`: COCO-style video annotations as TAO and YouTube-VIS write them (videos, tracks, "
        "per-frame boxes, categories).\n"
        "- `yolo`: the `labels/<video>_<frame>.txt` files of `yolo track save_txt=True` "
        "(class cx cy w h [conf] [id], normalised); give the run folder or its labels folder.\n"
        "- `mmaction`: a list file of `path label` lines and `--class-names` (e.g. label_map_k400.txt) "
        "-> labels.jsonl (video_id, path, label, split).\n\n"
        "The format is recognised from the file unless named (first argument or `--format`). What the "
        "video knows (frame size, frame rate, frame count, its id) is read from it: each annotated video "
        "is found by `--video FILE` (one video), `--videos` (a folder of videos named after the ids, or a "
        "labels manifest), or a video named after the id beside the annotations. Frames become 0-based "
        "and `time` = frame / fps; boxes are clipped to the frame.")
EPILOG = ("Examples:\n\n"
          "    vt-detect import mot MOT17-02/gt/gt.txt --video MOT17-02.mp4 -o dets.jsonl\n\n"
          "    vt-detect import tao_val.json --videos videos/ --min-conf 0.3 -o dets.jsonl\n\n"
          "    vt-detect import yolo runs/detect/track --videos clips/ --class-names data.yaml "
          "| vt-concepts spatiotemporal - --class ball -o c.h5\n\n"
          "    vt-detect import mmaction kinetics400_val_list_videos.txt --class-names label_map_k400.txt "
          "--data-prefix data/kinetics400/videos_val -o labels.jsonl")


def import_command(
    inputs: List[str] = typer.Argument(..., metavar="[FORMAT] FILE...",
                                       help="Annotation files or folders; an optional first word names the "
                                            f"format ({', '.join(FORMATS[1:])})."),
    output: str = options.output("-", help="JSONL to write (atomically); - for stdout."),
    fmt: str = typer.Option("auto", "--format", "-f", help=f"One of {', '.join(FORMATS)}."),
    video: Optional[str] = typer.Option(None, "--video", help="The video the annotations are of (one video)."),
    videos: Optional[str] = typer.Option(None, "--videos", help="A folder of videos named after the ids, or a "
                                                                "labels manifest (by video_id)."),
    class_names: Optional[str] = typer.Option(None, "--class-names",
                                              help="Class names: one a line (line 1 = class 0; for MOT line 1 "
                                                   "= class 1), or a YOLO data YAML's names."),
    min_conf: float = typer.Option(0.0, "--min-conf", min=0.0, max=1.0, help="Leave out less confident boxes."),
    min_visibility: float = typer.Option(0.0, "--min-visibility", min=0.0, max=1.0,
                                         help="MOT: leave out boxes less visible than this."),
    keep_ignored: bool = typer.Option(False, "--keep-ignored", help="MOT gt: keep rows marked conf 0."),
    data_prefix: Optional[str] = typer.Option(None, "--data-prefix",
                                              help="mmaction: the folder the list's paths are relative to "
                                                   "(default: the list file's folder)."),
    split: Optional[str] = typer.Option(None, "--split", help="mmaction: the split to record (default: from "
                                                              "the file name, train/val/test, else all)."),
    quiet: bool = options.quiet(help="No summary on stderr."),
    version: bool = frame.version_option(),
) -> None:
    messages.set_quiet(quiet)
    known = formats()
    if inputs[0].lower() in known and not Path(inputs[0]).exists():
        if len(inputs) == 1:
            raise UsageError(f"format '{inputs[0]}' but no file to import")
        fmt, inputs = inputs[0].lower(), inputs[1:]
    if fmt not in known:
        raise UnknownName(f"unknown format '{fmt}'; choose from {', '.join(known)}")
    names = read_class_names(class_names) if class_names else ()
    if fmt == "mmaction":
        _manifest(inputs, names, data_prefix, split, output)
        return
    settings = ImportSettings(video=video, videos=videos, class_names=names, min_visibility=min_visibility,
                              keep_ignored=keep_ignored, min_conf=min_conf)
    seen: set[str] = set()
    with files.open_text_output(output) as out:
        count = write_records(_counting(import_detections(inputs, fmt, settings), seen), out)
    messages.info(f"{PROG}: {count} detections of {len(seen)} video(s) -> {files.display_name(output)}")


def _counting(records, seen: set):
    for record in records:
        seen.add(record.video_id)
        yield record


def _manifest(inputs: list[str], names: tuple, data_prefix: str | None, split: str | None, output: str) -> None:
    from vtcav_common.formats.mmaction import mmaction_manifest

    if not names:
        raise UsageError("mmaction lists name classes by index: give --class-names (one name a line)")
    records = [r for path in inputs for r in mmaction_manifest(path, names, data_prefix, split)]
    ids = [r["video_id"] for r in records]
    if len(set(ids)) != len(ids):
        raise UsageError("the same video id comes from two list files; import them into separate manifests")
    with files.open_text_output(output) as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    labels = sorted({r["label"] for r in records})
    messages.info(f"{PROG}: {len(records)} videos, {len(labels)} labels -> {files.display_name(output)}")


def register(app: typer.Typer) -> None:
    """Add ``import`` to vt-detect's app (its own help and examples)."""
    app.command(name="import", help=HELP, epilog=EPILOG)(import_command)
