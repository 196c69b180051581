"""The known answer, end to end through the commands, on the motion world.

In the world, the class is the direction the ball moves. For class "right", Video-TCAV
run on the project's trained classifier must find:

1. the concept "ball moving right" (tracked, dynamic clips from "right" videos) scores
   above "ball moving left" at the deepest tested layer;
2. "ball moving right" is significantly positive (Bonferroni) at one tested layer or more;
3. the relative CAVs "ball moving right" vs "the same ball, static" (R of them, each on
   resampled clips) are significantly positive at one tested layer or more;
4. the dynamic concept scores above the static crop of the same object at the deepest
   tested layer.

The same pipeline with an untrained model (same architecture, random weights) or with
the gradients shuffled must not produce that answer, so the test can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import WEIGHTS, run_cli

LAYERS = ["block1", "block2", "block3"]
DEEPEST = LAYERS[-1]
RANDOM_SETS = 10
CLIPS = 30
MODEL = "vtcav_common.models.tiny:motion_c3d"


def _run(*args, **kwargs):
    return run_cli(*args, check=True, **kwargs)


@pytest.fixture(scope="module")
def world_and_concepts(tmp_path_factory):
    """World -> vt-detect | vt-concepts (a pipe) -> concept and random clip sets."""
    out = tmp_path_factory.mktemp("known_answer")
    world = out / "world"
    _run("vt-synth", world, "--seed", "3", "--train-per-class", "16", "--test-per-class", "12")
    labels = world / "labels.jsonl"
    detections = _run("vt-detect", "--model", WEIGHTS / "detector.pt", labels).stdout
    common = ["--videos", labels, "--split", "train", "--frames", "16", "--size", "64", "--seed", "0",
              "--max-clips", str(CLIPS), "--clips-per-track", "2"]
    concepts = out / "concepts.h5"
    _run("vt-concepts", "spatiotemporal", "-", *common, "--class", "ball", "--label", "right",
         "--name", "ball_right", "-o", concepts, input=detections)
    _run("vt-concepts", "spatiotemporal", "-", *common, "--class", "ball", "--label", "left",
         "--name", "ball_left", "-o", concepts, "--append", input=detections)
    _run("vt-concepts", "spatial", "-", *common, "--class", "ball", "--label", "right",
         "--name", "ball_static", "-o", concepts, "--append", input=detections)
    _run("vt-concepts", "random", "--videos", labels, "--split", "train", "--frames", "16", "--size", "64",
         "--seed", "0", "--exclude-label", "right", "--sets", str(RANDOM_SETS), "--clips-per-set", str(CLIPS),
         "-o", concepts, "--append")
    return out, labels, concepts


def _tcav(out: Path, labels: Path, concepts: Path, weights: Path, tag: str, score_args=()) -> dict:
    """embed -> cav -> score -> stats; returns the stats records by (layer, concept, against)."""
    model = ["--model", MODEL, "--weights", weights, "--layers", ",".join(LAYERS), "--seed", "0"]
    acts, grads, cavs = out / f"acts_{tag}.h5", out / f"grads_{tag}.h5", out / f"cavs_{tag}.h5"
    if not acts.exists():
        _run("vt-embed", *model, concepts, "-o", acts)
        _run("vt-embed", *model, labels, "--label", "right", "--split", "test", "--target", "right", "-o", grads)
        _run("vt-cav", acts, "--relative", "ball_right:ball_static", "--seed", "0", "-o", cavs)
    scores = _run("vt-score", cavs, grads, *score_args).stdout
    stats = _run("vt-stats", "-", "--plot", out / f"tcav_{tag}.png", input=scores)
    print(stats.stderr)
    return {(r["layer"], r["concept"], r["against"]): r for r in map(json.loads, stats.stdout.splitlines())}


def known_answer(stats: dict) -> dict[str, bool]:
    def positive(key):
        return stats[key]["significant"] and stats[key]["direction"] == "+"

    deepest = {c: stats[(DEEPEST, c, "random")]["mean"] for c in ("ball_right", "ball_left", "ball_static")}
    return {
        "right above left at the deepest layer": deepest["ball_right"] > deepest["ball_left"],
        "right significantly positive somewhere": any(positive((l, "ball_right", "random")) for l in LAYERS),
        "right vs static significantly positive": any(positive((l, "ball_right", "ball_static")) for l in LAYERS),
        "dynamic above static at the deepest layer": deepest["ball_right"] > deepest["ball_static"],
    }


@pytest.mark.slow
def test_trained_model_gives_the_known_answer(world_and_concepts):
    out, labels, concepts = world_and_concepts
    stats = _tcav(out, labels, concepts, WEIGHTS / "classifier.pt", "trained")
    checks = known_answer(stats)
    assert all(checks.values()), checks
    for record in stats.values():
        assert record["n"] == RANDOM_SETS and record["n_null"] == RANDOM_SETS   # the test says what R it used


@pytest.mark.slow
def test_shuffled_gradients_do_not_give_the_known_answer(world_and_concepts):
    out, labels, concepts = world_and_concepts
    stats = _tcav(out, labels, concepts, WEIGHTS / "classifier.pt", "trained", ["--permute-gradients"])
    assert not all(known_answer(stats).values())


@pytest.mark.slow
def test_untrained_model_does_not_give_the_known_answer(world_and_concepts):
    out, labels, concepts = world_and_concepts
    from vtcav_common.models.tiny import motion_c3d

    torch.manual_seed(0)
    untrained = out / "untrained.pt"
    torch.save(motion_c3d().state_dict(), untrained)
    stats = _tcav(out, labels, concepts, untrained, "untrained")
    assert not all(known_answer(stats).values())
