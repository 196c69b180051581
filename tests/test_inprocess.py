"""The in-process runner (tests/inprocess.py) gives what a process gives, and leaves the test
process as it found it: the suite's command tests rely on both."""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings

import pytest

from conftest import run_cli, run_cmd


def _scores(path):
    rows = [{"target": "right", "layer": "l1", "concept": "c" if kind == "concept" else f"random_{i:02d}",
             "against": f"random_{i:02d}" if kind == "concept" else f"random_{i + 1:02d}", "kind": kind,
             "replicate": i, "score": 0.9 - 0.02 * i if kind == "concept" else 0.5 + 0.03 * (i % 3 - 1),
             "magnitude": 0.1, "cav_accuracy": 0.9} for kind in ("concept", "null") for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("case", ["version", "usage", "records-from-stdin", "error", "traceback"])
def test_same_status_and_bytes_as_a_process(case, tmp_path):
    scores = _scores(tmp_path / "scores.jsonl")
    args, stdin, env = {
        "version": (["vt-stats", "--version"], None, {}),
        "usage": (["vt-stats", scores, "--nope"], None, {}),
        "records-from-stdin": (["vt-stats", "-", "--family", "layer"], scores.read_text(), {}),
        "error": (["vt-stats", tmp_path / "missing.jsonl"], None, {}),
        "traceback": (["vt-stats", tmp_path / "missing.jsonl"], None, {"VTCAV_DEBUG": "1"}),
    }[case]
    inside = run_cmd(*args, input=stdin, env=env, cwd=tmp_path)
    process = run_cli(*args, input=stdin if stdin is not None else "", env=env, cwd=tmp_path)
    assert inside.returncode == process.returncode
    assert inside.stdout == process.stdout
    if case == "traceback":   # the same exception, raised from other frames
        assert inside.stderr.splitlines()[-1] == process.stderr.splitlines()[-1]
        assert inside.stderr.startswith("Traceback") and process.stderr.startswith("Traceback")
    else:
        assert inside.stderr == process.stderr
    assert inside.stdout_bytes == inside.stdout.encode()


def test_the_test_process_is_left_as_it_was(tmp_path):
    before = (sys.argv[:], os.getcwd(), dict(os.environ), warnings.filters[:], sys.stdout, sys.stderr, sys.stdin,
              signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGPIPE),
              sys.excepthook, sys.path[:])
    result = run_cmd("vt-stats", _scores(tmp_path / "s.jsonl"), "-q", "--plot", tmp_path / "f.png",
                     env={"VTCAV_EXTRA": "1"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = (sys.argv[:], os.getcwd(), dict(os.environ), warnings.filters[:], sys.stdout, sys.stderr, sys.stdin,
             signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGPIPE),
             sys.excepthook, sys.path[:])
    assert after == before


def test_a_hard_exit_ends_the_command_not_the_tests(monkeypatch, tmp_path):
    """The frame leaves with os._exit after a failed HDF5 write; here that is an exit status."""
    from vtcav_common.core import files

    monkeypatch.setattr(files, "hard_exit_requested", lambda: True)
    result = run_cmd("vt-stats", tmp_path / "missing.jsonl")
    assert result.returncode == 1 and "missing.jsonl: no such file" in result.stderr


def test_check_names_the_command_and_its_stderr(tmp_path):
    with pytest.raises(AssertionError, match=r"vt-stats .*missing.jsonl exited 1:\nvt-stats: error: "):
        run_cmd("vt-stats", tmp_path / "missing.jsonl", check=True)
