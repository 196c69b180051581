#!/usr/bin/env python
"""Measure the detector and its tracker on a fresh synthetic world; print one JSON summary.

    .venv/bin/python bench/bench_detect.py --weights weights/detector.pt --videos-per-class 25

Renders held-out videos (a seed the detector was not trained on), runs detection and
tracking as ``vt-detect`` does, and reports per-class recall at IoU >= 0.5, the
tracking stability of the moving ball (share of its frames carrying its dominant track
id), false detections, and throughput in frames per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vtcav_common import detect  # noqa: E402
from vtcav_common.formats.records import read_detections  # noqa: E402
from vtcav_common.synth import OBJECT_KINDS, generate_world  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=str(REPO / "weights" / "detector.pt"))
    parser.add_argument("--videos-per-class", type=int, default=25)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--tracker", default="bytetrack", choices=detect.TRACKERS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="vtcav-bench-detect-") as scratch:
        world = Path(scratch)
        generate_world(world, seed=args.seed, train_per_class=0, test_per_class=args.videos_per_class)
        sources = detect.collect_sources([str(world / "labels.jsonl")])
        detector = detect.Detector.load(args.weights, detect.DetectSettings(tracker=args.tracker, batch=args.batch))
        infos = [detect.check_video(s) for s in sources]
        list(detector.video(sources[0], infos[0].fps))  # warm-up, not timed
        detector.frames_done = 0
        started = time.perf_counter()
        detections = [d for s, i in zip(sources, infos) for d in detector.video(s, i.fps)]
        seconds = time.perf_counter() - started
        truth = list(read_detections(str(world / "gt.jsonl")))

    summary = {"weights": args.weights, "videos": len(sources), "frames": detector.frames_done,
               "tracker": args.tracker, "threads": args.threads, "batch": args.batch,
               "frames_per_second": round(detector.frames_done / seconds, 1), "detections": len(detections)}
    for kind in OBJECT_KINDS:
        rows = [t for t in truth if t.class_name == kind]
        summary[f"recall_{kind}"] = round(len(detect.match_truth(rows, detections)) / max(1, len(rows)), 4)
    matched_ids = {id(d) for d in detect.match_truth(truth, detections, min_iou=0.3).values()}
    summary["false_detections"] = sum(id(d) not in matched_ids for d in detections)
    if args.tracker != "none":
        shares = list(detect.track_stability([t for t in truth if t.class_name == "ball"], detections).values())
        summary.update(ball_track_stability_mean=round(statistics.mean(shares), 4),
                       ball_track_stability_min=round(min(shares), 4),
                       ball_tracks_at_least_90pct=f"{sum(s >= 0.9 for s in shares)}/{len(shares)}")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
