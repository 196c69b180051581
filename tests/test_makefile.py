"""shell/Makefile: a changed setting re-runs exactly the steps that use it; side outputs are
targets; the commands are found in VTCAV_VENV without activation; SHARDS=N makes shard targets.

The vt-* commands are stand-ins here (a script that logs its arguments and writes its outputs),
so the test checks make's decisions in a second, not the tools (tested elsewhere)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from conftest import REPO

MAKEFILE = REPO / "shell" / "Makefile"
FAKE = """#!/usr/bin/env bash
# a stand-in vt-* command: log the call, write the files it would write
name=$(basename "$0")
echo "$name $*" >> "$FAKE_LOG"
prev=""
for a in "$@"; do
    case $prev in -o|--plot) mkdir -p "$(dirname "$a")"; echo "$name $*" > "$a" ;; esac
    prev=$a
done
if [ "$name" = vt-synth ]; then mkdir -p "$1"; echo '{}' > "$1/labels.jsonl"; fi
if [ "$name" = vt-merge ]; then for a in "$@"; do case $a in -*) ;; *) echo merged > "$a"; break ;; esac; done; fi
"""
TOOLS = ("vt-synth", "vt-detect", "vt-concepts", "vt-embed", "vt-cav", "vt-score", "vt-stats", "vt-merge")
EVERYTHING = ["vt-synth", "vt-detect", "vt-concepts spatiotemporal", "vt-concepts spatiotemporal",
              "vt-concepts spatial", "vt-concepts random", "vt-concepts merge", "vt-embed acts", "vt-embed grads",
              "vt-cav", "vt-score", "vt-stats"]


@pytest.fixture()
def fake(tmp_path) -> dict:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for tool in TOOLS:
        script = venv / "bin" / tool
        script.write_text(FAKE)
        script.chmod(0o755)
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("classifier.pt", "other.pt", "detector.pt", "yolo2.pt"):
        (weights / name).write_text(name)
    return {"venv": venv, "out": tmp_path / "out", "log": tmp_path / "calls.log", "weights": weights}


def make(fake: dict, *settings: str, dry: bool = False) -> list[str]:
    """Run make with the stand-in tools; the steps that ran (or would run, with dry), sorted."""
    fake["log"].write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    env.update(FAKE_LOG=str(fake["log"]), PATH="/usr/bin:/bin")      # nothing but VTCAV_VENV has vt-*
    w = fake["weights"]
    args = ["make", "-f", str(MAKEFILE), f"OUT={fake['out']}", f"VTCAV_VENV={fake['venv']}",
            f"WEIGHTS={w / 'classifier.pt'}", f"DETECTOR={w / 'detector.pt'}", *settings]
    result = subprocess.run(args + (["-n"] if dry else []), capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    time.sleep(0.01)    # the next run's files are newer than this run's, whatever the clock's resolution
    lines = result.stdout.splitlines() if dry else fake["log"].read_text().splitlines()
    return sorted(_step(line) for line in lines if line.startswith("vt-"))


def _step(call: str) -> str:
    words = call.split()
    if words[0] == "vt-concepts":
        return " ".join(words[:2])
    if words[0] == "vt-embed":
        return "vt-embed grads" if "--target" in words else "vt-embed acts"
    return words[0]


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_a_changed_setting_reruns_exactly_its_dependents(fake):
    assert make(fake) == sorted(EVERYTHING)                        # found in VTCAV_VENV, nothing on PATH
    assert make(fake) == []                                # nothing changed: nothing to do

    tail = ["vt-cav", "vt-score", "vt-stats"]
    assert make(fake, "LAYERS=block2,block3", dry=True) == sorted(["vt-embed acts", "vt-embed grads", *tail])
    # the dry run changed no stamp: the real run still re-runs them
    assert make(fake, "LAYERS=block2,block3") == sorted(["vt-embed acts", "vt-embed grads", *tail])
    assert make(fake, "LAYERS=block2,block3") == []
    assert make(fake, "LAYERS=block2,block3", "TARGET=up") == sorted([
        "vt-concepts spatiotemporal", "vt-concepts spatial", "vt-concepts random", "vt-concepts merge",
        "vt-embed acts", "vt-embed grads", *tail])
    assert make(fake, "LAYERS=block2,block3", "TARGET=up", "OTHER=down") == sorted([
        "vt-concepts spatiotemporal", "vt-concepts merge", "vt-embed acts", *tail])
    base = ["LAYERS=block2,block3", "TARGET=up", "OTHER=down"]
    other = f"WEIGHTS={fake['weights'] / 'other.pt'}"
    assert make(fake, *base, other) == sorted(["vt-embed acts", "vt-embed grads", *tail])
    assert make(fake, *base, f"WEIGHTS={fake['weights'] / 'other.pt'}", "MODEL=pkg.mod:net") == sorted([
        "vt-embed acts", "vt-embed grads", *tail])
    base += [f"WEIGHTS={fake['weights'] / 'other.pt'}", "MODEL=pkg.mod:net"]
    assert make(fake, *base, f"DETECTOR={fake['weights'] / 'yolo2.pt'}") == sorted([
        "vt-detect", "vt-concepts spatiotemporal", "vt-concepts spatiotemporal", "vt-concepts spatial",
        "vt-concepts merge", "vt-embed acts", *tail])
    base += [f"DETECTOR={fake['weights'] / 'yolo2.pt'}"]

    (fake["weights"] / "other.pt").write_text("retrained")          # new weights in the same file
    assert make(fake, *base) == sorted(["vt-embed acts", "vt-embed grads", *tail])
    (fake["out"] / "tcav.png").unlink()                                # a side output is a target
    assert make(fake, *base) == sorted(["vt-stats"])
    (fake["out"] / "stats.jsonl").unlink()
    assert make(fake, *base) == sorted(["vt-stats"])


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_shards_are_targets_merged_by_vt_merge(fake):
    calls = make(fake, "SHARDS=3", "-j3")
    assert calls.count("vt-detect") == 3 and calls.count("vt-embed acts") == 3 and calls.count("vt-embed grads") == 3
    assert calls.count("vt-merge") == 3
    log = fake["log"].read_text()
    for k in range(3):
        assert f"--shard {k}/3 -o {fake['out']}/shards/3/detections.{k}.jsonl" in log
        assert f"--shard {k}/3 -o {fake['out']}/shards/3/acts.{k}.h5" in log
    assert f"vt-merge --copy -o {fake['out']}/acts.h5 " in log
    assert make(fake, "SHARDS=3") == []
    assert make(fake, "SHARDS=3", "LAYERS=block3").count("vt-embed acts") == 3


def test_pipeline_runs_shards_side_by_side_and_merges_them(fake, tmp_path):
    """shell/pipeline.sh with SHARDS=2: vt-detect and vt-embed as shards (GNU parallel or xargs -P), merged."""
    labels = tmp_path / "labels.jsonl"
    labels.write_text("{}\n")
    fake["log"].write_text("")
    env = {**os.environ, "FAKE_LOG": str(fake["log"]), "VTCAV_VENV": str(fake["venv"]), "SHARDS": "2"}
    result = subprocess.run([str(REPO / "shell" / "pipeline.sh"), str(labels), str(fake["out"])], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    log = fake["log"].read_text()
    shards = fake["out"] / "shards"
    for k in range(2):
        assert f"--shard {k}/2 -o {shards}/detections.{k}.jsonl" in log
        assert f"--shard {k}/2 -o {shards}/acts.{k}.h5" in log and f"--shard {k}/2 -o {shards}/grads.{k}.h5" in log
    merged = f"vt-merge --copy -o {fake['out']}/detections.jsonl"
    assert f"{merged} {shards}/detections.0.jsonl {shards}/detections.1.jsonl" in log
    assert sorted(_step(line) for line in log.splitlines()).count("vt-merge") == 3
