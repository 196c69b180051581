"""Multiple-testing corrections: one registry, one function each.

Each correction takes the raw p values of one family (``m`` hypotheses) and returns the
adjusted ones (capped at 1).  ``best`` says the smallest adjusted p a hypothesis with raw
p could get among ``m`` in the most favourable case (used to tell whether significance
was reachable at all).  Adding a correction = one ``@correction`` function here.

Example:
    >>> correct([0.01, 0.02, 0.5], "bonferroni").round(3).tolist()
    [0.03, 0.06, 1.0]
    >>> correct([0.01, 0.04, 0.03, 0.2], "holm").round(3).tolist()
    [0.04, 0.09, 0.09, 0.2]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.registry import Registry


@dataclass(frozen=True)
class Correction:
    name: str
    adjust: Callable[[np.ndarray], np.ndarray]
    best: Callable[[float, int], float]   # smallest adjusted p reachable with raw p among m
    help: str


ALIASES = {"fdr": "bh"}
# installed packages add corrections through the entry-point group vtcav.corrections (core.registry)
REGISTRY: Registry[Correction] = Registry(
    "correction", group="vtcav.corrections", aliases=ALIASES, kind=Correction,
    choices=lambda registry: ", ".join(list(registry) + [f"{a} (= {n})" for a, n in registry.aliases.items()]))


def correction(name: str, best: Callable[[float, int], float], help: str):
    def register(function):
        REGISTRY.add(name, Correction(name, function, best, help))
        return function
    return register


@correction("bonferroni", best=lambda p, m: min(p * m, 1.0),
            help="p x m: controls the family-wise error rate (the paper's choice)")
def _bonferroni(p: np.ndarray) -> np.ndarray:
    return p * len(p)


# The smallest p of a family faces the full factor m under Holm.
@correction("holm", best=lambda p, m: min(p * m, 1.0),
            help="step-down Bonferroni: the same family-wise guarantee, never less power")
def _holm(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")
    out = np.empty(m)
    out[order] = np.maximum.accumulate((m - np.arange(m)) * p[order])
    return out


# Under BH a hypothesis reaches its raw p when every other one in the family is as small.
@correction("bh", best=lambda p, m: min(p, 1.0),
            help="Benjamini-Hochberg: controls the false discovery rate (alias fdr)")
def _bh(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    adjusted = np.minimum.accumulate((m / np.arange(m, 0, -1) * ranked[::-1]))[::-1]
    out = np.empty(m)
    out[order] = adjusted
    return out


@correction("none", best=lambda p, m: min(p, 1.0), help="raw p values (no correction)")
def _none(p: np.ndarray) -> np.ndarray:
    return p.copy()


NAMES = REGISTRY.names()   # the built-in corrections (plugins load when the registry is listed)


resolve = REGISTRY.resolve   # the registered name, or UnknownName (a ValueError) listing the choices
choices = REGISTRY.choices


def correct(pvalues, method: str = "bonferroni") -> np.ndarray:
    """Adjusted p values for the ``m`` hypotheses of one family (capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    if len(p) == 0:
        return p.copy()
    return np.minimum(REGISTRY[resolve(method)].adjust(p), 1.0)
