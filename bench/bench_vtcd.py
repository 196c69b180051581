#!/usr/bin/env python
"""vt-ace vtcd's per-video steps: time and peak memory against the number of videos and of masks.

    .venv/bin/python bench/bench_vtcd.py                   # a world of 8 `right` videos in a temp dir
    .venv/bin/python bench/bench_vtcd.py --videos 2,4,8 --masks 16,64,128

Each step runs as its own process (what users run, start-up included) under ``/usr/bin/time -v``:
``vt-ace tubelets`` on the first N videos (three layers of the project's tiny classifier), then,
on the concepts discovered from all of them, ``vt-ace masks`` on N videos (a ``--shard`` of the
tubelets: the same code path) with M masks each. Printed: wall and CPU seconds, peak RSS, and the
CPU seconds per masked forward pass beyond the start-up (the CPU time of the smallest run, less its
forwards at the same rate, is the start-up). Memory should stay flat in N and M: a video is read, masked
and reduced to its P x P regression statistics before the next; masks are drawn and run in chunks.
Time is compared in CPU seconds; on a shared machine wall time also measures the neighbours' load.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(os.environ.get("VTCAV_VENV", ROOT / ".venv")) / "bin"
MODEL = ["--model", "vtcav_common.models.tiny:motion_c3d", "--weights", str(ROOT / "weights" / "classifier.pt")]


def timed(command: list) -> dict:
    result = subprocess.run(["/usr/bin/time", "-v", *map(str, command)], capture_output=True, text=True,
                            env={**os.environ, "YOLO_OFFLINE": "1"})
    if result.returncode != 0:
        sys.exit(f"bench_vtcd: {' '.join(map(str, command[:2]))} failed:\n{result.stderr[-2000:]}")

    def field(name: str) -> str:
        return re.search(rf"{name}: (.+)", result.stderr).group(1)

    wall = field(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)").split(":")
    return {"wall": float(wall[-2]) * 60 + float(wall[-1]) + (float(wall[0]) * 3600 if len(wall) == 3 else 0),
            "cpu": float(field("User time \\(seconds\\)")) + float(field("System time \\(seconds\\)")),
            "rss_mb": int(field(r"Maximum resident set size \(kbytes\)")) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="2,4,8")
    parser.add_argument("--masks", default="16,64,128")
    parser.add_argument("--fixed-masks", type=int, default=32, help="masks per video while N varies")
    parser.add_argument("--fixed-videos", type=int, default=4, help="videos while M varies")
    args = parser.parse_args()
    counts = [int(v) for v in args.videos.split(",")]
    masks = [int(v) for v in args.masks.split(",")]
    exe = VENV_BIN / "vt-ace"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([VENV_BIN / "vt-synth", tmp / "world", "--seed", "3", "--train-per-class",
                        str(max(max(counts), args.fixed_videos)),
                        "--test-per-class", "1", "-q"], check=True)
        labels = tmp / "world" / "labels.jsonl"
        print("vt-ace tubelets (SLIC 30 + one forward a video, 3 layers)")
        print(f"{'videos':>7} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}")
        for n in sorted(set(counts) | {args.fixed_videos}):   # the masks runs read the tubelets of each N
            r = timed([exe, "tubelets", labels, "--label", "right", "--split", "train", "--max-videos", n, *MODEL,
                       "--layers", "block1,block2,block3", "-o", tmp / f"tub{n}.h5", "-q"])
            print(f"{n:>7} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['rss_mb']:>8.0f}")
        full = tmp / f"tub{max(max(counts), args.fixed_videos)}.h5"
        subprocess.run([exe, "vtcd", full, "--videos", labels, "--target", "right", *MODEL, "-o",
                        tmp / "concepts.h5", "--concepts-only", "-q"], check=True)
        from vtcav_common.ace.vtcd import read_concept_model

        n_concepts = len(read_concept_model(str(tmp / "concepts.h5")).names)
        print(f"\nvt-ace masks ({n_concepts} concepts x (1 + 4 null copies) = {5 * n_concepts} groups)")
        print(f"{'videos':>7} {'masks':>6} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}")
        runs = [(n, args.fixed_masks) for n in counts] + [(args.fixed_videos, m) for m in masks]
        results = {}
        for n, m in dict.fromkeys(runs):
            results[(n, m)] = timed([exe, "masks", tmp / "concepts.h5", tmp / f"tub{n}.h5", "--videos", labels,
                                     *MODEL, "--masks", m, "-o", tmp / f"stats_{n}_{m}.h5", "-q"])
        # the marginal CPU cost of a masked forward, from the largest and smallest runs
        forwards = {key: key[0] * (key[1] + 1) for key in results}
        small, large = min(forwards, key=forwards.get), max(forwards, key=forwards.get)
        per = (results[large]["cpu"] - results[small]["cpu"]) / (forwards[large] - forwards[small])
        startup = results[small]["cpu"] - per * forwards[small]
        for (n, m), r in results.items():
            print(f"{n:>7} {m:>6} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['rss_mb']:>8.0f}")
        print(f"marginal CPU per masked forward {1000 * per:.0f} ms; start-up {startup:.1f} CPU s")


if __name__ == "__main__":
    main()
