"""Temporal twins (vt-concepts twins), their statistics (vtcav_common.stats.motion), and the
motion question answered both ways on the two known-answer worlds (shell/motion.sh)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, run_cli
from vtcav_common.formats import clips as clipsets
from vtcav_common.stats import motion


@pytest.fixture(scope="module")
def clips_file(tiny_world, tmp_path_factory) -> Path:
    """ball_right (dynamic) and 3 random sets, 8 frames of 32 x 32."""
    out = tmp_path_factory.mktemp("twins") / "concepts.h5"
    common = ["--videos", tiny_world / "labels.jsonl", "--frames", "8", "--size", "32", "--seed", "0"]
    run_cli("vt-concepts", "spatiotemporal", tiny_world / "gt.jsonl", *common, "--class", "ball", "--label",
            "right", "--name", "ball_right", "-o", out, check=True)
    run_cli("vt-concepts", "random", *common, "--sets", "3", "--clips-per-set", "4", "-o", out, "--append",
            check=True)
    return out


def _twins(clips_file: Path, tmp_path: Path, *args) -> Path:
    out = tmp_path / "twins.h5"
    run_cli("vt-concepts", "twins", clips_file, "-o", out, *args, check=True)
    return out


def test_twins_change_only_time_and_say_so(clips_file, tmp_path):
    out = _twins(clips_file, tmp_path, "--set", "ball_right", "--kind", "frozen,shuffled,reversed,blurred",
                 "--frame-kept", "2", "--seed", "5")
    source = clipsets.read_clips(clips_file, "ball_right")
    meta = clipsets.read_set_meta(clips_file, "ball_right")
    infos = {i.name: i for i in clipsets.list_sets(out)}
    assert sorted(infos) == sorted(f"ball_right~{k}" for k in ("frozen", "shuffled", "reversed", "blurred"))
    frozen = clipsets.read_clips(out, "ball_right~frozen")
    assert np.array_equal(frozen, np.repeat(source[:, 2:3], source.shape[1], axis=1))
    assert np.array_equal(clipsets.read_clips(out, "ball_right~reversed"), source[:, ::-1])
    shuffled = clipsets.read_clips(out, "ball_right~shuffled")
    with h5py.File(out) as handle:
        order = handle["concepts/ball_right~shuffled/order"][()]
    for clip, twin, perm in zip(source, shuffled, order):
        assert sorted(perm) == list(range(len(perm))) and list(perm) != sorted(perm)
        assert np.array_equal(twin, clip[perm])
    # where each twin frame came from: the source's frame numbers, reordered like the pixels
    twin_meta = clipsets.read_set_meta(out, "ball_right~shuffled")
    assert np.array_equal(twin_meta.frames, np.take_along_axis(meta.frames, order, axis=1))
    blurred = clipsets.read_clips(out, "ball_right~blurred").astype(float)
    # blurred: same frames in the same order, less detail (smaller differences between neighbours)
    assert np.abs(np.diff(blurred, axis=3)).mean() < 0.6 * np.abs(np.diff(source.astype(float), axis=3)).mean()
    info = infos["ball_right~frozen"]
    assert (info.kind, info.role) == ("twin", "twin")
    prov = info.attrs["provenance"]
    assert prov["source_set"] == "ball_right" and prov["transform"] == "frozen" and prov["frame_kept"] == 2
    assert prov["seed"] == 5 and prov["source_file"] == str(clips_file) and prov["source_run"]


def test_twins_are_seeded_and_default_to_every_set(clips_file, tmp_path):
    first = _twins(clips_file, tmp_path, "--kind", "shuffled", "--seed", "1")
    again = tmp_path / "again.h5"
    run_cli("vt-concepts", "twins", clips_file, "-o", again, "--kind", "shuffled", "--seed", "1", check=True)
    other = tmp_path / "other.h5"
    run_cli("vt-concepts", "twins", clips_file, "-o", other, "--kind", "shuffled", "--seed", "2", check=True)
    assert first.read_bytes() == again.read_bytes()
    names = [i.name for i in clipsets.list_sets(first)]
    assert names == [f"{n}~shuffled" for n in ("ball_right", "random_00", "random_01", "random_02")]
    assert not np.array_equal(clipsets.read_clips(first, "random_01~shuffled"),
                              clipsets.read_clips(other, "random_01~shuffled"))


def test_twins_in_place_keep_the_sets_and_refuse_bad_input(clips_file, tmp_path):
    copy = tmp_path / "c.h5"
    copy.write_bytes(clips_file.read_bytes())
    run_cli("vt-concepts", "twins", copy, "--set", "random_0?", "--kind", "frozen", check=True)
    names = [i.name for i in clipsets.list_sets(copy)]
    assert names[:4] == ["ball_right", "random_00", "random_01", "random_02"]
    assert names[4:] == ["random_00~frozen", "random_01~frozen", "random_02~frozen"]
    before = copy.read_bytes()
    for args, words in ((["--kind", "sideways"], "--kind"), (["--set", "nope"], "nope"),
                        (["--kind", "frozen"], "already has"), (["--frame-kept", "99"], "--frame-kept")):
        result = run_cli("vt-concepts", "twins", copy, *args)
        assert result.returncode != 0 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert copy.read_bytes() == before   # nothing written lost


def test_prediction_test_is_calibrated_and_finds_an_outlier():
    """A set that is one more random set is significant at most alpha of the time; one far
    outside the random sets' spread is significant."""
    rng = np.random.default_rng(0)
    hits = sum(motion.prediction_test(rng.normal(0.5, 0.1), rng.normal(0.5, 0.1, 10))[1] < 0.05
               for _ in range(4000))
    assert hits / 4000 < 0.06
    assert motion.prediction_test(0.95, np.linspace(0.4, 0.6, 10))[1] < 0.001


