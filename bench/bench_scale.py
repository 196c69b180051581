#!/usr/bin/env python
"""vt-embed at real resolution: Video Swin (swin3d_t), all four stages, N clips growing.

    .venv/bin/python bench/bench_scale.py                         # 1, 2, 4 clips of 16 x 224 x 224
    .venv/bin/python bench/bench_scale.py --clips 2,4,8 --frames 32 --pooled 4

swin3d_t with random weights (torchvision, ``weights=None``: nothing is downloaded), saved
as a user's state dict. For each N, ``vt-embed`` runs as a separate process (what users run,
start-up included) under ``/usr/bin/time -v``: activations of the model's usual layers (the
four stages, ``features.0/2/4/6``) and gradients of one class, batch by batch. Printed per
run: wall and CPU time, peak RSS, the file's bytes per clip (with and without ``--pool``),
and the share of the time beyond the model's floor. The floor is the model's own work in
one process: one start with torch imported, then a plain forward + backward per clip
(parameters frozen, gradients at the input, as vt-embed does). Then the arithmetic for the
paper's setting (3 concepts + 10 random sets x 50-100 clips, 32 x 224 x 224, four stages).
Time is compared in CPU seconds (user + system, all threads): on a shared machine wall time
also measures the neighbours' load; the bytes and shapes do not depend on it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(os.environ.get("VTCAV_VENV", ROOT / ".venv")) / "bin"
ARCH = "swin3d_t"
PAPER_SETS, PAPER_CLIPS, PAPER_FRAMES = 3 + 10, (50, 100), 32
SWIN_T_GFLOPS_32 = 43.882      # torchvision's Swin3D_T_Weights meta: forward of one 32 x 224 x 224 clip
ASSUMED_GPU_TFLOPS = 50.0      # sustained bf16 on a current datacentre GPU: an assumption, not a measurement


def timed_process(command: list[str]) -> dict:
    """Run under /usr/bin/time -v: wall s, CPU s, peak RSS MB."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                            env={**os.environ, "YOLO_OFFLINE": "1"})
    if result.returncode != 0:
        sys.exit(f"bench_scale: {' '.join(command[:2])} failed:\n{result.stderr[-2000:]}")
    def field(name: str) -> str:
        return re.search(rf"^\s*{re.escape(name)}: (.+)$", result.stderr, re.M).group(1)

    clock = [float(v) for v in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(v * 60 ** i for i, v in enumerate(reversed(clock)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return {"wall": wall, "cpu": cpu, "rss_mb": int(field("Maximum resident set size (kbytes)")) / 1024}


def prepare(folder: Path, counts: list[int], frames: int, size: int) -> tuple[Path, Path]:
    import torch
    from torchvision.models import video

    from vtcav_common.formats import clips as clipsets

    torch.manual_seed(0)
    weights = folder / f"{ARCH}_random.pth"
    torch.save(getattr(video, ARCH)(weights=None).state_dict(), weights)
    clips = folder / "clips.h5"
    rng = np.random.default_rng(0)
    with clipsets.ClipSetWriter(clips, clipsets.Sampling(frames=frames, size=(size, size)), "bench", {}) as writer:
        for n in sorted(set(counts)):
            appender = writer.add_set(f"n{n}", kind="random", role="random")
            appender.append(rng.integers(0, 256, (n, frames, size, size, 3), dtype=np.uint8),
                            [f"v{i}" for i in range(n)], np.tile(np.arange(frames), (n, 1)), [-1] * n,
                            np.zeros((n, frames, 4)))
    return weights, clips


def embed_run(clips: Path, weights: Path, n: int, args, out: Path, pool: str | None = None) -> dict:
    command = [str(VENV_BIN / "vt-embed"), str(clips), "--set", f"n{n}", "--model", ARCH, "--weights", str(weights),
               "--frames", str(args.frames), "--size", str(args.size), "--target", "0", "--batch-size",
               str(args.batch_size), "--device", "cpu", "-o", str(out), "-q"]
    if pool:
        command += ["--pool", pool]
    run = timed_process(command)
    run.update(n=n, pool=pool or "none", bytes_per_clip=out.stat().st_size / n)
    out.unlink()
    return run


def floor(weights: Path, args) -> dict:
    """The model's own work, in a process of its own: CPU seconds to start with torch imported,
    then per clip a forward, and a forward + backward (parameters frozen, gradient at the input)."""
    child = subprocess.run([sys.executable, __file__, "--floor-of", str(weights), "--frames", str(args.frames),
                            "--size", str(args.size), "--batch-size", str(args.batch_size),
                            "--floor-clips", str(args.floor_clips)], capture_output=True, text=True)
    if child.returncode != 0:
        sys.exit(f"bench_scale: the floor process failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def floor_child(args) -> None:
    import torch
    import torchvision  # noqa: F401  (a program doing the job imports both)

    start = time.process_time()                  # CPU seconds since the process began: start-up
    from torchvision.models import video

    model = getattr(video, ARCH)(weights=None)
    model.load_state_dict(torch.load(args.floor_of, weights_only=True))
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = torch.randn(args.batch_size, 3, args.frames, args.size, args.size, generator=torch.Generator().manual_seed(0))
    both, forward = [], []
    for _ in range(max(1, args.floor_clips // args.batch_size)):
        begin = time.process_time()
        model(x.clone().requires_grad_(True))[:, 0].sum().backward()
        both.append((time.process_time() - begin) / args.batch_size)
    begin = time.process_time()
    with torch.no_grad():
        model(x)
    forward.append((time.process_time() - begin) / args.batch_size)
    print(json.dumps({"start": start, "forward": float(np.median(forward)),
                      "forward+backward": float(np.median(both))}))


def stage_values(frames: int, size: int, pool: str | None) -> list[int]:
    """Values per clip at each usual layer (shapes from the meta device: no arithmetic, no weights)."""
    from vtcav_common.models import load_model
    from vtcav_common.models.layers import describe_layers, usual_layers
    from vtcav_common.embed.pooling import parse_pool, pooled_shape

    with contextlib.redirect_stderr(io.StringIO()):    # its "zero weights" warning: known, and meant
        loaded = load_model(ARCH, None, frames=frames, size=size, need_weights=False)
    infos = describe_layers(loaded)
    shapes = [pooled_shape(infos[n].shape, infos[n].channel_axis, parse_pool(pool), n) for n in usual_layers(loaded)]
    return [int(np.prod(s)) for s in shapes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default="1,2,4", help="numbers of clips, comma-separated")
    parser.add_argument("--pooled", type=int, default=2, help="clips of the --pool run")
    parser.add_argument("--pool", default="2x4x4")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--floor-clips", type=int, default=2)
    parser.add_argument("--floor-of", help=argparse.SUPPRESS)        # internal: be the floor process
    args = parser.parse_args()
    if args.floor_of:
        floor_child(args)
        return
    counts = [int(c) for c in args.clips.split(",")]
    load = os.getloadavg()[0]
    print(f"# bench_scale: {ARCH} (random weights), {args.frames} x {args.size} x {args.size}, the four stages, "
          f"activations float16 + gradients float32, batch {args.batch_size}, CPU only")
    print(f"# machine: {os.cpu_count()} cores, SHARED with other jobs (load average {load:.1f} at start): times "
          f"include their load. No GPU was available in this session: the GPU part is not run.")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights, clips = prepare(folder, counts + [args.pooled], args.frames, args.size)
        base = floor(weights, args)
        print(f"# floor (CPU seconds): start with torch imported {base['start']:.1f}; per clip forward "
              f"{base['forward']:.1f}, forward+backward {base['forward+backward']:.1f}")
        runs = [embed_run(clips, weights, n, args, folder / f"n{n}.h5") for n in counts]
        runs.append(embed_run(clips, weights, args.pooled, args, folder / "pooled.h5", args.pool))
    print()
    print("| clips | --pool | wall s | CPU s | peak RSS MB | MB per clip | floor CPU s | beyond the floor (CPU) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:   # CPU seconds: on a shared machine wall time measures the neighbours too
        model_floor = base["start"] + run["n"] * base["forward+backward"]
        beyond = 1 - model_floor / run["cpu"]
        print(f"| {run['n']} | {run['pool']} | {run['wall']:.1f} | {run['cpu']:.1f} | {run['rss_mb']:.0f} | "
              f"{run['bytes_per_clip'] / 1e6:.2f} | {model_floor:.1f} | {beyond:.0%} |")
    extrapolate(args, base, runs)


def extrapolate(args, base: dict, runs: list[dict]) -> None:
    full, pooled = stage_values(PAPER_FRAMES, args.size, None), stage_values(PAPER_FRAMES, args.size, args.pool)
    per_clip = {"none": (2 * sum(full), 6 * sum(full)), args.pool: (2 * sum(pooled), 6 * sum(pooled))}
    scale = PAPER_FRAMES / args.frames          # Swin's cost grows linearly in T (fixed 8x7x7 windows)
    fwd, fwd_bwd = base["forward"] * scale, base["forward+backward"] * scale
    plain = [r for r in runs if r["pool"] == "none"]
    rss, low = max(r["rss_mb"] for r in plain), min(r["rss_mb"] for r in plain)
    print()
    print(f"## The paper's setting, by arithmetic: {PAPER_SETS} sets (3 concepts + 10 random) x "
          f"{PAPER_CLIPS[0]}-{PAPER_CLIPS[1]} clips (activations), plus as many class inputs (activations + "
          f"gradients); {PAPER_FRAMES} x {args.size} x {args.size}, four stages")
    print(f"# values per clip at the four stages: {', '.join(f'{v / 1e6:.2f} M' for v in full)} "
          f"(--pool {args.pool}: {', '.join(str(v) for v in pooled)})")
    print("| clips per set | --pool | disk | CPU hours (this machine) | GPU hours (FLOPs bound) |")
    print("|---:|---|---:|---:|---:|")
    for clips in PAPER_CLIPS:
        concept_clips, inputs = PAPER_SETS * clips, clips
        cpu_hours = (concept_clips * fwd + inputs * fwd_bwd) / 3600
        gpu_hours = (concept_clips + 3 * inputs) * SWIN_T_GFLOPS_32 / (ASSUMED_GPU_TFLOPS * 1e3) / 3600
        for pool, (acts, both) in per_clip.items():
            disk = concept_clips * acts + inputs * both
            print(f"| {clips} | {pool} | {_bytes(disk)} | {cpu_hours:.1f} | {gpu_hours:.2g} |")
    print(f"# memory: vt-embed streams batch by batch: peak RSS {low:.0f} -> {rss:.0f} MB from {plain[0]['n']} to "
          f"{plain[-1]['n']} clips at {args.frames} frames, batch {args.batch_size} (the model's own activations "
          f"for the backward pass grow linearly in frames: about {rss * scale / 1e3:.1f} GB at {PAPER_FRAMES} "
          f"frames as an upper bound, whatever the number of clips).")
    print(f"# CPU hours: forward per concept clip, forward+backward per class input (CPU seconds of the floor "
          f"at {args.frames} frames here, scaled by {scale:g}). GPU hours: not measured (no GPU in this session): "
          f"{SWIN_T_GFLOPS_32} GFLOPs per forward, x3 with the backward, at an assumed {ASSUMED_GPU_TFLOPS:g} "
          f"TFLOP/s sustained: a lower bound that leaves out decoding, transfers and writing.")


def _bytes(count: float) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


if __name__ == "__main__":
    main()
