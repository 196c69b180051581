#!/usr/bin/env python
"""Throughput of vt-embed's model pass, and the layers each torchvision architecture exposes.

    .venv/bin/python bench/bench_models.py                       # swin3d_t, 16 x 112 x 112, CPU
    .venv/bin/python bench/bench_models.py --arch r3d_18 --batch 4 --device cuda
    .venv/bin/python bench/bench_models.py --zoo                 # layer counts of every architecture

Random weights (throughput does not depend on their values), saved to a temporary
state dict and loaded through ``load_model`` like a user's checkpoint. "forward" is a
plain forward with activations recorded at the layers; "forward+backward" is what
``vt-embed --target`` does per batch: one forward with hooks plus one backward of the
target logit, gradients kept at every layer. Clips/s are given as the median and the best
over the repeats (on a shared machine the best is the more faithful figure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtcav_common.embed import LayerPass  # noqa: E402
from vtcav_common.models import ARCHITECTURES, load_model, resolve_device  # noqa: E402
from vtcav_common.models.layers import default_layers, describe_layers  # noqa: E402
from vtcav_common.models.torchvision_source import _mvit_sized  # noqa: E402

DEFAULT_LAYERS = {"swin3d": "features.2,features.4,features.6", "mvit": "blocks.3,blocks.15",
                  "s3d": "features.6,features.15"}


def saved_random_model(arch: str, frames: int, size: int, folder: Path) -> Path:
    from torchvision.models import video

    torch.manual_seed(0)
    if arch.startswith("mvit"):
        with _mvit_sized(frames, size):
            module = getattr(video, arch)(num_classes=400)
    else:
        module = getattr(video, arch)(num_classes=400)
    path = folder / f"{arch}.pth"
    torch.save(module.state_dict(), path)
    return path


def layers_for(arch: str) -> list[str]:
    for prefix, layers in DEFAULT_LAYERS.items():
        if arch.startswith(prefix):
            return layers.split(",")
    return ["layer2", "layer3", "layer4"]


def clips_per_second(run, x: torch.Tensor, repeats: int, device: torch.device) -> tuple[float, float]:
    """(median, best) clips/s; the best is the figure least disturbed by other processes."""
    run(x)  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times), len(x) / min(times)


def throughput(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        weights = saved_random_model(args.arch, args.frames, args.size, Path(folder))
        loaded = load_model(args.arch, str(weights), frames=args.frames, size=args.size, device=device)
    layers = args.layers.split(",") if args.layers else layers_for(args.arch)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    forward = clips_per_second(LayerPass(loaded, layers), x, args.repeats, device)
    backward = clips_per_second(LayerPass(loaded, layers, target_index=0), x, args.repeats, device)
    where = f"{device.type}" + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else
                                f" ({torch.cuda.get_device_name(device)})")
    print(f"{args.arch} {args.frames}x{args.size}x{args.size}, batch {args.batch}, layers {','.join(layers)}, {where}")
    print(f"  forward           {forward[0]:8.2f} clips/s median, {forward[1]:8.2f} best of {args.repeats}")
    print(f"  forward+backward  {backward[0]:8.2f} clips/s median, {backward[1]:8.2f} best of {args.repeats}")


def zoo() -> None:
    """Named modules and default layers of each architecture (built small; counts do not depend on size)."""
    print(f"{'arch':<12} {'modules':>7} {'default layers':>14}  deepest spatial default layer (shape, channel axis)")
    with tempfile.TemporaryDirectory() as folder:
        for arch in ARCHITECTURES:
            frames, size = (14, 224) if arch == "s3d" else (4, 32)
            weights = saved_random_model(arch, frames, size, Path(folder))
            loaded = load_model(arch, str(weights), frames=None if arch.startswith("mvit") else frames,
                                size=None if arch.startswith("mvit") else size)
            infos = describe_layers(loaded)
            usual = [n for n in default_layers(loaded.module) if infos[n].calls]
            # The deepest layer that still has space or time (pooled and head outputs are skipped).
            deep = [n for n in usual if infos[n].shape and sum(d > 1 for d in infos[n].shape) >= 2][-1]
            print(f"{arch:<12} {len(infos):>7} {len(usual):>14}  {deep} {infos[deep].shape} "
                  f"axis {infos[deep].channel_axis}")
            weights.unlink()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="swin3d_t", choices=ARCHITECTURES)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", default=None, help="comma-separated (default: a few per family)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--zoo", action="store_true", help="print layer counts of every architecture")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.zoo:
        zoo()
    else:
        throughput(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
