"""vt-explain: relevance maps of a video model (Grad-CAM, gradients) and their motion-selective part."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.cli import frame
from vtcav_common.core import errors, files, messages
from vtcav_common.cli import options
from vtcav_common.explain.methods import METHODS, check_method
from vtcav_common.scale import shard as sharding

# For --help only: overlay.FORMATS checks the value in main_command; importing it here would load
# cv2 before --help or --version could answer. (The methods' registry is light: no torch.)
FORMATS = ("gif", "mp4")

# FFmpeg's own log lines (e.g. "moov atom not found") would break the one-line error; the
# error raised for a bad video already names the file. Set OPENCV_FFMPEG_LOGLEVEL to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

app = frame.make_app(
    "vt-explain",
    help="Explain a video classifier's decision with **relevance maps over T x H x W**: Grad-CAM at a "
         "layer (`--method gradcam --layer NAME`), plain input gradients (`gradient`) or gradient x input "
         "(`gradxinput`), or captum's integrated gradients, DeepLIFT, guided backprop, guided Grad-CAM, "
         "occlusion, SmoothGrad and LRP (`--method integrated_gradients` ...), at the model's own input "
         "sampling. `--selective SIGMA` adds the "
         "**selective-relevance** map (Hiley et al. 2020): the relevance kept only where a 3x3x3 temporal "
         "Sobel filter of the map exceeds SIGMA standard deviations, i.e. the relevance that changes with "
         "motion. Prints one JSON record per video (target, prediction, and the **share of relevance on "
         "moving pixels** for the plain and the selective map), writes the maps to `-o maps.h5` and "
         "pictures (PNG strip + overlay GIF/mp4) to `--pictures DIR`. See docs/explain.md.",
    epilog="Examples:\n\n"
           "    vt-explain world/labels.jsonl --split test --label right --weights weights/classifier.pt "
           "--layer block1 --selective 1 -o maps.h5 --pictures pics/\n\n"
           "    vt-explain clip.mp4 --model r3d_18 --weights r3d_18.pth --target 'playing tennis' "
           "--layer layer4 --pictures pics/ > records.jsonl\n\n"
           "    vt-explain world/labels.jsonl --split test --weights weights/classifier.pt --method gradient "
           "--selective 1 --gt world/gt.jsonl | jq .motion_share\n\n"
           "    vt-explain clip.mp4 --model mvit_v2_s --weights mvit.pth --layer blocks.14 --selective 2\n\n"
           "Models as for vt-embed: a torchvision video architecture with a local state dict, "
           "`package.module:factory`, a TorchScript/.pt2 file, `mmaction:CONFIG`; see docs/models.md.",
)


def _grid(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise errors.UsageError(f"--grid takes three positive integers T,H,W (tokens per axis), got '{text}'")
    return values


@app.command()
def main_command(
    inputs: List[str] = typer.Argument(..., help="Video files, folders of videos, or labels manifests "
                                                 "(.jsonl, '-' for stdin)."),
    output: Optional[Path] = options.output(None, help="Relevance HDF5 to write (maps per video)."),
    pictures: Optional[Path] = typer.Option(None, "--pictures", help="Folder for <video_id>.png strips and "
                                                                     "overlay videos."),
    model: Optional[str] = options.model(),
    weights: Optional[str] = options.weights(),
    method: str = typer.Option("gradcam", "--method", help=f"Relevance method: {METHODS.choices()}."),
    layer: Optional[str] = typer.Option(None, "--layer", "-l",
                                        help="Grad-CAM (and guided Grad-CAM) layer (default: the deepest usual "
                                             "layer with a C x T x H x W output; see vt-embed --list-layers)."),
    grid: Optional[str] = typer.Option(None, "--grid", help="Token layers: their T,H,W grid (when the block "
                                                            "does not return it)."),
    target: Optional[str] = typer.Option(None, "--target", "-t",
                                         help="Class (name or index) to explain; default: each video's "
                                              "predicted class."),
    selective: Optional[float] = typer.Option(None, "--selective", metavar="SIGMA",
                                              help="Also the selective map: keep relevance where the temporal "
                                                   "Sobel derivative exceeds SIGMA standard deviations."),
    motion_threshold: float = typer.Option(25.0, "--motion-threshold", min=0,
                                           help="Moving pixels: change to the previous or next frame above "
                                                "this many grey levels (largest over R, G, B)."),
    gt: Optional[str] = typer.Option(None, "--gt", help="Moving pixels from the boxes of records with "
                                                        "'moving: true' in this JSONL (e.g. vt-synth's "
                                                        "gt.jsonl) instead of frame differences."),
    labels: List[str] = options.labels(help="Manifest: only videos with this label (repeatable)."),
    split: Optional[str] = options.split(help="Manifest: only videos of this split."),
    picture_format: str = typer.Option("gif", "--picture-format", help=f"Overlay video: {' or '.join(FORMATS)}."),
    strip_frames: int = typer.Option(8, "--strip-frames", min=1, help="Frames in each PNG strip."),
    picture_scale: int = typer.Option(0, "--picture-scale", min=0,
                                      help="Enlarge pictures by this integer factor (0: automatic, so small "
                                           "frames are at least 128 pixels)."),
    device: str = options.device(),
    seed: int = options.seed(help="Random seed (recorded; the computation is deterministic)."),
    frames: Optional[int] = options.frames(help="Override the model's clip length."),
    size: Optional[str] = options.size(help="Override the model's frame size (square): H."),
    mean: Optional[str] = options.mean(),
    std: Optional[str] = options.std(),
    class_names: Optional[Path] = options.class_names(),
    trust_checkpoint: bool = options.trust_checkpoint(),
    shard: Optional[str] = options.shard(),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    part = sharding.parse_shard(shard)
    from vtcav_common.explain.overlay import FORMATS as formats
    from vtcav_common.explain import ExplainOptions, explain_videos, gather_videos

    check_method(method)   # an unknown name: a usage error listing the registry's methods
    if picture_format not in formats:
        raise errors.UsageError(f"--picture-format takes {' or '.join(formats)}, got '{picture_format}'")
    if output is not None and output.is_dir():
        raise errors.UsageError(f"-o {output}: is a directory; give the HDF5 file to write")
    if pictures is not None and pictures.exists() and not pictures.is_dir():
        raise errors.UsageError(f"--pictures {pictures}: exists and is not a folder")
    if gt is not None and not Path(gt).is_file():
        raise errors.UsageError(f"--gt {gt}: no such file")
    settings = ExplainOptions(method=method, layer=layer, grid=_grid(grid), target=target, sigma=selective,
                              motion_threshold=motion_threshold, gt=gt,
                              pictures=str(pictures) if pictures else None, picture_format=picture_format,
                              strip_frames=strip_frames, picture_scale=picture_scale, seed=seed)
    videos = gather_videos(inputs, labels, split)
    videos, shard_identity = sharding.take_block(part, videos)   # a contiguous block of the videos, in order
    loaded = options.load_model_options(model, weights, class_names, trust_checkpoint, device, frames, size, mean, std)
    with files.open_text_output(files.STDIO) as records:
        summary = explain_videos(loaded, videos, output, settings, records, shard=shard_identity)
    shares = summary["mean_share"]
    figures = ", ".join(f"{kind} {value:.3f}" for kind, value in shares.items() if value is not None)
    messages.info(f"vt-explain: {summary['videos']} videos, {method}"
             f"{' at ' + summary['layer'] if summary['layer'] else ''}; mean share of relevance on moving "
             f"pixels: {figures or 'n/a'}{' -> ' + str(output) if output else ''}")


main = frame.entry(app, "vt-explain")
