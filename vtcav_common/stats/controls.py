"""Sanity controls beside the real verdicts (``vt-stats --control``).

A control run is the same chain with the model or its gradients randomised (``vt-embed
--control``: ``reinit``, ``cascade:LAYER``, ``permute-grads``, ``permute-labels``; or
``vt-score --permute-gradients``); its score records carry the control's name. The control's
records go through exactly the analysis the real records went through (the caller passes
the one function, so whatever test, family and correction vt-stats uses apply to both),
and each real verdict gains:

- ``controls``: ``{name: {"p", "p_corrected", "significant", "direction", "mean"}}`` per
  control (None where the control lacks the hypothesis);
- ``survives_controls``: for a significant verdict, False when the same hypothesis is also
  significant in the same direction under any control (it then says nothing about what the
  model learned), True when under none; None for a verdict that is not significant or
  when no control has the hypothesis.

Every result also says which run it is of (``control``: None for a real run).

Example:
    >>> real = [{"target": "right", "layer": "b3", "concept": "c", "against": "random", "kind": "concept",
    ...          "significant": True, "direction": "+", "p": 0.001, "p_corrected": 0.01, "mean": 0.9}]
    >>> reinit = [dict(real[0], significant=False, p=0.4, p_corrected=1.0, mean=0.5)]
    >>> attach(real, None, {"reinit": reinit})
    >>> real[0]["survives_controls"], real[0]["controls"]["reinit"]["significant"]
    (True, False)
"""

from __future__ import annotations

from typing import Callable, Iterable

from ..core.errors import VtcavError

KEY = ("target", "layer", "concept", "against", "kind")
KEPT = ("p", "p_corrected", "significant", "direction", "mean")


def _key(result: dict) -> tuple:
    return tuple(result[k] for k in KEY)


def control_of(records: Iterable[dict], name: str) -> str | None:
    """The one control of a file's score records (None: a real run); several are refused."""
    found = {r.get("control") for r in records}
    if len(found) > 1:
        raise VtcavError(f"{name}: scores of several runs ({', '.join(sorted(str(c) for c in found))}); give each "
                         f"control's scores as a file of its own")
    return found.pop() if found else None


def run_controls(paths: list[str], load: Callable[[str], list[dict]], analyse: Callable[[list[dict]], list[dict]],
                 display: Callable[[str], str] = str) -> dict[str, list[dict]]:
    """Each control file's records (``load``: read and checked as the real ones), analysed by ``analyse``."""
    runs: dict[str, list[dict]] = {}
    for path in paths:
        records = load(path)
        name = control_of(records, display(path))
        if name is None:
            raise VtcavError(f"{display(path)}: scores of a real run (no control); --control takes the scores of a "
                             f"chain run with vt-embed --control (or vt-score --permute-gradients)")
        if name in runs:
            raise VtcavError(f"{display(path)}: a second run of control '{name}' (give one file per control)")
        runs[name] = analyse(records)
    return runs


def attach(results: list[dict], control: str | None, runs: dict[str, list[dict]], source: str = "scores") -> None:
    """Add ``control``, ``controls`` and ``survives_controls`` to every result, in place.

    ``control`` is the tested records' own control (None: a real run), ``source`` their file's name.
    """
    if runs and control is not None:
        raise VtcavError(f"{source}: scores of control '{control}'; give the real run's scores first and the "
                         f"controls' with --control")
    real_keys = {_key(r) for r in results}
    by_key = {}
    for name, control_results in runs.items():
        found = {_key(r): r for r in control_results}
        if not real_keys & set(found):
            raise VtcavError(f"control '{name}': none of its hypotheses (target, layer, concept, against) is among "
                             f"the real run's; was it run on the same concepts, layers and target?")
        by_key[name] = found
    for result in results:
        result["control"] = control
        result["controls"] = {name: ({k: found[_key(result)].get(k) for k in KEPT} if _key(result) in found else None)
                              for name, found in by_key.items()}
        matched = [c for c in result["controls"].values() if c is not None]
        if not result.get("significant") or not matched:
            result["survives_controls"] = None
        else:
            result["survives_controls"] = not any(c["significant"] and c["direction"] == result["direction"]
                                                  for c in matched)


def failing(results: list[dict]) -> list[tuple[dict, list[str]]]:
    """The significant verdicts that also appear under a control, with those controls' names."""
    out = []
    for result in results:
        if result.get("survives_controls") is False:
            names = [name for name, c in result["controls"].items()
                     if c is not None and c["significant"] and c["direction"] == result["direction"]]
            out.append((result, names))
    return out


def warning(results: list[dict]) -> str | None:
    """One line naming the significant verdicts that a randomised control also gives."""
    bad = failing(results)
    if not bad:
        return None
    significant = sum(1 for r in results if r.get("significant"))
    listed = "; ".join(f"{r['layer']} {r['concept']}{'' if r['kind'] == 'concept' else ' vs ' + r['against']} "
                       f"{r['direction']} ({', '.join(names)})" for r, names in bad)
    return (f"{len(bad)} of {significant} significant verdicts also appear, in the same direction, under a "
            f"randomised control: {listed}; they do not show what the model learned")


def cell(result: dict) -> str:
    """The controls of one verdict in a few characters: those under which it is significant, e.g.
    ``reinit +, permute-labels - (fails)``, or ``none of 5``."""
    controls = result.get("controls") or {}
    if not controls:
        return ""
    shown = [f"{name} {c['direction']}" for name, c in controls.items() if c is not None and c["significant"]]
    missing = sum(1 for c in controls.values() if c is None)
    text = ", ".join(shown) if shown else f"none of {len(controls)}"
    text += f" ({missing} lack it)" if missing else ""
    return text + {True: " (survives)", False: " (fails)", None: ""}[result.get("survives_controls")]
