"""Shared fixtures, each defined once: the synthetic worlds and tiny models a test session
builds once and shares, and the two ways to run a command.

Running commands: ``run_cmd`` (tests/inprocess.py) runs a vt-* command inside the test
process and returns what ``subprocess.run`` would (exit status, stdout, stderr); use it
unless the process itself is under test. ``run_cli`` starts the installed console script
as a real process: keep it for signals, exit by a signal, import cost and start-up,
closed standard streams, resource limits, and commands run verbatim through a shell.

Session artefacts (worlds, weights, clip files) live in pytest's temporary folder and are
shared by every test that asks for them: read them, never write into them (write into
``tmp_path``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from inprocess import run_cmd

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"

__all__ = ["REPO", "SESSION", "WEIGHTS", "ctrl_c_reaches_the_child", "h5_arrays", "run_cli", "run_cmd", "run_shell"]

# Folders of session-scoped fixtures start with this; every other folder a test module makes
# in pytest's temporary folder is removed when the module ends (see _free_module_scratch).
SESSION = "session-"

# ultralytics must not touch the network or the home directory, in tests as in use.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "vtcav-tests-yolo"))
os.environ.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "vtcav-tests-mpl"))
os.environ.setdefault("MPLBACKEND", "Agg")


def ctrl_c_reaches_the_child() -> None:
    """``preexec_fn`` for a command a test interrupts with SIGINT: the disposition a terminal's
    foreground job has. A shell starts background jobs (``cmd &``, CI runners) with SIGINT
    ignored, the commands then rightly ignore it too, and the test would time a whole run."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, input: str | None = None, check: bool = False, cwd: str | Path | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a vt-* command as a new process (the installed console script) and capture its
    output; ``env``: variables set on top of this process's. Only where the process is under
    test; otherwise :func:`run_cmd`, which takes the same arguments."""
    tool, rest = args[0], [str(a) for a in args[1:]]
    exe = Path(sys.executable).parent / tool
    result = subprocess.run([str(exe), *rest], input=input, capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(rest)} exited {result.returncode}:\n{result.stderr}")
    return result


def run_shell(line: str, cwd: str | Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command line verbatim through bash, as a user's shell would, with this
    interpreter's vt-* commands first on ``PATH``; output captured as text."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "YOLO_OFFLINE": "1",
           "MPLBACKEND": "Agg"}
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def h5_arrays(path: str | Path) -> tuple[dict, dict]:
    """Every dataset of an HDF5 file by its path in the file, and the file's provenance."""
    import json

    import h5py

    found: dict = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
        return found, json.loads(handle.attrs["provenance"])


# Modules that share a costly session fixture run on the same worker under pytest-xdist
# (shell/test.sh: -n 2 --dist loadgroup); every other module is a group of its own, so its
# module fixtures are built once.
SHARED_GROUPS = {"test_doctests": "project", "test_help_examples": "project"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__ if item.module else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(SHARED_GROUPS.get(module, module)))


@pytest.fixture(scope="module", autouse=True)
def _free_module_scratch(request, tmp_path_factory):
    """Remove what a test module wrote into pytest's temporary folder once the module is done,
    unless one of its tests failed (then it stays to be looked at). A whole run writes about
    15 GB of worlds, activations and CAVs; kept to the end it fills a CI machine's disk.
    Session fixtures' folders (named ``SESSION``...) are shared across modules and stay;
    passed tests' ``tmp_path`` folders go at once (tmp_path_retention_policy in pyproject)."""
    import shutil

    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        return
    for folder in set(base.iterdir()) - before:
        if not folder.name.startswith(SESSION):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cmd():
    """:func:`run_cmd` as a fixture: ``cmd("vt-stats", path, "-q").stdout``."""
    return run_cmd


# --------------------------------------------------------------------------- worlds
@pytest.fixture(scope="session")
def make_world(tmp_path_factory):
    """``make_world(seed, train, test, classes=None) -> Path``: a vt-synth world, built once per
    session for each setting and shared (read-only) by every test that asks for the same one."""
    built: dict[tuple, Path] = {}

    def make(seed: int, train: int, test: int, classes: str | None = None) -> Path:
        key = (seed, train, test, classes)
        if key not in built:
            out = tmp_path_factory.mktemp(f"{SESSION}world_seed{seed}_{train}_{test}")
            run_cmd("vt-synth", out, "--train-per-class", train, "--test-per-class", test, "--seed", seed, "-q",
                    *(["--classes", classes] if classes else []), check=True)
            built[key] = out
        return built[key]

    return make


