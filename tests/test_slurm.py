"""The SLURM job-array scripts, for real: a single-node cluster on this machine
(shell/start_slurm.sh), a 2-shard array per heavy step, merged, equal to the unsharded run.

Skipped (with the reason) only where SLURM cannot be installed or started: not root, no
apt-get, or the daemons do not come up. CI runs as root and installs it (shell/test.sh).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, WEIGHTS, h5_arrays, run_cli

SLURM = REPO / "shell" / "slurm"
TIMEOUT = 900


def _free_port_pair() -> int:
    for port in range(16817, 16917, 2):
        taken = False
        for p in (port, port + 1):
            with socket.socket() as s:
                taken = taken or s.connect_ex(("127.0.0.1", p)) == 0
        if not taken:
            return port
    return 16817


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "VTCAV_SLURM_DIR": str(folder), "VTCAV_SLURM_PORT": str(_free_port_pair())}
    started = subprocess.run([str(REPO / "shell" / "start_slurm.sh"), "start"], env=env, capture_output=True,
                             text=True, timeout=600)
    if started.returncode != 0:
        subprocess.run([str(REPO / "shell" / "start_slurm.sh"), "stop"], env=env, capture_output=True)
        pytest.skip(f"no single-node SLURM here: {started.stderr.strip().splitlines()[-1:]}")
    env["SLURM_CONF"] = str(folder / "slurm.conf")
    yield env
    subprocess.run([str(REPO / "shell" / "start_slurm.sh"), "stop"], env=env, capture_output=True, timeout=60)


def _wait(env: dict, jobs: list[str], out: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", ",".join(jobs), "-o", "%i %T"], env=env,
                               capture_output=True, text=True).stdout.strip()
        if not queue:
            return
        time.sleep(1)
    logs = "\n".join(p.read_text()[-800:] for p in sorted((out / "logs").glob("*.log")))
    pytest.fail(f"jobs {jobs} still queued after {TIMEOUT} s:\n{queue}\n{logs}")


def _submit(env: dict, labels: Path, out: Path, steps: str) -> list[str]:
    result = subprocess.run([str(SLURM / "submit.sh"), str(labels), str(out)], capture_output=True, text=True,
                            env={**env, "SHARDS": "2", "STEPS": steps, "BATCH_SIZE": "1"})
    assert result.returncode == 0, result.stderr
    print(result.stdout, end="")
    return [line.split()[1] for line in result.stdout.splitlines()]


def _logs(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((out / "logs").glob("*.log")))


def test_two_shard_arrays_merge_to_the_unsharded_run(cluster, make_world, tmp_path):
    world = make_world(seed=5, train=1, test=2)
    labels, out = world / "labels.jsonl", tmp_path / "run"
    started = time.monotonic()
    jobs = _submit(cluster, labels, out, "detect merge-detections embed-grads merge-grads")
    _wait(cluster, jobs, out)
    print(f"SLURM: 2-shard detect + embed-grads arrays and their merges: {time.monotonic() - started:.0f} s")
    assert (out / "detections.jsonl").exists() and (out / "grads.h5").exists(), _logs(out)
    assert len(list((out / "logs").glob("vt-detect.*_[01].log"))) == 2   # two array tasks ran

    # the unsharded runs, the same settings, as processes as SLURM ran them (the same torch
    # threads and start-up: in the test's own process the float16 activations can differ in the last bit)
    whole = tmp_path / "whole.jsonl"
    run_cli("vt-detect", "-q", "--model", WEIGHTS / "detector.pt", labels, "-o", whole, check=True)
    assert (out / "detections.jsonl").read_bytes() == whole.read_bytes()
    grads = tmp_path / "grads.h5"
    run_cli("vt-embed", "-q", "--model", "vtcav_common.models.tiny:motion_c3d", "--weights", WEIGHTS / "classifier.pt",
            "--layers", "block1,block2,block3", "--seed", "0", labels, "--label", "right", "--split", "test",
            "--target", "right", "--batch-size", "1", "-o", grads, check=True)
    merged, merged_prov = h5_arrays(out / "grads.h5")
    single, single_prov = h5_arrays(grads)
    assert merged.keys() == single.keys()
    for name in single:
        assert np.array_equal(merged[name], single[name]), name
    assert merged_prov.pop("merged_from")["count"] == 2
    assert merged_prov == single_prov
    print(f"merged == unsharded: detections.jsonl ({len(whole.read_text().splitlines())} records, same bytes), "
          f"grads.h5 ({len(single)} arrays equal)")

    # one failed shard, run again alone: only that task, with the settings of the first submit
    shard = out / "shards" / "detections.1.jsonl"
    before = shard.read_bytes()
    shard.unlink()
    again = subprocess.run([str(SLURM / "resubmit.sh"), str(out), "detect", "1"], capture_output=True, text=True,
                           env={**cluster, "NO_CHAIN": "1", "LAYERS": "ignored"})
    assert again.returncode == 0, again.stderr
    job = again.stdout.split()[1]
    _wait(cluster, [job], out)
    assert shard.read_bytes() == before, _logs(out)
    assert [p.name for p in (out / "logs").glob(f"vt-detect.{job}_*.log")] == [f"vt-detect.{job}_1.log"]

    # a failed embedding shard: resubmitted alone, the merge after it waits for it (afterok) and runs again
    (out / "shards" / "grads.1.h5").unlink()
    (out / "grads.h5").unlink()
    again = subprocess.run([str(SLURM / "resubmit.sh"), str(out), "embed-grads", "1"], capture_output=True,
                           text=True, env=cluster)
    assert again.returncode == 0, again.stderr
    jobs = [line.split()[1] for line in again.stdout.splitlines()]
    assert [line.split()[0] for line in again.stdout.splitlines()] == ["embed-grads", "merge-grads", "tcav"]
    _wait(cluster, jobs, out)
    merged, _ = h5_arrays(out / "grads.h5")
    for name in single:
        assert np.array_equal(merged[name], single[name]), name