def test_twin_records_get_their_own_null():
    """vt-stats' twin hypotheses: the concept against random sets vs their own twins, not vs
    the random-vs-random null; random sets are not hypotheses; a chance CAV is never significant."""
    def rec(concept, transform, score, accuracy=0.9, replicate=0):
        return {"target": "right", "layer": "block3", "concept": concept, "against": f"{concept}~{transform}",
                "kind": "relative", "replicate": replicate, "score": score, "magnitude": 0.1,
                "cav_accuracy": accuracy}
    records = [rec(f"random_{i:02d}", t, 0.5 + 0.02 * ((i * 7) % 5 - 2), replicate=j)
               for i in range(10) for t in ("frozen", "reversed") for j in range(3)]
    records += [rec("ball_right", "frozen", 0.97, replicate=j) for j in range(3)]
    records += [rec("ball_right", "reversed", 0.97, accuracy=0.5, replicate=j) for j in range(3)]
    kept, twins = motion.split_twin_records(records + [{**records[0], "against": "ball_static"}])
    assert len(kept) == 1 and len(twins) == len(records)
    results = {r["transform"]: r for r in motion.twin_tests(twins, {f"random_{i:02d}" for i in range(10)})}
    assert set(results) == {"frozen", "reversed"}
    assert results["frozen"]["significant"] and results["frozen"]["verdict"] == "yes: relies on its motion"
    assert results["frozen"]["n_null"] == 10 and results["frozen"]["m"] == 2
    assert not results["reversed"]["significant"] and results["reversed"]["verdict"] == "chance CAV"


def test_a_verdict_needs_the_class_own_preference_not_only_the_null():
    """ball_red vs shuffled at block3 of the appearance world (paired split): 0.45 against random
    clips' own-twin scores near 0.06. Far from the null, but the class does not prefer the real
    order (0.45 < 0.5): not "relies on its frame order". The mirror case (0.55 against 0.94)
    is no preference for the twin either; 0.03 against 0.5 is one."""
    def rec(concept, score, replicate):
        return {"target": "red", "layer": "block3", "concept": concept, "against": f"{concept}~shuffled",
                "kind": "relative", "replicate": replicate, "score": score, "magnitude": 0.1, "cav_accuracy": 0.9}
    for concept_scores, null_centre, verdict in (((0.40, 0.45, 0.50), 0.06, "no: unlike random clips'"),
                                                 ((0.50, 0.55, 0.60), 0.94, "no: unlike random clips'"),
                                                 ((0.02, 0.03, 0.04), 0.50, "yes: prefers its shuffled twin"),
                                                 ((0.96, 0.97, 0.98), 0.50, "yes: relies on its frame order")):
        records = [rec(f"random_{i:02d}", null_centre + 0.01 * ((i * 7) % 5 - 2), j)
                   for i in range(10) for j in range(3)]
        records += [rec("ball_red", score, j) for j, score in enumerate(concept_scores)]
        (result,) = motion.twin_tests(records, {f"random_{i:02d}" for i in range(10)})
        assert result["p_corrected"] < 0.05, result
        assert result["verdict"].startswith(verdict) and result["significant"] == verdict.startswith("yes"), result


