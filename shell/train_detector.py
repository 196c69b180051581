#!/usr/bin/env python
"""Train the project's tiny object detector on frames of the synthetic motion world.

    .venv/bin/python shell/train_detector.py --out weights/detector.pt --seed 0

Frames and YOLO-format labels (classes ``ball``, ``square``, ``triangle`` = index in
``synth.OBJECT_KINDS``) are rendered into a temporary folder, passed through the same
mp4 codec vt-synth uses (so the detector sees the compression artefacts it will meet),
and a small YOLOv8 (reduced width and depth, well under 1 MB) is trained on the CPU at
64 pixels.  The script prints the mAP50 on held-out frames and writes the stripped
checkpoint (loadable offline with ``YOLO(path)``) plus ``<out>.json`` with its provenance.

The videos are rendered from indices 50 000 and up, which no ``vt-synth`` world of a
realistic size uses, so the detector has never seen the videos it is later run on.
Everything ultralytics writes (settings, runs) goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vtcav_common import detect  # noqa: E402  (sets the ultralytics environment first)
from vtcav_common.core.files import atomic_path  # noqa: E402
from vtcav_common.models.base import file_sha256  # noqa: E402
from vtcav_common.synth import CLASSES, OBJECT_KINDS, WorldSpec, render_video  # noqa: E402
from vtcav_common.core.video import read_video, write_video  # noqa: E402

TRAIN_INDEX_START = 50_000
VAL_INDEX_START = 60_000

# YOLOv8's layout with far fewer channels (yolov8n starts at 16 and ends at 256) and a
# third of its depth: plenty for three flat-coloured shapes at 64 px, and under 1 MB.
ARCHITECTURE = """\
nc: {nc}
depth_multiple: 0.33
width_multiple: 1.0
backbone:
  - [-1, 1, Conv, [16, 3, 2]]       # 0 P1/2
  - [-1, 1, Conv, [32, 3, 2]]       # 1 P2/4
  - [-1, 3, C2f, [32, True]]
  - [-1, 1, Conv, [64, 3, 2]]       # 3 P3/8
  - [-1, 6, C2f, [64, True]]
  - [-1, 1, Conv, [64, 3, 2]]       # 5 P4/16
  - [-1, 6, C2f, [64, True]]
  - [-1, 1, Conv, [64, 3, 2]]       # 7 P5/32
  - [-1, 3, C2f, [64, True]]
  - [-1, 1, SPPF, [64, 5]]          # 9
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 3, C2f, [64]]              # 12
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 3, C2f, [32]]              # 15 (P3/8)
  - [-1, 1, Conv, [32, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 3, C2f, [64]]              # 18 (P4/16)
  - [-1, 1, Conv, [64, 3, 2]]
  - [[-1, 9], 1, Concat, [1]]
  - [-1, 3, C2f, [64]]              # 21 (P5/32)
  - [[15, 18, 21], 1, Detect, [nc]]
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "weights" / "detector.pt", help="weights to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendered world and of training")
    parser.add_argument("--train-videos", type=int, default=60, help="training videos per class")
    parser.add_argument("--val-videos", type=int, default=10, help="held-out videos per class")
    parser.add_argument("--frames-per-video", type=int, default=4, help="frames sampled from each video")
    parser.add_argument("--backgrounds", type=float, default=0.05,
                        help="extra object-free frames, as a share of the training frames")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0,
                        help="data-loading processes (seeded per worker by ultralytics, so still deterministic)")
    parser.add_argument("--verbose", action="store_true", help="show ultralytics' training log")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- data
def yolo_label_lines(objects: list[dict], frame: int, size: int) -> list[str]:
    """One ``class cx cy w h`` line (normalised) per object visible in ``frame``."""
    lines = []
    for obj in objects:
        x1, y1, x2, y2 = np.clip(obj["boxes"][frame], 0, size)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        cls = OBJECT_KINDS.index(obj["kind"])
        lines.append(f"{cls} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
                     f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}")
    return lines


def through_codec(frames: np.ndarray, scratch: Path, fps: float) -> np.ndarray:
    """The frames as vt-synth's mp4 files will give them back (lossy codec included)."""
    path = scratch / "clip.mp4"
    write_video(path, frames, fps)
    return read_video(path)


def write_split(root: Path, split: str, seed: int, first_index: int, per_class: int,
                frames_per_video: int, backgrounds: float, spec: WorldSpec) -> int:
    """Render ``per_class`` videos of each class, keep a few frames each; return the count."""
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng([seed, first_index])
    count = 0
    for i in range(per_class):
        for label in CLASSES:
            rendered = render_video(seed, first_index + i, label, spec)
            frames = through_codec(rendered.frames, root, spec.fps)
            for t in sorted(rng.choice(len(frames), size=frames_per_video, replace=False)):
                name = f"{label}_{first_index + i}_{t:02d}"
                cv2.imwrite(str(images / f"{name}.png"), cv2.cvtColor(frames[t], cv2.COLOR_RGB2BGR))
                (labels / f"{name}.txt").write_text("\n".join(yolo_label_lines(rendered.objects, t, spec.size)))
                count += 1
    count += write_backgrounds(images, labels, rng, int(round(backgrounds * count)), spec.size)
    return count