@pytest.fixture(scope="session")
def tiny_world(make_world) -> Path:
    """A small motion world: 3 training and 2 held-out videos per class."""
    return make_world(seed=7, train=3, test=2)


# --------------------------------------------------------------------------- tiny models and clips
@pytest.fixture
def one_thread():
    """torch on one thread for the test (small tensors: threads cost more than they give)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_tiny_weights(tmp_path_factory):
    """``make_tiny_weights(seed) -> Path``: a state dict of the tiny classifier's architecture
    with random weights and non-trivial BatchNorm statistics (eval mode must be used), one
    file per seed for the session. Load with ``motion_c3d().load_state_dict(torch.load(p))``."""
    built: dict[int, Path] = {}

    def make(seed: int) -> Path:
        if seed not in built:
            import torch
            from torch import nn

            from vtcav_common.models.tiny import motion_c3d

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = motion_c3d()
                for module in model.modules():
                    if isinstance(module, nn.BatchNorm3d):
                        module.running_mean.uniform_(-0.2, 0.2)
                        module.running_var.uniform_(0.5, 1.5)
            path = tmp_path_factory.mktemp(f"{SESSION}tiny_weights_seed{seed}") / "tiny.pt"
            torch.save(model.state_dict(), path)
            built[seed] = path
        return built[seed]

    return make


@pytest.fixture(scope="session")
def tiny_weights(make_tiny_weights) -> Path:
    """Random tiny-classifier weights (seed 3)."""
    return make_tiny_weights(3)


def _clip_file(path: Path, seed: int, frames: int, size: int, sets: tuple, id_prefix: str, track: int) -> Path:
    """Random uint8 clips, one set per (name, role, kind, n), drawn in order from one seed."""
    import numpy as np

    from vtcav_common.formats import clips as clipsets

    rng = np.random.default_rng(seed)
    with clipsets.ClipSetWriter(path, clipsets.Sampling(frames=frames, size=(size, size)), "test",
                                {"seed": seed}) as writer:
        for name, role, kind, n in sets:
            appender = writer.add_set(name, kind=kind, role=role)
            appender.append(rng.integers(0, 256, (n, frames, size, size, 3), dtype=np.uint8),
                            [f"{id_prefix}{i}" for i in range(n)],
                            np.tile(np.arange(frames), (n, 1)), [track] * n, np.zeros((n, frames, 4)))
    return path


@pytest.fixture(scope="session")
def clips_file(tmp_path_factory) -> Path:
    """Random clips of 12 frames of 48x48 (vt-embed resamples them to the model's 16 x 64 x 64):
    'ball_right' (5 clips, a concept) and 'random_0' (3, a random set)."""
    return _clip_file(tmp_path_factory.mktemp(f"{SESSION}clips") / "clips.h5", 1, 12, 48,
                      (("ball_right", "concept", "spatiotemporal", 5), ("random_0", "random", "random", 3)), "vid", 1)


@pytest.fixture(scope="session")
def small_clips_file(tmp_path_factory) -> Path:
    """Random clips of 8 frames of 32x32, untracked: 'ball' (3 clips, a concept) and
    'random_0' (2, a random set); vt-embed resamples them to each model's input."""
    return _clip_file(tmp_path_factory.mktemp(f"{SESSION}small_clips") / "clips.h5", 0, 8, 32,
                      (("ball", "concept", "spatiotemporal", 3), ("random_0", "random", "random", 2)), "v", -1)


# --------------------------------------------------------------------------- the examples' project
def _project_step(line: str, cwd: Path) -> None:
    """A step that builds the examples' project: a plain vt-* command runs in this process,
    anything that needs a shell (a script, variables, redirections) in bash."""
    import shlex

    words = shlex.split(line)
    if words[0].startswith("vt-") and not set(line) & set("|<>;&$`"):
        run_cmd(*words, cwd=cwd, check=True)
        return
    result = run_shell(line, cwd)
    assert result.returncode == 0, f"project step failed: {line}\n{result.stderr[-3000:]}"


def build_project(root: Path) -> Path:
    """Fill ``root`` with a small project where the examples' file names exist (the ``--help``
    examples and the library's docstring examples): world/, its videos/, labels.jsonl and
    gt.jsonl, the pipeline's outputs (detections.jsonl, concepts.h5, acts.h5, grads.h5,
    cavs.h5, scores.jsonl, stats.jsonl, tcav.png), single-set clip files, curated clips, a
    review sheet, and 3D-ACE's and VTCD's steps on two videos of 'right' (cand.h5, ace.h5 and
    ranking.jsonl; tubelets.h5 and the VTCD concepts vtcd.h5). ``weights`` links to the
    repository's."""
    import shutil

    import numpy as np

    (root / "weights").symlink_to(REPO / "weights")
    _project_step("vt-synth world --train-per-class 6 --test-per-class 2 --seed 0 -q", root)
    shutil.copytree(root / "world" / "videos", root / "videos")
    for name in ("labels.jsonl", "gt.jsonl"):
        shutil.copy(root / "world" / name, root / name)
    shutil.copy(root / "world" / "videos" / "test_up_10000.mp4", root / "clip.mp4")
    for folder in ("clips", "other_videos"):
        (root / folder).mkdir(parents=True)
        for video in sorted((root / "videos").glob("test_*_1000[01].mp4"))[:3]:
            shutil.copy(video, root / folder / video.name)
    # hand-picked clips of 16 frames, the length the import example appends to them
    _project_step("vt-synth curated --train-per-class 1 --test-per-class 0 --frames 16 --classes right,left -q", root)
    shutil.move(root / "curated" / "videos", root / "curated" / "ball_bounce")
    _project_step("RANDOM_SETS=3 CLIPS=20 " + str(REPO / "shell" / "pipeline.sh") + " labels.jsonl . 2>/dev/null", root)
    shutil.copy(root / "detections.jsonl", root / "dets.jsonl")
    common = "--videos labels.jsonl --split train --frames 16 --size 64 --max-clips 5 -q"
    _project_step(f"vt-concepts spatiotemporal dets.jsonl {common} --class ball --name ball -o ball.h5", root)
    _project_step(f"vt-concepts spatial dets.jsonl {common} --class square --name square -o square.h5", root)
    _project_step("vt-concepts random --videos labels.jsonl --sets 2 --clips-per-set 5 -q -o random.h5", root)
    model = "--weights weights/classifier.pt --layers block2,block3 -q"
    _project_step(f"vt-embed concepts.h5 --set ball_right --set ball_static {model} -o concepts_acts.h5", root)
    _project_step(f"vt-embed concepts.h5 --set random_00 --set random_01 --set random_02 {model} -o random_acts.h5",
                  root)
    _project_step("vt-concepts review concepts.h5 --set ball_right -d review/ -q", root)
    # 3D-ACE and VTCD on two videos of 'right', the inputs of the ace modules' docstring examples
    right = "world/labels.jsonl --label right --split train --max-videos 2"
    _project_step(f"vt-ace supervoxels {right} --resolutions 15 -q -o cand.h5", root)
    _project_step("vt-ace discover cand.h5 --random random.h5 --videos world/labels.jsonl --target right "
                  "--weights weights/classifier.pt --layer block3 --k 5 --min-members 3 -q -o ace.h5 "
                  "--ranking ranking.jsonl", root)
    _project_step(f"vt-ace tubelets {right} --weights weights/classifier.pt --layers block2,block3 "
                  "--resolutions 30 -q -o tubelets.h5", root)
    _project_step("vt-ace vtcd tubelets.h5 --videos world/labels.jsonl --target right "
                  "--weights weights/classifier.pt --k-min 3 --k-max 4 --concepts-only -q -o vtcd.h5", root)
    rng = np.random.default_rng(0)
    np.savez(root / "picked.npz", picked=rng.integers(0, 255, (4, 16, 64, 64, 3), dtype=np.uint8))
    np.save(root / "background.npy", rng.integers(0, 255, (4, 16, 64, 64, 3), dtype=np.uint8))
    return root


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """The examples' small project (:func:`build_project`), built once per session. Shared:
    copy it (``shutil.copytree(project, dest, symlinks=True)``) before running anything in it."""
    return build_project(tmp_path_factory.mktemp(f"{SESSION}project"))
