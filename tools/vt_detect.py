"""vt-detect: objects and their tracks in videos, as detection JSONL records."""

from __future__ import annotations

import time
from typing import Optional

import typer

from vtcav_common.core import files, messages
from vtcav_common.cli import frame, options
from vtcav_common.scale import shard as sharding
from vtcav_common.detect import TRACKERS, DetectSettings, Detector, collect_sources, detect_videos

app = frame.make_app(
    "vt-detect",
    help="Detect (and track) objects in videos with an ultralytics detector from a local weights "
         "file, and write one JSONL detection record per object per frame: `video_id`, `video`, "
         "`frame`, `time`, `track_id`, `class_id`, `class_name`, `conf`, `box` [x1, y1, x2, y2] in "
         "pixels of the original frame.\n\n"
         "Inputs are video files, folders of videos, or a labels manifest (`.jsonl`, as vt-synth "
         "writes it). `video_id` comes from the manifest, otherwise it is the file's stem; `video` "
         "is the video's **absolute path**, so a later tool reading the records from a pipe can "
         "open it.\n\n"
         "With a tracker (ByteTrack by default, or BoT-SORT) only objects on confirmed tracks are "
         "written, with the detector's own box; every video starts a fresh tracker, so track ids "
         "restart at 1 in each video. `--tracker none` writes every detection with `track_id` null.\n\n"
         "Every input is checked before any record is written: a missing, empty or corrupt video "
         "stops the run with an error naming it. A video with no detection at all is an error too "
         "(exit 1, and `-o FILE` is not written) unless `--allow-empty`, which only warns.",
    epilog="Examples:\n\n"
           "    vt-detect --detector weights/detector.pt world/labels.jsonl -o world/detections.jsonl\n\n"
           "    vt-detect --detector weights/detector.pt world/labels.jsonl | vt-concepts spatiotemporal - "
           "--videos world/labels.jsonl --class ball -o concepts.h5\n\n"
           "    vt-detect --detector weights/detector.pt world/videos/test_up_10000.mp4 --classes ball "
           "--frame-stride 2 | head\n\n"
           "    vt-detect --detector yolov8s.pt videos/ --tracker botsort --imgsz 640 --device cuda:0 -o dets.jsonl",
)


@app.command()
def detect(
    inputs: list[str] = typer.Argument(..., help="Video files, folders of videos, or a labels manifest (.jsonl).",
                                       show_default=False),
    model: str = options.detector(),
    output: str = options.output("-", help="Output JSONL file, written atomically; - for stdout."),
    tracker: str = typer.Option("bytetrack", "--tracker", help=f"Tracker: {', '.join(TRACKERS)}."),
    stride: int = options.frame_stride(help="Use every Nth frame (frame numbers stay those of the video)."),
    conf: float = typer.Option(0.25, "--conf", min=0.0, max=1.0, help="Minimum detection confidence."),
    iou: float = typer.Option(0.7, "--iou", min=0.0, max=1.0, help="IoU threshold of non-maximum suppression."),
    classes: str | None = typer.Option(None, "--classes", help="Keep only these class names, comma-separated "
                                                        "(e.g. ball,square); default: every class."),
    batch: int = options.batch_size(16, help="Frames per detector forward pass (tracking stays frame by frame)."),
    imgsz: int | None = typer.Option(None, "--imgsz", min=32,
                                     help="Detector input size; default: the size the model was trained at."),
    device: str = options.device(),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="A video with no detection only warns "
                                                                  "(default: it is an error, exit 1)."),
    shard: Optional[str] = options.shard(),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    device = options.resolve_device_name(device)
    settings = DetectSettings(conf=conf, iou=iou, imgsz=imgsz, device=device, batch=batch, stride=stride,
                              tracker=tracker.lower(), classes=classes)
    sources = collect_sources(inputs)
    part = sharding.parse_shard(shard)
    sharding.require_file_output(part, output)
    sources, identity = sharding.take_block(part, sources)  # a block of the videos; FILE.shard.json says which
    detector = Detector.load(model, settings)

    started = time.perf_counter()
    with files.open_text_output(output) as out:
        total = detect_videos(detector, sources, out, allow_empty)
    if part is not None:
        sharding.write_sidecar(output, "detections", "vt-detect",
                               sharding.detect_provenance(model, settings, inputs), identity)
    else:
        sharding.drop_sidecar(output)
    seconds = time.perf_counter() - started
    messages.info(f"vt-detect: {total} detections in {len(sources)} video(s), {detector.frames_done} frames, "
             f"{detector.frames_done / max(seconds, 1e-9):.0f} frames/s")


from tools import vt_detect_import  # noqa: E402  (import: in a module of its own)

vt_detect_import.register(app)   # vt-detect import ...; vt-detect [OPTIONS] INPUT... stays the tool itself
main = frame.entry(app, "vt-detect")
