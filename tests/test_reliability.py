"""Faults a user meets: signals mid-write, stale temporaries, outputs that are devices, FIFOs,
symbolic links or inputs, strict JSON.  (The broad bad-input corpus is tests/test_corpus.py.)"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ctrl_c_reaches_the_child, run_cmd
from vtcav_common.core import files
from vtcav_common.formats import records
from vtcav_common.core.errors import UsageError, VtcavError

SCORE = {"target": "right", "layer": "block1", "against": "random_00", "replicate": 0, "magnitude": 0.1,
         "cav_accuracy": 0.9, "n_inputs": 4, "classifier": "sgd", "model": "tiny", "cav_run": "c0",
         "gradients_run": "g0"}


@pytest.fixture
def scores(tmp_path) -> Path:
    """Score records of one run: a concept and the null, three random sets each."""
    rows = []
    for kind, concept, values in (("concept", "ball", (0.9, 0.8, 1.0)), ("null", "random_01", (0.5, 0.4, 0.6))):
        for replicate, value in enumerate(values):
            rows.append({**SCORE, "concept": concept, "kind": kind, "replicate": replicate, "score": value,
                         "against": f"random_0{replicate + 2}" if kind == "null" else f"random_0{replicate}"})
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".vtcav-" in p.name or ".tmp" in p.name)


# --------------------------------------------------------------------------- signals
@pytest.mark.parametrize("signum, status, word", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_signal_mid_write_cleans_up_and_keeps_the_earlier_output(tiny_world, tmp_path, signum, status, word):
    out = tmp_path / "random.h5"
    out.write_bytes(b"earlier")
    exe = Path(sys.executable).parent / "vt-concepts"
    process = subprocess.Popen([str(exe), "random", "--videos", str(tiny_world / "labels.jsonl"), "--sets", "40",
                                "--clips-per-set", "40", "--size", "48", "-o", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ctrl_c_reaches_the_child)
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".random.h5.vtcav-")]:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.05)
    # the writer's lock (.random.h5.vtcav-lock, files.exclusive_output) is not a temporary output
    temps = [p.name for p in tmp_path.iterdir()
             if p.name.startswith(".random.h5.") and p.name != ".random.h5.vtcav-lock"]
    assert temps and all(t.startswith(f".random.h5.vtcav-{process.pid}.tmp") for t in temps)  # name and PID
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert stderr.strip().splitlines()[-1] == f"vt-concepts: {word}"
    assert "Traceback" not in stderr
    assert out.read_bytes() == b"earlier"
    assert _temps(tmp_path) == []


def test_stale_temporaries_of_dead_runs_are_removed_by_the_next_write(scores, tmp_path):
    out = tmp_path / "stats.jsonl"
    dead = tmp_path / ".stats.jsonl.vtcav-999999.tmp.jsonl"       # a run killed with SIGKILL
    alive = tmp_path / f".stats.jsonl.vtcav-{os.getppid()}.tmp.jsonl"  # a run still writing (a live process)
    other = tmp_path / ".other.jsonl.vtcav-999999.tmp.jsonl"      # another output's
    for path in (dead, alive, other):
        path.write_text("half")
    result = run_cmd("vt-stats", scores, "-o", out, "-q")
    assert result.returncode == 0, result.stderr
    assert out.exists() and not dead.exists()
    assert alive.exists() and other.exists()


def test_temp_names_map_back_to_the_output():
    final = Path("out/acts.h5")
    temp = files.temp_name(final, ".h5", pid=4242)
    assert temp == Path("out/.acts.h5.vtcav-4242.tmp.h5")
    assert files.final_name(temp) == "out/acts.h5"


# --------------------------------------------------------------------------- what -o points at
def _device(path: Path, minor: int) -> None:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("mknod not permitted here")


def test_output_to_a_character_device_writes_into_it(scores, tmp_path):
    null = tmp_path / "null"
    _device(null, 3)
    result = run_cmd("vt-stats", scores, "-o", null, "-q")
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(null.stat().st_mode), "the device was replaced by a regular file"
    assert _temps(tmp_path) == []


def test_a_full_device_is_one_error_and_stays_a_device(scores, tmp_path):
    full = tmp_path / "full"
    _device(full, 7)
    result = run_cmd("vt-stats", scores, "-o", full, "-q")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"vt-stats: error: {full}: cannot write (No space left on device)"]
    assert stat.S_ISCHR(full.stat().st_mode)


def test_output_to_a_fifo_is_written_into(scores, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    result = run_cmd("vt-stats", scores, "-o", fifo, "-q")
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(received[0].splitlines()[0])["concept"] == "ball"


def test_a_symbolic_link_is_followed_and_its_target_replaced(scores, tmp_path):
    target = tmp_path / "data" / "stats.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = run_cmd("vt-stats", scores, "-o", link, "-q")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and link.resolve() == target
    assert json.loads(target.read_text().splitlines()[0])["concept"] == "ball"
    assert _temps(tmp_path) == [] and _temps(target.parent) == []


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_output_that_is_an_input_is_refused_before_any_work(scores, tmp_path, spelling):
    before = scores.read_bytes()
    out = {"same": scores, "dot": tmp_path / "." / scores.name, "symlink": tmp_path / "alias.jsonl",
           "hardlink": tmp_path / "hard.jsonl"}[spelling]
    if spelling == "symlink":
        out.symlink_to(scores)
    if spelling == "hardlink":
        os.link(scores, out)
    result = run_cmd("vt-stats", scores, "-o", out, "-q")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"vt-stats: error: {out}: the output is also an input")
    assert scores.read_bytes() == before


def test_refuse_overwriting_inputs_ignores_stdio_and_other_files(tmp_path):
    a = tmp_path / "a.h5"
    a.write_text("x")
    files.refuse_overwriting_inputs([str(a)], ["-", str(tmp_path / "b.h5"), None])
    with pytest.raises(UsageError, match="the output is also an input"):
        files.refuse_overwriting_inputs([str(a)], [str(tmp_path / "sub" / ".." / "a.h5")])


# --------------------------------------------------------------------------- streams
def test_closed_stdin_is_one_line(scores):
    exe = Path(sys.executable).parent / "vt-stats"
    result = subprocess.run(["bash", "-c", f'"{exe}" - -q <&-'], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "vt-stats: error: <stdin>: standard input is closed (give a file, or pipe records in)"]


def test_a_closed_pipe_on_stdout_ends_quietly(scores):
    exe = Path(sys.executable).parent / "vt-stats"
    process = subprocess.Popen([str(exe), str(scores), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()   # like `| head` that has already exited
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert process.returncode in (0, -signal.SIGPIPE), stderr
    assert "Traceback" not in stderr and "error" not in stderr


def test_non_utf8_input_names_the_file(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"a": 1}\n{"name": "r\xe9ght"}\n')
    with pytest.raises(VtcavError, match=r"latin1.jsonl: not UTF-8 text \(byte 0xe9 on line 2\)"):
        list(records.read_jsonl(str(path)))


# --------------------------------------------------------------------------- strict JSON
def test_records_are_strict_json(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(VtcavError, match=r"out.jsonl: cannot write a record with a non-finite number in 'p' \(nan\)"):
        with files.open_text_output(str(path)) as out:
            records.write_records([{"p": 0.5}, {"p": float("nan")}], out)
    assert not path.exists() and _temps(tmp_path) == []
    path.write_text('{"score": NaN}\n')
    with pytest.raises(VtcavError, match=r"out.jsonl:1: not valid JSON \(NaN is not a JSON number\)"):
        list(records.read_jsonl(str(path)))


# --------------------------------------------------------------------------- models
def test_an_untrained_factory_model_has_the_same_weights_hash_every_time():
    import torch

    from vtcav_common.models import load_model

    hashes = set()
    for _ in range(2):
        torch.rand(3)   # whatever the caller drew before
        loaded = load_model("vtcav_common.models.tiny:motion_c3d", None, need_weights=False)
        hashes.add(loaded.provenance["weights_sha256"])
    assert len(hashes) == 1
