"""--shard K/N and vt-merge: a deterministic partition, and shards that merge into exactly the
file the unsharded run writes; missing, duplicated and foreign shards refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import WEIGHTS, h5_arrays, run_cmd

from vtcav_common.core.errors import UsageError
from vtcav_common.scale.shard import parse_shard

TINY = ["--model", "vtcav_common.models.tiny:motion_c3d", "--weights", str(WEIGHTS / "classifier.pt")]


# --------------------------------------------------------------------------- the partition
def test_shards_tile_the_inputs_in_order_and_balanced():
    for n in (0, 1, 5, 10, 17, 100):
        for count in (1, 2, 3, 7):
            for unit in (1, 4, 8):
                blocks = [parse_shard(f"{k}/{count}").rows(n, unit) for k in range(count)]
                assert [i for block in blocks for i in block] == list(range(n))   # every item once, in order
                starts = [b.start for b in blocks if len(b)]
                assert all(s % unit == 0 for s in starts)                          # whole batches
                sizes = [-(-len(b) // unit) for b in blocks]                        # in batches
                assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("text", ["2/2", "1", "a/3", "-1/2", "0/0", "1/2/3", "$SLURM_ARRAY_TASK_ID/4"])
def test_bad_shard_values_are_usage_errors(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_bad_shard_on_the_command_line_is_one_line_exit_2(tmp_path):
    result = run_cmd("vt-embed", *TINY, "--layers", "block1", "x.jsonl", "-o", tmp_path / "a.h5", "--shard", "3/3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["vt-embed: error: --shard 3/3: K must be in 0..N-1 "
                                                  "(shards are numbered from 0)"]


# --------------------------------------------------------------------------- detections
@pytest.fixture(scope="module")
def world(make_world) -> Path:
    return make_world(seed=11, train=2, test=1)


def test_detection_shards_merge_to_the_unsharded_bytes(world, tmp_path):
    labels = world / "labels.jsonl"
    detector = ["--detector", str(WEIGHTS / "detector.pt")]
    run_cmd("vt-detect", "-q", *detector, labels, "-o", tmp_path / "all.jsonl", check=True)
    for k in range(3):
        run_cmd("vt-detect", "-q", *detector, labels, "--shard", f"{k}/3", "-o", tmp_path / f"d{k}.jsonl", check=True)
    side = json.loads((tmp_path / "d1.jsonl.shard.json").read_text())
    assert side["vtcav_kind"] == "detections"
    assert (side["shard"]["index"], side["shard"]["count"], side["shard"]["items"]["videos"]) == (1, 3, [4, 8, 12])
    ids = {json.loads(line)["video_id"] for line in (tmp_path / "d1.jsonl").read_text().splitlines()}
    order = [json.loads(line)["video_id"] for line in labels.read_text().splitlines()]
    assert ids == set(order[4:8])                                  # the second block of the manifest's order

    result = run_cmd("vt-merge", "-o", tmp_path / "m.jsonl", tmp_path / "d2.jsonl", tmp_path / "d0.jsonl",
                     tmp_path / "d1.jsonl", check=True)
    assert (tmp_path / "m.jsonl").read_bytes() == (tmp_path / "all.jsonl").read_bytes()
    assert not (tmp_path / "m.jsonl.shard.json").exists()
    assert "3 detections shards" in result.stderr

    missing = run_cmd("vt-merge", tmp_path / "x.jsonl", tmp_path / "d0.jsonl", tmp_path / "d2.jsonl")
    assert missing.returncode == 1 and not (tmp_path / "x.jsonl").exists()
    assert missing.stderr.splitlines() == [f"vt-merge: error: {tmp_path / 'x.jsonl'}: missing shard 1/3 of 3 "
                                           f"(given: 0/3, 2/3)"]
    twice = run_cmd("vt-merge", tmp_path / "x.jsonl", tmp_path / "d0.jsonl", tmp_path / "d1.jsonl",
                    tmp_path / "d1.jsonl", tmp_path / "d2.jsonl")
    assert twice.returncode == 1 and not (tmp_path / "x.jsonl").exists()
    assert twice.stderr.splitlines() == [f"vt-merge: error: {tmp_path / 'd1.jsonl'}: shard 1/3 given twice "
                                         f"(also {tmp_path / 'd1.jsonl'})"]
    plain = run_cmd("vt-merge", tmp_path / "x.jsonl", tmp_path / "all.jsonl")
    assert plain.returncode == 1 and "not a shard" in plain.stderr and len(plain.stderr.splitlines()) == 1
    for form in ([tmp_path / "d0.jsonl"], ["-o", tmp_path / "d0.jsonl"]):   # the output is one of the shards
        over = run_cmd("vt-merge", *form, tmp_path / "d0.jsonl", tmp_path / "d1.jsonl", tmp_path / "d2.jsonl")
        assert over.returncode == 2 and len(over.stderr.splitlines()) == 1, over.stderr
    alone = run_cmd("vt-merge", tmp_path / "x.jsonl")
    assert alone.returncode == 2 and "give the shard files" in alone.stderr

    to_stdout = run_cmd("vt-detect", *detector, labels, "--shard", "0/2")
    assert to_stdout.returncode == 2 and "needs -o FILE" in to_stdout.stderr

    # an unsharded run over a former shard's file drops its sidecar: the new file is no shard
    run_cmd("vt-detect", "-q", *detector, labels, "-o", tmp_path / "d1.jsonl", check=True)
    assert not (tmp_path / "d1.jsonl.shard.json").exists()


# --------------------------------------------------------------------------- embeddings
@pytest.fixture(scope="module")
def embedded(world, tmp_path_factory) -> Path:
    """Two clip sets, embedded whole and as 3 shards (batches of 2)."""
    out = tmp_path_factory.mktemp("embed")
    common = ["--videos", world / "labels.jsonl", "--frames", "16", "--size", "64", "--seed", "0", "-q"]
    run_cmd("vt-concepts", "random", *common, "--sets", "2", "--clips-per-set", "5", "-o", out / "clips.h5", check=True)
    embed = ["vt-embed", *TINY, "--layers", "block1,block3", "--target", "right", "--batch-size", "2", "-q"]
    run_cmd(*embed, out / "clips.h5", "-o", out / "whole.h5", check=True)
    for k in range(3):
        run_cmd(*embed, out / "clips.h5", "--shard", f"{k}/3", "-o", out / f"part{k}.h5", check=True)
    return out


@pytest.mark.parametrize("copy", [False, True])
def test_embedding_shards_merge_to_the_unsharded_arrays(embedded, copy):
    out = embedded
    merged = out / f"merged{int(copy)}.h5"
    run_cmd("vt-merge", *(["--copy"] if copy else []), merged, out / "part1.h5", out / "part0.h5", out / "part2.h5",
            check=True)
    whole, whole_prov = h5_arrays(out / "whole.h5")
    joined, joined_prov = h5_arrays(merged)
    assert joined.keys() == whole.keys()
    for name in whole:
        assert np.array_equal(joined[name], whole[name]), name       # bit for bit: whole batches per shard
    assert joined_prov.pop("merged_from") == {"count": 3, "files": ["part0.h5", "part1.h5", "part2.h5"]}
    assert joined_prov == whole_prov
    with h5py.File(merged, "r") as handle, h5py.File(out / "whole.h5", "r") as reference:
        acts = handle["sets/random_00/acts/block3"]
        assert acts.is_virtual is (not copy)
        assert dict(acts.attrs) == dict(reference["sets/random_00/acts/block3"].attrs)
        assert handle["sets/random_00"].attrs["n"] == 5
    with h5py.File(out / "part1.h5", "r") as handle:
        shard = json.loads(handle.attrs["provenance"])["shard"]
    assert shard["items"] == {"random_00": [2, 4, 5], "random_01": [2, 4, 5]}


def test_one_run_over_clips_and_videos_shards_and_merges(embedded, world, tmp_path):
    """vt-embed over a clip file and a manifest at once (--grad-set inputs), as 2 shards: the
    merge equals the unsharded file, gradients for the videos only."""
    embed = ["vt-embed", *TINY, "--layers", "block3", "--target", "right", "--grad-set", "inputs",
             "--batch-size", "2", "-q", embedded / "clips.h5", world / "labels.jsonl", "--split", "test"]
    run_cmd(*embed, "-o", tmp_path / "whole.h5", check=True)
    for k in range(2):
        run_cmd(*embed, "--shard", f"{k}/2", "-o", tmp_path / f"part{k}.h5", check=True)
    run_cmd("vt-merge", "--copy", "-o", tmp_path / "merged.h5", tmp_path / "part1.h5", tmp_path / "part0.h5",
            check=True)
    whole, whole_prov = h5_arrays(tmp_path / "whole.h5")
    joined, joined_prov = h5_arrays(tmp_path / "merged.h5")
    assert joined.keys() == whole.keys() and all(np.array_equal(joined[n], whole[n]) for n in whole)
    assert "sets/inputs/grads/block3" in whole and "sets/random_00/grads/block3" not in whole
    joined_prov.pop("merged_from")
    assert joined_prov == whole_prov and whole_prov["grad_sets"] == ["inputs"]


def test_a_moved_merge_reads_its_shards_and_a_lost_shard_reads_nan(embedded, tmp_path):
    out = embedded
    for name in ("part0.h5", "part1.h5", "part2.h5"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    run_cmd("vt-merge", "-q", tmp_path / "v.h5", *(tmp_path / f"part{k}.h5" for k in range(3)), check=True)
    whole, _ = h5_arrays(out / "whole.h5")
    with h5py.File(tmp_path / "v.h5", "r") as handle:          # read from another working directory
        assert np.array_equal(handle["sets/random_01/grads/block1"][()], whole["sets/random_01/grads/block1"])
    (tmp_path / "part1.h5").unlink()
    with h5py.File(tmp_path / "v.h5", "r") as handle:
        rows = handle["sets/random_01/acts/block1"][()]
    assert np.isnan(rows[2:4]).all() and not np.isnan(rows[:2]).any()


def test_shards_of_different_runs_are_refused(embedded, world, tmp_path):
    out = embedded
    other = tmp_path / "other1.h5"
    run_cmd("vt-embed", *TINY, "--layers", "block1", "--target", "right", "--batch-size", "2", "-q",
            out / "clips.h5", "--shard", "1/3", "-o", other, check=True)
    result = run_cmd("vt-merge", tmp_path / "x.h5", out / "part0.h5", other, out / "part2.h5")
    assert result.returncode == 1 and not (tmp_path / "x.h5").exists()
    assert result.stderr.splitlines() == [f"vt-merge: error: {other}: not a shard of the same run as "
                                          f"{out / 'part0.h5'} (differs in layers)"]
    batches = tmp_path / "b1.h5"
    run_cmd("vt-embed", *TINY, "--layers", "block1,block3", "--target", "right", "--batch-size", "1", "-q",
            out / "clips.h5", "--shard", "1/3", "-o", batches, check=True)
    result = run_cmd("vt-merge", tmp_path / "x.h5", out / "part0.h5", batches, out / "part2.h5")
    assert result.returncode == 1 and "different --batch-size" in result.stderr
    mixed = run_cmd("vt-merge", tmp_path / "x.h5", out / "part0.h5", out / "whole.h5")
    assert mixed.returncode == 1 and "not a shard" in mixed.stderr


def test_vt_merge_imports_no_torch(embedded, tmp_path):
    code = ("import sys; from tools.vt_merge import main; sys.argv = ['vt-merge', '-q', sys.argv[1], *sys.argv[2:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.h5"),
                             *(str(embedded / f"part{k}.h5") for k in range(3))], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
    assert (tmp_path / "m.h5").exists()


# --------------------------------------------------------------------------- the other sharded commands
def _same_file(whole: Path, merged: Path) -> None:
    a, a_prov = h5_arrays(whole)
    b, b_prov = h5_arrays(merged)
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name
    assert b_prov.pop("merged_from")["count"] >= 2
    assert a_prov == b_prov
    with h5py.File(whole, "r") as x, h5py.File(merged, "r") as y:   # a set's own provenance too
        for group in x.get("concepts", {}):
            assert dict(x["concepts"][group].attrs) == dict(y["concepts"][group].attrs)


COMMANDS = {
    "concepts-random": ["vt-concepts", "random", "--videos", "{world}/labels.jsonl", "--sets", "2",
                        "--clips-per-set", "5", "--frames", "8", "--size", "32", "--seed", "3"],
    "ace-supervoxels": ["vt-ace", "supervoxels", "{world}/labels.jsonl", "--label", "right", "--resolutions", "4,8",
                        "--frames", "8", "--size", "32"],
    "explain": ["vt-explain", "{world}/labels.jsonl", "--split", "train", "--label", "up", "--label", "down",
                *TINY, "--layer", "block1", "--selective", "1"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_sharded_command_merges_to_its_unsharded_file(command, world, tmp_path):
    args = [a.format(world=world) for a in COMMANDS[command]]
    whole = run_cmd(*args, "-q", "-o", tmp_path / "whole.h5", check=True)
    parts = [run_cmd(*args, "-q", "--shard", f"{k}/2", "-o", tmp_path / f"p{k}.h5", check=True) for k in range(2)]
    if command == "explain":    # the records on stdout: the shards' records, concatenated
        assert parts[0].stdout + parts[1].stdout == whole.stdout
    run_cmd("vt-merge", "-q", tmp_path / "merged.h5", tmp_path / "p1.h5", tmp_path / "p0.h5", check=True)
    _same_file(tmp_path / "whole.h5", tmp_path / "merged.h5")


def test_ace_feature_shards_merge_to_the_unsharded_features(world, tmp_path):
    run_cmd("vt-ace", "supervoxels", world / "labels.jsonl", "--label", "left", "--resolutions", "4,8", "--frames",
            "16", "--size", "64", "-q", "-o", tmp_path / "cand.h5", check=True)
    features = ["vt-ace", "features", tmp_path / "cand.h5", *TINY, "--layer", "block3", "--batch-size", "4", "-q"]
    run_cmd(*features, "-o", tmp_path / "whole.h5", check=True)
    for k in range(2):
        run_cmd(*features, "--shard", f"{k}/2", "-o", tmp_path / f"f{k}.h5", check=True)
    run_cmd("vt-merge", "-q", tmp_path / "merged.h5", tmp_path / "f0.h5", tmp_path / "f1.h5", check=True)
    _same_file(tmp_path / "whole.h5", tmp_path / "merged.h5")
