#!/usr/bin/env python
"""Time and memory per clip of transformers video models beside swin3d_t, each at its own sampling.

    .venv/bin/python bench/bench_hf_models.py                      # all four, CPU, 2 repeats each
    .venv/bin/python bench/bench_hf_models.py --models videomae --repeats 3 --device cuda

Each model runs in its own process (``--one NAME``), so one model's memory cannot hide
another's: random weights at the published base configuration (VideoMAE-base 16 x 224 x 224,
tubelet 2; TimeSformer-base 8 x 224 x 224; ViViT-B 16x2 at 32 x 224 x 224; torchvision's
swin3d_t at its Kinetics sampling, 32 x 224 x 224), saved to a temporary folder and loaded
through ``load_model`` like a user's model. Per clip (batch 1), what vt-embed does:
"forward" records activations at the model's usual layers; "forward+backward" also takes
gradients of one logit there (``vt-embed --target``). Times are the best of ``--repeats``
after one warm-up run (one run and no warm-up with ``--repeats 1``), wall and CPU seconds (on
a shared machine the CPU seconds and the best run are the figures least disturbed by others);
memory is the process's peak resident set (CPU) or peak allocated CUDA memory,
beside the same figure right after loading (weights only).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vtcav_common.embed.layer_pass import LayerPass  # noqa: E402
from vtcav_common.models import load_model, resolve_device  # noqa: E402
from vtcav_common.models.layers import describe_layers, usual_layers  # noqa: E402

MODELS = ("videomae", "timesformer", "vivit", "swin3d_t")


def saved_model(name: str, folder: Path) -> None:
    """A random-weight model written to ``folder`` (``NAME/`` or ``swin3d_t.pth``)."""
    torch.manual_seed(0)
    if name == "swin3d_t":
        from torchvision.models import video

        path = folder / "swin3d_t.pth"
        torch.save(video.swin3d_t(num_classes=400).state_dict(), path)
        return
    import transformers

    config = {"videomae": transformers.VideoMAEConfig(num_labels=400),
              "timesformer": transformers.TimesformerConfig(num_labels=400),
              "vivit": transformers.VivitConfig(num_labels=400)}[name]
    transformers.AutoModelForVideoClassification.from_config(config).save_pretrained(folder / name)


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_seconds(run, x: torch.Tensor, repeats: int, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``repeats`` runs, after a warm-up when there are 2 or more.

    The process's CPU seconds (all its threads) are the fairer figure on a shared machine,
    where the wall clock also counts the time other processes held the cores.
    """
    if repeats > 1:
        run(x)   # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        run(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return min(times)


def one(name: str, folder: Path, repeats: int, device_name: str) -> None:
    device = resolve_device(device_name)
    model, weights = (f"hf:{folder / name}", None) if name != "swin3d_t" else ("swin3d_t", str(folder / f"{name}.pth"))
    loaded = load_model(model, weights, device=device)
    spec = loaded.input_spec
    layers = usual_layers(loaded, describe_layers(loaded))
    loaded_mb = peak_mb(device)
    x = torch.randn(1, 3, spec.frames, *spec.size, device=device)
    if spec.layout == "NTCHW":
        x = x.transpose(1, 2).contiguous()
    forward = best_seconds(LayerPass(loaded, layers), x, repeats, device)
    forward_mb = peak_mb(device)
    backward = best_seconds(LayerPass(loaded, layers, target_index=0), x, repeats, device)
    params = sum(p.numel() for p in loaded.module.parameters()) / 1e6
    print(f"| {name} | {spec.frames}x{spec.size[0]}x{spec.size[1]} | {params:.0f} M | {','.join(layers)} | "
          f"{forward[0]:.1f} s ({forward[1]:.1f} CPU s) | {backward[0]:.1f} s ({backward[1]:.1f} CPU s) | "
          f"{loaded_mb:.0f} | {forward_mb:.0f} | {peak_mb(device):.0f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        one(args.one, Path(args.folder), args.repeats, args.device)
        return 0
    unit = "peak CUDA MB" if args.device.startswith("cuda") else "peak RSS MB"
    print(f"# {args.device}, {torch.get_num_threads()} threads, best of {args.repeats}"
          f"{' after a warm-up' if args.repeats > 1 else ' (no warm-up)'}; batch 1")
    print(f"| model | clip | params | layers | forward / clip | forward+backward / clip | {unit} loaded | "
          f"{unit} forward | {unit} backward |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            saved_model(name, Path(folder))     # here, so the measured process only loads it
            command = [sys.executable, __file__, "--one", name, "--folder", folder, "--repeats", str(args.repeats),
                       "--device", args.device]
            if args.threads:
                command += ["--threads", str(args.threads)]
            result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if result.returncode != 0:
                print(f"| {name} | failed: {result.stderr.strip().splitlines()[-1][:150]} |", flush=True)
            else:
                print(result.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
