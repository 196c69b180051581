"""Peak memory and time of vt-cav as the number of clips grows (issue 10: flat in N).

    .venv/bin/python bench/bench_cav_memory.py [--clips 250,1000,2500] [--base /tmp/base-h3]

The activations files are synthetic, with the shapes of the project's tiny classifier at
64x64 (block1 16x16x32x32, block2 32x8x16x16, block3 48x8x16x16; 868 KB per clip in
float16), written with the embeddings writer: 3 concept sets and 10 random sets sharing the
clips, non-negative like ReLU outputs. Each vt-cav run is a separate process under
``/usr/bin/time -v`` (peak RSS, wall time). ``--base DIR`` also runs the code in DIR (a git
worktree of an earlier commit) on the same files, for a before/after table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vtcav_common.formats.embeddings import EmbeddingsWriter  # noqa: E402

SHAPES = {"block1": (16, 16, 32, 32), "block2": (32, 8, 16, 16), "block3": (48, 8, 16, 16)}
SETS = ["ball_left", "ball_right", "ball_static"] + [f"random_{i:02d}" for i in range(10)]
MODEL = {"source": "synthetic", "arch": "vtcav_common.models.tiny:motion_c3d", "weights_sha256": "0" * 64,
         "num_classes": 4}
INPUT = {"frames": 16, "size": [64, 64], "layout": "NCTHW"}


def build(path: Path, clips: int, seed: int = 0) -> None:
    """``clips`` clips over the 13 sets, float16, the concept sets shifted along one direction."""
    rng = np.random.default_rng(seed)
    sizes = [clips // len(SETS) + (i < clips % len(SETS)) for i in range(len(SETS))]
    infos = {name: NS(shape=shape, channel_axis=0, channels_last=False, type="Conv3d", calls=1)
             for name, shape in SHAPES.items()}
    provenance = {"model": MODEL, "input": INPUT, "layers": list(SHAPES), "target": None, "dtype": "float16",
                  "inputs": "synthetic", "sets": SETS, "seed": seed}
    with EmbeddingsWriter(path, "bench_cav_memory", provenance, infos) as writer:
        for name, n in zip(SETS, sizes):
            role = "random" if name.startswith("random") else "concept"
            sink = writer.add_set(NS(name=name, kind=role, role=role, n=n, has_labels=False), 4, np.float16,
                                  None, batch_size=16)
            shift = 0.5 if role == "concept" else 0.0
            for start in range(0, n, 16):
                b = min(16, n - start)
                acts = {layer: np.abs(rng.standard_normal((b, *shape), np.float32) + shift).astype(np.float16)
                        for layer, shape in SHAPES.items()}
                sink.write(NS(ids=[f"{name}#{start + i}" for i in range(b)], labels=None),
                           NS(logits=np.zeros((b, 4), np.float32), acts=acts, grads=None))
            sink.close()


def timed_vt_cav(acts: Path, out: Path, pythonpath: str | None, extra: list[str]) -> tuple[float, float, float]:
    """(peak RSS in MB, wall seconds, CPU seconds) of one vt-cav process."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    runner = "import sys; sys.argv[0] = 'vt-cav'; from tools.vt_cav import main; main()"
    command = ["/usr/bin/time", "-v", sys.executable, "-c", runner, str(acts), "-o", str(out), "-q", *extra]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=pythonpath or REPO)
    if result.returncode != 0:
        raise SystemExit(f"vt-cav failed:\n{result.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", result.stderr).group(1)
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", result.stderr).group(1))
              for kind in ("User", "System"))
    return rss, seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default="250,1000,2500", help="comma-separated clip counts")
    parser.add_argument("--base", default="", help="a worktree of an earlier commit to compare with")
    parser.add_argument("--work", default="", help="folder for the synthetic files (default: a temporary one)")
    parser.add_argument("--device", default="", help="pass --device to (the current) vt-cav")
    args = parser.parse_args()
    counts = [int(x) for x in args.clips.split(",")]
    with tempfile.TemporaryDirectory(dir=args.work or None) as tmp:
        rows = []
        for n in counts:
            acts = Path(tmp) / f"acts_{n}.h5"
            build(acts, n)
            size = acts.stat().st_size / 1e6
            after = timed_vt_cav(acts, Path(tmp) / "cavs.h5", None, ["--device", args.device] if args.device else [])
            before = timed_vt_cav(acts, Path(tmp) / "cavs_base.h5", args.base, []) if args.base else None
            rows.append((n, size, before, after))
            print(_row(rows[-1]), flush=True)
            acts.unlink()
        print("\n(machine shared with other jobs: 2 cores, 24 GiB; times are indicative)")
        print(f"{'clips':>6} {'file MB':>8} {'before RSS MB':>14} {'wall s':>7} {'cpu s':>7} "
              f"{'after RSS MB':>13} {'wall s':>7} {'cpu s':>7}")
        for row in rows:
            print(_row(row))
        first, last = rows[0][3][0], rows[-1][3][0]
        print(f"after: peak RSS {last:.0f} MB at {rows[-1][0]} clips = {last / first:.2f} x the {rows[0][0]}-clip run")


def _row(row) -> str:
    n, size, before, after = row
    b = f"{before[0]:>14.0f} {before[1]:>7.1f} {before[2]:>7.1f}" if before else f"{'-':>14} {'-':>7} {'-':>7}"
    return f"{n:>6} {size:>8.0f} {b} {after[0]:>13.0f} {after[1]:>7.1f} {after[2]:>7.1f}"


if __name__ == "__main__":
    main()