def write_backgrounds(images: Path, labels: Path, rng: np.random.Generator, n: int, size: int) -> int:
    """Frames with no object (flat or smoothly varying grey and colour), so empty scenes stay empty."""
    for k in range(n):
        base = rng.uniform(40, 220, 3)
        ramp = np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-30, 30, 3)
        image = np.clip(base + ramp + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(images / f"background_{k:04d}.png"), image)
        (labels / f"background_{k:04d}.txt").write_text("")
    return n


# --------------------------------------------------------------------------- training
def train(args: argparse.Namespace, work: Path) -> tuple[Path, dict]:
    from ultralytics import YOLO

    spec = WorldSpec()
    started = time.perf_counter()
    n_train = write_split(work, "train", args.seed, TRAIN_INDEX_START, args.train_videos,
                          args.frames_per_video, args.backgrounds, spec)
    n_val = write_split(work, "val", args.seed, VAL_INDEX_START, args.val_videos,
                        args.frames_per_video, 0.0, spec)
    data = work / "data.yaml"
    data.write_text(json.dumps({"path": str(work), "train": "images/train", "val": "images/val",
                                "names": dict(enumerate(OBJECT_KINDS))}))
    architecture = work / "tiny-yolov8.yaml"
    architecture.write_text(ARCHITECTURE.format(nc=len(OBJECT_KINDS)))
    rendered_s = time.perf_counter() - started
    print(f"rendered {n_train} training and {n_val} held-out frames in {rendered_s:.1f} s", file=sys.stderr)

    model = YOLO(str(architecture), task="detect")
    started = time.perf_counter()
    model.train(data=str(data), imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, device="cpu",
                workers=args.workers, seed=args.seed, deterministic=True, amp=False, plots=False, cache=False,
                project=str(work / "runs"), name="train", exist_ok=True, verbose=args.verbose,
                patience=args.epochs, close_mosaic=max(1, args.epochs // 5), fliplr=0.5, mosaic=1.0,
                scale=0.3, translate=0.1, hsv_h=0.01, val=True)
    train_s = time.perf_counter() - started
    best = work / "runs" / "train" / "weights" / "best.pt"
    facts = {"train_frames": n_train, "val_frames": n_val, "render_seconds": round(rendered_s, 1),
             "train_seconds": round(train_s, 1), "data": str(data)}
    return best, facts


def evaluate(weights: Path, data: str, imgsz: int) -> dict:
    """mAP on the held-out frames, from the saved (stripped, fp16) checkpoint itself."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(data=data, imgsz=imgsz, batch=32, device="cpu", plots=False,
                                     workers=0, verbose=False, split="val",
                                     project=str(Path(data).parent / "runs"), name="val", exist_ok=True)
    per_class = {OBJECT_KINDS[int(c)]: round(float(ap), 4)
                 for c, ap in zip(metrics.box.ap_class_index, metrics.box.ap50)}
    return {"map50": round(float(metrics.box.map50), 4), "map50_95": round(float(metrics.box.map), 4),
            "ap50_per_class": per_class}


def save(best: Path, out: Path, provenance: dict) -> None:
    """The stripped checkpoint, without the temporary paths of this run, written atomically."""
    import torch
    from ultralytics.utils.torch_utils import strip_optimizer

    with atomic_path(out) as tmp:
        checkpoint = torch.load(best, map_location="cpu", weights_only=False)
        train_args = dict(checkpoint.get("train_args") or {})
        for key in ("data", "project", "save_dir", "model"):
            train_args.pop(key, None)
        strip_optimizer(best, str(tmp), updates={"date": None, "train_args": train_args,
                                                 "vtcav": provenance})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import ultralytics

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    detect.route_ultralytics_logs(logging.INFO if args.verbose else logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="vtcav-detector-") as scratch:
        work = Path(scratch)
        best, facts = train(args, work)
        provenance = {"script": "shell/train_detector.py", "seed": args.seed,
                      "world": "vtcav_common.synth default WorldSpec",
                      "train_indices": [TRAIN_INDEX_START, TRAIN_INDEX_START + args.train_videos],
                      "val_indices": [VAL_INDEX_START, VAL_INDEX_START + args.val_videos],
                      "frames_per_video": args.frames_per_video, "epochs": args.epochs,
                      "imgsz": args.imgsz, "classes": list(OBJECT_KINDS),
                      "ultralytics": ultralytics.__version__, "torch": torch.__version__,
                      **{k: v for k, v in facts.items() if k != "data"}}
        save(best, args.out, provenance)
        metrics = evaluate(args.out, facts["data"], args.imgsz)
    provenance.update(metrics, weights_sha256=file_sha256(args.out), weights_bytes=args.out.stat().st_size)
    with atomic_path(args.out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"mAP50 {metrics['map50']:.3f}  mAP50-95 {metrics['map50_95']:.3f}  per class {metrics['ap50_per_class']}")
    print(f"training {facts['train_seconds']:.0f} s ({facts['train_frames']} frames), "
          f"weights {args.out} {args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
