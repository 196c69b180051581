"""Every ``Examples:`` line of every command's ``--help`` runs verbatim, as a user would paste it.

The examples are read from the commands' epilogs, so a changed example is tested as it stands.
Each epilog runs in its own copy of a small project (a synthetic world, the pipeline's files,
curated clips); its lines run in order, so an example may use what the one before wrote. An
example that needs what this machine cannot have (other people's weights or data sets) is
skipped with the reason; any other example that fails is a wrong example.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

from conftest import run_shell

pytestmark = pytest.mark.slow

TOOLS = ("vt_synth", "vt_detect", "vt_concepts", "vt_embed", "vt_cav", "vt_score", "vt_stats",
         "vt_explain", "vt_ace", "vt_report", "vt_merge")
# What an example names that cannot be had here, and why it is not run.
UNAVAILABLE = {
    "r3d_18.pth": "torchvision weights (r3d_18) that cannot be downloaded here",
    "swin3d_t.pth": "torchvision weights (swin3d_t) that cannot be downloaded here",
    "mvit.pth": "torchvision weights (mvit_v2_s) that cannot be downloaded here",
    "yolov8s.pt": "YOLOv8 weights that cannot be downloaded here (and a CUDA device)",
    "pkg.models:my_net": "the user's own model package",
    "MOT17-02": "the MOTChallenge data set",
    "tao_val.json": "the TAO data set's annotations",
    "runs/detect/track": "an ultralytics tracking run's labels",
    "kinetics400": "the Kinetics-400 list files",
    "--class person": "a real-world detector's classes (person)",
    "--class racket": "a real-world detector's classes (racket)",
    "vt-merge": "a sharded run's files (tests/test_shard.py makes and merges them)",
}
# Epilogs whose examples continue from the state another epilog's examples left.
CONTINUES = {"vt_ace supervoxels": "vt_ace", "vt_ace discover": "vt_ace", "vt_ace faithfulness": "vt_ace",
             "vt_ace features": "vt_ace",
             "vt_ace sheet": "vt_ace", "vt_ace masks": "vt_ace vtcd"}


def _epilogs():
    for tool in TOOLS:
        command = typer.main.get_command(importlib.import_module(f"tools.{tool}").app)
        yield tool, command.epilog or ""
        for name, sub in getattr(command, "commands", {}).items():
            yield f"{tool} {name}", sub.epilog or ""


def examples(epilog: str) -> list[str]:
    """The shell lines of an epilog's examples: indented lines, with ``\\`` continuations joined.

    >>> examples("Examples:\\n\\n    vt-cav acts.h5 \\\\\\n        -o c.h5\\n\\nText.\\n\\n    vt-stats s.jsonl")
    ['vt-cav acts.h5 -o c.h5', 'vt-stats s.jsonl']
    """
    lines, current = [], ""
    for line in epilog.splitlines():
        if not line.startswith("    ") and not current:
            continue
        text = line.strip()
        if text.endswith("\\"):
            current += text[:-1].rstrip() + " "
            continue
        lines.append(" ".join((current + text).split()))
        current = ""
    return [line for line in lines if line]


EXAMPLES = [(where, i, line) for where, epilog in _epilogs() for i, line in enumerate(examples(epilog))]


def _why_not(line: str) -> str | None:
    return next((why for needle, why in UNAVAILABLE.items() if needle in line), None)


def _run(line: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_shell(line, cwd, timeout)


class Sandboxes:
    """One copy of the project per epilog, and how many of its lines have run there."""

    def __init__(self, project: Path, tmp_path_factory):
        self.project, self.tmp = project, tmp_path_factory
        self.made: dict[str, list] = {}

    def at(self, where: str, upto: int) -> Path:
        """The epilog's folder, with its lines before ``upto`` run (skipped ones left out)."""
        if where not in self.made:
            parent = CONTINUES.get(where)
            source = self.at(parent, len(_lines(parent))) if parent else self.project
            folder = self.tmp.mktemp(where.replace(" ", "_"))
            shutil.copytree(source, folder, symlinks=True, dirs_exist_ok=True)
            self.made[where] = [folder, 0]
            if parent:
                self.free(parent)
        folder, done = self.made[where]
        for line in _lines(where)[done:upto]:
            if _why_not(line) is None:
                _check(line, _run(line, folder))
        self.made[where][1] = max(done, upto)
        return folder

    def ran(self, where: str, index: int) -> None:
        self.made[where][1] = max(self.made[where][1], index + 1)

    def free(self, where: str) -> None:
        """Remove an epilog's folder once all its lines have run and every epilog continuing
        from it has its copy: kept to the module's end, the copies came to gigabytes."""
        folder, done = self.made[where]
        children = [w for w, p in CONTINUES.items() if p == where]
        if done >= len(_lines(where)) and all(c in self.made for c in children):
            shutil.rmtree(folder, ignore_errors=True)


def _lines(where: str) -> list[str]:
    return [line for w, _, line in EXAMPLES if w == where]


@pytest.fixture(scope="module")
def sandboxes(project, tmp_path_factory) -> Sandboxes:
    return Sandboxes(project, tmp_path_factory)


def _check(line: str, result: subprocess.CompletedProcess) -> None:
    stderr = result.stderr
    assert result.returncode == 0, f"`{line}` exited {result.returncode}:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr and ": error:" not in stderr, f"`{line}`:\n{stderr[-3000:]}"


def test_every_command_has_examples():
    assert {where.split()[0] for where, _, _ in EXAMPLES} == set(TOOLS)


@pytest.mark.parametrize("where, index, line", EXAMPLES, ids=[f"{w.replace(' ', '-')}-{i}" for w, i, _ in EXAMPLES])
def test_help_example_runs_verbatim(sandboxes, where, index, line):
    why = _why_not(line)
    if why:
        if where in sandboxes.made:   # a skipped last line still ends the epilog
            sandboxes.ran(where, index)
            sandboxes.free(where)
        pytest.skip(f"needs {why}")
    folder = sandboxes.at(where, index)   # the epilog's earlier lines first
    try:
        _check(line, _run(line, folder))
    finally:  # a failing line is reported once, by its own test, not again by the next line's
        sandboxes.ran(where, index)
    sandboxes.free(where)   # (only after a line that passed: a failure's folder stays to be looked at)
