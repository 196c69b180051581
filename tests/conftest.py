"""Shared fixtures: a tiny synthetic world, and a way to run the commands as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"

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
            ) -> subprocess.CompletedProcess:
    """Run a vt-* command (as installed console script) and capture its output."""
    tool, rest = args[0], [str(a) for a in args[1:]]
    exe = Path(sys.executable).parent / tool
    result = subprocess.run([str(exe), *rest], input=input, capture_output=True, text=True, cwd=cwd,
                            env={**os.environ})
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(rest)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A small motion world: 3 training and 2 held-out videos per class."""
    out = tmp_path_factory.mktemp("world")
    run_cli("vt-synth", out, "--train-per-class", "3", "--test-per-class", "2", "--seed", "7", check=True)
    return out
