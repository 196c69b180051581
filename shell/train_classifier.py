#!/usr/bin/env python
"""Train the tiny motion classifier (``vtcav_common.models.tiny:motion_c3d``) on the synthetic world.

    .venv/bin/python shell/train_classifier.py --out weights/classifier.pt --seed 0
    .venv/bin/python shell/train_classifier.py --kind appearance --out weights/appearance_classifier.pt \
        --seed 0 --train-per-class 24 --test-per-class 10 --epochs 6

The second trains the same network (``vtcav_common.models.tiny:appearance_c3d``) on the
appearance world (``vt-synth --world appearance``: the ball's colour is the class).

Generates a world with ``vtcav_common.synth.generate_world`` into a temporary folder
(mp4 files, so the model learns from decoded video as users' models do), trains on
CPU deterministically (fixed seed, fixed thread count, deterministic algorithms),
then reloads the saved weights through ``vtcav_common.models.load_model`` (the same
path every tool uses) and prints the held-out accuracy. Writes:

- ``OUT`` (e.g. ``weights/classifier.pt``): a plain state dict, ``torch.load(weights_only=True)``-able;
- ``OUT`` with suffix ``.json`` (``weights/classifier.json``): the sidecar naming the
  factory, the input spec, the class names and how the weights were trained.

Augmentation keeps the labels true: a horizontal flip swaps left/right, a vertical flip
swaps up/down, playing the clip backwards swaps both. In the appearance world none of them
changes the label (the colour is the class).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vtcav_common.core.files import atomic_path  # noqa: E402
from vtcav_common.models import load_model  # noqa: E402
from vtcav_common.models.base import preprocess  # noqa: E402
from vtcav_common.models.tiny import INPUT_SPEC, appearance_c3d, motion_c3d  # noqa: E402
from vtcav_common.formats.records import read_manifest  # noqa: E402
from vtcav_common.synth import CLASSES, WORLDS, generate_world, world_classes  # noqa: E402
from vtcav_common.core.video import read_video  # noqa: E402

FACTORIES = {"motion": ("vtcav_common.models.tiny:motion_c3d", motion_c3d),
             "appearance": ("vtcav_common.models.tiny:appearance_c3d", appearance_c3d)}
# Label permutations under each augmentation (indices into CLASSES = left, right, up, down).
FLIP_W = [CLASSES.index(c) for c in ("right", "left", "up", "down")]
FLIP_H = [CLASSES.index(c) for c in ("left", "right", "down", "up")]
REVERSE = [CLASSES.index(c) for c in ("right", "left", "down", "up")]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "weights" / "classifier.pt"), help="state dict to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of training")
    parser.add_argument("--kind", choices=WORLDS, default="motion", dest="world_name",
                        help="which synthetic world (what decides the class: motion or the ball's colour)")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (fixed for reproducible bits)")
    parser.add_argument("--world", default=None, help="keep the generated world in this folder")
    parser.add_argument("--min-accuracy", type=float, default=0.95,
                        help="exit 1 if the held-out accuracy is lower")
    return parser.parse_args(argv)


def load_split(world: Path, split: str, classes: tuple[str, ...] = CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one split's mp4s and preprocess them exactly as vt-embed does."""
    videos = [v for v in read_manifest(str(world / "labels.jsonl")) if v.split == split]
    clips = np.stack([read_video(v.path) for v in videos])
    labels = torch.tensor([classes.index(v.label) for v in videos])
    return preprocess(clips, INPUT_SPEC), labels


def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
            keeps_labels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and time reversal per clip (N x C x T x H x W), with the labels they imply
    (``keeps_labels``: none changes the label, as in the appearance world)."""
    x, y = x.clone(), y.clone()
    same = list(range(len(CLASSES)))
    for dim, permutation in ((4, FLIP_W), (3, FLIP_H), (2, REVERSE)):
        permutation = same if keeps_labels else permutation
        chosen = torch.rand(len(x), generator=generator) < 0.5
        if chosen.any():
            x[chosen] = x[chosen].flip(dim)
            y[chosen] = torch.tensor(permutation)[y[chosen]]
    return x, y


def train(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = FACTORIES[args.world_name][1]().to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=0.2)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(x), args.batch_size):
            index = order[start:start + args.batch_size]
            xb, yb = augment(x[index], y[index], generator, keeps_labels=args.world_name == "appearance")
            logits = model(xb.contiguous(memory_format=torch.channels_last_3d))
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(1) == yb).sum())
            total += len(index)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / total:.4f}, train accuracy {correct / total:.3f}",
              file=sys.stderr, flush=True)
    return model.to(memory_format=torch.contiguous_format).eval()


def accuracy(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 32) -> float:
    with torch.no_grad():
        predictions = torch.cat([module(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((predictions == y).float().mean())


def save(model: torch.nn.Module, out: Path, record: dict) -> Path:
    """The state dict (plain tensors only) and its sidecar, each written atomically."""
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    sidecar = out.with_suffix(".json")
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return sidecar


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="vtcav-train-") as scratch:
        world = Path(args.world) if args.world else Path(scratch) / "world"
        classes = world_classes(args.world_name)
        generate_world(world, args.seed, args.train_per_class, args.test_per_class, world=args.world_name)
        x_train, y_train = load_split(world, "train", classes)
        x_test, y_test = load_split(world, "test", classes)
        print(f"world: {len(x_train)} training and {len(x_test)} held-out videos", file=sys.stderr)
        model = train(x_train, y_train, args)
        train_seconds = time.time() - started
        out = Path(args.out)
        factory = FACTORIES[args.world_name][0]
        record = {"model": factory, "input": INPUT_SPEC.to_dict(), "class_names": list(classes),
                  "training": {"world": args.world_name, "seed": args.seed, "train_per_class": args.train_per_class,
                               "test_per_class": args.test_per_class, "epochs": args.epochs,
                               "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
                               "torch": torch.__version__}}
        save(model, out, record)
        # Evaluate what was written, loaded the way every tool loads a model.
        loaded = load_model(factory, str(out))
        held_out = accuracy(loaded.module, x_test, y_test)
        record["training"].update({"held_out_accuracy": round(held_out, 4), "seconds": round(train_seconds, 1)})
        save(model, out, record)
    size_kb = out.stat().st_size / 1024
    print(f"held-out accuracy {held_out:.4f} ({len(y_test)} videos); trained in {train_seconds:.0f} s; "
          f"{out} is {size_kb:.0f} KiB")
    if held_out < args.min_accuracy:
        print(f"error: held-out accuracy {held_out:.4f} is below {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
