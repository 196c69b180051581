"""Score records as vt-stats receives them: validated, with duplicates and mixed runs refused.

Pooling a record twice (``cat scores.jsonl scores.jsonl``) doubles R and shrinks p, and
pooling the scores of two CAV runs tests a sample that no run produced: both are silent
wrong answers, so they are refused with one line naming the file and line.  Score records
carry ``cav_run`` and ``gradients_run`` (the files' ids); records without them count as
one run.
"""

from __future__ import annotations

import math
from typing import Iterable

from ..core.errors import VtcavError

SCORE_FIELDS = ("target", "layer", "concept", "against", "kind", "score", "magnitude")
KINDS = ("concept", "null", "relative")
RUN_FIELDS = ("cav_run", "gradients_run")


def _run(record: dict) -> tuple:
    return tuple(record.get(f) for f in RUN_FIELDS)


def _describe(run: tuple) -> str:
    return ", ".join(f"{f} {v}" for f, v in zip(RUN_FIELDS, run) if v is not None) or "no run id"


def check_scores(located: Iterable[tuple[str, dict]], name: str, allow_mixed_runs: bool = False) -> list[dict]:
    """The records of ``located`` ((``file:line``, record) pairs), or VtcavError on the first problem."""
    records, seen, runs = [], {}, {}
    for where, record in located:
        missing = [f for f in SCORE_FIELDS if f not in record]
        if missing:
            raise VtcavError(f"{where}: not a vt-score record (lacks {', '.join(missing)})")
        if record["kind"] not in KINDS:
            raise VtcavError(f"{where}: unknown kind '{record['kind']}' (expected {', '.join(KINDS)})")
        for field, (low, high) in (("score", (0.0, 1.0)), ("magnitude", (-math.inf, math.inf))):
            value = record[field]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise VtcavError(f"{where}: '{field}' is not a finite number ({value!r})")
            if not low <= value <= high:   # a score is a fraction of the inputs
                raise VtcavError(f"{where}: '{field}' {value!r} is outside [{low:g}, {high:g}]")
        for field in ("cav_accuracy", "n_inputs", "replicate"):   # optional, but numbers when there
            value = record.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise VtcavError(f"{where}: '{field}' is not a finite number ({str(value)[:40]!r})")
        if record.get("cav_accuracy", 0) is None:
            raise VtcavError(f"{where}: 'cav_accuracy' is null")
        for field in RUN_FIELDS:   # identities of runs: plain values, compared and hashed
            value = record.get(field)
            if value is not None and not isinstance(value, (str, int, float)):
                raise VtcavError(f"{where}: '{field}' must be a string, not {type(value).__name__}")
        for field in ("target", "layer", "concept", "against"):
            if not isinstance(record[field], str):
                raise VtcavError(f"{where}: '{field}' must be a string, not {type(record[field]).__name__}")
        derivatives = record.get("derivatives")
        if derivatives is not None:
            if (not isinstance(derivatives, list) or not all(
                    isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d) for d in derivatives)):
                raise VtcavError(f"{where}: 'derivatives' is not a list of finite numbers")
            if isinstance(record.get("n_inputs"), int) and len(derivatives) != record["n_inputs"]:
                raise VtcavError(f"{where}: {len(derivatives)} derivatives for n_inputs {record['n_inputs']}")
        run = _run(record)
        key = (record["target"], record["layer"], record["concept"], record["against"], record["kind"],
               record.get("replicate"), run)
        if key in seen:
            raise VtcavError(f"{where}: duplicate of {seen[key]} (same target, layer, concept, against, kind, "
                             f"replicate and run): the same scores given twice?")
        seen[key] = where
        group = (record["target"], record["layer"])
        first = runs.setdefault(group, (run, where))
        if first[0] != run and not allow_mixed_runs:
            raise VtcavError(f"{where}: scores of another run than {first[1]} for target '{group[0]}' at layer "
                             f"'{group[1]}' ({_describe(run)} vs {_describe(first[0])}); mixing runs pools "
                             f"samples no run produced (--allow-mixed-runs if that is meant)")
        records.append(record)
    if not records:
        raise VtcavError(f"{name}: no score records")
    if not any(r["kind"] == "null" for r in records):
        raise VtcavError(f"{name}: no null (random-vs-random) scores to test against")
    if all(r["kind"] == "null" for r in records):
        raise VtcavError(f"{name}: only null (random-vs-random) scores: no concept to test")
    return records
