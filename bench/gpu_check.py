#!/usr/bin/env python
"""Every CUDA path of the commands, checked against the CPU: one script, under 8 minutes.

    .venv/bin/python bench/gpu_check.py                # all three models
    .venv/bin/python bench/gpu_check.py --models tiny  # quicker

Where no CUDA device is present it says so and exits 0 having checked nothing.

For each model: the project's classifier (``tiny``, weights/classifier.pt), torchvision's
``swin3d_t`` with random weights (at 16 x 112 x 112, so the CPU reference stays short) and a
transformers VideoMAE-base with random weights (16 x 224 x 224, its own sampling), it runs
the commands as a user does (each a process) on the CPU and on the GPU, and compares:

===============================================  ===========================================
path                                             tolerance (GPU vs CPU)
===============================================  ===========================================
vt-embed --device cuda --precision fp32          activations and gradients: max |diff| /
                                                 max |CPU| <= 5e-3 (TF32 convolutions)
vt-embed --device cuda --precision bf16 / fp16   (autocast; fp16 on tiny only) activations
                                                 <= 3e-2 bf16, 5e-3 fp16; gradients <= 0.15
                                                 bf16, 0.1 fp16; and the cosine of each
                                                 clip's vector >= 0.995
vt-cav --device cuda (same activations file)     each CAV's cosine with the CPU's >= 0.999,
                                                 accuracies equal within 0.05
vt-explain --device cuda, gradcam                maps: correlation >= 0.999, motion shares
                                                 within 0.01
vt-explain --device cuda, integrated_gradients   correlation >= 0.99 (captum on the GPU)
===============================================  ===========================================

The relative tolerances are those of the arithmetic: cuDNN runs fp32 convolutions in TF32
(10-bit mantissa) by default, bf16 keeps 8 bits, fp16 11; the correlation and cosine
figures say the result is the same map or direction, not merely of the same size. Every
comparison and the wall time of each command are printed; the exit status is 1 if any
comparison fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# max |GPU - CPU| / max |CPU| per array. fp32: TF32 convolutions. Half precision: about 3x what
# CPU autocast gave against fp32 on the tiny model (acts bf16 9e-3, fp16 1.4e-3; gradients bf16
# 5.2e-2, fp16 3.8e-2: the backward pass amplifies the forward's rounding).
TOLERANCE = {("acts", "fp32"): 5e-3, ("grads", "fp32"): 5e-3, ("acts", "bf16"): 3e-2, ("grads", "bf16"): 1.5e-1,
             ("acts", "fp16"): 5e-3, ("grads", "fp16"): 1e-1}
MIN_CLIP_COSINE = 0.995
MIN_CAV_COSINE = 0.999
MIN_MAP_CORRELATION = {"gradcam": 0.999, "integrated_gradients": 0.99}
MAX_SHARE_DIFFERENCE = 0.01
LAYERS = {"tiny": "block1,block3", "swin3d_t": "features.2,features.4", "videomae": "encoder.layer.5,encoder.layer.11"}
failures: list[str] = []
DEVICE = "cuda"      # --dry-run: "cpu", to try the script's own plumbing where there is no GPU


def command(tool: str, *args) -> tuple[float, str]:
    """Run a vt-* command in a fresh interpreter (this tree's code); (seconds, stdout)."""
    code = f"import sys; sys.argv[0] = {tool!r}; from tools.{tool.replace('-', '_')} import main; main()"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"gpu_check: {tool} {' '.join(map(str, args))} failed:\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def check(ok: bool, what: str, figure: str) -> None:
    print(f"    {'ok  ' if ok else 'FAIL'} {what}: {figure}", flush=True)
    if not ok:
        failures.append(what)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)).min())


def arrays(path: Path, kind: str) -> dict[str, np.ndarray]:
    import h5py

    found = {}
    with h5py.File(path) as handle:
        def visit(name, item):
            if isinstance(item, h5py.Dataset) and f"/{kind}/" in f"/{name}":
                found[name] = item[()]
        handle.visititems(visit)
    return found


def make_inputs(folder: Path) -> tuple[Path, Path]:
    """A small motion world (its videos are explained) and concept clip sets (one concept, two random)."""
    from vtcav_common.formats import clips as clipsets
    from vtcav_common.synth import generate_world

    world = folder / "world"
    generate_world(world, 0, 0, 2)
    rng = np.random.default_rng(0)
    clips = folder / "clips.h5"
    with clipsets.ClipSetWriter(clips, clipsets.Sampling(frames=16, size=(64, 64)), "gpu_check", {"seed": 0}) as w:
        for name, role in (("square_right", "concept"), ("random_0", "random"), ("random_1", "random")):
            x = rng.integers(0, 80, (8, 16, 64, 64, 3), dtype=np.uint8)
            if role == "concept":
                for t in range(16):
                    x[:, t, 24:40, 2 + 3 * t:18 + 3 * t] = 255        # a white square moving right
            appender = w.add_set(name, kind="spatiotemporal" if role == "concept" else "random", role=role)
            appender.append(x, [f"c{i}" for i in range(8)], np.tile(np.arange(16), (8, 1)), [1] * 8,
                            np.zeros((8, 16, 4)))
    return world, clips


def make_models(folder: Path) -> dict[str, list[str]]:
    import torch
    import transformers
    from torchvision.models import video

    torch.manual_seed(0)
    torch.save(video.swin3d_t(num_classes=400).state_dict(), folder / "swin3d_t.pth")
    transformers.AutoModelForVideoClassification.from_config(
        transformers.VideoMAEConfig(num_labels=4, id2label={0: "up", 1: "down", 2: "left", 3: "right"})
    ).save_pretrained(folder / "videomae")
    return {"tiny": ["--model", "vtcav_common.models.tiny:motion_c3d", "--weights", REPO / "weights/classifier.pt"],
            "swin3d_t": ["--model", "swin3d_t", "--weights", folder / "swin3d_t.pth", "--frames", "16", "--size",
                         "112"],
            "videomae": ["--model", f"hf:{folder / 'videomae'}"]}


