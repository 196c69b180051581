#!/usr/bin/env python
"""Motion selectivity of plain vs selective relevance on the synthetic motion world.

    .venv/bin/python bench/explain_selectivity.py --weights weights/classifier.pt \
        --test-per-class 10 --seed 0 --sigmas 0.5,1,2 --methods gradcam:block1,gradient,gradxinput --by-class
    .venv/bin/python bench/explain_selectivity.py --methods all --sigmas 1 --markdown --pictures pics/

Renders a held-out world with ``vt-synth``'s generator into a temporary folder, explains
every video (target = its true label) with each method, and prints, per method, the mean
over videos of the share of relevance mass on moving pixels, for the plain map and for
the selective map at each sigma, with two definitions of "moving": the true moving
object's boxes (gt) and frame differences above ``--motion-threshold``. The chance level
(a uniform map) is the mean fraction of moving pixels. Also the pointing game: the share
of map frames whose maximum falls inside the moving object's box. ``--methods all`` runs
every vt-explain method (vtcav's own and captum's); ``--markdown`` adds the paper-style table
(share on the true moving object, plain and selective, and seconds per clip);
``--pictures DIR`` writes each method's plain and selective strip of the first video.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vtcav_common.models import load_model  # noqa: E402
from vtcav_common.models.base import preprocess  # noqa: E402
from vtcav_common.explain.overlay import auto_scale, map_scale, resize_map, strip_columns, strip_image, write_png  # noqa: E402
from vtcav_common.formats.records import read_manifest  # noqa: E402
from vtcav_common.explain import METHODS, Explainer  # noqa: E402
from vtcav_common.explain.selective import (MassCounter, box_mask, read_moving_boxes, sample_with_motion,  # noqa: E402
                                    selective_filter)
from vtcav_common.synth import generate_world  # noqa: E402


def shares(relevance: np.ndarray, masks: np.ndarray, size: tuple[int, int]) -> float | None:
    counter = MassCounter()
    for frame, mask in zip(relevance, masks):
        counter.add(resize_map(frame, *size), mask)
    return counter.share()


def pointing(relevance: np.ndarray, masks: np.ndarray, size: tuple[int, int]) -> float:
    hits = []
    for frame, mask in zip(relevance, masks):
        big = resize_map(frame, *size)
        if big.max() > 0:
            hits.append(bool(mask.flat[int(big.argmax())]))
    return float(np.mean(hits)) if hits else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(REPO / "weights" / "classifier.pt"))
    parser.add_argument("--model", default="vtcav_common.models.tiny:motion_c3d")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world (its test split is held out "
                                                             "from shell/train_classifier.py's training)")
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--sigmas", default="0.5,1,2")
    parser.add_argument("--methods", default="gradcam:block1,gradcam:block3,gradient,gradxinput",
                        help="method[:layer], comma-separated")
    parser.add_argument("--motion-threshold", type=float, default=25.0)
    parser.add_argument("--world", default=None, help="use (or keep) the world in this folder")
    parser.add_argument("--by-class", action="store_true", help="also one row per class")
    parser.add_argument("--markdown", action="store_true", help="also the table per method, in Markdown")
    parser.add_argument("--pictures", default=None, help="folder for one strip per method (the first video)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    if args.methods == "all":
        args.methods = ",".join(f"{m}:block1" if m in ("gradcam", "guided_gradcam") else m for m in METHODS)
    summary = []
    world = Path(args.world or tempfile.mkdtemp(prefix="vtcav-explain-bench-"))
    if not (world / "labels.jsonl").exists():
        generate_world(world, args.seed, 0, args.test_per_class)
    videos = [v for v in read_manifest(str(world / "labels.jsonl")) if v.split == "test"]
    boxes = read_moving_boxes(str(world / "gt.jsonl"), {v.video_id for v in videos})
    loaded = load_model(args.model, args.weights)
    start = time.time()
    print(f"# {len(videos)} held-out videos of {world}; share of relevance mass on moving pixels "
          f"(mean over videos); motion-threshold {args.motion_threshold:g}")
    header = ["method", "moving", "chance", "plain"] + [f"sel@{s:g}" for s in sigmas] + ["pointing"]
    print(f"{header[0]:>20}  " + "  ".join(f"{h:>8}" for h in header[1:]))
    for spec in args.methods.split(","):
        method, _, layer = spec.partition(":")
        explainer = Explainer(loaded, method, layer or None)
        table = {"gt": [], "frames": []}
        labels = []
        torch.manual_seed(args.seed)     # SmoothGrad's noise
        began = time.time()
        for number, video in enumerate(videos):
            sampled = sample_with_motion(video.path, loaded.input_spec.frames, args.motion_threshold)
            size = sampled.frames.shape[1:3]
            result = explainer(preprocess(sampled.frames[None], loaded.input_spec), loaded.class_index(video.label))
            if args.pictures and number == 0:
                picture(Path(args.pictures) / f"{spec.replace(':', '_')}.png", sampled, result.relevance,
                        sigmas[0], spec)
            labels.append(video.label)
            gt_masks = np.stack([box_mask(boxes[video.video_id].get(int(i), []), *size) for i in sampled.indices])
            for kind, masks in (("gt", gt_masks), ("frames", sampled.moving)):
                row = [masks.mean(), shares(result.relevance, masks, size)]
                row += [shares(selective_filter(result.relevance, s), masks, size) for s in sigmas]
                row.append(pointing(result.relevance, gt_masks, size))
                table[kind].append([np.nan if v is None else v for v in row])
        groups = [("", np.ones(len(labels), bool))]
        if args.by_class:
            groups += [(f"/{c}", np.array(labels) == c) for c in dict.fromkeys(labels)]
        seconds = (time.time() - began) / len(videos)
        gt = np.nanmean(np.array(table["gt"], dtype=float), axis=0)
        frames = np.nanmean(np.array(table["frames"], dtype=float), axis=0)
        summary.append((spec, seconds, gt, frames))
        for kind, rows in table.items():
            values = np.array(rows, dtype=float)
            for suffix, chosen in groups:
                means = np.nanmean(values[chosen], axis=0)
                print(f"{spec + suffix:>20}  {kind:>8}  " +
                      "  ".join(f"{v:>8.3f}" for v in means))
    print(f"# {time.time() - start:.1f} s")
    if args.markdown:
        print(f"\n| method | s / clip | moving (gt) | plain | selective σ={sigmas[0]:g} | plain (frame diff.) | "
              f"selective (frame diff.) | pointing |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for spec, seconds, gt, frames in summary:
            print(f"| {spec} | {seconds:.2f} | {gt[0]:.3f} | {gt[1]:.3f} | {gt[2]:.3f} | {frames[1]:.3f} | "
                  f"{frames[2]:.3f} | {gt[-1]:.2f} |")


def picture(path: Path, sampled, relevance: np.ndarray, sigma: float, what: str) -> None:
    """The first video's frames with the plain and the selective map over them, as vt-explain draws them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(f"plain: {what}", relevance), (f"selective: sigma {sigma:g}", selective_filter(relevance, sigma))]
    columns = strip_columns(len(sampled.indices), 8)
    enlarge = auto_scale(*sampled.frames.shape[1:3])
    write_png(path, strip_image(sampled.frames, rows, columns, map_scale(relevance), enlarge,
                                [f"frame {sampled.indices[c]}" for c in columns], what.split(":")[0]))


if __name__ == "__main__":
    main()
