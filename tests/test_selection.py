"""Choosing sets by pattern where records are tested: vt-stats --concept 'ball_*' tests only those
concepts (m counts only them) against the same null; a pattern that matches nothing is a usage error."""

from __future__ import annotations

import json

import numpy as np

from conftest import run_cmd


def scores(tmp_path):
    """Score records as vt-score writes them: three concepts and a null, R = 6, one layer."""
    rng = np.random.default_rng(0)
    rows = []
    for concept, centre in (("ball_left", 0.2), ("ball_right", 0.95), ("square", 0.5)):
        for i in range(6):
            rows.append({"target": "right", "layer": "block1", "concept": concept, "against": f"random_{i:02d}",
                         "kind": "concept", "replicate": i, "score": float(np.clip(centre + rng.normal(0, .03), 0, 1)),
                         "magnitude": 0.01, "cav_accuracy": 0.9})
    for i in range(6):
        rows.append({"target": "right", "layer": "block1", "concept": f"random_{i:02d}",
                     "against": f"random_{(i + 1) % 6:02d}", "kind": "null", "replicate": i,
                     "score": float(rng.uniform(0.3, 0.7)), "magnitude": 0.0, "cav_accuracy": 0.5})
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_stats_concept_pattern(tmp_path):
    path = scores(tmp_path)
    every = run_cmd("vt-stats", path, "--no-table", check=True)
    chosen = run_cmd("vt-stats", path, "--concept", "ball_*", "--no-table", check=True)
    all_records = {r["concept"]: r for r in map(json.loads, every.stdout.splitlines())}
    ball = {r["concept"]: r for r in map(json.loads, chosen.stdout.splitlines())}
    assert sorted(ball) == ["ball_left", "ball_right"] and len(all_records) == 3
    assert {r["m"] for r in ball.values()} == {2}           # the family is what was chosen
    for name, record in ball.items():                       # the same test against the same null
        assert record["p"] == all_records[name]["p"] and record["null_mean"] == all_records[name]["null_mean"]
    wrong = run_cmd("vt-stats", path, "--concept", "ball?")
    assert wrong.returncode == 2 and "no concept matches 'ball?'" in wrong.stderr
    assert "ball_left, ball_right, square" in wrong.stderr