def check_model(name: str, model: list, world: Path, clips: Path, folder: Path) -> None:
    out = folder / name
    out.mkdir()
    layers = ["--layers", LAYERS[name], "-q", "--batch-size", "4"]
    videos = [world / "labels.jsonl", "--split", "test", "--label", "right"]
    target = "right" if name != "swin3d_t" else "0"
    print(f"== {name}", flush=True)
    times = {}
    precisions = ("fp32", "bf16", "fp16") if name == "tiny" else ("fp32", "bf16")    # autocast both ways once
    for device, precision in (("cpu", "fp32"), *((DEVICE, p) for p in precisions)):
        tag = f"{device}-{precision}"
        times[f"embed acts {tag}"], _ = command("vt-embed", clips, *model, *layers, "--device", device,
                                                "--precision", precision, "-o", out / f"acts-{tag}.h5")
        times[f"embed grads {tag}"], _ = command("vt-embed", *videos, *model, *layers, "--target", target,
                                                 "--device", device, "--precision", precision,
                                                 "-o", out / f"grads-{tag}.h5")
    cpu_acts, cpu_grads = arrays(out / "acts-cpu-fp32.h5", "acts"), arrays(out / "grads-cpu-fp32.h5", "grads")
    for precision in precisions:
        for kind, reference in (("acts", cpu_acts), ("grads", cpu_grads)):
            gpu = arrays(out / f"{kind}-{DEVICE}-{precision}.h5", kind)
            worst = max(relative(gpu[k], reference[k]) for k in reference)
            cosine = min(min_cosine(gpu[k], reference[k]) for k in reference)
            bound = TOLERANCE[kind, precision]
            check(worst <= bound and cosine >= MIN_CLIP_COSINE, f"vt-embed {kind} {DEVICE} {precision}",
                  f"max rel. diff {worst:.2e} (<= {bound:g}), min clip cosine {cosine:.5f}")
    for device in ("cpu", DEVICE):
        times[f"cav {device}"], _ = command("vt-cav", out / "acts-cpu-fp32.h5", "--device", device, "--seed", "0",
                                            "-q", "-o", out / f"cavs-{device}.h5")
    cpu_cavs, gpu_cavs = arrays(out / "cavs-cpu.h5", "layers"), arrays(out / f"cavs-{DEVICE}.h5", "layers")
    vectors = [k for k in cpu_cavs if k.endswith("/vectors")]
    cosine = min(float((cpu_cavs[k] * gpu_cavs[k]).sum(1).min()) for k in vectors)
    accuracy = max(float(np.abs(cpu_cavs[k.replace("vectors", "accuracy")] -
                                gpu_cavs[k.replace("vectors", "accuracy")]).max()) for k in vectors)
    check(cosine >= MIN_CAV_COSINE and accuracy <= 0.05, f"vt-cav {DEVICE}", f"min CAV cosine {cosine:.5f}, "
          f"max accuracy diff {accuracy:.3f}")
    times["score"], _ = command("vt-score", out / f"cavs-{DEVICE}.h5", out / f"grads-{DEVICE}-fp32.h5",
                                "-o", out / "s.jsonl")
    video = sorted((world / "videos").glob("test_right_*.mp4"))[0]
    for method in ("gradcam", "integrated_gradients"):
        records = {}
        for device in ("cpu", DEVICE):
            times[f"explain {method} {device}"], stdout = command(
                "vt-explain", video, *model, "--method", method, "--target", target, "--selective", "1",
                "--device", device, "-q", "-o", out / f"maps-{method}-{device}.h5")
            records[device] = json.loads(stdout.splitlines()[0])
        a, b = _plain(out / f"maps-{method}-cpu.h5").ravel(), _plain(out / f"maps-{method}-{DEVICE}.h5").ravel()
        correlation = float(np.corrcoef(a, b)[0, 1])
        share = abs(records["cpu"]["motion_share"]["plain"] - records[DEVICE]["motion_share"]["plain"])
        check(correlation >= MIN_MAP_CORRELATION[method] and share <= MAX_SHARE_DIFFERENCE,
              f"vt-explain {method} {DEVICE}", f"map correlation {correlation:.5f}, motion share diff {share:.4f}")
    print("    times (s, each a process with start-up): " +
          ", ".join(f"{k} {v:.1f}" for k, v in times.items()), flush=True)


def _plain(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path) as handle:
        return handle["plain"][()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,swin3d_t,videomae")
    parser.add_argument("--dry-run", action="store_true", help="the CPU against itself: tries this script's "
                                                                "plumbing where there is no GPU (checks nothing)")
    args = parser.parse_args()
    import torch

    global DEVICE
    if args.dry_run:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing was checked; "
              "the CUDA paths have not run", flush=True)
        return 0
    where = "dry run, CPU against CPU" if args.dry_run else torch.cuda.get_device_name(0)
    print(f"gpu_check: {where}, torch {torch.__version__}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vtcav-gpu-check-") as name:
        folder = Path(name)
        world, clips = make_inputs(folder)
        models = make_models(folder)
        for model in args.models.split(","):
            check_model(model, models[model], world, clips, folder)
    print(f"gpu_check: {len(failures)} failed ({', '.join(failures) or 'none'}); "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
