"""The known answer on real architectures: torchvision's r3d_18 / r2plus1d_18 trained on the motion world.

For each architecture: train it from scratch (no downloaded weights) at a small resolution
on the synthetic world's training split, save a state dict with its sidecar (so every tool
loads it by ``--weights`` alone), report its held-out accuracy, then run the known-answer
chain of ``tests/test_known_answer.py`` through the commands (vt-synth, vt-detect,
vt-concepts, vt-embed, vt-cav, vt-score, vt-stats) and print, per layer, the four checks:

1. ``ball_right`` scores above ``ball_left``;
2. ``ball_right`` is significantly positive;
3. the relative CAVs ``ball_right`` vs ``ball_static`` are significantly positive;
4. the dynamic concept scores above the static crop of the same object.

    .venv/bin/python bench/known_answer_archs.py --work /tmp/ka --archs r3d_18,r2plus1d_18

Not part of CI (minutes of CPU per architecture).  Training is capped by --train-seconds
per architecture (the epochs done are printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vtcav_common.models.base import InputSpec, preprocess  # noqa: E402
from vtcav_common.formats.records import read_manifest  # noqa: E402
from vtcav_common.synth import CLASSES, generate_world  # noqa: E402
from vtcav_common.core.video import read_video  # noqa: E402

CHECKS = ("right > left", "right sig +", "right vs static sig +", "dynamic > static")


def _augment():
    """The label-preserving flips of shell/train_classifier.py (one definition)."""
    spec = importlib.util.spec_from_file_location("train_classifier", REPO / "shell" / "train_classifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.augment


def _run(*args, stdin: str | None = None) -> str:
    exe = str(Path(sys.executable).parent / args[0])
    result = subprocess.run([exe, *map(str, args[1:])], input=stdin, capture_output=True, text=True,
                            env={**os.environ, "YOLO_OFFLINE": "1"})
    if result.returncode:
        raise SystemExit(f"{args[0]} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def load_split(world: Path, split: str, spec: InputSpec):
    videos = [v for v in read_manifest(str(world / "labels.jsonl")) if v.split == split]
    clips = np.stack([read_video(v.path) for v in videos])
    return preprocess(clips, spec), torch.tensor([CLASSES.index(v.label) for v in videos])


def train(arch: str, x, y, args) -> tuple[torch.nn.Module, int, float]:
    import torchvision.models.video as video

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    augment = _augment()
    model = getattr(video, arch)(weights=None, num_classes=len(CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    started, epochs = time.perf_counter(), 0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        correct = 0
        for start in range(0, len(x), args.batch_size):
            index = order[start:start + args.batch_size]
            xb, yb = augment(x[index], y[index], generator)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == yb).sum())
        epochs += 1
        elapsed = time.perf_counter() - started
        print(f"  {arch} epoch {epoch + 1}: loss {loss.item():.3f}, train accuracy {correct / len(x):.2f} "
              f"({elapsed:.0f} s)", file=sys.stderr, flush=True)
        if elapsed > args.train_seconds:
            break
    return model.eval(), epochs, time.perf_counter() - started


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        predictions = torch.cat([model(x[i:i + 16]).argmax(1) for i in range(0, len(x), 16)])
    return float((predictions == y).float().mean())


def concepts(work: Path, clips: int, random_sets: int) -> tuple[Path, Path]:
    """The known-answer world (another seed than training) and its concept and random clip sets."""
    world = work / "ka_world"
    labels, out = world / "labels.jsonl", work / "concepts.h5"
    if out.exists():
        return labels, out
    _run("vt-synth", world, "--seed", 3, "--train-per-class", 16, "--test-per-class", 12)
    detections = _run("vt-detect", "--model", REPO / "weights/detector.pt", labels)
    common = ["--videos", labels, "--split", "train", "--frames", 16, "--size", 64, "--seed", 0,
              "--max-clips", clips, "--clips-per-track", 2, "-q"]
    _run("vt-concepts", "spatiotemporal", "-", *common, "--class", "ball", "--label", "right",
         "--name", "ball_right", "-o", out, stdin=detections)
    _run("vt-concepts", "spatiotemporal", "-", *common, "--class", "ball", "--label", "left",
         "--name", "ball_left", "-o", out, "--append", stdin=detections)
    _run("vt-concepts", "spatial", "-", *common, "--class", "ball", "--label", "right",
         "--name", "ball_static", "-o", out, "--append", stdin=detections)
    _run("vt-concepts", "random", "--videos", labels, "--split", "train", "--frames", 16, "--size", 64,
         "--seed", 0, "--exclude-label", "right", "--sets", random_sets, "--clips-per-set", clips,
         "-o", out, "--append", "-q")
    return labels, out


def chain(work: Path, arch: str, weights: Path, labels: Path, clip_sets: Path, layers: list[str]) -> list[dict]:
    acts, grads, cavs = (work / f"{arch}_{n}.h5" for n in ("acts", "grads", "cavs"))
    model = ["--weights", weights, "--layers", ",".join(layers), "--seed", 0, "-q"]
    _run("vt-embed", *model, clip_sets, "-o", acts)
    _run("vt-embed", *model, labels, "--label", "right", "--split", "test", "--target", "right", "-o", grads)
    _run("vt-cav", acts, "--relative", "ball_right:ball_static", "--seed", 0, "-o", cavs, "-q")
    scores = _run("vt-score", cavs, grads, "-q")
    stats = _run("vt-stats", "-", "-q", "--plot", work / f"{arch}_tcav.png", "--title", arch, stdin=scores)
    return [json.loads(line) for line in stats.splitlines()]


def checks(stats: list[dict], layer: str) -> dict[str, bool]:
    by = {(r["concept"], r["against"]): r for r in stats if r["layer"] == layer}

    def positive(key):
        return by[key]["significant"] and by[key]["direction"] == "+"

    right, left, static = (by[(c, "random")]["mean"] for c in ("ball_right", "ball_left", "ball_static"))
    return dict(zip(CHECKS, (right > left, positive(("ball_right", "random")),
                             positive(("ball_right", "ball_static")), right > static)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vtcav-known-answer-archs"))
    parser.add_argument("--archs", default="r3d_18,r2plus1d_18")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train-per-class", type=int, default=32)
    parser.add_argument("--test-per-class", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-seconds", type=float, default=300, help="stop training after the epoch that "
                                                                         "passes this")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, default=30, help="clips per concept and random set")
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--layers", default="layer1,layer2,layer3,layer4")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    spec = InputSpec(frames=args.frames, size=(args.size, args.size), mean=(0.45,) * 3, std=(0.25,) * 3)
    train_world = args.work / "train_world"
    if not (train_world / "labels.jsonl").exists():
        generate_world(train_world, args.seed, args.train_per_class, args.test_per_class)
    x_train, y_train = load_split(train_world, "train", spec)
    x_test, y_test = load_split(train_world, "test", spec)
    labels, clip_sets = concepts(args.work, args.clips, args.random_sets)
    layers = args.layers.split(",")
    rows = []
    for arch in args.archs.split(","):
        started = time.perf_counter()
        model, epochs, seconds = train(arch, x_train, y_train, args)
        held_out = accuracy(model, x_test, y_test)
        weights = args.work / f"{arch}.pt"
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, weights)
        weights.with_suffix(".json").write_text(json.dumps({
            "model": arch, "input": spec.to_dict(), "class_names": list(CLASSES),
            "training": {"world_seed": args.seed, "train_per_class": args.train_per_class, "epochs": epochs,
                         "lr": args.lr, "seconds": round(seconds), "held_out_accuracy": held_out}}, indent=2))
        stats = chain(args.work, arch, weights, labels, clip_sets, layers)
        for layer in layers:
            result = checks(stats, layer)
            by = {(r["concept"], r["against"]): r for r in stats if r["layer"] == layer}
            rows.append((arch, held_out, epochs, layer, result, by[("ball_right", "random")]["mean"],
                         by[("ball_left", "random")]["mean"], by[("ball_static", "random")]["mean"],
                         by[("ball_right", "ball_static")]["mean"]))
        print(f"  {arch}: trained {epochs} epochs in {seconds:.0f} s, held-out accuracy {held_out:.2f}, "
              f"chain done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"# known answer on torchvision architectures trained from scratch at {args.frames}x{args.size}x"
          f"{args.size} on vt-synth (seed {args.seed}, {args.train_per_class} training videos per class), chain "
          f"on world seed 3 with R={args.random_sets}, {args.clips} clips per set; vt-stats defaults; "
          f"shared, loaded 2-core CPU")
    print("| arch | held-out acc | epochs | layer | right | left | static | right vs static | "
          + " | ".join(CHECKS) + " |")
    print("|" + "---|" * (8 + len(CHECKS)))
    for arch, acc, epochs, layer, result, right, left, static, relative in rows:
        marks = " | ".join("yes" if result[c] else "no" for c in CHECKS)
        print(f"| {arch} | {acc:.2f} | {epochs} | {layer} | {right:.2f} | {left:.2f} | {static:.2f} | "
              f"{relative:.2f} | {marks} |")


if __name__ == "__main__":
    main()