def test_vt_stats_writes_the_twin_table_and_figure(tmp_path):
    """Through vt-stats: twin records are tested against random sets vs their twins (not counted
    in the other hypotheses' m), written with kind "twin", and drawn by --motion-plot."""
    rng = np.random.default_rng(1)

    def rec(concept, against, kind, score, replicate):
        return {"target": "right", "layer": "block3", "concept": concept, "against": against, "kind": kind,
                "replicate": replicate, "score": float(score), "magnitude": 0.1, "cav_accuracy": 0.9}
    records = [rec(f"random_{i:02d}", f"random_{(i + 1) % 10:02d}", "null", rng.uniform(0.3, 0.7), i)
               for i in range(10)]
    records += [rec("ball_right", f"random_{i:02d}", "concept", rng.uniform(0.8, 1.0), i) for i in range(10)]
    records += [rec(f"random_{i:02d}", f"random_{i:02d}~frozen", "relative", rng.uniform(0.3, 0.6), j)
                for i in range(10) for j in range(4)]
    records += [rec("ball_right", "ball_right~frozen", "relative", 1.0, j) for j in range(4)]
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in records))
    figure = tmp_path / "motion.png"
    result = run_cli("vt-stats", scores, "--motion-plot", figure, "-o", tmp_path / "stats.jsonl", check=True)
    assert "Motion reliance" in result.stderr
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in stats] == ["concept", "twin"]
    assert stats[0]["m"] == 1 and stats[1]["n_null"] == 10 and stats[1]["significant"]
    assert figure.read_bytes()[:4] == b"\x89PNG"
    again = run_cli("vt-stats", scores, "--motion-plot", figure, "-o", tmp_path / "stats.jsonl", "-q")
    assert again.returncode == 0, again.stderr   # the figure of an earlier run is replaced, not an input
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps(r) + "\n" for r in records[:20]))
    result = run_cli("vt-stats", bare, "--motion-plot", tmp_path / "m2.png", "-o", tmp_path / "s2.jsonl")
    assert result.returncode == 1 and "vt-cav --twins" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s2.jsonl").exists()   # refused before any work


# --------------------------------------------------------------------------- the known answers, both ways
def _motion_run(out: Path, world: str) -> dict:
    env = {**os.environ, "WORLD": world, "RANDOM_SETS": "10", "CLIPS": "40", "SEED": "0"}
    result = subprocess.run([str(REPO / "shell" / "motion.sh"), str(out)], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stderr)
    records = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert (out / "motion.png").stat().st_size > 0 and (out / "report.html").exists()
    return {(r["layer"], r["transform"]): r for r in records if r["kind"] == "twin"}


@pytest.mark.slow
def test_motion_world_class_right_relies_on_motion_and_direction(tmp_path):
    """The class is the ball's direction: ball_right beats its frozen twin and its reversed
    twin (which moves left), more than random sets beat theirs."""
    twins = _motion_run(tmp_path, "motion")
    for transform in ("frozen", "reversed"):
        found = [r for (layer, t), r in twins.items() if t == transform]
        assert any(r["significant"] and r["direction"] == "+" for r in found), \
            [(r["layer"], r["mean"], r["null_mean"], r["p_corrected"]) for r in found]
    assert not any(r["significant"] and r["direction"] == "-" for r in twins.values())


@pytest.mark.slow
def test_appearance_world_no_twin_comparison_is_significant(tmp_path):
    """The class is the ball's colour; motion is random alike in every class: no comparison of
    ball_red with a temporal twin may come out significant, at any layer."""
    twins = _motion_run(tmp_path, "appearance")
    assert {t for _, t in twins} == {"frozen", "shuffled", "reversed"} and len(twins) == 9
    significant = [(k, r["mean"], r["null_mean"], r["p_corrected"]) for k, r in twins.items() if r["significant"]]
    assert not significant
